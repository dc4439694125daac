"""Homogeneous node-classification datasets: :class:`NodeDataset`, the synthetic generator
(:func:`synthetic_graph`), the OGB loader (:func:`load_ogb`, parsing in ``_ogb.py``), the ``.npy``
cache both write, and :func:`csc_from_edges`."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from . import _ogb, _synthetic
from ._args import _float_arg, _int_arg

__all__ = ["NodeDataset", "synthetic_graph", "load_ogb", "csc_from_edges", "FEAT_DTYPES"]

logger = logging.getLogger("samplers.datasets")

PathLike = Union[str, os.PathLike]

#: Feature dtypes the generator writes (bfloat16 is stored as int16 bits in the ``.npy`` file).
FEAT_DTYPES = {torch.float32: np.float32, torch.float16: np.float16,
               torch.bfloat16: np.int16, torch.float64: np.float64}

# Bump when the generator's output for given parameters changes (invalidates caches).
_FORMAT_VERSION = 2
_ARRAYS = ("indptr", "indices", "labels", "train_idx", "val_idx", "test_idx")


@dataclasses.dataclass(repr=False)
class NodeDataset:
    """A node-classification dataset held on the CPU.

    Attributes
    ----------
    name : str
        ``'synthetic-...'`` or the OGB name.
    num_nodes : int
    indptr : torch.Tensor
        int64 ``[num_nodes + 1]``, CPU: CSC column pointers; the in-neighbours of node ``v`` are
        ``indices[indptr[v]:indptr[v + 1]]``.
    indices : torch.Tensor
        int32 (int64 past 2**31 nodes) ``[num_edges]``, CPU: source node of every in-edge.
    features : torch.Tensor
        ``[num_nodes, feat_dim]``, CPU; backed by the memmap at ``features_path`` when set.
    labels : torch.Tensor
        int64 ``[num_nodes]``, CPU; ``-1`` marks unlabelled nodes (OGB papers100M).
    train_idx, val_idx, test_idx : torch.Tensor
        int64 node ids, CPU.
    num_classes : int
    features_path : pathlib.Path or None
        The ``.npy`` file behind ``features`` (None when the table lives in RAM).
    """

    name: str
    num_nodes: int
    indptr: torch.Tensor
    indices: torch.Tensor
    features: torch.Tensor
    labels: torch.Tensor
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    test_idx: torch.Tensor
    num_classes: int
    features_path: Optional[Path] = None

    @property
    def num_edges(self) -> int:
        return int(self.indices.numel())

    @property
    def feat_dim(self) -> int:
        return int(self.features.shape[1]) if self.features.dim() > 1 else 1

    def graph(self):
        """The graph as ``samplers.CSCGraph`` (built from ``indptr``/``indices``, no copy)."""
        from ..graph import CSCGraph
        return CSCGraph.from_csc(self.indptr, self.indices)

    def edge_index(self) -> torch.Tensor:
        """``[2, num_edges]`` int64 ``(src, dst)`` on the CPU, in CSC order (PyG convention)."""
        deg = self.indptr[1:] - self.indptr[:-1]
        dst = torch.repeat_interleave(torch.arange(self.num_nodes, dtype=torch.int64), deg)
        return torch.stack([self.indices.to(torch.int64), dst])

    def __repr__(self) -> str:
        where = f", features_path='{self.features_path}'" if self.features_path else ""
        return (f"NodeDataset(name='{self.name}', num_nodes={self.num_nodes}, "
                f"num_edges={self.num_edges}, features={tuple(self.features.shape)} "
                f"{self.features.dtype}, num_classes={self.num_classes}, "
                f"train/val/test={self.train_idx.numel()}/{self.val_idx.numel()}/"
                f"{self.test_idx.numel()}{where})")


# ----------------------------------------------------------------------------------------------
# CSC construction (counting sort by destination, stable in edge order)
# ----------------------------------------------------------------------------------------------
def _scatter_py(src, dst, indptr, out):
    cursor = indptr[:-1].copy()
    for e in range(dst.shape[0]):
        d = dst[e]
        out[cursor[d]] = src[e]
        cursor[d] += 1


@functools.lru_cache(maxsize=None)
def _scatter_numba():
    """The Numba counting-sort scatter, compiled on first use (None without Numba)."""
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - numba is a dependency; fall back to NumPy
        return None
    return njit(nogil=True, cache=True)(_scatter_py)


# Below this many edges a stable NumPy argsort is as fast as Numba and needs no JIT warm-up.
_NUMBA_MIN_EDGES = 1 << 22


def csc_from_edges(src: np.ndarray, dst: np.ndarray, num_nodes: int,
                   index_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """CSC arrays ``(indptr int64 [N+1], indices [E])`` of the edges ``src -> dst``.

    In-edges are grouped by destination, in their input order (stable). ``index_dtype`` defaults
    to int32 when ``num_nodes < 2**31``.
    """
    if index_dtype is None:
        index_dtype = np.int32 if num_nodes < 2**31 else np.int64
    counts = np.bincount(dst, minlength=num_nodes)
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(dst.shape[0], dtype=index_dtype)
    scatter = _scatter_numba() if dst.shape[0] >= _NUMBA_MIN_EDGES else None
    if scatter is not None:
        scatter(src, dst, indptr, indices)
    else:
        indices[:] = src[np.argsort(dst, kind="stable")]
    return indptr, indices


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    os.replace(tmp, path)


def _features_tensor(arr: np.ndarray, feat_dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(arr)
    return t.view(torch.bfloat16) if feat_dtype == torch.bfloat16 else t


# ----------------------------------------------------------------------------------------------
# Synthetic graphs
# ----------------------------------------------------------------------------------------------
def synthetic_graph(num_nodes: int, avg_degree: float = 15.0, num_classes: int = 16,
                    feat_dim: int = 128, feat_dtype: torch.dtype = torch.float32, seed: int = 0,
                    homophily: float = 0.8, noise: float = 0.7, degree_exponent: float = 2.5,
                    split: tuple[float, float, float] = (0.2, 0.1, 0.1),
                    root: Optional[PathLike] = None) -> NodeDataset:
    """A synthetic node-classification graph shaped like the usual GNN benchmarks.

    Degrees follow a power law (Chung-Lu weights, ``P(k) ~ k^-degree_exponent``); nodes belong to
    ``num_classes`` equal communities, which are the labels; an edge stays inside its source's
    community with probability ``homophily``; features are the class centroid (standard normal
    entries) plus ``noise`` times standard normal noise. With the defaults a node's own features
    are a weak signal and the mean over its neighbours a strong one, so a 2-layer GraphSAGE beats
    a features-only MLP by a wide margin. Output is deterministic for given parameters.

    The graph has about ``num_nodes * avg_degree`` directed edges (self loops dropped, parallel
    edges kept). Memory stays bounded: edges and features are generated in fixed-size chunks and
    features are written straight into their destination.

    Parameters
    ----------
    num_nodes : int
        Number of nodes (>= ``num_classes``).
    avg_degree : float
        Mean in-degree (and out-degree).
    num_classes : int
        Number of communities / classes (>= 2).
    feat_dim : int
        Feature width.
    feat_dtype : torch.dtype
        One of float32, float16, bfloat16, float64.
    seed : int
        Random seed; the same parameters give the same dataset.
    homophily : float
        Probability in [0, 1] that an edge's endpoints share a community.
    noise : float
        Standard deviation of the feature noise (the centroid entries have unit variance).
    degree_exponent : float
        Power-law exponent of the degree distribution (> 2).
    split : tuple of 3 floats
        Fractions of nodes in train / val / test (sum <= 1; the rest are in no split).
    root : str or os.PathLike, optional
        Cache folder. When given, the dataset is written once under
        ``root/synthetic-<num_nodes>-<hash of the parameters>/`` (into a temporary folder that
        is renamed when complete, so a crash never leaves a half-written dataset) and later calls
        with the same parameters reopen it; ``features`` is then backed by a writable memmap of
        ``features.npy`` (writes to it change the cached file).

    Returns
    -------
    NodeDataset
        All tensors on the CPU.

    Examples
    --------
    >>> ds = synthetic_graph(2000, num_classes=4, feat_dim=8, seed=1)
    >>> int(ds.indptr[-1]) == ds.num_edges, ds.labels.max().item() < 4
    (True, True)
    """
    num_nodes = _int_arg("num_nodes", num_nodes, 1)
    num_classes = _int_arg("num_classes", num_classes, 2)
    feat_dim = _int_arg("feat_dim", feat_dim, 1)
    seed = _int_arg("seed", seed, 0)
    avg_degree = _float_arg("avg_degree", avg_degree, 0.0, 1e6)
    homophily = _float_arg("homophily", homophily, 0.0, 1.0)
    noise = _float_arg("noise", noise, 0.0, 1e6)
    degree_exponent = _float_arg("degree_exponent", degree_exponent, 2.0, 100.0, lo_open=True)
    if num_nodes < num_classes:
        raise ValueError(f"num_nodes ({num_nodes}) must be >= num_classes ({num_classes})")
    if not isinstance(feat_dtype, torch.dtype):
        raise TypeError(f"feat_dtype must be a torch.dtype, got {type(feat_dtype).__name__}")
    if feat_dtype not in FEAT_DTYPES:
        raise ValueError(f"feat_dtype must be one of {sorted(str(d) for d in FEAT_DTYPES)}, "
                         f"got {feat_dtype}")
    if not isinstance(split, (tuple, list)) or len(split) != 3:
        raise TypeError(f"split must be a tuple of 3 fractions, got {split!r}")
    split = tuple(_float_arg(f"split[{i}]", s, 0.0, 1.0) for i, s in enumerate(split))
    if sum(split) > 1.0 + 1e-9:
        raise ValueError(f"split fractions must sum to <= 1, got {split} (sum {sum(split)})")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path or None, got {type(root).__name__}")

    params = dict(version=_FORMAT_VERSION, num_nodes=num_nodes, avg_degree=avg_degree,
                  num_classes=num_classes, feat_dim=feat_dim, feat_dtype=str(feat_dtype),
                  seed=seed, homophily=homophily, noise=noise, degree_exponent=degree_exponent,
                  split=list(split))
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    name = f"synthetic-{num_nodes}-{digest}"
    return cached_dataset(name, params, root, _generate, "synthetic graph")



def cached_dataset(name: str, params: dict, root: Optional[PathLike], generate, what: str
                   ) -> NodeDataset:
    """``generate(name, params, folder)`` once into ``root/name`` (written to a temporary folder,
    renamed when complete; a concurrent writer's copy wins), then the dataset mapped from there;
    with ``root=None`` generated in RAM. Shared by the dataset generators."""
    if root is None:
        return generate(name, params, None)
    folder = Path(root) / name
    if not (folder / "meta.json").is_file():
        Path(root).mkdir(parents=True, exist_ok=True)
        tmp = Path(root) / f".{name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            generate(name, params, tmp)
            if folder.is_dir() and not (folder / "meta.json").is_file():
                logger.warning("replacing incomplete dataset folder %s", folder)
                shutil.rmtree(folder)
            try:
                os.rename(tmp, folder)
            except OSError:  # another process finished the same dataset first
                if not (folder / "meta.json").is_file():
                    raise
                logger.info("%s was completed concurrently; using that copy", folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    else:
        logger.info("reopening cached %s %s", what, folder)
    return _open_cached(name, folder)


def feature_buffer(folder: Optional[Path], n: int, f: int, np_dtype) -> np.ndarray:
    """Where a generator writes the features: ``folder/features.npy`` (a memmap) or RAM."""
    if folder is None:
        return np.empty((n, f), dtype=np_dtype)
    return np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np_dtype,
                                     shape=(n, f))


def finish_dataset(name: str, params: dict, folder: Optional[Path], feats: np.ndarray,
                   feat_dtype: torch.dtype, arrays: dict, num_classes: int
                   ) -> Optional[NodeDataset]:
    """A generator's last step: write the arrays and ``meta.json`` into ``folder`` (returns None),
    or, with ``folder=None``, the dataset in RAM."""
    if folder is not None:
        feats.flush()
        del feats
        for key, arr in arrays.items():
            _save_atomic(folder / f"{key}.npy", arr)
        meta = dict(params, name=name, num_edges=int(arrays["indices"].shape[0]))
        (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        return None
    return NodeDataset(name=name, num_nodes=int(arrays["indptr"].shape[0]) - 1,
                       features=_features_tensor(feats, feat_dtype), num_classes=num_classes,
                       **{k: torch.from_numpy(v) for k, v in arrays.items()})

def _generate(name: str, params: dict, folder: Optional[Path]) -> Optional[NodeDataset]:
    """Generate the dataset: write it into ``folder`` and return None, or (``folder=None``)
    return it held in RAM."""
    t0 = time.perf_counter()
    n, c, f, seed = params["num_nodes"], params["num_classes"], params["feat_dim"], params["seed"]
    feat_dtype = getattr(torch, params["feat_dtype"].replace("torch.", ""))
    labels = _synthetic.make_labels(n, c, seed)
    weights = _synthetic.node_weights(n, params["avg_degree"], params["degree_exponent"], seed)
    src, dst = _synthetic.generate_edges(weights, labels, c, params["avg_degree"],
                                         params["homophily"], seed)
    del weights
    indptr, indices = csc_from_edges(src, dst, n)
    del src, dst
    t1 = time.perf_counter()
    np_dtype = FEAT_DTYPES[feat_dtype]
    feats = feature_buffer(folder, n, f, np_dtype)
    _synthetic.fill_features(feats, feat_dtype, labels, c, params["noise"], seed)
    train, val, test = _synthetic.make_splits(n, tuple(params["split"]), seed)
    t2 = time.perf_counter()
    logger.info("generated %s: %d nodes, %d edges in %.2fs, features %s in %.2fs", name, n,
                indices.shape[0], t1 - t0, (n, f), t2 - t1)
    arrays = dict(indptr=indptr, indices=indices, labels=labels, train_idx=train, val_idx=val,
                  test_idx=test)
    return finish_dataset(name, params, folder, feats, feat_dtype, arrays, c)


def _open_cached(name: str, folder: Path) -> NodeDataset:
    meta = json.loads((folder / "meta.json").read_text())
    feat_dtype = getattr(torch, meta["feat_dtype"].replace("torch.", ""))
    feats = np.load(folder / "features.npy", mmap_mode="r+")
    arrays = {k: torch.from_numpy(np.load(folder / f"{k}.npy")) for k in _ARRAYS}
    return NodeDataset(name=name, num_nodes=int(meta["num_nodes"]),
                       features=_features_tensor(feats, feat_dtype),
                       num_classes=int(meta["num_classes"]), features_path=folder / "features.npy",
                       **arrays)


# ----------------------------------------------------------------------------------------------
# OGB
# ----------------------------------------------------------------------------------------------
def load_ogb(name: str, root: PathLike, add_reverse: bool = True, split: Optional[str] = None,
             use_ogb: Optional[bool] = None) -> NodeDataset:
    """Load an OGB node-property dataset that is already on disk (never downloads).

    Reads ``<root>/<name with '-' replaced by '_'>/``, the folder the ``ogb`` package creates:
    ``raw/edge.csv.gz``, ``raw/node-feat.csv.gz``, ``raw/node-label.csv.gz``,
    ``raw/num-node-list.csv.gz`` (ogbn-products, ogbn-arxiv) or ``raw/data.npz`` +
    ``raw/node-label.npz`` (ogbn-papers100M), and ``split/<split>/{train,valid,test}.csv.gz``.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``'ogbn-products'`` or ``'ogbn-papers100M'``.
    root : str or os.PathLike
        The folder that holds the dataset folder (``ogb``'s ``root`` argument).
    add_reverse : bool
        Add the reverse of every edge (undirected graph, as GraphSAGE on OGB is usually run).
    split : str, optional
        Split folder name; None: OGB's default for ``name``, else the only one present.
    use_ogb : bool, optional
        Read through ``ogb.nodeproppred.NodePropPredDataset``. None: when ``ogb`` is installed
        and the folder carries ogb's ``RELEASE_v*.txt`` marker (so ogb neither prompts nor
        downloads); otherwise the built-in reader of the raw files is used.

    Returns
    -------
    NodeDataset
        All tensors on the CPU; ``labels`` is ``-1`` for unlabelled nodes. With the built-in
        reader the CSV files are parsed once, in bounded memory, into ``.npy`` files under
        ``<root>/<name>/npy_cache/`` (rebuilt when a CSV changes); ``features`` is then a
        memmap of ``features_path`` there (writes to it change the cached file).

    Raises
    ------
    FileNotFoundError
        A required file is missing (the message names it; nothing is downloaded).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, got {type(root).__name__}")
    if not isinstance(add_reverse, bool):
        raise TypeError(f"add_reverse must be a bool, got {type(add_reverse).__name__}")
    if split is not None and not isinstance(split, str):
        raise TypeError(f"split must be a str or None, got {type(split).__name__}")
    if use_ogb is not None and not isinstance(use_ogb, bool):
        raise TypeError(f"use_ogb must be a bool or None, got {type(use_ogb).__name__}")
    if not name.startswith("ogbn-"):
        raise ValueError(f"name must be an OGB node-property dataset ('ogbn-...'), got '{name}'")
    ddir = _ogb.dataset_dir(name, Path(root))
    _ogb.raw_files(ddir)  # raises FileNotFoundError before anything could download
    has_release = any(ddir.glob("RELEASE_v*.txt"))
    if use_ogb is None:
        use_ogb = has_release and _has_ogb()
    elif use_ogb and not _has_ogb():
        raise ValueError("use_ogb=True but the `ogb` package is not installed")

    if use_ogb:
        from ogb.nodeproppred import NodePropPredDataset
        ds = NodePropPredDataset(name=name, root=str(root))
        graph, raw_labels = ds[0]
        src, dst = graph["edge_index"][0], graph["edge_index"][1]
        num_nodes, feat = int(graph["num_nodes"]), graph["node_feat"]
        labels = _ogb._labels_to_int(np.asarray(raw_labels))
        parts = {k: np.asarray(v, dtype=np.int64)
                 for k, v in ds.get_idx_split(*([split] if split else [])).items()}
        if add_reverse and src.shape[0] and not _has_reverse(src, dst):
            src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    else:
        src, dst, num_nodes, feat, labels = _ogb.read_raw(ddir)
        parts = _ogb.read_split(name, ddir, split)
        if add_reverse:
            src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])

    for arg, arr in (("edge", src), ("edge", dst), ("split", np.concatenate(list(parts.values())))):
        if arr.size and (arr.min() < 0 or arr.max() >= num_nodes):
            raise ValueError(f"load_ogb: {arg} ids of '{name}' out of range [0, {num_nodes})")
    if feat.shape[0] != num_nodes or labels.shape[0] != num_nodes:
        raise ValueError(f"load_ogb: '{name}' has {num_nodes} nodes but {feat.shape[0]} feature "
                         f"rows and {labels.shape[0]} labels")
    indptr, indices = csc_from_edges(src.astype(np.int64, copy=False),
                                     dst.astype(np.int64, copy=False), num_nodes)
    del src, dst
    valid = labels[labels >= 0]
    num_classes = int(valid.max()) + 1 if valid.size else 0
    features_path = Path(feat.filename) if isinstance(feat, np.memmap) else None
    feat = np.ascontiguousarray(feat, dtype=np.float32 if feat.dtype == np.float64 else None)
    return NodeDataset(name=name, num_nodes=num_nodes, indptr=torch.from_numpy(indptr),
                       indices=torch.from_numpy(indices), features=torch.from_numpy(feat),
                       labels=torch.from_numpy(labels), train_idx=torch.from_numpy(parts["train"]),
                       val_idx=torch.from_numpy(parts["valid"]),
                       test_idx=torch.from_numpy(parts["test"]), num_classes=num_classes,
                       features_path=features_path)


def _has_ogb() -> bool:
    try:
        import ogb.nodeproppred  # noqa: F401
    except ImportError:
        return False
    return True


def _has_reverse(src: np.ndarray, dst: np.ndarray) -> bool:
    """Whether ogb already added the inverse edges (appended, or interleaved as ogb does)."""
    e = src.shape[0]
    if e % 2:
        return False
    h = e // 2
    halves = np.array_equal(src[:h], dst[h:]) and np.array_equal(dst[:h], src[h:])
    interleaved = np.array_equal(src[0::2], dst[1::2]) and np.array_equal(dst[0::2], src[1::2])
    return bool(halves or interleaved)
