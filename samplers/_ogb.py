"""Readers for OGB node-property datasets already on disk (never downloads).

On-disk layout, as the ``ogb`` package writes it under ``<root>/<name with '-' -> '_'>/``::

    raw/edge.csv.gz            E rows "src,dst"                   (csv variant, ogbn-products)
    raw/node-feat.csv.gz       N rows of F floats
    raw/node-label.csv.gz      N rows, one label (may be empty/nan for unlabelled nodes)
    raw/num-node-list.csv.gz   one row: N
    raw/num-edge-list.csv.gz   one row: E
    raw/data.npz               edge_index [2, E], node_feat [N, F], num_nodes_list, num_edges_list
    raw/node-label.npz         node_label [N, 1] (float, nan = unlabelled)  (binary variant,
                                                                             ogbn-papers100M)
    split/<split name>/{train,valid,test}.csv.gz   one node id per row
"""
from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np

__all__ = ["dataset_dir", "raw_files", "read_raw", "read_split"]

logger = logging.getLogger("samplers.datasets")

CSV_FILES = ("edge.csv.gz", "node-feat.csv.gz", "node-label.csv.gz", "num-node-list.csv.gz")
NPZ_FILES = ("data.npz", "node-label.npz")
# OGB's default split folder per dataset (master.csv); anything else: the only folder present.
DEFAULT_SPLITS = {"ogbn-products": "sales_ranking", "ogbn-arxiv": "time",
                  "ogbn-papers100M": "time", "ogbn-proteins": "species"}


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"load_ogb: {what} not found: '{path}'. This loader only reads datasets already on disk "
        f"and never downloads; fetch the dataset with the `ogb` package (or from "
        f"https://ogb.stanford.edu) into the given root first")


def dataset_dir(name: str, root: Path) -> Path:
    return Path(root) / name.replace("-", "_")


def raw_files(ddir: Path) -> str:
    """Which raw variant ``ddir/raw`` holds, ``'npz'`` or ``'csv'``; raises if neither is whole."""
    raw = ddir / "raw"
    if not ddir.is_dir():
        raise _missing(ddir, "dataset folder")
    if (raw / "data.npz").is_file():
        if not (raw / "node-label.npz").is_file() and not (raw / "node-label.csv.gz").is_file():
            raise _missing(raw / "node-label.npz", "label file")
        return "npz"
    for fname in CSV_FILES:
        if not (raw / fname).is_file():
            raise _missing(raw / fname, "raw file")
    return "csv"


def _read_csv(path: Path, dtype, ncols: int | None = None) -> np.ndarray:
    """A headerless gzip CSV as a 2-D array; empty fields (and 'nan') read as NaN."""
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        arr = pd.read_csv(path, compression="gzip", header=None).to_numpy()
        # pandas >= 3 may hand out read-only views (copy-on-write): make sure we own the data
        arr = np.require(arr.astype(dtype, copy=False), requirements=["C", "W"])
        return arr.reshape(arr.shape[0], -1)
    with gzip.open(path, "rt") as fh:
        arr = np.genfromtxt(fh, delimiter=",", dtype=np.float64 if dtype != np.int64 else dtype,
                            filling_values=np.nan, ndmin=2)
    return arr.astype(dtype, copy=False)


def _labels_to_int(raw: np.ndarray) -> np.ndarray:
    """Float labels with NaN for unlabelled nodes -> int64 with -1."""
    lab = np.asarray(raw).reshape(raw.shape[0], -1)[:, 0]
    if np.issubdtype(lab.dtype, np.floating):
        out = np.full(lab.shape, -1, dtype=np.int64)
        ok = ~np.isnan(lab)
        out[ok] = lab[ok].astype(np.int64)
        return out
    return lab.astype(np.int64)


def read_raw(ddir: Path) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """``(src, dst, num_nodes, node_feat, labels)`` from ``ddir/raw`` (either variant)."""
    raw = ddir / "raw"
    kind = raw_files(ddir)
    logger.info("reading OGB raw files (%s) from %s", kind, raw)
    if kind == "npz":
        with np.load(raw / "data.npz") as data:
            edge_index = data["edge_index"]
            feat = data["node_feat"] if "node_feat" in data.files else None
            num_nodes = int(np.asarray(data["num_nodes_list"]).reshape(-1)[0])
        if (raw / "node-label.npz").is_file():
            with np.load(raw / "node-label.npz") as lab:
                labels = _labels_to_int(lab["node_label"])
        else:
            labels = _labels_to_int(_read_csv(raw / "node-label.csv.gz", np.float64))
        src, dst = edge_index[0], edge_index[1]
    else:
        edges = _read_csv(raw / "edge.csv.gz", np.int64)
        src, dst = edges[:, 0], edges[:, 1]
        feat = _read_csv(raw / "node-feat.csv.gz", np.float32)
        num_nodes = int(_read_csv(raw / "num-node-list.csv.gz", np.int64).reshape(-1)[0])
        labels = _labels_to_int(_read_csv(raw / "node-label.csv.gz", np.float64))
    if feat is None:
        raise ValueError(f"load_ogb: '{ddir.name}' has no node features (node_feat)")
    return np.ascontiguousarray(src), np.ascontiguousarray(dst), num_nodes, feat, labels


def read_split(name: str, ddir: Path, split: str | None) -> dict[str, np.ndarray]:
    """``{'train', 'valid', 'test'}`` int64 node ids from ``ddir/split/<split>``."""
    sdir = ddir / "split"
    if split is None:
        split = DEFAULT_SPLITS.get(name)
        if split is None or not (sdir / split).is_dir():
            found = sorted(p.name for p in sdir.iterdir() if p.is_dir()) if sdir.is_dir() else []
            if len(found) != 1:
                raise _missing(sdir / (split or "<split name>"),
                               f"split folder (found {found or 'none'}; pass split=...)")
            split = found[0]
    out = {}
    for part in ("train", "valid", "test"):
        path = sdir / split / f"{part}.csv.gz"
        if not path.is_file():
            raise _missing(path, "split file")
        out[part] = _read_csv(path, np.int64).reshape(-1)
    return out
