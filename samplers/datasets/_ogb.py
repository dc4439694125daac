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

The CSV files are parsed in chunks of about ``CHUNK_FIELDS`` fields (with pandas when it is
installed, else with ``np.loadtxt``) straight into a ``.npy`` file under ``<dataset>/npy_cache/``
(``raw/edge.csv.gz`` -> ``npy_cache/raw/edge.npy``), so the transient memory stays bounded
whatever the file size; later runs open those files as memmaps. A cached file is used only while
its ``.json`` record matches the source CSV's size and modification time (and this reader's
format version); otherwise it is rebuilt. Where the cache cannot be written (a read-only dataset
folder) the file is parsed into memory instead, through an anonymous temporary file.
"""
from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import struct
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Tuple

import numpy as np

__all__ = ["dataset_dir", "raw_files", "read_raw", "read_split"]

logger = logging.getLogger("samplers.datasets")

CSV_FILES = ("edge.csv.gz", "node-feat.csv.gz", "node-label.csv.gz", "num-node-list.csv.gz")
NPZ_FILES = ("data.npz", "node-label.npz")
# OGB's default split folder per dataset (master.csv); anything else: the only folder present.
DEFAULT_SPLITS = {"ogbn-products": "sales_ranking", "ogbn-arxiv": "time",
                  "ogbn-papers100M": "time", "ogbn-proteins": "species"}
#: Folder inside the dataset folder that holds the parsed CSVs as ``.npy`` files.
CACHE_DIR = "npy_cache"
#: Fields parsed per chunk: a few times this many bytes of transient memory (about 100 MB).
CHUNK_FIELDS = 1 << 22
# Bump when the parsed output for a given CSV changes (invalidates caches).
_CACHE_VERSION = 1
# The .npy header of a cache file has this fixed length, so that it can be written before the row
# count is known and rewritten in place afterwards (format 1.0: 10 bytes + dict padded with spaces).
_NPY_HEADER_BYTES = 128


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


# ----------------------------------------------------------------------------------- CSV parsing
def _pandas():
    """The pandas module, or None when it is not installed (then NumPy parses the CSVs)."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _parse_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype fields are parsed as before the cast to ``dtype``: floats as float64, as pandas
    does, so that both parsers give the same values."""
    return np.dtype(np.float64) if dtype.kind == "f" else np.dtype(np.int64)


def _fields_per_line(path: Path) -> int:
    """Number of comma-separated fields on the first line of the gzip CSV ``path`` (1 if empty)."""
    with gzip.open(path, "rt") as fh:
        return fh.readline().count(",") + 1


def _chunks_numpy(path: Path, dtype: np.dtype, chunk_rows: int) -> Iterator[np.ndarray]:
    """2-D arrays of at most ``chunk_rows`` rows each, parsed with ``np.loadtxt``; blank lines are
    skipped, empty float fields read as NaN (``np.genfromtxt``, only for the chunks that have
    some)."""
    with gzip.open(path, "rt") as fh:
        while True:
            lines = list(itertools.islice(fh, chunk_rows))
            if not lines:
                return
            if not any(line.strip() for line in lines):     # only blank lines: nothing to parse
                continue
            try:
                yield np.loadtxt(lines, delimiter=",", dtype=dtype, ndmin=2)
            except ValueError:
                if dtype.kind != "f":
                    raise
                yield np.genfromtxt(lines, delimiter=",", dtype=dtype, filling_values=np.nan,
                                    ndmin=2)


def _chunks_pandas(pd, path: Path, dtype: np.dtype, chunk_rows: int) -> Iterator[np.ndarray]:
    """As :func:`_chunks_numpy`, parsed with ``pandas.read_csv(chunksize=...)``."""
    try:
        reader = pd.read_csv(path, compression="gzip", header=None, dtype=dtype,
                             chunksize=chunk_rows)
    except pd.errors.EmptyDataError:
        return
    with reader:
        for frame in reader:
            yield frame.to_numpy()


def _parse_into(path: Path, dtype: np.dtype, out: BinaryIO,
                chunk_rows: Optional[int] = None) -> Tuple[int, int]:
    """Parse the headerless gzip CSV ``path`` chunk by chunk and append its rows to ``out`` as raw
    C-order ``dtype`` bytes; returns ``(rows, columns)``. Only one chunk is held in memory."""
    ncols = _fields_per_line(path)
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_FIELDS // ncols)
    pd = _pandas()
    parse = _parse_dtype(dtype)
    chunks = (_chunks_pandas(pd, path, parse, chunk_rows) if pd is not None
              else _chunks_numpy(path, parse, chunk_rows))
    rows = 0
    for chunk in chunks:
        if chunk.shape[0] == 0:
            continue
        if chunk.shape[1] != ncols:
            raise ValueError(f"load_ogb: '{path}' has rows of {ncols} and of {chunk.shape[1]} "
                             f"fields")
        out.write(np.ascontiguousarray(chunk, dtype=dtype).data)
        rows += chunk.shape[0]
    logger.debug("parsed %s: %d x %d in chunks of %d rows", path, rows, ncols, chunk_rows)
    return rows, ncols


# ----------------------------------------------------------------------------------- .npy cache
def _npy_header(dtype: np.dtype, shape: Tuple[int, ...]) -> bytes:
    """An ``.npy`` format 1.0 header of exactly ``_NPY_HEADER_BYTES`` bytes."""
    meta = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
            "shape": tuple(shape)}
    hlen = _NPY_HEADER_BYTES - 10
    text = repr(meta).encode("latin1")
    if len(text) >= hlen:
        raise ValueError(f"shape {shape} too long for the .npy cache header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", hlen) + text.ljust(hlen - 1) + b"\n"


def _cache_path(ddir: Path, csv: Path) -> Path:
    """``<ddir>/npy_cache/<csv relative to ddir, .csv.gz -> .npy>``."""
    rel = csv.relative_to(ddir)
    return ddir / CACHE_DIR / rel.parent / (rel.name[:-len(".csv.gz")] + ".npy")


def _source_record(csv: Path, dtype: np.dtype) -> dict:
    st = csv.stat()
    return {"version": _CACHE_VERSION, "source_bytes": st.st_size,
            "source_mtime_ns": st.st_mtime_ns, "dtype": dtype.str}


def _open_memmap(npy: Path) -> np.ndarray:
    """``np.load(npy, mmap_mode=...)``: writable (``'r+'``, as the synthetic graph's cache) where
    the file is, read-only otherwise. Opened read-only first: ``'r+'`` would silently extend a
    truncated file with zeros, ``'r'`` raises ``ValueError``."""
    arr = np.load(npy, mmap_mode="r")
    return np.load(npy, mmap_mode="r+") if os.access(npy, os.W_OK) else arr


def _open_cache(npy: Path, csv: Path, dtype: np.dtype) -> Optional[np.ndarray]:
    """The cached array of ``csv`` as a memmap, or None when there is none or it is stale or
    incomplete (its record names another source, version or dtype, or the file is truncated)."""
    try:
        record = json.loads(npy.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or \
            any(record.get(k) != v for k, v in _source_record(csv, dtype).items()):
        logger.info("cache %s is stale (its source %s changed): rebuilding it", npy, csv)
        return None
    try:
        arr = _open_memmap(npy)
    except (OSError, ValueError) as exc:
        logger.info("cache %s is unreadable (%s): rebuilding it", npy, exc)
        return None
    if arr.dtype != dtype or list(arr.shape) != record.get("shape"):
        logger.info("cache %s does not match its record: rebuilding it", npy)
        return None
    return arr


def _replace_atomic(path: Path, write) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w+b") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _build_cache(npy: Path, csv: Path, dtype: np.dtype,
                 chunk_rows: Optional[int]) -> Optional[np.ndarray]:
    """Parse ``csv`` into the ``.npy`` file ``npy`` (then its ``.json`` record) and open it as a
    memmap; None (and a warning) when the cache folder cannot be written."""
    try:
        npy.parent.mkdir(parents=True, exist_ok=True)
        probe = npy.with_name(f".{npy.name}.{uuid.uuid4().hex}.probe")
        probe.touch()
        probe.unlink()
    except OSError as exc:
        logger.warning("cannot write the cache folder %s (%s): parsing %s into memory, every run",
                       npy.parent, exc, csv)
        return None
    record = _source_record(csv, dtype)
    shape = []

    def write_npy(fh: BinaryIO) -> None:
        fh.write(bytes(_NPY_HEADER_BYTES))              # placeholder until the rows are counted
        shape.extend(_parse_into(csv, dtype, fh, chunk_rows))
        fh.seek(0)
        fh.write(_npy_header(dtype, tuple(shape)))

    logger.info("parsing %s into %s (once)", csv, npy)
    _replace_atomic(npy, write_npy)
    record["shape"] = shape
    _replace_atomic(npy.with_suffix(".json"),
                    lambda fh: fh.write(json.dumps(record, indent=1).encode()))
    return _open_memmap(npy)


def _read_csv(path: Path, dtype, cache: Optional[Path] = None,
              chunk_rows: Optional[int] = None) -> np.ndarray:
    """A headerless gzip CSV as a 2-D ``dtype`` array on the CPU; blank lines are skipped, empty
    fields (and 'nan') read as NaN.

    Parameters
    ----------
    path : pathlib.Path
        The ``.csv.gz`` file.
    dtype : numpy dtype
        Result dtype; float fields are parsed as float64 and then cast, integers as int64.
    cache : pathlib.Path, optional
        ``.npy`` file to keep the parsed array in: reused (as a memmap) while it is up to date
        with ``path``, (re)built otherwise. None: parse into memory.
    chunk_rows : int, optional
        Rows parsed at a time; None: about ``CHUNK_FIELDS`` fields' worth.

    Returns
    -------
    numpy.ndarray
        ``[rows, fields]``, a memmap of ``cache`` when one is used.

    >>> _read_csv(Path("raw/node-feat.csv.gz"), np.float32).shape  # doctest: +SKIP
    (2449029, 100)
    """
    dtype = np.dtype(dtype)
    if cache is not None:
        arr = _open_cache(cache, path, dtype)
        if arr is None:
            arr = _build_cache(cache, path, dtype, chunk_rows)
        if arr is not None:
            return arr
    with tempfile.TemporaryFile() as fh:
        rows, ncols = _parse_into(path, dtype, fh, chunk_rows)
        fh.seek(0)
        return np.fromfile(fh, dtype=dtype, count=rows * ncols).reshape(rows, ncols)


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
    """``(src, dst, num_nodes, node_feat, labels)`` from ``ddir/raw`` (either variant), on the CPU.

    CSV files go through the ``.npy`` cache (see the module docstring): ``node_feat`` is then a
    memmap of ``<ddir>/npy_cache/raw/node-feat.npy``; the other arrays are in memory.
    """
    raw = ddir / "raw"
    kind = raw_files(ddir)
    logger.info("reading OGB raw files (%s) from %s", kind, raw)

    def csv(fname: str, dtype) -> np.ndarray:
        return _read_csv(raw / fname, dtype, cache=_cache_path(ddir, raw / fname))

    if kind == "npz":
        with np.load(raw / "data.npz") as data:
            edge_index = data["edge_index"]
            feat = data["node_feat"] if "node_feat" in data.files else None
            num_nodes = int(np.asarray(data["num_nodes_list"]).reshape(-1)[0])
        if (raw / "node-label.npz").is_file():
            with np.load(raw / "node-label.npz") as lab:
                labels = _labels_to_int(lab["node_label"])
        else:
            labels = _labels_to_int(csv("node-label.csv.gz", np.float64))
        src, dst = edge_index[0], edge_index[1]
    else:
        edges = csv("edge.csv.gz", np.int64)
        src, dst = edges[:, 0], edges[:, 1]
        feat = csv("node-feat.csv.gz", np.float32)
        num_nodes = int(csv("num-node-list.csv.gz", np.int64).reshape(-1)[0])
        labels = _labels_to_int(csv("node-label.csv.gz", np.float64))
    if feat is None:
        raise ValueError(f"load_ogb: '{ddir.name}' has no node features (node_feat)")
    return np.ascontiguousarray(src), np.ascontiguousarray(dst), num_nodes, feat, labels


def read_split(name: str, ddir: Path, split: str | None) -> dict[str, np.ndarray]:
    """``{'train', 'valid', 'test'}`` int64 node ids (CPU) from ``ddir/split/<split>``."""
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
        ids = _read_csv(path, np.int64, cache=_cache_path(ddir, path))
        out[part] = np.array(ids.reshape(-1))      # a copy in memory, not a view of the cache
    return out
