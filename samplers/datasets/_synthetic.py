"""Synthetic GNN benchmark graphs: power-law degrees, communities = classes, noisy features.

The model is a degree-corrected stochastic block model in Chung-Lu form. Every node ``v`` gets a
weight ``w_v`` drawn from a Pareto law (exponent ``degree_exponent``) and a class ``y_v`` (its
community). Node ``v`` gets ``Poisson(w_v)`` out-edges; with probability ``homophily`` an edge's
destination is drawn, proportionally to weight, from the source's community, otherwise from the
whole graph. In- and out-degrees both follow the weights,
so they are heavy-tailed. Features are ``centroid[y_v] + noise * N(0, I)`` with centroids of norm
about 1 (entries ~ N(0, 1/F)), so learnability depends on ``noise``, not on F: noisy enough that a
node's own features say little, while the mean over its (mostly same-class) neighbours averages
the noise away, which is what a GraphSAGE layer does.

Everything is generated in fixed-size chunks, each from its own seed, so the result depends only
on the parameters (not on the number of threads) and memory stays bounded: features are written
chunk by chunk straight into their destination (a ``.npy`` memmap for big tables).
"""
from __future__ import annotations

import concurrent.futures
import os

import numpy as np
import torch

__all__ = ["node_weights", "generate_edges", "fill_features", "make_splits", "make_labels"]

# Fixed chunk sizes: part of the generator's definition (changing them changes the output).
EDGE_CHUNK = 1 << 21          # about this many edges per chunk
FEAT_CHUNK_ELEMS = 1 << 22    # feature elements per chunk (16 MiB of float32)

# Independent streams of the same seed.
_STREAM_WEIGHTS, _STREAM_LABELS, _STREAM_EDGES, _STREAM_CENTROIDS, _STREAM_FEATS, _STREAM_SPLIT = \
    range(6)


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, chunk])


def _num_threads() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1)))


def _run_chunks(fn, num_chunks: int) -> list:
    """Run ``fn(i)`` for every chunk on a thread pool (NumPy's RNG and ufuncs drop the GIL)."""
    threads = _num_threads()
    if threads == 1 or num_chunks <= 1:
        return [fn(i) for i in range(num_chunks)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(fn, range(num_chunks)))


def make_labels(num_nodes: int, num_classes: int, seed: int) -> np.ndarray:
    """Balanced random classes (int64 ``[num_nodes]``)."""
    labels = np.arange(num_nodes, dtype=np.int64) % num_classes
    _rng(seed, _STREAM_LABELS).shuffle(labels)
    return labels


def node_weights(num_nodes: int, avg_degree: float, degree_exponent: float,
                 seed: int) -> np.ndarray:
    """Pareto weights (expected degrees) with mean ``avg_degree``, float64 ``[num_nodes]``.

    Deterministic quantiles of a Pareto law with tail index ``degree_exponent - 1`` (so the
    degree distribution has ``P(k) ~ k^-degree_exponent``), capped at ``sqrt(N) * avg_degree``,
    randomly assigned to nodes.
    """
    alpha = degree_exponent - 1.0
    q = (np.arange(num_nodes, dtype=np.float64) + 0.5) / num_nodes
    w = q ** (-1.0 / alpha)
    w *= avg_degree / w.mean()
    # Cap the hubs at sqrt(N) * avg_degree (about 1e4 in-edges at 1e5-1e6 nodes, like
    # ogbn-products), then restore the mean; keeps parallel edges and self loops rare.
    np.minimum(w, np.sqrt(num_nodes) * avg_degree, out=w)
    w *= avg_degree / w.mean()
    _rng(seed, _STREAM_WEIGHTS).shuffle(w)
    return w


