"""Tests for samplers.datasets: synthetic generator (shape, determinism, learnability, memmap
cache) and the OGB on-disk loader (csv.gz and npz layouts written here; nothing downloads)."""
from __future__ import annotations

import gzip
import os
import sys
import tracemalloc

import numpy as np
import pytest
import torch

from samplers.datasets import _ogb
from samplers.datasets import _node_dataset as datasets
from samplers.datasets import NodeDataset, csc_from_edges, load_ogb, synthetic_graph


def _check_csc(ds: NodeDataset) -> None:
    indptr, indices = ds.indptr, ds.indices
    assert indptr.dtype == torch.int64 and indptr.shape == (ds.num_nodes + 1,)
    assert indices.dtype in (torch.int32, torch.int64)
    assert indptr[0] == 0 and indptr[-1] == indices.numel() == ds.num_edges
    assert bool((indptr[1:] >= indptr[:-1]).all())
    if indices.numel():
        assert 0 <= int(indices.min()) and int(indices.max()) < ds.num_nodes


def _neighbour_mean(ds: NodeDataset, x: torch.Tensor) -> torch.Tensor:
    deg = ds.indptr[1:] - ds.indptr[:-1]
    dst = torch.repeat_interleave(torch.arange(ds.num_nodes), deg)
    agg = torch.zeros_like(x).index_add_(0, dst, x[ds.indices.long()])
    return agg / deg.clamp(min=1).unsqueeze(1).to(x.dtype)


def _logreg_accuracy(x: torch.Tensor, ds: NodeDataset, epochs: int = 150) -> float:
    """Softmax regression by plain full-batch gradient descent (no torch.optim: its first use
    imports the compiler stack, which costs seconds)."""
    g = torch.Generator().manual_seed(0)
    tr, te, y = ds.train_idx, ds.test_idx, ds.labels
    x = (x - x[tr].mean(0)) / x[tr].std(0).clamp(min=1e-6)
    w = (0.01 * torch.randn(x.shape[1], ds.num_classes, generator=g)).requires_grad_()
    b = torch.zeros(ds.num_classes, requires_grad=True)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(x[tr] @ w + b, y[tr]) + 1e-4 * (w * w).sum()
        gw, gb = torch.autograd.grad(loss, (w, b))
        with torch.no_grad():
            w -= 0.5 * gw
            b -= 0.5 * gb
    with torch.no_grad():
        return ((x[te] @ w + b).argmax(1) == y[te]).float().mean().item()


# ---------------------------------------------------------------------------------- synthetic
def test_tiny_graph_fields_and_csc():
    ds = synthetic_graph(1000, num_classes=5, feat_dim=12)
    _check_csc(ds)
    assert ds.num_nodes == 1000 and ds.num_classes == 5 and ds.feat_dim == 12
    assert ds.features.shape == (1000, 12) and ds.features.dtype == torch.float32
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (1000,)
    assert int(ds.labels.min()) == 0 and int(ds.labels.max()) == 4
    assert ds.features_path is None
    # no self loops
    ei = ds.edge_index()
    assert ei.shape == (2, ds.num_edges) and not bool((ei[0] == ei[1]).any())
    # ~15 edges per node on average (Poisson out-degrees, self loops dropped)
    assert 13 * 1000 <= ds.num_edges <= 16 * 1000
    # splits: disjoint, in range, sized by the default fractions
    parts = [ds.train_idx, ds.val_idx, ds.test_idx]
    assert [p.numel() for p in parts] == [200, 100, 100]
    allp = torch.cat(parts)
    assert allp.dtype == torch.int64 and allp.unique().numel() == allp.numel()
    assert int(allp.max()) < 1000
    assert "num_nodes=1000" in repr(ds)


