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

A missing file raises ``FileNotFoundError`` naming it (nothing is downloaded). A file that is there
but cannot be used (a truncated or corrupt gzip or ``.npz``, a field that does not parse, rows of
different lengths, a node count that does not match the feature or label rows, an edge or split id
outside ``[0, num_nodes)``) raises ``ValueError`` naming the file and what is wrong with it. (In a
float file, NumPy's parser, used without pandas, reads an empty or unparsable field as NaN.)

The split folder is ``split=`` when given, else OGB's split of the dataset (``DEFAULT_SPLITS``, from
OGB's ``master.csv``, as ``ogb``'s ``get_idx_split()`` picks it): when that folder is missing the
error lists the folders that are there, it does not pick another. Only for a dataset OGB does not
list is the one folder present used (and logged).
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
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Tuple

import numpy as np

__all__ = ["dataset_dir", "raw_files", "read_raw", "read_split", "split_folder", "num_nodes_of",
           "SplitNotFoundError"]

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


def _bad(path: Path, what: str) -> ValueError:
    """The error of a file that is there but cannot be used: names the file and what is wrong."""
    return ValueError(f"load_ogb: '{path}' {what}; replace it with an intact copy of the "
                      f"dataset (fetched with the `ogb` package or from https://ogb.stanford.edu)")


#: What reading a damaged gzip or zip file raises (besides ``ValueError`` for unparsable fields):
#: ``EOFError`` (truncated), ``gzip.BadGzipFile`` (not gzip, CRC mismatch), ``zlib.error``
#: (corrupt deflate stream), ``zipfile.BadZipFile`` (not a zip / damaged ``.npz``).
_DAMAGED = (EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile)


class SplitNotFoundError(FileNotFoundError):
    """The split folder to read is missing or cannot be told. ``detail``: what is wrong (the
    message without the advice on ``split=``), ``choices``: the split folders that are there (a
    command line can then offer its own option)."""

    def __init__(self, detail: str, choices: list) -> None:
        self.detail, self.choices = detail, list(choices)
        if len(choices) == 1:
            advice = f"; pass split='{choices[0]}' to use it"
        else:
            advice = "; pass split= one of them" if choices else ""
        super().__init__(detail + advice)


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


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _read_error(path: Path, dtype: np.dtype, exc: BaseException) -> ValueError:
    """The ``ValueError`` for an exception raised while reading the gzip CSV ``path``."""
    if isinstance(exc, _DAMAGED):
        return _bad(path, f"is truncated or damaged ({_one_line(exc)})")
    kind = "numbers" if dtype.kind == "f" else "integers"
    return _bad(path, f"does not parse as comma-separated {kind}, one row per line "
                      f"({_one_line(exc)})")


def _guarded(chunks: Iterator[np.ndarray], path: Path, dtype: np.dtype) -> Iterator[np.ndarray]:
    """``chunks``, with a damaged file or an unparsable field raised as one ``ValueError`` that
    names ``path``."""
    try:
        yield from chunks
    except (*_DAMAGED, ValueError) as exc:
        raise _read_error(path, dtype, exc) from exc


def _parse_into(path: Path, dtype: np.dtype, out: BinaryIO,
                chunk_rows: Optional[int] = None) -> Tuple[int, int]:
    """Parse the headerless gzip CSV ``path`` chunk by chunk and append its rows to ``out`` as raw
    C-order ``dtype`` bytes; returns ``(rows, columns)``. Only one chunk is held in memory.
    A truncated or damaged file, or a field that does not parse, raises ``ValueError`` naming
    ``path``."""
    parse = _parse_dtype(dtype)
    try:
        ncols = _fields_per_line(path)
    except (*_DAMAGED, ValueError) as exc:
        raise _read_error(path, parse, exc) from exc
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_FIELDS // ncols)
    pd = _pandas()
    chunks = (_chunks_pandas(pd, path, parse, chunk_rows) if pd is not None
              else _chunks_numpy(path, parse, chunk_rows))
    rows = 0
    for chunk in _guarded(chunks, path, parse):
        if chunk.shape[0] == 0:
            continue
        if chunk.shape[1] != ncols:
            raise _bad(path, f"has rows of {ncols} and of {chunk.shape[1]} fields")
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


