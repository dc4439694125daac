"""CPU neighbour sampling with Numba: one layer = count, prefix sum, fill, relabel.

The draws are a bit-for-bit port of ``cuda/sample_math.cuh`` (SplitMix64 counter-based draws,
Floyd's algorithm without replacement), so the CPU and GPU samplers return the same edges.
Without Numba the same functions run as plain Python (correct, slow; a warning says so once).
"""
from __future__ import annotations

import logging
import warnings
from typing import Optional

import numpy as np

from unified_tensor._deps import has_numba
from unified_tensor._numba_guard import ParallelKernel

__all__ = ["sample_layer", "relabel_cpu", "mix64_py", "draw_py", "NUMBA"]

logger = logging.getLogger("samplers")

NUMBA = has_numba()
if NUMBA:
    from numba import njit, prange
else:  # pragma: no cover - both environments ship numba
    prange = range

    def njit(*args, **kwargs):
        if len(args) == 1 and callable(args[0]):
            return args[0]
        return lambda f: f

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_ONE = np.uint64(1)
_MASK = (1 << 64) - 1


def mix64_py(z: int) -> int:
    """``ut::mix64`` on Python ints (used to derive per-batch keys)."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def draw_py(key: int, node: int, t: int) -> int:
    """``ut::draw`` on Python ints (reference for the tests)."""
    state = mix64_py(key ^ ((node * 0x9E3779B97F4A7C15) & _MASK))
    return mix64_py(state + (t + 1) * 0x9E3779B97F4A7C15)


@njit(inline="always", nogil=True, cache=True)
def _mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", nogil=True, cache=True)
def _draw(key, node, t):
    state = _mix64(key ^ (np.uint64(node) * _GOLDEN))
    return _mix64(state + (np.uint64(t) + _ONE) * _GOLDEN)


@njit(inline="always", nogil=True, cache=True)
def _uniform_below(r, n):
    return np.int64(r % np.uint64(n))


@njit(inline="always", nogil=True, cache=True)
def _take_all(deg, fanout, replace):
    return fanout < 0 or ((not replace) and deg <= fanout)


@njit(inline="always", nogil=True, cache=True)
def _num_picks(deg, fanout, replace):
    if deg <= 0:
        return 0
    if _take_all(deg, fanout, replace):
        return deg
    return fanout


@njit(nogil=True, cache=True)
def draw_numba(key, node, t):
    """``ut::draw`` compiled (tests compare it with the C++ reference values)."""
    return _draw(key, node, t)


@njit(nogil=True, cache=True)
def _relabel_first_appearance(first, rest, local, scratch):
    """Unique nodes of ``concat(first, rest)`` in order of first appearance, ``first`` first;
    writes the local id of every ``rest[e]`` into ``local[e]`` (``local`` may be ``rest`` itself:
    each entry is read before it is written). Returns ``(uniq, dup)``: ``dup`` is the position of
    the first repeated entry of ``first`` (then ``uniq`` stops before it and ``local`` is not
    written), else -1. ``scratch`` (node-sized int32, all -1) is left as found."""
    n = first.shape[0]
    uniq = np.empty(n + rest.shape[0], first.dtype)
    dup = -1
    for i in range(n):
        v = first[i]
        if scratch[v] != -1:
            dup = i
            break
        scratch[v] = i
        uniq[i] = v
    num = n
    if dup < 0:
        for e in range(rest.shape[0]):
            u = rest[e]
            loc = scratch[u]
            if loc == -1:
                loc = num
                scratch[u] = loc
                uniq[num] = u
                num += 1
            local[e] = loc
    else:
        num = dup
    for j in range(num):
        scratch[uniq[j]] = -1
    return uniq[:num], dup


def _sample_layer_py(indptr, indices, eids, has_eids, seeds, fanout, replace, key, scratch,
                     relabel):
    n = seeds.shape[0]
    # Pass 1: edges per seed.
    counts = np.empty(n + 1, np.int64)
    counts[0] = 0
    for i in prange(n):
        v = seeds[i]
        deg = np.int64(indptr[v + 1]) - np.int64(indptr[v])
        counts[i + 1] = _num_picks(deg, fanout, replace)
    offsets = np.cumsum(counts)
    total = offsets[n]
    eid = np.empty(total, np.int64)
    # Row 0 holds the global source ids until the relabel below turns them into local ids.
    edge_index = np.empty((2, total), np.int64)
    # Pass 2: every seed fills its own slice [offsets[i], offsets[i + 1]).
    for i in prange(n):
        v = seeds[i]
        o = offsets[i]
        k = offsets[i + 1] - o
        start = np.int64(indptr[v])
        deg = np.int64(indptr[v + 1]) - start
        if _take_all(deg, fanout, replace):
            for t in range(k):
                pos = start + t
                edge_index[0, o + t] = indices[pos]
                eid[o + t] = eids[pos] if has_eids else pos
                edge_index[1, o + t] = i
            continue
        if replace:
            for t in range(k):
                eid[o + t] = _uniform_below(_draw(key, v, t), deg)
        else:  # Floyd's algorithm, positions kept in eid[o:o + k]
            for t in range(k):
                j = deg - k + t
                r = _uniform_below(_draw(key, v, t), j + 1)
                taken = False
                for q in range(t):
                    if eid[o + q] == r:
                        taken = True
                        break
                eid[o + t] = j if taken else r
        for t in range(k):
            pos = start + eid[o + t]
            edge_index[0, o + t] = indices[pos]
            eid[o + t] = eids[pos] if has_eids else pos
            edge_index[1, o + t] = i
    if not relabel:   # raw: row 0 keeps the global source ids (heterogeneous relabel is per type)
        return seeds[:0], edge_index, eid, -1
    # Relabel (sequential, first appearance): dst nodes first, then new sources in edge order;
    # row 0 of edge_index is turned into local ids in place.
    uniq, dup = _relabel_first_appearance(seeds, edge_index[0], edge_index[0], scratch)
    return uniq, edge_index, eid, dup


@ParallelKernel
def _sample_layer():
    """Source of the sampling kernel: compiled parallel and serial, called under the library's
    thread / fork guard (see ``unified_tensor._numba_guard``)."""
    return _sample_layer_py

_warned = False


def sample_layer(indptr: np.ndarray, indices: np.ndarray, eids, seeds: np.ndarray, fanout: int,
                 replace: bool, key: int, scratch: Optional[np.ndarray], relabel: bool = True):
    """Sample one layer on the CPU.

    Returns ``(src_nodes, edge_index, edge_ids, dup)``: the block's source nodes (``seeds`` first),
    ``[2, E]`` int64 local edges, int64 global edge ids, and ``dup`` = the position of the first
    repeated seed, or -1 (then the other outputs are meaningless). ``scratch`` is a node-sized
    int32 array of -1, left as found. With ``relabel=False`` (heterogeneous graphs, where sources
    and destinations are different node types) ``src_nodes`` is empty, row 0 of ``edge_index``
    holds the global source ids, ``dup`` is -1 and ``scratch`` is not used (may be ``None``).
    """
    global _warned
    if not NUMBA and not _warned:
        _warned = True
        warnings.warn("samplers: Numba is not installed; the CPU sampler runs as plain Python "
                      "(very slow)", RuntimeWarning, stacklevel=3)
    has_eids = eids is not None
    if eids is None:
        eids = indices[:0]
    if scratch is None:
        scratch = np.empty(0, np.int32)
    return _sample_layer(indptr, indices, eids, has_eids, seeds, np.int64(fanout), bool(replace),
                         np.uint64(key), scratch, bool(relabel))


def relabel_cpu(first: np.ndarray, rest: np.ndarray, scratch: np.ndarray):
    """Unique nodes of ``concat(first, rest)`` in order of first appearance (``first`` must be
    distinct and comes first) and the local id of every entry of ``rest``; ``scratch`` is a
    node-sized int32 array of -1, left as found. The CPU twin of ``relabel_first_appearance``."""
    local = np.empty(rest.shape[0], np.int64)
    uniq, dup = _relabel_first_appearance(first, rest.astype(first.dtype, copy=False), local, scratch)
    if dup >= 0:
        raise ValueError(f"relabel_cpu: first must be distinct, got {first[dup]} twice")
    return uniq, local
