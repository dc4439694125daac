"""CPU neighbour sampling with Numba: one layer = count, prefix sum, fill, relabel.

The draws are a bit-for-bit port of ``cuda/sample_math.cuh`` (SplitMix64 counter-based draws,
Floyd's algorithm without replacement), so the CPU and GPU samplers return the same edges.
Without Numba the same functions run as plain Python (correct, slow; a warning says so once).
"""
from __future__ import annotations

import logging
import math
import sys
import threading
import warnings
from typing import List, Optional, Tuple

import numpy as np

from unified_tensor._deps import has_numba
from unified_tensor._numba_guard import ParallelKernel, reset_locks_after_fork

__all__ = ["sample_layer", "relabel_cpu", "relabel_rows_cpu", "mix64_py", "draw_py", "NUMBA"]

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


@njit(inline="always", nogil=True, cache=True)
def _kept_degree(excl, start, deg):
    """``(deg', lo, hi)``: in-degree without the excluded positions ``excl[lo:hi]`` (ascending
    CSC positions) of a node whose in-edges are ``[start, start + deg)`` (``ut::lower_bound_i64``)."""
    if excl.shape[0] == 0:
        return deg, 0, 0
    lo = np.searchsorted(excl, start)
    hi = np.searchsorted(excl, start + deg)
    return deg - (hi - lo), lo, hi


@njit(inline="always", nogil=True, cache=True)
def _nth_kept(start, r, excl, lo, hi):
    """Position of the ``r``-th kept in-edge (``ut::nth_kept``)."""
    pos = start + r
    q = lo
    while q < hi and excl[q] <= pos:
        pos += 1
        q += 1
    return pos


@njit(inline="always", nogil=True, cache=True)
def _floyd(key, node, deg, k, out, o):
    """``ut::floyd_pick``: ``k`` distinct positions of ``[0, deg)`` into ``out[o:o + k]``."""
    for t in range(k):
        j = deg - k + t
        r = _uniform_below(_draw(key, node, t), j + 1)
        taken = False
        for q in range(t):
            if out[o + q] == r:
                taken = True
                break
        out[o + t] = j if taken else r


@njit(inline="always", nogil=True, cache=True)
def _scan(offsets, n):
    """Per-seed edge counts in ``offsets[1:n + 1]`` (``offsets[0] = 0``) -> their prefix sum."""
    for i in range(n):
        offsets[i + 1] += offsets[i]


@njit(inline="always", nogil=True, cache=True)
def _scan_and_outputs(offsets, n):
    """:func:`_scan`, then the layer's ``(src, dst, eid)`` int64 outputs of that many edges."""
    _scan(offsets, n)
    total = offsets[n]
    return np.empty(total, np.int64), np.empty(total, np.int64), np.empty(total, np.int64)


@njit(inline="always", nogil=True, cache=True)
def _emit(indices, eids, has_eids, i, o, k, src, dst, eid):
    """Edges ``o:o + k`` of seed ``i``: ``eid`` holds their CSC positions on entry; writes the
    sources, the seed's position and the edge ids (the position without edge ids)."""
    for t in range(k):
        pos = eid[o + t]
        src[o + t] = indices[pos]
        eid[o + t] = eids[pos] if has_eids else pos
        dst[o + t] = i


@njit(nogil=True, cache=True)
def draw_numba(key, node, t):
    """``ut::draw`` compiled (tests compare it with the C++ reference values)."""
    return _draw(key, node, t)


@njit(nogil=True, cache=True)
def _relabel_start(first, scratch, uniq):
    """Relabel step 1: ``scratch[first[i]] = i``, ``uniq[i] = first[i]``. Returns the position
    of the first repeated entry (the entries before it are entered, the rest not), else -1."""
    for i in range(first.shape[0]):
        v = first[i]
        if scratch[v] != -1:
            return i
        scratch[v] = i
        uniq[i] = v
    return -1