def _npz(path: Path, keys: Tuple[str, ...]) -> dict:
    """The arrays ``keys`` of the ``.npz`` file ``path``, read into memory; a damaged file or a
    missing array raises ``ValueError`` naming ``path``."""
    try:
        with np.load(path) as data:
            files = list(data.files)
            out = {k: np.asarray(data[k]) for k in keys if k in files}
    except (FileNotFoundError, PermissionError):
        raise
    except (*_DAMAGED, OSError, ValueError) as exc:   # ValueError: not a zip (nor .npy) at all
        raise _bad(path, f"is truncated or damaged ({_one_line(exc)})") from exc
    missing = [k for k in keys if k not in out]
    if missing:
        raise _bad(path, f"has no array {missing[0]!r} (it holds {sorted(files)})")
    return out


def _node_count(path: Path, value: np.ndarray) -> int:
    """The node count a ``num-node-list`` (one graph: one value) holds."""
    flat = np.asarray(value).reshape(-1)
    if flat.size != 1:
        raise _bad(path, f"should hold one node count (one graph), holds {flat.size} values")
    v = flat[0]
    whole = np.issubdtype(flat.dtype, np.integer) or (
        np.issubdtype(flat.dtype, np.floating) and float(v).is_integer())
    if not whole or v < 0:
        raise _bad(path, f"holds the node count {v!r}, not a count")
    return int(v)


def _check_ids(path: Path, what: str, ids: np.ndarray, num_nodes: int,
               count_from: Optional[Path]) -> None:
    """Every value of ``ids`` in ``[0, num_nodes)``; else a ``ValueError`` naming ``path``, the
    first bad id and (when known) the file ``num_nodes`` comes from."""
    if ids.size == 0 or (ids.min() >= 0 and ids.max() < num_nodes):
        return
    pos = int(np.flatnonzero((ids < 0) | (ids >= num_nodes))[0])
    source = f", the node count of '{count_from}'" if count_from is not None else ""
    raise _bad(path, f"holds node id {int(ids[pos])} ({what} {pos}, 0-based) outside "
                     f"[0, {num_nodes}){source}")


def _check_rows(path: Path, what: str, rows: int, num_nodes: int, count_from: Path) -> None:
    if rows != num_nodes:
        raise _bad(path, f"has {rows} {what} rows but '{count_from}' gives {num_nodes} nodes "
                         f"(one row per node)")


def read_raw(ddir: Path) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """``(src, dst, num_nodes, node_feat, labels)`` from ``ddir/raw`` (either variant), on the CPU.

    CSV files go through the ``.npy`` cache (see the module docstring): ``node_feat`` is then a
    memmap of ``<ddir>/npy_cache/raw/node-feat.npy``; the other arrays are in memory. The files
    are checked against each other: one feature row and one label row per node, every edge's
    ends in ``[0, num_nodes)``; a file that fails raises ``ValueError`` naming it.
    """
    raw = ddir / "raw"
    kind = raw_files(ddir)
    logger.info("reading OGB raw files (%s) from %s", kind, raw)

    def csv(fname: str, dtype) -> np.ndarray:
        return _read_csv(raw / fname, dtype, cache=_cache_path(ddir, raw / fname))

    if kind == "npz":
        edge_file = feat_file = count_file = raw / "data.npz"
        data = _npz(edge_file, ("edge_index", "num_nodes_list", "node_feat"))
        num_nodes = _node_count(count_file, data["num_nodes_list"])
        edge_index, feat = data["edge_index"], data["node_feat"]
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise _bad(edge_file, f"has an edge_index of shape {tuple(edge_index.shape)}, "
                                  f"expected (2, number of edges)")
        src, dst = edge_index[0], edge_index[1]
        if (raw / "node-label.npz").is_file():
            label_file = raw / "node-label.npz"
            raw_labels = _npz(label_file, ("node_label",))["node_label"]
        else:
            label_file = raw / "node-label.csv.gz"
            raw_labels = csv("node-label.csv.gz", np.float64)
    else:
        edge_file, feat_file = raw / "edge.csv.gz", raw / "node-feat.csv.gz"
        count_file, label_file = raw / "num-node-list.csv.gz", raw / "node-label.csv.gz"
        num_nodes = _node_count(count_file, csv(count_file.name, np.int64))
        edges = csv(edge_file.name, np.int64)
        if edges.shape[0] and edges.shape[1] != 2:
            raise _bad(edge_file, f"has {edges.shape[1]} fields per row, expected 2 (src,dst)")
        src, dst = (edges[:, 0], edges[:, 1]) if edges.shape[0] else (edges[:0, 0],) * 2
        feat = csv(feat_file.name, np.float32)
        raw_labels = csv(label_file.name, np.float64)
    if feat.ndim != 2:
        raise _bad(feat_file, f"has node features of shape {tuple(feat.shape)}, expected "
                              f"(nodes, features)")
    _check_rows(feat_file, "feature", feat.shape[0], num_nodes, count_file)
    _check_rows(label_file, "label", raw_labels.shape[0] if raw_labels.ndim else 0, num_nodes,
                count_file)
    for what, ids in (("source of edge", src), ("destination of edge", dst)):
        _check_ids(edge_file, what, ids, num_nodes, count_file)
    labels = _labels_to_int(raw_labels)
    return np.ascontiguousarray(src), np.ascontiguousarray(dst), num_nodes, feat, labels