def generate_edges(weights: np.ndarray, labels: np.ndarray, num_classes: int, avg_degree: float,
                   homophily: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample the directed edges (self loops dropped): ``(src, dst)``, int32 (int64 past 2**31).

    Node ``v`` gets ``Poisson(w_v)`` out-edges; each destination is drawn proportionally to
    weight, from the source's community with probability ``homophily``, else from all nodes.
    Weighted draws are done as sorted batches (inverse CDF by ``searchsorted`` on sorted keys,
    which is cache-friendly, unlike random keys) assigned to edges in random order.
    """
    n = weights.shape[0]
    idt = np.int32 if n < 2**31 else np.int64
    # Nodes sorted by community; one cumulative-weight table serves both the global draw and
    # the draw restricted to a community (a contiguous sub-range of the table).
    order = np.argsort(labels, kind="stable").astype(idt)
    cum = np.cumsum(weights[order])
    total = cum[-1]
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    cum0 = np.concatenate([[0.0], cum])
    lo, span = cum0[bounds[:-1]], cum0[bounds[1:]] - cum0[bounds[:-1]]
    labels_small = labels.astype(np.int16 if num_classes < 2**15 else np.int64)
    node_chunk = max(1024, EDGE_CHUNK // max(1, int(np.ceil(avg_degree))))

    def draw_sorted(keys: np.ndarray) -> np.ndarray:
        keys.sort()
        pos = np.searchsorted(cum, keys, side="right")
        np.minimum(pos, n - 1, out=pos)
        return order[pos]

    def chunk(i: int):
        a, b = i * node_chunk, min(n, (i + 1) * node_chunk)
        rng = _rng(seed, _STREAM_EDGES, i)
        src = np.repeat(np.arange(a, b, dtype=idt), rng.poisson(weights[a:b]))
        rng.shuffle(src)  # random edge order: the sorted draws below land on random edges
        m = src.shape[0]
        dst = np.empty(m, dtype=idt)
        inside = rng.random(m) < homophily
        # same-community draws: edges grouped by community (stable: random order inside a
        # group); the sorted keys of community c fill exactly block c, as community ranges of
        # the cumulative table are disjoint and in community order
        c = labels_small[src[inside]]
        group = np.argsort(c, kind="stable")
        c = c[group]
        drawn = np.empty(c.shape[0], dtype=idt)
        drawn[group] = draw_sorted(lo[c] + rng.random(c.shape[0]) * span[c])
        dst[inside] = drawn
        outside = ~inside
        dst[outside] = draw_sorted(rng.random(int(outside.sum())) * total)
        keep = src != dst
        return src[keep], dst[keep]

    parts = _run_chunks(chunk, -(-n // node_chunk))
    src = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, idt)
    dst = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, idt)
    return src, dst


def fill_features(out: np.ndarray, feat_dtype: torch.dtype, labels: np.ndarray,
                  num_classes: int, noise: float, seed: int) -> None:
    """Write ``centroid[label] + noise * N(0, 1)`` into ``out`` (``[N, F]``) chunk by chunk.

    ``out`` is the NumPy view of the destination (a memmap or a torch tensor's buffer); for
    ``bfloat16`` it is an ``int16`` view of the same bytes.
    """
    n, f = out.shape
    # Centroid entries ~ N(0, 1/F): centroids have norm ~1 whatever F, so the class separation
    # in units of noise (and so how learnable the labels are) depends on ``noise`` only.
    centroids = _rng(seed, _STREAM_CENTROIDS).standard_normal((num_classes, f), dtype=np.float32)
    centroids *= np.float32(1.0 / np.sqrt(f))
    rows = max(1, FEAT_CHUNK_ELEMS // max(f, 1))
    direct = out.dtype == np.float32

    def chunk(i: int) -> None:
        r0, r1 = i * rows, min(n, (i + 1) * rows)
        rng = _rng(seed, _STREAM_FEATS, i)
        buf = out[r0:r1] if direct else np.empty((r1 - r0, f), np.float32)
        rng.standard_normal(out=buf, dtype=np.float32)
        buf *= np.float32(noise)
        buf += centroids[labels[r0:r1]]
        if not direct:
            if feat_dtype == torch.bfloat16:
                out[r0:r1] = torch.from_numpy(buf).to(torch.bfloat16).view(torch.int16).numpy()
            else:
                out[r0:r1] = buf  # float16 / float64: NumPy casts

    _run_chunks(chunk, -(-n // rows))


def make_splits(num_nodes: int, split: tuple[float, float, float],
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint sorted int64 train/val/test node ids, sized by the fractions in ``split``."""
    perm = _rng(seed, _STREAM_SPLIT).permutation(num_nodes)
    sizes = [int(round(frac * num_nodes)) for frac in split]
    a, b = sizes[0], sizes[0] + sizes[1]
    c = min(num_nodes, b + sizes[2])
    return (np.sort(perm[:a]).astype(np.int64), np.sort(perm[a:b]).astype(np.int64),
            np.sort(perm[b:c]).astype(np.int64))
