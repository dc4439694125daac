"""Compressed tables (issue 17), the Python side: building (every source kind, streamed in
chunks, robust int8 scales, the error report), bad sources, saving and mapping, every gather entry
point against the decode reference, writes, pickling, caching arguments and the loaders. The
kernels themselves: test_convert_cpu.py (Numba), test_convert_cuda.py and tests/cpp (GPU); the
CUDA branches run under tests/fake_cuda."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unified_tensor as ut
from unified_tensor._compressed import _decode

KINDS = ["bf16", "fp16", "int8", "int8-row"]


def _table(n=300, f=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    # columns on very different scales, one constant column
    x = torch.randn(n, f, generator=g) * torch.logspace(-3, 3, f)
    x[:, 2] = 7.25
    return x


def _compress(x, kind, **kw):
    if kind == "int8-row":
        return ut.compress(x, "int8", per="row", **kw)
    return ut.compress(x, kind, **kw)


def _reference(t):
    """The float table the codes stand for (float32)."""
    ids = torch.arange(t.shape[0])
    return _decode(t._ut_values._ut_plain, t.kind, t.scale, t.offset, t.per_row, ids)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_error_is_what_the_kind_allows(kind):
    x = _table()
    t = _compress(x, kind, **({"clip": 1.0} if kind == "int8" else {}))   # exact ranges here
    assert isinstance(t, torch.Tensor) and isinstance(t, ut.CompressedTensor)
    assert t.shape == x.shape and t.dtype == torch.float32 and t.device.type == "cpu"
    assert t.size(1) == 13 and t.dim() == 2 and len(t) == 300 and t.numel() == 300 * 13
    y = t[torch.arange(300)]
    assert type(y) is torch.Tensor and y.dtype == torch.float32
    if kind == "int8-row":   # half a step of each row's own range
        step = (x.amax(1) - x.amin(1)) / 255
        assert ((y - x).abs().amax(1) <= step / 2 * 1.001 + 1e-6).all()
    else:
        scale = x.abs().amax(0) if kind != "int8" else (x.amax(0) - x.amin(0))
        rel = ((y - x).abs().amax(0) / scale.clamp_min(1e-30))
        bound = {"bf16": 2 ** -8, "fp16": 2 ** -10, "int8": 1 / 510 * 1.001}[kind]
        assert float(rel.max()) <= bound, rel
    if kind != "int8-row":
        assert torch.equal(y[:, 2], x[:, 2])     # a constant column is exact
    assert torch.allclose(t.column_rmse, (y - x).square().mean(0).sqrt(), rtol=1e-4, atol=1e-12)
    assert torch.allclose(t.column_max_error, (y - x).abs().amax(0), rtol=1e-5, atol=1e-12)


def test_int8_per_column_resists_outliers():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, 4, generator=g)
    x[5, 0] = 1e4                            # one extreme value in column 0
    robust = ut.compress(x, "int8")
    exact = ut.compress(x, "int8", clip=1.0)
    keep = torch.arange(20000) != 5
    err_r = (robust[torch.arange(20000)] - x)[keep, 0].abs().mean()
    err_e = (exact[torch.arange(20000)] - x)[keep, 0].abs().mean()
    assert err_r * 50 < err_e                # the outlier does not wipe out the column's step
    assert float(robust.column_clipped[0]) > 0 and float(exact.column_clipped[0]) == 0


@pytest.mark.parametrize("source", ["torch", "numpy", "memmap", "shared", "unified", "float64",
                                    "bfloat16"])
def test_every_source_kind_and_chunking(source, tmp_path):
    x = _table(257, 5)
    if source == "numpy":
        src = x.numpy()
    elif source == "memmap":
        np.save(tmp_path / "x.npy", x.numpy())
        src = np.load(tmp_path / "x.npy", mmap_mode="r")
    elif source == "shared":
        src = x.clone().share_memory_()
    elif source == "unified":
        src = ut.unified(x.clone())
    elif source == "float64":
        src = x.double()
    elif source == "bfloat16":
        x = x.bfloat16().float()
        src = x.bfloat16()
    else:
        src = x
    whole = ut.compress(src, "int8", clip=1.0)
    chunked = ut.compress(src, "int8", clip=1.0, chunk_rows=7)
    assert torch.equal(whole.values, chunked.values)
    assert torch.equal(whole[torch.arange(257)], chunked[torch.arange(257)])


@pytest.mark.parametrize("bad, exc, msg", [
    (torch.arange(12).view(4, 3), TypeError, "floating-point"),
    (np.zeros((4, 3), dtype=np.int64), TypeError, "floating-point"),
    (torch.zeros(4, 3, dtype=torch.complex64), TypeError, "floating-point"),
    (torch.zeros(4, 3, dtype=torch.bool), TypeError, "floating-point"),
    (torch.zeros(0, 3), ValueError, "empty"),
    (torch.zeros(4, 0), ValueError, "empty"),
    (torch.zeros(4), ValueError, "2-D"),
    ([[1.0, 2.0]], TypeError, "torch.Tensor or NumPy"),
])
def test_bad_sources(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        ut.compress(bad, "int8")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("kind", ["int8", "bf16", "fp16"])
def test_nan_and_inf_name_the_row_and_column(value, kind):
    x = _table(50, 4)
    x[33, 3] = value
    with pytest.raises(ValueError, match="row 33, column 3"):
        ut.compress(x, kind, chunk_rows=8)


def test_fp16_refuses_values_beyond_its_range():
    x = _table(10, 3)
    x[4, 1] = 1e6
    with pytest.raises(ValueError, match="float16"):
        ut.compress(x, "fp16")
    assert ut.compress(x, "bf16")[torch.tensor([4])][0, 1] == pytest.approx(1e6, rel=1e-2)


@pytest.mark.parametrize("kw, exc, msg", [
    ({"kind": "int4"}, ValueError, "kind"), ({"per": "block"}, ValueError, "per"),
    ({"clip": 0.3}, ValueError, "clip"), ({"clip": True}, ValueError, "clip"),
    ({"dtype": torch.int8}, TypeError, "float32, bfloat16 or float16"),
    ({"chunk_rows": 0}, ValueError, "chunk_rows"), ({"sample_rows": 0}, ValueError, "sample_rows"),
])
def test_bad_options(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        ut.compress(_table(), **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_every_entry_point_returns_the_decoded_rows(kind):
    t = _compress(_table(), kind)
    ref = _reference(t)
    for idx in (torch.tensor([5, 0, 299, -1]), torch.tensor([5, 0, 299, -1], dtype=torch.int32),
                torch.randint(0, 300, (7, 11)), torch.empty(0, dtype=torch.long)):
        want = ref[idx.long()]
        for got in (t[idx], ut.gather(t, idx), torch.index_select(t, 0, idx.reshape(-1)).view(want.shape),
                    F.embedding(idx, t)):
            assert type(got) is torch.Tensor and got.dtype == torch.float32
            assert torch.equal(got, want)
    assert torch.equal(t[[3, 4]], ref[[3, 4]]) and torch.equal(t[np.array([3, 4])], ref[[3, 4]])
    assert torch.equal(t[7], ref[7]) and torch.equal(t[2:9], ref[2:9])
    out = torch.empty(3, 13)
    assert ut.gather(t, torch.tensor([1, 2, 3]), out=out) is out and torch.equal(out, ref[1:4])
    assert torch.equal(t.decompress(), ref)


def test_out_of_range_and_bad_indices_raise_like_a_tensor():
    t = ut.compress(_table(), "int8")
    with pytest.raises(IndexError, match="out of range"):
        t[torch.tensor([0, 300])]
    with pytest.raises(TypeError):
        t[torch.tensor([0.5])]
    with pytest.raises(TypeError, match="dtype"):
        ut.gather(t, torch.tensor([1]), out=torch.empty(1, 13, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", KINDS)
def test_half_precision_rows_on_request(kind, dtype):
    x = _table()
    t = _compress(x, kind, dtype=dtype)
    assert t.dtype == dtype
    ref = _reference(t).to(dtype)
    assert torch.equal(t[torch.arange(300)], ref)
    f32 = t.to(torch.float32)
    assert f32.dtype == torch.float32 and torch.equal(f32[torch.tensor([4])], _reference(t)[[4]])
    assert t.float().dtype == torch.float32 and t.half().dtype == torch.float16


def test_other_operations_refuse_instead_of_acting_on_codes():
    t = ut.compress(_table(), "int8")
    with pytest.raises(TypeError):   # Python's own message: torch turns it into NotImplemented
        t + 1
    for op in (lambda: t.sum(), lambda: t.mul_(2), lambda: t.clone(),
               lambda: torch.nn.init.normal_(t), lambda: t.to("cuda:0"), lambda: t.numpy(),
               lambda: t.T):
        with pytest.raises(TypeError, match="compressed table"):
            op()
    assert "CompressedTensor(kind='int8'" in repr(t) and t.is_contiguous() and not t.requires_grad


@pytest.mark.parametrize("kind", KINDS)
def test_writes_are_quantised_with_the_table_scales(kind):
    x = _table()
    t = _compress(x, kind)
    before = t[torch.arange(300)]
    new = x[[10, 20]] * 0.5
    t[torch.tensor([10, 20])] = new
    got = t[torch.tensor([10, 20])]
    if kind.startswith("int8"):   # quantised with the table's scales: clipped to their range
        s = t.scale[[10, 20]].unsqueeze(1) if t.per_row else t.scale
        o = t.offset[[10, 20]].unsqueeze(1) if t.per_row else t.offset
        want = torch.minimum(torch.maximum(new, o - 128 * s), o + 127 * s)
        assert ((got - want).abs() <= s / 2 * 1.001 + 1e-6).all()
    else:
        assert ((got - new).abs() <= new.abs() * 2 ** -8 + 1e-30).all()
    others = torch.ones(300, dtype=torch.bool)
    others[[10, 20]] = False
    assert torch.equal(t[torch.arange(300)][others], before[others])   # nothing else changed
    t[5] = x[5]
    t[0:2] = x[0:2]
    with pytest.raises(ValueError, match="finite"):
        t[torch.tensor([1])] = torch.full((1, 13), float("nan"))
    with pytest.raises(IndexError):
        t[torch.tensor([300])] = x[:1]


def test_save_and_map_again(tmp_path):
    x = _table(1000, 9)
    folder = tmp_path / "feats_int8"
    t = ut.compress(x, "int8", path=folder, chunk_rows=64)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["values.npy", "scale.npy", "offset.npy", "meta.json", "column_rmse.npy",
         "column_max_error.npy", "column_clipped.npy"])
    assert isinstance(t._ut_values._ut_source, np.memmap)
    again = ut.load_compressed(folder)
    assert torch.equal(again[torch.arange(1000)], t[torch.arange(1000)])
    assert torch.equal(again.column_rmse, t.column_rmse)
    with pytest.raises(RuntimeError, match="read-only"):
        again[torch.tensor([0])] = x[:1]
    rw = ut.load_compressed(folder, mode="r+")
    rw[torch.tensor([0])] = x[1:2]
    assert torch.equal(ut.load_compressed(folder)[torch.tensor([0])], t[torch.tensor([1])])
    ut.compress(x * 2, "bf16", path=folder)   # replaces the folder
    assert ut.load_compressed(folder).kind == "bf16"
    with pytest.raises(FileNotFoundError, match="meta.json"):
        ut.load_compressed(tmp_path / "nothing")
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json"):
        ut.load_compressed(folder)


def test_a_failed_build_leaves_no_folder(tmp_path):
    x = _table(100, 3)
    x[90, 0] = float("nan")
    with pytest.raises(ValueError):
        ut.compress(x, "int8", path=tmp_path / "out", chunk_rows=10)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_and_torch_save_round_trip(kind):
    t = _compress(_table(), kind, dtype=torch.bfloat16)
    for u in (pickle.loads(pickle.dumps(t)), _torch_round_trip(t)):
        assert isinstance(u, ut.CompressedTensor) and u.kind == t.kind and u.dtype == t.dtype
        assert torch.equal(u[torch.arange(300)], t[torch.arange(300)])


def _torch_round_trip(t):
    buf = io.BytesIO()
    torch.save({"feats": t}, buf)
    buf.seek(0)
    weights_only = hasattr(torch.serialization, "add_safe_globals")   # torch >= 2.4: the default
    return torch.load(buf, weights_only=weights_only)["feats"]


def test_unified_and_cache_accept_a_compressed_table():
    t = ut.compress(_table(), "int8")
    assert ut.unified(t) is t
    assert ut.cache_info(t) == {}
    ut.uncache(t)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            ut.cache(t, ids=[1, 2])


def test_dataloader_and_pyg_loader_gather_compressed_features():
    from samplers import CSCGraph, DataLoader, NeighborSampler

    g0 = torch.Generator().manual_seed(0)
    n = 300
    ei = torch.randint(0, n, (2, 2000), generator=g0)
    graph = CSCGraph.from_edge_index(ei, n)
    t = ut.compress(_table(n), "int8")
    ref = _reference(t)
    loader = DataLoader(graph, torch.arange(n), NeighborSampler([4, 4]), batch_size=64, features=t)
    for input_nodes, _, blocks in loader:
        assert torch.equal(blocks[0].srcdata["feat"], ref[input_nodes.long()])
    pyg = pytest.importorskip("torch_geometric")
    from samplers.pyg import NeighborLoader

    data = pyg.data.Data(x=t, edge_index=ei, y=torch.arange(n), num_nodes=n)
    for batch in NeighborLoader(data, num_neighbors=[3, 3], batch_size=50):
        assert torch.equal(batch.x, ref[batch.n_id])
        assert torch.equal(batch.y, batch.n_id)      # labels untouched


@pytest.mark.dgl
def test_dgl_ndata_with_prefetch_gathers_compressed_features():
    dgl = pytest.importorskip("dgl")
    from samplers import DataLoader

    g = dgl.rand_graph(100, 500)
    t = ut.compress(_table(100, 8), "int8")
    ref = _reference(t)
    g.ndata["feat"] = t
    g.ndata["label"] = torch.arange(100)
    s = dgl.dataloading.NeighborSampler([3, 3], prefetch_node_feats=["feat"], prefetch_labels=["label"])
    n = 0
    for input_nodes, output_nodes, blocks in DataLoader(g, torch.arange(100), s, batch_size=32):
        assert torch.equal(blocks[0].srcdata["feat"], ref[input_nodes])
        assert torch.equal(blocks[-1].dstdata["label"], output_nodes)
        n += 1
    assert n == 4
