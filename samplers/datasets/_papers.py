"""A papers100M-shaped synthetic graph: power-law in-degrees, nested communities, ~1 % labelled.

Real citation graphs cluster at several scales (fields > venues > small groups of papers that cite
each other), most edges fall inside the small groups, and the node ids of the published dataset do
not follow those groups. :func:`papers_like` builds that structure so that a locality order
(:func:`samplers.graph.reorder`) has something real to recover, and a benchmark of it means
something (DESIGN.md, "Locality order"):

* a hierarchy over latent positions ``0..N-1``: small communities of 50-500 nodes (log-normal
  sizes, median ~160), venues of ~``venue_communities`` consecutive small communities, fields of
  ~``field_venues`` consecutive venues;
* node weights from a Pareto law (``degree_exponent``, the generator of :func:`synthetic_graph`);
  node ``v`` gets ``Poisson(w_v)`` in-edges, so in-degrees are power-law with a realistic tail
  (capped at ``sqrt(N) * avg_degree``);
* the source of each in-edge of ``v`` is drawn, proportionally to weight (so out-degrees are
  heavy-tailed too), inside ``v``'s small community with probability ``p_community``, else inside
  its venue (``p_venue``), else its field (``p_field``), else anywhere;
* classes follow venues (``label_purity`` of a venue's nodes carry its class; a venue takes its
  field's class with probability 1/2), features are ``centroid[class] + noise * N(0, I)``;
* the node ids are then randomly permuted, as in real datasets, so the communities are invisible
  in the id order; :func:`papers_like_communities` gives the hierarchy in the final ids.

Like ogbn-papers100M only the split nodes are labelled (``labels`` is ``-1`` elsewhere); by default
1.1 % train, 0.1 % val, 0.2 % test. Everything is vectorised NumPy in fixed-size chunks on a thread
pool, deterministic for given parameters, and cached on disk with ``root`` (``.npy`` files, the
feature table a memmap) exactly like :func:`synthetic_graph`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from . import _synthetic
from ._args import _float_arg, _int_arg
from ._node_dataset import (FEAT_DTYPES, NodeDataset, PathLike, cached_dataset, csc_from_edges,
                            feature_buffer, finish_dataset)

__all__ = ["papers_like", "papers_like_communities"]

logger = logging.getLogger("samplers.datasets")

# Bump when the output for given parameters changes (invalidates caches).
_FORMAT_VERSION = 1
_EDGE_CHUNK = 1 << 21          # about this many edges per chunk (part of the definition)
_COMMUNITY_SIZES = (50, 500)   # small-community size range; log-normal, median sqrt(50 * 500)

# Independent streams of one seed (distinct from _synthetic's 0..5).
_S_SIZES, _S_GROUPS, _S_PERM, _S_CLASS, _S_EDGES = range(10, 15)


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, chunk])


def _group_sizes(count: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Sizes (>= 1) of consecutive groups covering ``count`` items, mean about ``mean``."""
    sizes = 1 + rng.poisson(max(mean - 1.0, 0.0), size=count)
    ends = np.cumsum(sizes)
    k = int(np.searchsorted(ends, count)) + 1
    sizes = sizes[:k].copy()
    sizes[-1] -= int(ends[k - 1]) - count
    return sizes


