"""Damaged OGB folders: every way a file on disk can be unusable gets one line that names the file
and says what is wrong (``ValueError``; a missing file or split folder: ``FileNotFoundError``),
never a bare ``EOFError`` or a traceback from deep inside a parser. Small fake OGB folders are
written under ``tmp_path`` (both raw layouts: csv.gz and npz); nothing is downloaded."""
from __future__ import annotations

import gzip
import logging
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from samplers.datasets import _ogb, load_ogb

N, F = 40, 5


def _csv_gz(path: Path, rows, fmt: str = "%d") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        np.savetxt(fh, np.asarray(rows).reshape(len(rows), -1), delimiter=",", fmt=fmt)
    return path


def _split(ddir: Path, name: str, num_nodes: int = N) -> None:
    perm = np.random.default_rng(1).permutation(num_nodes)
    for part, ids in (("train", perm[:20]), ("valid", perm[20:30]), ("test", perm[30:])):
        _csv_gz(ddir / "split" / name / f"{part}.csv.gz", ids)


def write_csv_dataset(root: Path, name: str = "ogbn-products", split: str = "sales_ranking") -> Path:
    """A whole csv-layout dataset of ``N`` nodes; returns its folder."""
    rng = np.random.default_rng(0)
    ddir = root / name.replace("-", "_")
    raw = ddir / "raw"
    edges = rng.integers(0, N, (100, 2))
    _csv_gz(raw / "edge.csv.gz", edges)
    _csv_gz(raw / "node-feat.csv.gz", rng.standard_normal((N, F)), "%.6g")
    _csv_gz(raw / "node-label.csv.gz", rng.integers(0, 3, N))
    _csv_gz(raw / "num-node-list.csv.gz", [N])
    _csv_gz(raw / "num-edge-list.csv.gz", [len(edges)])
    _split(ddir, split)
    return ddir


def write_npz_dataset(root: Path, name: str = "ogbn-papers100M", **override) -> Path:
    """A whole npz-layout dataset of ``N`` nodes (arrays of ``data.npz`` replaced or, with None,
    left out by ``override``); returns its folder."""
    rng = np.random.default_rng(0)
    ddir = root / name.replace("-", "_")
    raw = ddir / "raw"
    raw.mkdir(parents=True)
    arrays = dict(edge_index=rng.integers(0, N, (2, 100)),
                  node_feat=rng.standard_normal((N, F)).astype(np.float32),
                  num_nodes_list=np.array([N]), num_edges_list=np.array([100]))
    arrays.update(override)
    np.savez_compressed(raw / "data.npz", **{k: v for k, v in arrays.items() if v is not None})
    np.savez_compressed(raw / "node-label.npz",
                        node_label=rng.integers(0, 3, (N, 1)).astype(np.float64))
    _split(ddir, "time")
    return ddir


@pytest.fixture(params=["numpy", "pandas"])
def parser(request, monkeypatch):
    """Both CSV parsers: NumPy (pandas made unimportable) and pandas (where installed)."""
    if request.param == "pandas":
        pytest.importorskip("pandas")
    else:
        monkeypatch.setitem(sys.modules, "pandas", None)
    return request.param