def num_nodes_of(ddir: Path) -> Tuple[int, Path]:
    """``(num_nodes, the file it comes from)`` of the raw files in ``ddir/raw``."""
    raw = ddir / "raw"
    if raw_files(ddir) == "npz":
        path = raw / "data.npz"
        return _node_count(path, _npz(path, ("num_nodes_list",))["num_nodes_list"]), path
    path = raw / "num-node-list.csv.gz"
    return _node_count(path, _read_csv(path, np.int64, cache=_cache_path(ddir, path))), path


def split_folder(name: str, ddir: Path, split: Optional[str]) -> str:
    """The split folder to read under ``ddir/split``: ``split`` when given, else OGB's split of
    ``name`` (``DEFAULT_SPLITS``: what ``ogb``'s ``get_idx_split()`` reads), else, for a dataset
    OGB does not list, the only folder there. Raises :class:`SplitNotFoundError` listing the
    folders present when the one to read is missing or cannot be told."""
    sdir = ddir / "split"
    found = sorted(p.name for p in sdir.iterdir() if p.is_dir()) if sdir.is_dir() else []
    choices = f"the split folders there: {found}" if found else "there is no split folder"
    if split is not None:
        if split not in found:
            raise SplitNotFoundError(
                f"load_ogb: split folder not found: '{sdir / split}' ({choices})", found)
        return split
    default = DEFAULT_SPLITS.get(name)
    if default is not None:
        if default not in found:
            raise SplitNotFoundError(
                f"load_ogb: split folder not found: '{sdir / default}', OGB's split of {name} "
                f"({choices})", found)
        return default
    if len(found) != 1:
        raise SplitNotFoundError(
            f"load_ogb: {name} is not a dataset OGB lists, so which split folder to read cannot "
            f"be told ({choices} under '{sdir}')", found)
    logger.info("%s: using the split folder '%s', the only one under %s", name, found[0], sdir)
    return found[0]


def read_split(name: str, ddir: Path, split: str | None,
               num_nodes: Optional[int] = None) -> dict[str, np.ndarray]:
    """``{'train', 'valid', 'test'}`` int64 node ids (CPU) from ``ddir/split/<split>``
    (:func:`split_folder` picks it when ``split`` is None). Every id must be in
    ``[0, num_nodes)`` (None: the count of the raw files), else ``ValueError`` naming the file."""
    sdir = ddir / "split"
    split = split_folder(name, ddir, split)
    count_from = None
    if num_nodes is None:
        num_nodes, count_from = num_nodes_of(ddir)
    out = {}
    for part in ("train", "valid", "test"):
        path = sdir / split / f"{part}.csv.gz"
        if not path.is_file():
            raise _missing(path, "split file")
        ids = _read_csv(path, np.int64, cache=_cache_path(ddir, path))
        if ids.shape[0] and ids.shape[1] != 1:
            raise _bad(path, f"has {ids.shape[1]} fields per row, expected 1 (a node id)")
        ids = np.array(ids.reshape(-1))      # a copy in memory, not a view of the cache
        _check_ids(path, "row", ids, num_nodes, count_from)
        out[part] = ids
    return out