@njit(nogil=True, cache=True)
def _relabel_more(rest, local, scratch, uniq, num):
    """Relabel step 2: new nodes of ``rest`` get ids ``num, num + 1, ...`` in order of first
    appearance (``uniq[id] = node``); ``local[e]`` = id of ``rest[e]`` (``local`` may be
    ``rest``; ``uniq`` has room for ``num + len(rest)``). Returns the new ``num``.

    Branch-free: whether a node is new is a coin flip on large layers, and mispredicting it
    cost more than the unconditional stores (this loop ran ~3x slower with the branch)."""
    for e in range(rest.shape[0]):
        u = rest[e]
        loc = scratch[u]
        new = loc == -1
        if new:   # a select, not a branch
            loc = num
        scratch[u] = loc
        uniq[num] = u   # kept only if new: the next new node overwrites it otherwise
        num += new
        local[e] = loc
    return num


@njit(nogil=True, cache=True)
def _relabel_reset(scratch, uniq, num):
    """Relabel step 3: ``scratch`` back to all -1."""
    for j in range(num):
        scratch[uniq[j]] = -1


@njit(nogil=True, cache=True)
def _relabel_into(first, rest, local, scratch, uniq):
    """``_relabel_first_appearance`` writing the unique nodes into ``uniq`` (at least
    ``len(first) + len(rest)`` long); returns ``(num, dup)``, ``uniq[:num]`` being the nodes."""
    dup = _relabel_start(first, scratch, uniq)
    if dup >= 0:
        num = dup
    else:
        num = _relabel_more(rest, local, scratch, uniq, first.shape[0])
    _relabel_reset(scratch, uniq, num)
    return num, dup


@njit(nogil=True, cache=True)
def _relabel_first_appearance(first, rest, local, scratch):
    """Unique nodes of ``concat(first, rest)`` in order of first appearance, ``first`` first;
    writes the local id of every ``rest[e]`` into ``local[e]`` (``local`` may be ``rest`` itself:
    each entry is read before it is written). Returns ``(uniq, dup)``: ``dup`` is the position of
    the first repeated entry of ``first`` (then ``uniq`` stops before it and ``local`` is not
    written), else -1. ``scratch`` (node-sized int32, all -1) is left as found."""
    uniq = np.empty(first.shape[0] + rest.shape[0], first.dtype)
    num, dup = _relabel_into(first, rest, local, scratch, uniq)
    return uniq[:num], dup


_SEED_BLOCK = 64   # seeds per parallel work item of the layer kernel


def _layer_py(indptr, indices, eids, has_eids, seeds, fanout, replace, key, offsets, counted,
              flat, scratch, uniq, relabel, excl):
    """One layer in one call. Unless ``counted``, first ``offsets``: the prefix sum of the edges
    drawn per seed (``offsets[0] = 0``). Then every seed writes its own slice
    ``[offsets[i], offsets[i + 1])`` of the ``E = offsets[-1]`` global sources (``flat[:E]``),
    local destinations (``flat[E:2E]``) and edge ids (``flat[2E:3E]``); ``flat`` and ``uniq``
    are sized for an upper bound of ``E``. Then, with ``relabel``, the sequential
    first-appearance relabel of the sources (in place) into ``uniq``. Returns
    ``(E, num, dup)``: ``uniq[:num]`` are the block's source nodes, ``dup`` as in
    ``sample_layer``. ``excl``: ascending CSC positions removed before the draws (may be
    empty)."""
    n = seeds.shape[0]
    if not counted:   # sequential: a second parallel region would cost more (see _SERIAL_MAX_EDGES)
        offsets[0] = 0
        for i in range(n):
            v = seeds[i]
            start = np.int64(indptr[v])
            deg, _, _ = _kept_degree(excl, start, np.int64(indptr[v + 1]) - start)
            offsets[i + 1] = offsets[i] + _num_picks(deg, fanout, replace)
    total = offsets[n]
    src = flat[:total]
    dst = flat[total:2 * total]
    eid = flat[2 * total:3 * total]
    # Blocks of seeds: each block first draws its seeds' neighbours' CSC positions into
    # eid[o:o + k] (reads indptr only, which the count left in cache), then gathers the sources
    # and edge ids at those positions in one flat, branch-free loop over the block's edges,
    # which keeps many of these cache misses in flight (~30% faster than gathering seed by seed).
    blocks = (n + _SEED_BLOCK - 1) // _SEED_BLOCK
    for b in prange(blocks):
        lo = b * _SEED_BLOCK
        hi = min(lo + _SEED_BLOCK, n)
        for i in range(lo, hi):
            v = seeds[i]
            o = offsets[i]
            k = offsets[i + 1] - o
            start = np.int64(indptr[v])
            deg, xlo, xhi = _kept_degree(excl, start, np.int64(indptr[v + 1]) - start)
            for t in range(k):
                dst[o + t] = i
            if _take_all(deg, fanout, replace):
                for t in range(k):
                    eid[o + t] = start + t if xhi == xlo else _nth_kept(start, t, excl, xlo, xhi)
                continue
            if replace:
                for t in range(k):
                    eid[o + t] = _uniform_below(_draw(key, v, t), deg)
            else:  # Floyd's algorithm
                _floyd(key, v, deg, k, eid, o)
            if xhi == xlo:
                for t in range(k):
                    eid[o + t] += start
            else:
                for t in range(k):
                    eid[o + t] = _nth_kept(start, eid[o + t], excl, xlo, xhi)
        for e in range(offsets[lo], offsets[hi]):
            pos = eid[e]
            src[e] = indices[pos]
            eid[e] = eids[pos] if has_eids else pos
    if not relabel:
        return total, 0, -1
    dup = _relabel_start(seeds, scratch, uniq)
    num = dup if dup >= 0 else _relabel_more(src, src, scratch, uniq, n)
    _relabel_reset(scratch, uniq, num)
    return total, num, dup