def _hierarchy(n: int, venue_communities: float, field_venues: float,
               seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start offsets (in latent positions) of the small communities, venues and fields, each
    ``[count + 1]`` int64 ending at ``n``; venues and fields are unions of consecutive ranges."""
    lo, hi = _COMMUNITY_SIZES
    rng = _rng(seed, _S_SIZES)
    sizes = np.exp(rng.normal(np.log(np.sqrt(lo * hi)), 0.6, size=n // lo + 2))
    sizes = np.clip(np.rint(sizes), lo, hi).astype(np.int64)
    ends = np.cumsum(sizes)
    k = int(np.searchsorted(ends, n)) + 1
    comm = np.concatenate([[0], np.minimum(ends[:k], n)])
    rng = _rng(seed, _S_GROUPS)
    venue_sizes = _group_sizes(k, venue_communities, rng)          # communities per venue
    venue = np.concatenate([[0], np.cumsum(venue_sizes)])           # community index bounds
    field_sizes = _group_sizes(venue_sizes.shape[0], field_venues, rng)
    field = np.concatenate([[0], np.cumsum(field_sizes)])           # venue index bounds
    return comm, comm[venue], comm[venue[field]]


def _latent_ids(starts: np.ndarray, n: int) -> np.ndarray:
    """Group id (int32) of every latent position, from the groups' start offsets."""
    return np.repeat(np.arange(starts.shape[0] - 1, dtype=np.int32), np.diff(starts))


def _permutation(n: int, seed: int) -> np.ndarray:
    """``final_id[latent position]`` (int32 / int64): the random renumbering of the nodes."""
    idt = np.int32 if n < 2**31 else np.int64
    return _rng(seed, _S_PERM).permutation(n).astype(idt)


def papers_like_communities(num_nodes: int, seed: int = 0, venue_communities: float = 30.0,
                            field_venues: float = 20.0) -> dict:
    """The community hierarchy of ``papers_like(num_nodes, seed=seed, ...)`` in its final node ids.

    Cheap (O(num_nodes), no edges): recomputed from the parameters, so cached datasets need not
    store it. Returns ``{"community": ..., "venue": ..., "field": ...}``, int32 NumPy arrays
    ``[num_nodes]`` (CPU) with the group id of every node; ids of one level are unique across the
    whole graph.

    >>> c = papers_like_communities(10_000)
    >>> c["community"].shape, bool(c["field"].max() <= c["venue"].max() <= c["community"].max())
    ((10000,), True)
    """
    n = _int_arg("num_nodes", num_nodes, 1)
    seed = _int_arg("seed", seed, 0)
    comm, venue, field = _hierarchy(n, _float_arg("venue_communities", venue_communities, 1.0, 1e9),
                                    _float_arg("field_venues", field_venues, 1.0, 1e9), seed)
    perm = _permutation(n, seed)
    out = {}
    for key, starts in (("community", comm), ("venue", venue), ("field", field)):
        ids = np.empty(n, dtype=np.int32)
        ids[perm] = _latent_ids(starts, n)
        out[key] = ids
    return out


def _edges(weights: np.ndarray, comm: np.ndarray, venue: np.ndarray, field: np.ndarray,
           probs: Tuple[float, float, float], seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Directed edges ``(src, dst)`` in latent positions (self loops dropped), int32/int64.

    Destinations are taken chunk by chunk in latent order, ``Poisson(w_v)`` in-edges each; every
    group is a contiguous latent range, so a weighted draw inside it is a ``searchsorted`` of a
    uniform key into that range of one cumulative-weight table.
    """
    n = weights.shape[0]
    idt = np.int32 if n < 2**31 else np.int64
    cum = np.cumsum(weights)
    cum0 = np.concatenate([[0.0], cum])
    lat = np.arange(n, dtype=idt)
    bounds = []
    for starts in (comm, venue, field):
        gid = _latent_ids(starts, n)
        bounds.append((starts[:-1][gid], starts[1:][gid]))   # [lo, hi) of each node's group
        del gid
    bounds.append((np.zeros(1, np.int64), np.full(1, n, np.int64)))
    thresholds = np.cumsum(probs)
    avg = float(weights.mean()) if n else 1.0
    node_chunk = max(1024, int(_EDGE_CHUNK // max(1.0, avg)))

    def chunk(i: int):
        a, b = i * node_chunk, min(n, (i + 1) * node_chunk)
        rng = _rng(seed, _S_EDGES, i)
        dst = np.repeat(lat[a:b], rng.poisson(weights[a:b]))
        m = dst.shape[0]
        level = np.searchsorted(thresholds, rng.random(m), side="right")   # 0..3
        lo = np.empty(m, np.int64)
        hi = np.empty(m, np.int64)
        for k, (glo, ghi) in enumerate(bounds):
            sel = level == k
            where = dst[sel] if k < 3 else 0
            lo[sel] = glo[where]
            hi[sel] = ghi[where]
        key = cum0[lo] + rng.random(m) * (cum0[hi] - cum0[lo])
        src = np.searchsorted(cum, key, side="right")
        np.clip(src, lo, hi - 1, out=src)   # float rounding at a range's edge
        src = src.astype(idt)
        keep = src != dst
        return src[keep], dst[keep]

    parts = _synthetic._run_chunks(chunk, -(-n // node_chunk))
    src = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, idt)
    dst = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, idt)
    return src, dst


def _classes(n: int, num_classes: int, venue: np.ndarray, field: np.ndarray,
             purity: float, seed: int) -> np.ndarray:
    """Class (int64) of every latent position: its venue's class with probability ``purity``."""
    rng = _rng(seed, _S_CLASS)
    nv, nf = venue.shape[0] - 1, field.shape[0] - 1
    field_class = rng.integers(num_classes, size=nf)
    field_of_venue = np.searchsorted(field, venue[:-1], side="right") - 1
    venue_class = np.where(rng.random(nv) < 0.5, field_class[field_of_venue],
                           rng.integers(num_classes, size=nv))
    cls = venue_class[_latent_ids(venue, n)]
    noisy = rng.random(n) >= purity
    cls[noisy] = rng.integers(num_classes, size=int(noisy.sum()))
    return cls.astype(np.int64)


def papers_like(num_nodes: int, avg_degree: float = 14.5, feat_dim: int = 128,
                train_fraction: float = 0.011, val_fraction: float = 0.001,
                test_fraction: float = 0.002, num_classes: int = 172,
                feat_dtype: torch.dtype = torch.float32, degree_exponent: float = 2.3,
                p_community: float = 0.6, p_venue: float = 0.2, p_field: float = 0.1,
                venue_communities: float = 30.0, field_venues: float = 20.0,
                label_purity: float = 0.8, noise: float = 0.7, seed: int = 0,
                root: Optional[PathLike] = None) -> NodeDataset:
    """A graph shaped like ogbn-papers100M at any size (module docstring: the model).

    Parameters
    ----------
    num_nodes : int
        Number of nodes (papers100M: 111M; 2-5M fit a laptop).
    avg_degree : float
        Mean in-degree (papers100M: 14.5 directed citations per paper).
    feat_dim : int
        Feature width (papers100M: 128).
    train_fraction, val_fraction, test_fraction : float
        Shares of nodes in each split (papers100M: 1.1 %, 0.1 %, 0.2 %); only these are labelled.
    num_classes : int
        Number of classes (papers100M: 172 arXiv subject areas).
    feat_dtype : torch.dtype
        One of float32, float16, bfloat16, float64.
    degree_exponent : float
        Power-law exponent of the in-degree distribution (> 2).
    p_community, p_venue, p_field : float
        Probability that an edge's source is drawn from the destination's small community, else
        from its venue, else its field (the rest: anywhere); the sum must be <= 1.
    venue_communities, field_venues : float
        Mean small communities per venue and venues per field.
    label_purity : float
        Share of a venue's nodes that carry the venue's class (the rest: a random class).
    noise : float
        Standard deviation of the feature noise around the class centroid (norm ~1).
    seed : int
        Random seed; the same parameters give the same dataset, whatever the thread count.
    root : str or os.PathLike, optional
        Cache folder: written once under ``root/papers-like-<num_nodes>-<hash>/`` (atomically) and
        reopened afterwards, ``features`` then a writable memmap of ``features.npy``.

    Returns
    -------
    NodeDataset
        All tensors on the CPU; ``labels`` is ``-1`` outside the splits; ``indices`` int32.

    Examples
    --------
    >>> ds = papers_like(20_000, feat_dim=8)
    >>> ds.train_idx.numel(), int((ds.labels >= 0).sum()) == 20_000 * 0.014
    (220, True)
    """
    num_nodes = _int_arg("num_nodes", num_nodes, 1)
    feat_dim = _int_arg("feat_dim", feat_dim, 1)
    num_classes = _int_arg("num_classes", num_classes, 2)
    seed = _int_arg("seed", seed, 0)
    avg_degree = _float_arg("avg_degree", avg_degree, 0.0, 1e6)
    degree_exponent = _float_arg("degree_exponent", degree_exponent, 2.0, 100.0, lo_open=True)
    fractions = tuple(_float_arg(k, v, 0.0, 1.0) for k, v in (
        ("train_fraction", train_fraction), ("val_fraction", val_fraction),
        ("test_fraction", test_fraction)))
    if sum(fractions) > 1.0 + 1e-9:
        raise ValueError(f"train_fraction + val_fraction + test_fraction must be <= 1, got "
                         f"{sum(fractions)}")
    probs = tuple(_float_arg(k, v, 0.0, 1.0) for k, v in (
        ("p_community", p_community), ("p_venue", p_venue), ("p_field", p_field)))
    if sum(probs) > 1.0 + 1e-9:
        raise ValueError(f"p_community + p_venue + p_field must be <= 1, got {sum(probs)}")
    venue_communities = _float_arg("venue_communities", venue_communities, 1.0, 1e9)
    field_venues = _float_arg("field_venues", field_venues, 1.0, 1e9)
    label_purity = _float_arg("label_purity", label_purity, 0.0, 1.0)
    noise = _float_arg("noise", noise, 0.0, 1e6)
    if not isinstance(feat_dtype, torch.dtype):
        raise TypeError(f"feat_dtype must be a torch.dtype, got {type(feat_dtype).__name__}")
    if feat_dtype not in FEAT_DTYPES:
        raise ValueError(f"feat_dtype must be one of {sorted(str(d) for d in FEAT_DTYPES)}, "
                         f"got {feat_dtype}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path or None, got {type(root).__name__}")

    params = dict(version=_FORMAT_VERSION, kind="papers-like", num_nodes=num_nodes,
                  avg_degree=avg_degree, feat_dim=feat_dim, split=list(fractions),
                  num_classes=num_classes, feat_dtype=str(feat_dtype),
                  degree_exponent=degree_exponent, probs=list(probs),
                  venue_communities=venue_communities, field_venues=field_venues,
                  label_purity=label_purity, noise=noise, seed=seed)
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    name = f"papers-like-{num_nodes}-{digest}"
    return cached_dataset(name, params, root, _generate, "papers-like graph")


def _generate(name: str, params: dict, folder: Optional[Path]) -> Optional[NodeDataset]:
    """Generate into ``folder`` (returns None) or, with ``folder=None``, in RAM."""
    t0 = time.perf_counter()
    n, f, c, seed = params["num_nodes"], params["feat_dim"], params["num_classes"], params["seed"]
    feat_dtype = getattr(torch, params["feat_dtype"].replace("torch.", ""))
    comm, venue, field = _hierarchy(n, params["venue_communities"], params["field_venues"], seed)
    weights = _synthetic.node_weights(n, params["avg_degree"], params["degree_exponent"], seed)
    src, dst = _edges(weights, comm, venue, field, tuple(params["probs"]), seed)
    del weights
    perm = _permutation(n, seed)
    src, dst = perm[src], perm[dst]
    indptr, indices = csc_from_edges(src, dst, n)
    del src, dst
    t1 = time.perf_counter()
    classes = np.empty(n, dtype=np.int64)
    classes[perm] = _classes(n, c, venue, field, params["label_purity"], seed)
    np_dtype = FEAT_DTYPES[feat_dtype]
    feats = feature_buffer(folder, n, f, np_dtype)
    _synthetic.fill_features(feats, feat_dtype, classes, c, params["noise"], seed)
    train, val, test = _synthetic.make_splits(n, tuple(params["split"]), seed)
    labels = np.full(n, -1, dtype=np.int64)
    for ids in (train, val, test):
        labels[ids] = classes[ids]
    t2 = time.perf_counter()
    logger.info("generated %s: %d nodes, %d edges in %.2fs, features %s in %.2fs", name, n,
                indices.shape[0], t1 - t0, (n, f), t2 - t1)
    arrays = dict(indptr=indptr, indices=indices, labels=labels, train_idx=train, val_idx=val,
                  test_idx=test)
    return finish_dataset(name, params, folder, feats, feat_dtype, arrays, c)