def _load_error(root: Path, name: str, exc=ValueError, **kwargs) -> str:
    """The message ``load_ogb`` raises for the damaged dataset; checked to be one line."""
    with pytest.raises(exc) as info:
        load_ogb(name, root, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("load_ogb: "), message
    return message


def test_intact_fake_datasets_load(tmp_path):
    """The writers above make datasets that load (the tests below each damage one thing)."""
    write_csv_dataset(tmp_path)
    write_npz_dataset(tmp_path)
    assert load_ogb("ogbn-products", tmp_path).num_nodes == N
    assert load_ogb("ogbn-papers100M", tmp_path).features.shape == (N, F)


# --------------------------------------------------------------------------- damaged gzip files
CSV_FILES = ["raw/edge.csv.gz", "raw/node-feat.csv.gz", "raw/node-label.csv.gz",
             "raw/num-node-list.csv.gz", "split/sales_ranking/train.csv.gz"]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _garble(path: Path) -> None:
    """Flip the last 4 bytes of the deflate stream (just before the 8-byte CRC/size trailer; the
    header, which holds the file name, stays valid)."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 12, len(data) - 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "garbled", "not gzip"])
@pytest.mark.parametrize("rel", CSV_FILES)
def test_damaged_gzip_names_the_file(tmp_path, parser, rel, damage):
    ddir = write_csv_dataset(tmp_path)
    path = ddir / rel
    if damage == "truncated":
        _truncate(path)
    elif damage == "garbled":
        _garble(path)
    else:
        path.write_bytes(b"this is not a gzip file\n1,2\n")
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}'" in message
    assert "truncated or damaged" in message, message


def test_truncated_gzip_leaves_no_cache_and_loads_once_repaired(tmp_path, parser):
    ddir = write_csv_dataset(tmp_path)
    feat = ddir / "raw" / "node-feat.csv.gz"
    good = feat.read_bytes()
    _truncate(feat)
    message = _load_error(tmp_path, "ogbn-products")
    assert "truncated or damaged" in message and "EOFError" in message
    cache = ddir / _ogb.CACHE_DIR / "raw"
    assert not (cache / "node-feat.npy").exists() and not list(cache.glob(".*tmp"))
    feat.write_bytes(good)
    assert load_ogb("ogbn-products", tmp_path).features.shape == (N, F)


def test_damage_after_caching_is_still_found(tmp_path, parser):
    """The cache is keyed on the source's size and mtime: a file damaged after a good load is
    parsed again and reported, not silently served from the old cache."""
    ddir = write_csv_dataset(tmp_path)
    load_ogb("ogbn-products", tmp_path)
    _truncate(ddir / "raw" / "edge.csv.gz")
    assert "edge.csv.gz" in _load_error(tmp_path, "ogbn-products")


# --------------------------------------------------------------------------- bad contents (csv)
@pytest.mark.parametrize("field", ["oops", "0x7"])
def test_unparsable_field(tmp_path, parser, field):
    ddir = write_csv_dataset(tmp_path)
    path = ddir / "raw" / "edge.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1,2\n" * 10 + f"3,{field}\n")
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}' does not parse as comma-separated integers" in message


def test_ragged_rows(tmp_path, parser):
    ddir = write_csv_dataset(tmp_path)
    path = ddir / "raw" / "edge.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1,2\n" * 10 + "1,2,3\n")
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}'" in message
    assert "does not parse" in message or "has rows of 2 and of 3 fields" in message


def test_edge_file_with_three_columns(tmp_path, parser):
    ddir = write_csv_dataset(tmp_path)
    path = _csv_gz(ddir / "raw" / "edge.csv.gz", np.ones((10, 3), dtype=np.int64))
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}'" in message and "3 fields per row, expected 2" in message


@pytest.mark.parametrize("count", [N + 10, N - 5])
def test_node_count_disagrees_with_the_feature_rows(tmp_path, parser, count):
    ddir = write_csv_dataset(tmp_path)
    count_file = _csv_gz(ddir / "raw" / "num-node-list.csv.gz", [count])
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{ddir / 'raw' / 'node-feat.csv.gz'}' has {N} feature rows" in message
    assert f"'{count_file}' gives {count} nodes" in message


def test_too_few_feature_rows(tmp_path, parser):
    ddir = write_csv_dataset(tmp_path)
    path = _csv_gz(ddir / "raw" / "node-feat.csv.gz", np.zeros((N - 3, F)), "%.1f")
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}' has {N - 3} feature rows" in message and f"gives {N} nodes" in message


def test_too_few_label_rows(tmp_path, parser):
    ddir = write_csv_dataset(tmp_path)
    path = _csv_gz(ddir / "raw" / "node-label.csv.gz", np.zeros(N - 1))
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}' has {N - 1} label rows" in message


@pytest.mark.parametrize("bad", [N, N + 7, -1])
def test_edge_id_out_of_range(tmp_path, parser, bad):
    ddir = write_csv_dataset(tmp_path)
    edges = np.zeros((12, 2), dtype=np.int64)
    edges[9, 1] = bad
    path = _csv_gz(ddir / "raw" / "edge.csv.gz", edges)
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}' holds node id {bad} (destination of edge 9, 0-based)" in message
    assert f"outside [0, {N})" in message and "num-node-list.csv.gz" in message


def test_split_id_out_of_range(tmp_path, parser):
    ddir = write_csv_dataset(tmp_path)
    path = _csv_gz(ddir / "split" / "sales_ranking" / "valid.csv.gz", [3, 4, N + 2])
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}' holds node id {N + 2} (row 2, 0-based) outside [0, {N})" in message


@pytest.mark.parametrize("values, what", [([N, N], "holds 2 values"), ([], "holds 0 values")])
def test_node_count_file_without_one_count(tmp_path, parser, values, what):
    ddir = write_csv_dataset(tmp_path)
    path = ddir / "raw" / "num-node-list.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("".join(f"{v}\n" for v in values))
    message = _load_error(tmp_path, "ogbn-products")
    assert f"'{path}' should hold one node count" in message and what in message


# --------------------------------------------------------------------------- npz layout
def test_truncated_npz(tmp_path):
    ddir = write_npz_dataset(tmp_path)
    path = ddir / "raw" / "data.npz"
    _truncate(path)
    message = _load_error(tmp_path, "ogbn-papers100M")
    assert f"'{path}' is truncated or damaged" in message


def test_npz_that_is_not_a_zip(tmp_path):
    ddir = write_npz_dataset(tmp_path)
    path = ddir / "raw" / "node-label.npz"
    path.write_bytes(b"garbage" * 100)
    assert f"'{path}' is truncated or damaged" in _load_error(tmp_path, "ogbn-papers100M")


def test_damaged_member_of_an_npz(tmp_path):
    """A zip whose directory is intact but whose member's data is not: the CRC check fails."""
    ddir = write_npz_dataset(tmp_path)
    path = ddir / "raw" / "data.npz"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("node_feat.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + 40
    data[start:start + 16] = bytes(16)
    path.write_bytes(bytes(data))
    assert f"'{path}' is truncated or damaged" in _load_error(tmp_path, "ogbn-papers100M")


@pytest.mark.parametrize("missing", ["edge_index", "node_feat", "num_nodes_list"])
def test_npz_without_an_array(tmp_path, missing):
    ddir = write_npz_dataset(tmp_path, **{missing: None})
    message = _load_error(tmp_path, "ogbn-papers100M")
    assert f"'{ddir / 'raw' / 'data.npz'}' has no array '{missing}'" in message


def test_npz_edge_index_of_the_wrong_shape(tmp_path):
    ddir = write_npz_dataset(tmp_path, edge_index=np.zeros((3, 10), dtype=np.int64))
    message = _load_error(tmp_path, "ogbn-papers100M")
    assert f"'{ddir / 'raw' / 'data.npz'}' has an edge_index of shape (3, 10)" in message


def test_npz_node_count_and_edge_ids(tmp_path):
    ddir = write_npz_dataset(tmp_path, num_nodes_list=np.array([N + 1]))
    assert f"has {N} feature rows but '{ddir / 'raw' / 'data.npz'}' gives {N + 1} nodes" in \
        _load_error(tmp_path, "ogbn-papers100M")
    edge_index = np.zeros((2, 5), dtype=np.int64)
    edge_index[0, 3] = N
    write_npz_dataset(tmp_path / "b", edge_index=edge_index)
    assert f"holds node id {N} (source of edge 3, 0-based)" in \
        _load_error(tmp_path / "b", "ogbn-papers100M")


# --------------------------------------------------------------------------- split folders
def test_default_split_missing_is_an_error_as_in_ogb(tmp_path):
    """ogb's ``get_idx_split()`` reads ``split/<meta_dict['split']>`` (master.csv: sales_ranking
    for ogbn-products) and fails when it is not there; so does this loader, and it lists the
    folders that are there instead of reading one of them silently."""
    write_csv_dataset(tmp_path, split="random")
    with pytest.raises(_ogb.SplitNotFoundError) as info:
        load_ogb("ogbn-products", tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and "\n" not in message
    assert "sales_ranking" in message and "OGB's split of ogbn-products" in message
    assert "['random']" in message and "pass split='random'" in message
    assert info.value.choices == ["random"] and "pass split" not in info.value.detail
    assert load_ogb("ogbn-products", tmp_path, split="random").train_idx.numel() == 20


def test_named_split_missing_lists_the_folders(tmp_path):
    ddir = write_csv_dataset(tmp_path)
    _split(ddir, "random")
    message = _load_error(tmp_path, "ogbn-products", FileNotFoundError, split="time")
    assert "split/time" in message and "['random', 'sales_ranking']" in message
    assert "pass split= one of them" in message


def test_unlisted_dataset_uses_its_only_split_folder_and_logs_it(tmp_path, caplog):
    write_csv_dataset(tmp_path, name="ogbn-mine", split="random")
    with caplog.at_level(logging.INFO, logger="samplers.datasets"):
        ds = load_ogb("ogbn-mine", tmp_path)
    assert ds.train_idx.numel() == 20
    assert any("using the split folder 'random'" in r.getMessage() for r in caplog.records)


def test_unlisted_dataset_with_several_split_folders(tmp_path):
    ddir = write_csv_dataset(tmp_path, name="ogbn-mine", split="random")
    _split(ddir, "time")
    message = _load_error(tmp_path, "ogbn-mine", FileNotFoundError)
    assert "not a dataset OGB lists" in message and "['random', 'time']" in message
    assert load_ogb("ogbn-mine", tmp_path, split="time").test_idx.numel() == 10


def test_split_folder_picked_as_ogb_does(tmp_path):
    """``split_folder``: the given name, else OGB's (master.csv), else the only folder."""
    ddir = write_csv_dataset(tmp_path)
    _split(ddir, "random")
    assert _ogb.split_folder("ogbn-products", ddir, None) == "sales_ranking"
    assert _ogb.split_folder("ogbn-products", ddir, "random") == "random"
    assert _ogb.DEFAULT_SPLITS["ogbn-arxiv"] == "time"
    assert _ogb.DEFAULT_SPLITS["ogbn-proteins"] == "species"