def _count_py(indptr, seeds, fanout, replace, offsets, excl):
    """``offsets``: prefix sum of the edges drawn per seed (``offsets[0] = 0``)."""
    n = seeds.shape[0]
    offsets[0] = 0
    for i in prange(n):
        v = seeds[i]
        start = np.int64(indptr[v])
        deg, _, _ = _kept_degree(excl, start, np.int64(indptr[v + 1]) - start)
        offsets[i + 1] = _num_picks(deg, fanout, replace)
    _scan(offsets, n)


@ParallelKernel
def _layer():
    """The layer kernel (parallel and serial builds, called under the library's thread / fork
    guard, see ``unified_tensor._numba_guard``)."""
    return _layer_py


@ParallelKernel
def _count():
    """The per-seed edge counts, for a layer whose size has no small bound (fanout -1)."""
    return _count_py


# Layers with at most this many edges run the kernel's serial build: a parallel launch costs
# more than it saves there, and far more on a loaded machine (a thread descheduled at the
# barrier). On an idle 2-core VM a [15, 10, 5] batch of 1024 seeds is ~1 ms faster with its
# ~50K-edge middle layer still parallel (1 << 15) than serial (1 << 16).
_SERIAL_MAX_EDGES = 1 << 15

# With a fanout, a layer has at most ``seeds x fanout`` edges: the buffers are sized by that
# bound and counting is part of the one kernel launch. Above this many edges (or with fanout
# -1) the edges are counted first, in a launch of their own, and the buffers sized exactly.
_BOUND_MAX_EDGES = 1 << 22


def _sample_layer_py(indptr, indices, eids, has_eids, seeds, fanout, replace, key, scratch,
                     relabel, excl):
    """One layer for ``sample_layer``: outputs carved from one recycled buffer (see
    ``_Recycler``), one kernel launch."""
    n = seeds.shape[0]
    offsets = np.empty(n + 1, np.int64)
    bound = n * int(fanout) if fanout >= 0 else -1
    counted = not 0 <= bound <= _BOUND_MAX_EDGES
    if counted:
        _count(indptr, seeds, fanout, replace, offsets, excl)
        bound = int(offsets[n])
    parts = [((3 * bound,), np.int64), ((n + bound if relabel else 0,), seeds.dtype)]
    flat, uniq = _carve(_POOL.take(_layer_bytes(parts)), parts)
    kernel = _layer
    if bound <= _SERIAL_MAX_EDGES:   # serial build: no threads, so no guard needed
        kernel = (_layer._builds or _layer._get_builds())[1]
    total, num, dup = kernel(indptr, indices, eids, has_eids, seeds, fanout, replace, key,
                             offsets, counted, flat, scratch, uniq, relabel, excl)
    edge_index = flat[:2 * total].reshape(2, total)
    eid = flat[2 * total:3 * total]
    if not relabel:   # raw: row 0 keeps the global source ids (heterogeneous relabel is per type)
        return seeds[:0], edge_index, eid, -1
    return uniq[:num], edge_index, eid, int(dup)