def test_degree_distribution_is_heavy_tailed():
    ds = synthetic_graph(20000, avg_degree=10, feat_dim=1)
    deg = (ds.indptr[1:] - ds.indptr[:-1]).numpy()
    mean = deg.mean()
    assert deg.max() > 20 * mean
    top = np.sort(deg)[::-1][: len(deg) // 100]
    assert top.sum() / deg.sum() > 0.10          # top 1% of nodes hold > 10% of the in-edges
    # log-log slope of the complementary CDF over the tail: ~ -(exponent - 1) = -1.5
    ks = np.unique(np.geomspace(2 * mean, np.quantile(deg, 0.999), 12).astype(int))
    ccdf = np.array([(deg >= k).mean() for k in ks])
    slope = np.polyfit(np.log(ks), np.log(ccdf), 1)[0]
    assert -2.5 < slope < -0.8, slope
    # an Erdos-Renyi graph of the same density would have max degree ~ mean + 5 sqrt(mean)
    assert deg.std() > 2 * np.sqrt(mean)


def test_homophily_controls_same_class_edges():
    ds = synthetic_graph(3000, num_classes=4, feat_dim=1, homophily=0.8)
    src, dst = ds.edge_index()
    same = (ds.labels[src] == ds.labels[dst]).float().mean().item()
    assert 0.75 < same < 0.9  # homophily + (1 - homophily) / num_classes ~ 0.85


def test_deterministic_for_a_seed():
    a = synthetic_graph(1500, feat_dim=8, seed=3)
    b = synthetic_graph(1500, feat_dim=8, seed=3)
    c = synthetic_graph(1500, feat_dim=8, seed=4)
    for field in ("indptr", "indices", "features", "labels", "train_idx", "val_idx", "test_idx"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.name == b.name != c.name
    assert not torch.equal(a.features, c.features)
    assert not torch.equal(a.labels, c.labels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_feature_dtypes_match_float32(dtype):
    ref = synthetic_graph(500, feat_dim=7)
    ds = synthetic_graph(500, feat_dim=7, feat_dtype=dtype)
    assert ds.features.dtype == dtype
    assert torch.equal(ds.indices, ref.indices)
    torch.testing.assert_close(ds.features.float(), ref.features.to(dtype).float())


@pytest.fixture
def one_torch_thread():
    """Tiny models: a single thread avoids OpenMP spin-waits on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_labels_learnable_and_graph_helps(one_torch_thread):
    """Neighbour averaging (what GraphSAGE does) beats features alone, which beats chance."""
    ds = synthetic_graph(2000, num_classes=8, feat_dim=32, split=(0.5, 0.1, 0.4))
    x = ds.features
    m1 = _neighbour_mean(ds, x)
    m2 = _neighbour_mean(ds, m1)
    chance = 1.0 / ds.num_classes
    acc_feat = _logreg_accuracy(x, ds)
    acc_graph = _logreg_accuracy(torch.cat([x, m1, m2], 1), ds)
    assert acc_feat > 1.5 * chance, acc_feat
    assert acc_graph > 0.8, acc_graph
    assert acc_graph > acc_feat + 0.2, (acc_feat, acc_graph)


def test_memmap_cache_round_trip(tmp_path, monkeypatch):
    ds = synthetic_graph(1200, feat_dim=16, root=tmp_path)
    path = ds.features_path
    assert path is not None and path.is_file() and path.parent.parent == tmp_path
    assert ds.name == path.parent.name
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.parent.name]  # no temp leftovers
    _check_csc(ds)
    ref = synthetic_graph(1200, feat_dim=16)  # the in-RAM version is the same dataset
    assert torch.equal(ds.features, ref.features) and torch.equal(ds.indices, ref.indices)
    mtime = path.stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("regenerated instead of reopening the cache")

    monkeypatch.setattr(datasets, "_generate", boom)
    again = synthetic_graph(1200, feat_dim=16, root=str(tmp_path))
    assert path.stat().st_mtime_ns == mtime
    for field in ("indptr", "indices", "features", "labels", "train_idx", "val_idx", "test_idx"):
        assert torch.equal(getattr(ds, field), getattr(again, field)), field
    # the tensor is a view of the file: a write shows through another mapping of it
    again.features[3, 5] = 42.0
    assert np.load(path, mmap_mode="r")[3, 5] == 42.0
    with pytest.raises(AssertionError, match="regenerated"):  # other parameters -> new dataset
        synthetic_graph(1200, feat_dim=16, seed=1, root=tmp_path)


def test_memmap_cache_replaces_incomplete_folder(tmp_path):
    name = synthetic_graph(200, feat_dim=3).name
    (tmp_path / name).mkdir()
    (tmp_path / name / "features.npy").write_bytes(b"half a file")  # no meta.json: incomplete
    ds = synthetic_graph(200, feat_dim=3, root=tmp_path)
    assert ds.features_path == tmp_path / name / "features.npy"
    assert torch.equal(ds.features, synthetic_graph(200, feat_dim=3).features)


def test_memmap_cache_bfloat16(tmp_path):
    ds = synthetic_graph(300, feat_dim=5, feat_dtype=torch.bfloat16, root=tmp_path)
    again = synthetic_graph(300, feat_dim=5, feat_dtype=torch.bfloat16, root=tmp_path)
    assert again.features.dtype == torch.bfloat16
    assert torch.equal(ds.features, again.features)
    torch.testing.assert_close(
        again.features, synthetic_graph(300, feat_dim=5).features.to(torch.bfloat16))


def test_csc_from_edges_numpy_and_numba_agree():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 300, 4000).astype(np.int32)
    dst = rng.integers(0, 300, 4000).astype(np.int32)
    indptr, indices = csc_from_edges(src, dst, 300)
    order = np.argsort(dst, kind="stable")
    np.testing.assert_array_equal(indices, src[order])
    np.testing.assert_array_equal(np.diff(indptr), np.bincount(dst, minlength=300))
    scatter = datasets._scatter_numba()
    if scatter is not None:
        out = np.empty_like(indices)
        scatter(src, dst, indptr, out)
        np.testing.assert_array_equal(out, indices)


def test_graph_helper_builds_csc_graph():
    samplers = pytest.importorskip("samplers")
    if not hasattr(samplers, "CSCGraph"):
        pytest.skip("samplers.CSCGraph not available yet")
    ds = synthetic_graph(200, feat_dim=2)
    g = ds.graph()
    assert isinstance(g, samplers.CSCGraph)
    assert g.num_nodes == ds.num_nodes and g.num_edges == ds.num_edges
    assert torch.equal(g.in_degrees().long(), (ds.indptr[1:] - ds.indptr[:-1]).long())


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(num_nodes=1.5), TypeError, "num_nodes"),
    (dict(num_nodes=0), ValueError, "num_nodes"),
    (dict(num_nodes=3, num_classes=4), ValueError, "num_classes"),
    (dict(num_nodes=100, num_classes=1), ValueError, "num_classes"),
    (dict(num_nodes=100, feat_dim=0), ValueError, "feat_dim"),
    (dict(num_nodes=100, homophily=1.5), ValueError, "homophily"),
    (dict(num_nodes=100, homophily="high"), TypeError, "homophily"),
    (dict(num_nodes=100, avg_degree=-1.0), ValueError, "avg_degree"),
    (dict(num_nodes=100, noise=-0.1), ValueError, "noise"),
    (dict(num_nodes=100, degree_exponent=2.0), ValueError, "degree_exponent"),
    (dict(num_nodes=100, feat_dtype=torch.int8), ValueError, "feat_dtype"),
    (dict(num_nodes=100, feat_dtype="float32"), TypeError, "feat_dtype"),
    (dict(num_nodes=100, split=(0.8, 0.3, 0.1)), ValueError, "split"),
    (dict(num_nodes=100, split=0.5), TypeError, "split"),
    (dict(num_nodes=100, seed=-1), ValueError, "seed"),
    (dict(num_nodes=100, root=3), TypeError, "root"),
])
def test_synthetic_bad_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        synthetic_graph(**kwargs)


# ---------------------------------------------------------------------------------------- OGB
N_OGB, F_OGB, C_OGB = 40, 6, 3


def _ogb_source(seed=0):
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, N_OGB, (2, 120))
    edges = edges[:, edges[0] != edges[1]]
    feat = rng.standard_normal((N_OGB, F_OGB)).astype(np.float32)
    labels = rng.integers(0, C_OGB, N_OGB).astype(np.float64)
    perm = rng.permutation(N_OGB)
    split = {"train": perm[:20], "valid": perm[20:30], "test": perm[30:]}
    return edges, feat, labels, split


def _write_csv_gz(path, arr, fmt):
    with gzip.open(path, "wt") as fh:
        np.savetxt(fh, np.asarray(arr).reshape(len(arr), -1), delimiter=",", fmt=fmt)


def _write_split(ddir, name, split):
    sdir = ddir / "split" / name
    sdir.mkdir(parents=True)
    for part, ids in split.items():
        _write_csv_gz(sdir / f"{part}.csv.gz", ids, "%d")


def _write_ogb_csv(root, name="ogbn-products", split_name="sales_ranking"):
    edges, feat, labels, split = _ogb_source()
    raw = root / name.replace("-", "_") / "raw"
    raw.mkdir(parents=True)
    _write_csv_gz(raw / "edge.csv.gz", edges.T, "%d")
    _write_csv_gz(raw / "node-feat.csv.gz", feat, "%.8g")
    _write_csv_gz(raw / "node-label.csv.gz", labels, "%d")
    _write_csv_gz(raw / "num-node-list.csv.gz", [N_OGB], "%d")
    _write_csv_gz(raw / "num-edge-list.csv.gz", [edges.shape[1]], "%d")
    _write_split(raw.parent, split_name, split)
    return edges, feat, labels.astype(np.int64), split


def _write_ogb_npz(root, name="ogbn-papers100M"):
    edges, feat, labels, split = _ogb_source(1)
    labels[::7] = np.nan  # unlabelled nodes, as in papers100M
    raw = root / name.replace("-", "_") / "raw"
    raw.mkdir(parents=True)
    np.savez_compressed(raw / "data.npz", edge_index=edges, node_feat=feat,
                        num_nodes_list=np.array([N_OGB]), num_edges_list=np.array([edges.shape[1]]))
    np.savez_compressed(raw / "node-label.npz", node_label=labels.reshape(-1, 1))
    _write_split(raw.parent, "time", split)
    expect = np.where(np.isnan(labels), -1, np.nan_to_num(labels)).astype(np.int64)
    return edges, feat, expect, split


def _expected_csc(edges, add_reverse):
    src, dst = edges
    if add_reverse:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    return csc_from_edges(src, dst, N_OGB)


@pytest.mark.parametrize("layout", ["csv", "npz"])
@pytest.mark.parametrize("add_reverse", [True, False])
def test_load_ogb_layouts(tmp_path, layout, add_reverse):
    name = "ogbn-products" if layout == "csv" else "ogbn-papers100M"
    writer = _write_ogb_csv if layout == "csv" else _write_ogb_npz
    edges, feat, labels, split = writer(tmp_path, name)
    ds = load_ogb(name, tmp_path, add_reverse=add_reverse)
    _check_csc(ds)
    assert ds.name == name and ds.num_nodes == N_OGB
    indptr, indices = _expected_csc(edges, add_reverse)
    np.testing.assert_array_equal(ds.indptr.numpy(), indptr)
    np.testing.assert_array_equal(ds.indices.numpy(), indices)
    np.testing.assert_allclose(ds.features.numpy(), feat, rtol=1e-6)
    assert ds.features.dtype == torch.float32
    np.testing.assert_array_equal(ds.labels.numpy(), labels)
    assert ds.labels.dtype == torch.int64
    assert ds.num_classes == int(labels.max()) + 1
    np.testing.assert_array_equal(ds.train_idx.numpy(), split["train"])
    np.testing.assert_array_equal(ds.val_idx.numpy(), split["valid"])
    np.testing.assert_array_equal(ds.test_idx.numpy(), split["test"])
    assert ds.train_idx.dtype == torch.int64


def test_load_ogb_split_name(tmp_path):
    _write_ogb_csv(tmp_path, "ogbn-mine", split_name="random")
    assert load_ogb("ogbn-mine", tmp_path).train_idx.numel() == 20  # the only split folder
    assert load_ogb("ogbn-mine", tmp_path, split="random").val_idx.numel() == 10
    with pytest.raises(FileNotFoundError, match="nope"):
        load_ogb("ogbn-mine", tmp_path, split="nope")


def test_load_ogb_missing_files_never_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads") as info:
        load_ogb("ogbn-products", tmp_path)
    assert "ogbn_products" in str(info.value)
    _write_ogb_csv(tmp_path)
    os.remove(tmp_path / "ogbn_products" / "raw" / "node-feat.csv.gz")
    with pytest.raises(FileNotFoundError, match="node-feat.csv.gz"):
        load_ogb("ogbn-products", tmp_path)


def test_load_ogb_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="name"):
        load_ogb(3, tmp_path)
    with pytest.raises(TypeError, match="root"):
        load_ogb("ogbn-products", None)
    with pytest.raises(ValueError, match="name"):
        load_ogb("products", tmp_path)
    with pytest.raises(TypeError, match="add_reverse"):
        load_ogb("ogbn-products", tmp_path, add_reverse="yes")
    if not datasets._has_ogb():
        _write_ogb_csv(tmp_path)
        with pytest.raises(ValueError, match="use_ogb"):
            load_ogb("ogbn-products", tmp_path, use_ogb=True)


# ------------------------------------------------------------------- OGB CSV reader and .npy cache
@pytest.fixture
def no_pandas(monkeypatch):
    """Make ``import pandas`` fail, so the reader takes its NumPy path."""
    monkeypatch.setitem(sys.modules, "pandas", None)


def _cache_files(ddir):
    cache = ddir / _ogb.CACHE_DIR
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


def _assert_same_dataset(a: NodeDataset, b: NodeDataset) -> None:
    assert a.num_nodes == b.num_nodes and a.num_classes == b.num_classes
    for field in ("indptr", "indices", "features", "labels", "train_idx", "val_idx", "test_idx"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and torch.equal(x, y), field


def test_ogb_cache_written_once_and_reused(tmp_path, monkeypatch):
    edges, feat, labels, split = _write_ogb_csv(tmp_path)
    ddir = tmp_path / "ogbn_products"
    first = load_ogb("ogbn-products", tmp_path)
    files = _cache_files(ddir)
    expect = {f"raw/{n}.{e}" for n in ("edge", "node-feat", "node-label", "num-node-list")
              for e in ("npy", "json")}
    expect |= {f"split/sales_ranking/{p}.{e}" for p in split for e in ("npy", "json")}
    assert set(files) == expect                                   # no temporary leftovers
    assert first.features_path == ddir / _ogb.CACHE_DIR / "raw" / "node-feat.npy"
    np.testing.assert_allclose(first.features.numpy(), feat, rtol=1e-6)

    def boom(*args, **kwargs):
        raise AssertionError("parsed a CSV again instead of opening the cache")

    monkeypatch.setattr(_ogb, "_parse_into", boom)
    again = load_ogb("ogbn-products", tmp_path)
    assert _cache_files(ddir) == files                            # nothing rewritten
    _assert_same_dataset(first, again)
    assert isinstance(_ogb.read_raw(ddir)[3], np.memmap)
    # the feature tensor is a view of the cache file: a write shows through another mapping
    again.features[3, 2] = 42.0
    assert np.load(again.features_path, mmap_mode="r")[3, 2] == 42.0


def test_ogb_cache_rebuilt_when_the_csv_changes(tmp_path):
    _, feat, _, _ = _write_ogb_csv(tmp_path)
    raw = tmp_path / "ogbn_products" / "raw"
    load_ogb("ogbn-products", tmp_path)
    _write_csv_gz(raw / "node-feat.csv.gz", feat * 2, "%.8g")
    st = os.stat(raw / "node-feat.csv.gz")
    os.utime(raw / "node-feat.csv.gz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    np.testing.assert_allclose(load_ogb("ogbn-products", tmp_path).features.numpy(), feat * 2,
                               rtol=1e-6)


@pytest.mark.parametrize("damage", ["truncated", "no record", "bad record", "wrong shape"])
def test_ogb_cache_rebuilt_when_incomplete(tmp_path, damage):
    _, feat, _, _ = _write_ogb_csv(tmp_path)
    ref = load_ogb("ogbn-products", tmp_path)
    npy = ref.features_path
    record = npy.with_suffix(".json")
    del ref
    if damage == "truncated":                 # e.g. a disk that filled up under another writer
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "no record":               # stopped between the .npy and its record
        record.unlink()
    elif damage == "bad record":
        record.write_text("{")
    else:
        np.save(npy, np.zeros((3, F_OGB), np.float32))
    ds = load_ogb("ogbn-products", tmp_path)
    np.testing.assert_allclose(ds.features.numpy(), feat, rtol=1e-6)
    assert ds.features_path == npy
    assert _ogb._open_cache(npy, npy.parents[2] / "raw" / "node-feat.csv.gz",
                            np.dtype(np.float32)) is not None


def test_ogb_cache_folder_not_writable(tmp_path, caplog):
    """Where the cache cannot be written the CSVs are parsed into memory, with a warning."""
    _, feat, _, _ = _write_ogb_csv(tmp_path)
    (tmp_path / "ogbn_products" / _ogb.CACHE_DIR).write_text("a file, not a folder")
    with caplog.at_level("WARNING", logger="samplers.datasets"):
        ds = load_ogb("ogbn-products", tmp_path)
    assert "cannot write the cache folder" in caplog.text
    assert ds.features_path is None
    np.testing.assert_allclose(ds.features.numpy(), feat, rtol=1e-6)


# Blank lines are skipped, empty fields and 'nan' read as NaN, as pandas does.
_ODD_CSV = "1.5,,3\n\nnan,2,-4e-3\n7,8,9\n"


def test_ogb_csv_odd_fields_without_pandas(tmp_path, no_pandas):
    path = tmp_path / "odd.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(_ODD_CSV)
    want = np.array([[1.5, np.nan, 3], [np.nan, 2, -4e-3], [7, 8, 9]])
    for chunk_rows in (1, 2, None):
        np.testing.assert_array_equal(_ogb._read_csv(path, np.float64, chunk_rows=chunk_rows), want)


def test_ogb_same_results_with_and_without_pandas(tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    odd = tmp_path / "odd.csv.gz"
    with gzip.open(odd, "wt") as fh:
        fh.write(_ODD_CSV)
    _write_ogb_csv(tmp_path / "a")
    _write_ogb_csv(tmp_path / "b")
    with_pd = load_ogb("ogbn-products", tmp_path / "a")
    odd_pd = _ogb._read_csv(odd, np.float32, chunk_rows=2)
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert _ogb._pandas() is None
    _assert_same_dataset(with_pd, load_ogb("ogbn-products", tmp_path / "b"))
    np.testing.assert_array_equal(odd_pd, _ogb._read_csv(odd, np.float32, chunk_rows=2))


@pytest.mark.parametrize("use_pandas", [False, True])
def test_ogb_csv_parsed_in_chunks(tmp_path, monkeypatch, use_pandas):
    """The reader never holds more than ``chunk_rows`` parsed rows at a time."""
    if use_pandas:
        pytest.importorskip("pandas")
    else:
        monkeypatch.setitem(sys.modules, "pandas", None)
    _, feat, _, _ = _write_ogb_csv(tmp_path)
    path = tmp_path / "ogbn_products" / "raw" / "node-feat.csv.gz"
    name = "_chunks_pandas" if use_pandas else "_chunks_numpy"
    real, sizes = getattr(_ogb, name), []

    def spy(*args):
        for chunk in real(*args):
            sizes.append(chunk.shape)
            yield chunk

    monkeypatch.setattr(_ogb, name, spy)
    out = _ogb._read_csv(path, np.float32, cache=tmp_path / "feat.npy", chunk_rows=7)
    assert sizes == [(7, F_OGB)] * 5 + [(5, F_OGB)]
    assert isinstance(out, np.memmap) and out.dtype == np.float32
    np.testing.assert_allclose(out, feat, rtol=1e-6)
    np.testing.assert_array_equal(_ogb._read_csv(path, np.float32, chunk_rows=7), out)


def test_ogb_csv_peak_memory_bounded(tmp_path, no_pandas):
    """Peak Python/NumPy memory while parsing into the cache stays a small fraction of the result
    (``np.genfromtxt`` needed about 110 bytes per field, 25x a float32 result)."""
    rows, cols = 20_000, 25
    feat = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
    path = tmp_path / "feat.csv.gz"
    _write_csv_gz(path, feat, "%.8g")
    tracemalloc.start()
    try:
        out = _ogb._read_csv(path, np.float32, cache=tmp_path / "feat.npy", chunk_rows=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(out, feat, rtol=1e-6)
    assert peak < feat.nbytes / 4, (peak, feat.nbytes)