class _Recycler:
    """Large output buffers of the CPU sampler, recycled once nothing else refers to them.

    A layer's outputs (tens of MB on big graphs) are written once and dropped with the batch.
    Fresh from ``malloc`` they are fresh pages: one page fault per 4 KiB on first touch (~1 us
    each on a VM, a third of a layer's time), as glibc gives freed memory back to the system
    between batches. The pool keeps the arrays that own the memory; NumPy views (and so every
    ``torch.from_numpy`` tensor over one) refer to that owner directly, so an owner whose only
    reference is the pool's is unused and is handed out again; results stay valid as long as
    the caller keeps them. The pool keeps at most ``max_buffers`` buffers and ``max_bytes``
    in all (about the memory of the batches in flight); a buffer more than 4x a request is not
    used for it; requests under ``min_bytes`` are not pooled (``malloc`` reuses small blocks
    well). A process forked while another thread held the lock gets it back free (see
    ``unified_tensor._numba_guard.reset_locks_after_fork``).
    """

    def __init__(self, max_buffers: int = 64, max_bytes: int = 1 << 31,
                 min_bytes: int = 1 << 18) -> None:
        self._owners: List[np.ndarray] = []
        self._lock = threading.Lock()
        self._fork_safe = False
        self.max_buffers = max_buffers
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes

    def _locked(self) -> threading.Lock:
        """The lock; the first call registers it to be replaced in forked children (not at
        construction: the module-level pool is made at import)."""
        if not self._fork_safe:
            reset_locks_after_fork(self, "_lock")
            self._fork_safe = True
        return self._lock

    def _free(self, i: int) -> bool:
        # 2 references: the list's and getrefcount's argument.
        return sys.getrefcount(self._owners[i]) == 2

    def take(self, nbytes: int) -> np.ndarray:
        """A 64-byte aligned uint8 array of ``nbytes`` (uninitialised)."""
        if nbytes < self.min_bytes:
            return _aligned(np.empty(nbytes + 64, np.uint8), nbytes)
        with self._locked():
            best = -1
            for i in range(len(self._owners)):
                cap = self._owners[i].shape[0] - 64
                if nbytes <= cap <= 4 * nbytes and self._free(i) and (
                        best < 0 or cap < self._owners[best].shape[0] - 64):
                    best = i
            if best >= 0:
                return _aligned(self._owners[best], nbytes)
            # Some headroom, so that the next batch's slightly larger layer fits too.
            owner = np.empty(nbytes + nbytes // 8 + 64, np.uint8)
            free = [i for i in range(len(self._owners)) if self._free(i)]
            free.sort(key=lambda i: self._owners[i].shape[0])
            held = sum(o.shape[0] for o in self._owners)
            # Make room by dropping unused buffers, smallest first; pool it if that suffices.
            drop = set()
            while free and (len(self._owners) - len(drop) >= self.max_buffers
                            or held + owner.shape[0] > self.max_bytes):
                i = free.pop(0)
                drop.add(i)
                held -= self._owners[i].shape[0]
            self._owners = [o for i, o in enumerate(self._owners) if i not in drop]
            if len(self._owners) < self.max_buffers and held + owner.shape[0] <= self.max_bytes:
                self._owners.append(owner)
            return _aligned(owner, nbytes)


def _aligned(owner: np.ndarray, nbytes: int) -> np.ndarray:
    start = (-owner.ctypes.data) % 64
    return owner[start:start + nbytes]


_POOL = _Recycler()


def _carve(buf: np.ndarray, parts: List[Tuple[Tuple[int, ...], np.dtype]]) -> List[np.ndarray]:
    """Consecutive arrays of the given shapes and dtypes over ``buf`` (8-byte aligned each)."""
    out, pos = [], 0
    for shape, dtype in parts:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        out.append(buf[pos:pos + nbytes].view(dtype).reshape(shape))
        pos += (nbytes + 7) // 8 * 8
    return out


def _layer_bytes(parts: List[Tuple[Tuple[int, ...], np.dtype]]) -> int:
    return sum((math.prod(shape) * np.dtype(dtype).itemsize + 7) // 8 * 8 for shape, dtype in parts)


_warned = False


def sample_layer(indptr: np.ndarray, indices: np.ndarray, eids, seeds: np.ndarray, fanout: int,
                 replace: bool, key: int, scratch: Optional[np.ndarray], relabel: bool = True,
                 excl: Optional[np.ndarray] = None):
    """Sample one layer on the CPU.

    Returns ``(src_nodes, edge_index, edge_ids, dup)``: the block's source nodes (``seeds`` first),
    ``[2, E]`` int64 local edges, int64 global edge ids, and ``dup`` = the position of the first
    repeated seed, or -1 (then the other outputs are meaningless). ``scratch`` is a node-sized
    int32 array of -1, left as found. With ``relabel=False`` (heterogeneous graphs, where sources
    and destinations are different node types) ``src_nodes`` is empty, row 0 of ``edge_index``
    holds the global source ids, ``dup`` is -1 and ``scratch`` is not used (may be ``None``).
    The outputs are views of one buffer that is recycled once nothing refers to it any more
    (see ``_Recycler``); all on the CPU. ``excl``: ascending, distinct int64 CSC positions
    removed before the draws (link prediction's seed edges and their reverses), or ``None``.
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
    excl = _NO_EXCL if excl is None else np.ascontiguousarray(excl, dtype=np.int64)
    return _sample_layer_py(indptr, indices, eids, has_eids, seeds, np.int64(fanout),
                            bool(replace), np.uint64(key), scratch, bool(relabel), excl)


_NO_EXCL = np.empty(0, np.int64)


def relabel_rows_cpu(first: np.ndarray, rows: List[np.ndarray], scratch: np.ndarray) -> np.ndarray:
    """:func:`relabel_cpu` of ``first`` and the concatenation of ``rows``, without concatenating:
    every row (int64 node ids) is turned into local ids in place. Returns the unique nodes
    (``first``'s dtype). Relabels a heterogeneous layer's source type over its edge types."""
    total = first.shape[0] + sum(int(r.shape[0]) for r in rows)
    (uniq,) = _carve(_POOL.take(_layer_bytes([((total,), first.dtype)])), [((total,), first.dtype)])
    dup = _relabel_start(first, scratch, uniq)
    if dup >= 0:
        _relabel_reset(scratch, uniq, dup)
        raise ValueError(f"relabel_rows_cpu: first must be distinct, got {first[dup]} twice")
    num = first.shape[0]
    for r in rows:
        num = _relabel_more(r, r, scratch, uniq, num)
    _relabel_reset(scratch, uniq, num)
    return uniq[:num]


def relabel_cpu(first: np.ndarray, rest: np.ndarray, scratch: np.ndarray):
    """Unique nodes of ``concat(first, rest)`` in order of first appearance (``first`` must be
    distinct and comes first) and the local id of every entry of ``rest``; ``scratch`` is a
    node-sized int32 array of -1, left as found. The CPU twin of ``relabel_first_appearance``."""
    local = np.empty(rest.shape[0], np.int64)
    uniq, dup = _relabel_first_appearance(first, rest.astype(first.dtype, copy=False), local, scratch)
    if dup >= 0:
        raise ValueError(f"relabel_cpu: first must be distinct, got {first[dup]} twice")
    return uniq, local


# ------------------------------------------------------------------------------ temporal sampling
@njit(inline="always", nogil=True, cache=True)
def _time_at(time, indices, p, by_edge):
    """The time of CSC position ``p``: its edge's (``by_edge``) or its source node's."""
    return time[p] if by_edge else time[indices[p]]


def _temporal_py(indptr, indices, eids, has_eids, seeds, seed_time, time, has_time, by_edge,
                 fanout, replace, last, key, offsets):
    """One temporal layer (PyG's ``time_attr``): seed ``i`` draws only among its in-edges ``p``
    whose time is at most ``seed_time[i]`` (all of them when ``not has_time``); the time of ``p``
    is ``time[p]`` with ``by_edge`` (edge-level, one time per CSC position), else
    ``time[indices[p]]`` (node-level, its source's). Uniformly (the usual draws over its eligible
    in-edges, in CSC order) or, with ``last``, among the ``fanout`` most recent (ties: the later
    CSC position): all of them, or with ``replace`` ``fanout`` draws with replacement from them
    (pyg-lib's window). ``offsets`` (``n + 1``) receives the prefix sum of the edges per seed.
    Returns ``(src, dst_pos, eid)`` (int64)."""
    n = seeds.shape[0]
    offsets[0] = 0
    for i in prange(n):
        v = seeds[i]
        start, end = np.int64(indptr[v]), np.int64(indptr[v + 1])
        c = np.int64(0)
        for p in range(start, end):
            if not has_time or _time_at(time, indices, p, by_edge) <= seed_time[i]:
                c += 1
        offsets[i + 1] = _num_picks(c, fanout, replace)
    src, dst, eid = _scan_and_outputs(offsets, n)
    for i in prange(n):
        o = offsets[i]
        k = offsets[i + 1] - o
        if k == 0:
            continue
        v = seeds[i]
        start, end = np.int64(indptr[v]), np.int64(indptr[v + 1])
        elig = np.empty(end - start, np.int64)
        e = 0
        for p in range(start, end):
            if not has_time or _time_at(time, indices, p, by_edge) <= seed_time[i]:
                elig[e] = p
                e += 1
        if _take_all(e, fanout, replace):
            for t in range(k):
                eid[o + t] = elig[t]
        elif last:   # the most recent: stable sort by time keeps CSC order among equals
            times = np.empty(e, time.dtype)
            for t in range(e):
                times[t] = _time_at(time, indices, elig[t], by_edge)
            order = np.argsort(times, kind="mergesort")
            w = min(fanout, e)   # the window of the w most recent in-edges
            for t in range(k):
                r = _uniform_below(_draw(key, v, t), w) if replace else t
                eid[o + t] = elig[order[e - w + r]]
        elif replace:
            for t in range(k):
                eid[o + t] = elig[_uniform_below(_draw(key, v, t), e)]
        else:        # Floyd's algorithm over the eligible in-edges
            _floyd(key, v, e, k, dst, o)
            for t in range(k):
                eid[o + t] = elig[dst[o + t]]
        _emit(indices, eids, has_eids, i, o, k, src, dst, eid)
    return src, dst, eid


@ParallelKernel
def _temporal():
    """The temporal layer kernel (parallel and serial builds, under the library's guard)."""
    return _temporal_py


def sample_layer_temporal(indptr: np.ndarray, indices: np.ndarray, eids, seeds: np.ndarray,
                          seed_time: np.ndarray, node_time: Optional[np.ndarray], fanout: int,
                          replace: bool, last: bool, key: int,
                          edge_time: Optional[np.ndarray] = None):
    """Temporal neighbour sampling of one layer on the CPU (PyG's ``time_attr`` with
    ``temporal_strategy`` ``"uniform"`` or ``"last"``): ``seeds[i]`` draws among its in-edges no
    newer than ``seed_time[i]``. Node-level: an in-edge is as old as its source,
    ``node_time[src]``. Edge-level (``edge_time``: one time per CSC position, ``node_time`` then
    ``None``): as old as ``edge_time[p]``. Neither (a type without times): all in-edges are
    eligible. ``"last"`` takes the ``fanout`` most recent eligible in-edges (ties: the later CSC
    position); with ``replace`` it draws ``fanout`` times from them, as pyg-lib does. The times
    share one dtype (int64 or float64). Returns ``(src, dst_pos, eid)``: int64 global sources,
    positions in ``seeds`` and global edge ids, grouped by seed; the draws are the plain
    sampler's (``ut::draw`` keyed by ``(key, node, t)``) over the eligible in-edges in CSC order.
    All on the CPU."""
    if node_time is not None and edge_time is not None:
        raise ValueError("sample_layer_temporal: pass node_time or edge_time, not both")
    has_eids = eids is not None
    if eids is None:
        eids = indices[:0]
    by_edge = edge_time is not None
    time = edge_time if by_edge else node_time
    has_time = time is not None
    if time is None:
        time = seed_time[:0]
    elif by_edge and time.shape[0] != indices.shape[0]:
        raise ValueError(f"sample_layer_temporal: edge_time must have one entry per edge "
                         f"({indices.shape[0]}), got {time.shape[0]}")
    offsets = np.empty(seeds.shape[0] + 1, np.int64)
    return _temporal(indptr, indices, eids, has_eids, seeds, seed_time, time, has_time, by_edge,
                     np.int64(fanout), bool(replace), bool(last), np.uint64(key), offsets)


# ------------------------------------------------------------------------------ weighted sampling
_U53 = 1.0 / 9007199254740992.0   # 2^-53


def _weighted_py(indptr, indices, eids, has_eids, seeds, weight, fanout, replace, key, offsets):
    """One weighted layer (PyG's ``weight_attr``): in-edge ``p`` of a seed is drawn with
    probability proportional to ``weight[p]`` (CSC order; 0: never). Without replacement by
    Efraimidis-Spirakis keys ``log(u) / w`` (the ``fanout`` largest), with replacement by inverse
    CDF; ``u`` from ``ut::draw(key, node, j)`` as every other draw. Returns ``(src, dst_pos,
    eid)`` (int64)."""
    n = seeds.shape[0]
    offsets[0] = 0
    for i in prange(n):
        v = seeds[i]
        c = np.int64(0)
        for p in range(np.int64(indptr[v]), np.int64(indptr[v + 1])):
            if weight[p] > 0:
                c += 1
        offsets[i + 1] = _num_picks(c, fanout, replace)
    src, dst, eid = _scan_and_outputs(offsets, n)
    for i in prange(n):
        o = offsets[i]
        k = offsets[i + 1] - o
        if k == 0:
            continue
        v = seeds[i]
        start, end = np.int64(indptr[v]), np.int64(indptr[v + 1])
        deg = end - start
        c = np.int64(0)
        for p in range(start, end):
            if weight[p] > 0:
                c += 1
        if _take_all(c, fanout, replace):
            t = 0
            for p in range(start, end):
                if weight[p] > 0:
                    eid[o + t] = p
                    t += 1
        elif replace:   # inverse CDF over the cumulative weights
            tot = 0.0
            for p in range(start, end):
                tot += weight[p]
            for t in range(k):
                r = (np.float64(_draw(key, v, t) >> np.uint64(11)) + 1.0) * _U53 * tot
                acc = 0.0
                pick = end - 1
                for p in range(start, end):
                    acc += weight[p]
                    if weight[p] > 0 and acc >= r:
                        pick = p
                        break
                while weight[pick] <= 0:   # rounding at the very end: the last positive weight
                    pick -= 1
                eid[o + t] = pick
        else:           # the k largest keys log(u) / w among positive weights
            keys = np.empty(deg, np.float64)
            for j in range(deg):
                w = weight[start + j]
                if w > 0:
                    u = (np.float64(_draw(key, v, j) >> np.uint64(11)) + 1.0) * _U53
                    keys[j] = np.log(u) / w
                else:
                    keys[j] = -np.inf
            order = np.argsort(keys, kind="mergesort")
            for t in range(k):
                eid[o + t] = start + order[deg - k + t]
        _emit(indices, eids, has_eids, i, o, k, src, dst, eid)
    return src, dst, eid


@ParallelKernel
def _weighted():
    """The weighted layer kernel (parallel and serial builds, under the library's guard)."""
    return _weighted_py


def sample_layer_weighted(indptr: np.ndarray, indices: np.ndarray, eids, seeds: np.ndarray,
                          weight: np.ndarray, fanout: int, replace: bool, key: int):
    """Weighted neighbour sampling of one layer on the CPU (PyG's ``weight_attr``): ``weight``
    (float64, one per CSC position, >= 0) makes in-edge ``p`` drawn with probability
    proportional to ``weight[p]``; zero-weight in-edges are never drawn. Returns ``(src,
    dst_pos, eid)``: int64 global sources, positions in ``seeds`` and global edge ids."""
    has_eids = eids is not None
    if eids is None:
        eids = indices[:0]
    offsets = np.empty(seeds.shape[0] + 1, np.int64)
    return _weighted(indptr, indices, eids, has_eids, seeds,
                     np.ascontiguousarray(weight, dtype=np.float64), np.int64(fanout),
                     bool(replace), np.uint64(key), offsets)
