"""GPU hot-row cache: the most-read rows of a host table kept in GPU memory.

``ut.cache(feats, ...)`` copies chosen rows of a :class:`~unified_tensor.UnifiedTensor` into GPU
memory once; from then on every CUDA gather from ``feats`` on that GPU reads those rows from the
copy and only the others over PCIe, in the same kernel: no extra launch, no host sync, and the
result is the same tensor as without a cache. With neighbour sampling a few rows are read far more
often than the rest (high out-degree nodes are drawn as in-neighbours of many nodes), so a cache
of a small fraction of the rows takes a large share of the reads off PCIe (PaGraph, GNNLab).

Per cached GPU: the rows (``k * row_bytes``) and a slot map of 4 bytes per table row (``int32``,
the row's slot or -1). The cache is a copy that follows the table: a write through the
UnifiedTensor (any route: ``feats[i] = v``, ``torch.nn.init.normal_(tensor=feats)``,
``out=(feats, idx)``, a view's ``mul_``; see ``_writes.py``) refreshes the cached rows that write
touched (the rows of an indexed write, the row range of a slice or view; all of them when more
than half the cached rows are touched), and any other write torch counts (through the tensor it
wraps, or an older plain view) is seen by the next gather, which compares the table's version
counter with the one the cache was filled at and then refreshes every cached row. Writes torch
does not count (through ``.data`` or a NumPy array over the memory) need ``ut.cache(feats, ...)``
again.

A refresh never syncs the host. It reads the new rows with the zero-copy gather kernel on the
refreshing thread's current stream, after that stream has waited (on the GPU) for every stream a
gather has read the cache on, and those streams then wait for it: a gather enqueued before the
refresh reads the old rows, one enqueued after it the new rows, never a mix (enqueueing a gather
and a refresh are serialised by the cache's lock, across threads). An asynchronous copy into the
table (``feats.copy_(src, non_blocking=True)``) is on the writer's current stream, so the refresh
that follows it on that stream reads what it wrote.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from ._streams import to_device_async

__all__ = ["GpuRowCache", "cache", "uncache", "cache_info"]

_CHUNK_BYTES = 64 << 20   # host rows staged per copy when (re)filling a cache


# What a write touched, in rows of the table: ``(lo, hi)`` ranges and CPU int64 tensors of row ids.
DirtyRows = List[Union[Tuple[int, int], torch.Tensor]]


class GpuRowCache:
    """Rows ``ids`` of one table held on one CUDA device."""

    def __init__(self, table: Any, ids: torch.Tensor, device: torch.device):
        plain = table._ut_plain
        n = plain.shape[0]
        self.device = device
        self.ids = ids                                    # CPU int64, distinct, in [0, n); by slot
        k = ids.numel()
        self.rows = torch.empty((k,) + tuple(plain.shape[1:]), dtype=plain.dtype, device=device)
        slot_of = torch.full((n,), -1, dtype=torch.int32)
        slot_of[ids] = torch.arange(k, dtype=torch.int32)
        self.slot_of = slot_of.to(device)
        # the cached row ids in ascending order and their slots: which slots a write touched
        self._sorted_ids, self._sorted_slots = torch.sort(ids)
        self.lock = threading.RLock()   # enqueueing a gather that reads the rows vs a refresh
        self.stream = torch.cuda.current_stream(device)   # where the memory was allocated
        self._streams = {self.stream}
        self._ready = None   # event recorded after the last fill: new reader streams wait on it
        self.version = -1
        self.refresh(table)

    def note_stream(self, stream) -> None:
        """A gather on ``stream`` reads this cache: tell PyTorch's allocator (``record_stream``),
        so the memory is not handed out again before that stream's kernels are done, whoever
        drops the last reference and when (no sync); a stream new to the cache waits (on the
        GPU) for the last fill. Call it with :attr:`lock` held, up to the gather's launch."""
        if stream not in self._streams:
            from ._checks import stream_capturing

            self.rows.record_stream(stream)
            self.slot_of.record_stream(stream)
            # (a capturing stream may not wait on an event recorded outside its capture; the fill
            # it would wait for was enqueued before the capture began)
            if self._ready is not None and not stream_capturing(stream):
                stream.wait_event(self._ready)
            self._streams.add(stream)

    def refresh(self, table: Any, rows: Optional[DirtyRows] = None,
                version_before: Optional[int] = None, wait_default: bool = False,
                if_stale: bool = False) -> int:
        """Copy cached rows of ``table`` again (after it changed): those among ``rows`` (what a
        write touched) when the cache was current at ``version_before`` (the table's version
        before that write), else all. Stream-ordered, no host sync (see the module docstring);
        ``wait_default``: the change may have come from an unknown stream, so the default stream
        is waited for too; ``if_stale``: only if the table's version moved since the last fill
        (another thread may have refreshed meanwhile). Returns the number of rows copied."""
        from ._checks import capturing

        plain = table._ut_plain
        with self.lock:
            if if_stale and self.version == plain._version:
                return 0
            if rows is not None and version_before is not None and self.version != version_before:
                rows = None   # a change the watch never saw came first: refresh everything
            slots = None if rows is None else self._slots_of(rows)
            if slots is not None and 2 * slots.numel() > self.ids.numel():
                slots = None  # most of the cache: the contiguous full copy is cheaper
            if slots is not None and slots.numel() == 0:
                self.version = plain._version
                return 0
            if capturing():
                # Under CUDA graph capture nothing may be waited for or copied outside the graph;
                # leave the version stale: the first gather after the capture refreshes.
                return 0
            copied = self._copy(table, slots, wait_default)
            # torch counts every in-place write to the table and to any view of it (the user's own
            # tensor included: ut.unified shares it): a different count later means rows changed
            self.version = plain._version
            return copied

    def _slots_of(self, rows: DirtyRows) -> torch.Tensor:
        """The slots (ascending, distinct, CPU int64) of the cached rows among ``rows``."""
        sid, sslot, k = self._sorted_ids, self._sorted_slots, self.ids.numel()
        parts = []
        for r in rows:
            if isinstance(r, tuple):
                lo, hi = (int(torch.searchsorted(sid, torch.tensor(v))) for v in r)
                parts.append(sslot[lo:hi])
            elif r.numel() and k:
                r = r.reshape(-1).to(torch.int64)
                pos = torch.searchsorted(sid, r).clamp_(max=k - 1)
                hit = sid[pos] == r
                parts.append(sslot[pos[hit]])
        if not parts:
            return torch.empty(0, dtype=torch.int64)
        return torch.unique(torch.cat(parts))

    def _copy(self, table: Any, slots: Optional[torch.Tensor], wait_default: bool) -> int:
        """Read cached rows (``slots``, or all) from the host table into :attr:`rows` with the
        zero-copy gather kernel, ordered against every reader stream (see the module docstring)."""
        from . import _gather_cuda
        from ._checks import stream_capturing
        from ._tensor import device_pointer

        plain = table._ut_plain
        k = self.ids.numel()
        n = plain.shape[0]
        row_bytes = plain[0].numel() * plain.element_size() if n else 0
        if k == 0 or row_bytes == 0:
            return 0
        dev = self.device
        dev_ptr = device_pointer(table)
        with torch.cuda.device(dev):
            cur = torch.cuda.current_stream(dev)
            waits = set(self._streams)
            if wait_default:
                waits.add(torch.cuda.default_stream(dev))
            # a stream capturing a graph (another thread's) is left alone: waiting on it or
            # making it wait would pull this refresh into the graph
            waits = [s for s in waits if s != cur and not stream_capturing(s)]
            for s in waits:   # gathers already enqueued read the old rows to the end
                cur.wait_stream(s)
            self.note_stream(cur)   # the rows are written on cur
            step = max(1, _CHUNK_BYTES // row_bytes)
            total = k if slots is None else slots.numel()
            for s in range(0, total, step):
                if slots is None:   # slots s..e hold ids[s:e]: gather straight into the rows
                    idx = to_device_async(self.ids[s:s + step], dev)
                    _gather_cuda.gather_rows_cuda(dev_ptr, n, row_bytes, idx, self.rows[s:s + step])
                else:
                    sl = slots[s:s + step]
                    both = to_device_async(torch.stack([self.ids[sl], sl]), dev)
                    tmp = torch.empty((sl.numel(),) + tuple(self.rows.shape[1:]),
                                      dtype=self.rows.dtype, device=dev)
                    _gather_cuda.gather_rows_cuda(dev_ptr, n, row_bytes, both[0], tmp)
                    self.rows.index_copy_(0, both[1], tmp)
            ev = torch.cuda.Event()
            ev.record(cur)
            self._ready = ev
            for s in self._streams:   # gathers enqueued from now on read the new rows
                if s != cur and not stream_capturing(s):
                    s.wait_event(ev)
        return total

    @property
    def nbytes(self) -> int:
        """GPU bytes held: the rows and the slot map."""
        return self.rows.numel() * self.rows.element_size() + self.slot_of.numel() * 4

    def hit_rate(self, index: torch.Tensor) -> float:
        """Share of ``index`` this cache serves (one host sync; for tuning). Out-of-range ids
        count as misses (never looked up)."""
        index = index.to(self.device).reshape(-1).long()
        if index.numel() == 0:
            return 0.0
        n = self.slot_of.numel()
        valid = (index >= -n) & (index < n)
        index = torch.where(valid, torch.where(index < 0, index + n, index), 0)
        return float(((self.slot_of[index] >= 0) & valid).float().mean())


def _values_of(table):
    """The UnifiedTensor whose rows a cache holds: ``table``, or a compressed table's stored
    values (so ``max_bytes`` counts compressed bytes)."""
    from ._compressed import CompressedTensor

    return table._ut_values if isinstance(table, CompressedTensor) else table


def _device_of(device, what: str = "ut.cache") -> torch.device:
    """The CUDA device a cache lives on: ``None`` (the current one), an int (``cuda:i``), a str
    or a ``torch.device``. ``ValueError`` for a non-CUDA device, ``RuntimeError`` when torch sees
    no CUDA device (never torch's own "not compiled with CUDA" assertion)."""
    if device is not None:
        if isinstance(device, bool) or not isinstance(device, (int, str, torch.device)):
            raise TypeError(f"{what}: device must be None, an int, a str or a torch.device, got "
                            f"{type(device).__name__}")
        if isinstance(device, int):   # torch.device(0) means "accelerator 0", which may not be CUDA
            if device < 0:
                raise ValueError(f"{what}: device index must be >= 0, got {device}")
            device = torch.device("cuda", device)
        else:
            try:
                device = torch.device(device)
            except RuntimeError as exc:
                raise ValueError(f"{what}: {device!r} is not a device ({exc})") from None
        if device.type != "cuda":
            raise ValueError(f"{what} keeps rows in GPU memory: device must be CUDA, got {device}")
    if not torch.cuda.is_available():
        raise RuntimeError(f"{what} needs a CUDA device, and torch sees none")
    if device is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    elif torch.cuda.is_available() and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def _select(n: int, row_bytes: int, ids, hotness, max_rows, max_bytes) -> torch.Tensor:
    """The row ids to cache (CPU int64), validated."""
    from ._gather import as_index_tensor

    if (ids is None) == (hotness is None):
        raise TypeError("ut.cache takes either ids= (the rows to cache) or hotness= (a score per "
                        "row, highest cached first), not both and not neither")
    for name, v in (("max_rows", max_rows), ("max_bytes", max_bytes)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if ids is not None:
        if max_rows is not None or max_bytes is not None:
            raise TypeError("max_rows= / max_bytes= size a cache chosen by hotness=; with ids= the "
                            "ids are the cache")
        ids = as_index_tensor(ids, "ids")
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
        ids = ids.to("cpu", torch.int64)
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= n:
                raise IndexError(f"ids must be row ids in [0, {n}), got {lo if lo < 0 else hi}")
            if torch.unique(ids).numel() != ids.numel():
                raise ValueError("ids must be distinct (a row is cached once)")
        return ids
    if not isinstance(hotness, torch.Tensor):
        raise TypeError(f"hotness must be a tensor of one score per row, got {type(hotness).__name__}")
    if hotness.shape != (n,):
        raise ValueError(f"hotness must have shape ({n},) (one score per table row), got "
                         f"{tuple(hotness.shape)}")
    if hotness.dtype == torch.bool or hotness.is_complex():
        raise TypeError(f"hotness must be real scores, got dtype {hotness.dtype}")
    if max_rows is None and max_bytes is None:
        raise TypeError("with hotness= give max_rows= and/or max_bytes= (GPU bytes for the rows "
                        "and the 4-byte-per-row slot map)")
    k = n if max_rows is None else min(n, max_rows)
    if max_bytes is not None:
        left = max_bytes - 4 * n
        if left < 0:
            raise ValueError(f"max_bytes={max_bytes} does not even hold the slot map "
                             f"(4 bytes per row: {4 * n} bytes)")
        k = min(k, left // row_bytes if row_bytes else n)
    h = hotness.detach().to("cpu")
    if h.is_floating_point() and bool(torch.isnan(h).any()):
        raise ValueError("hotness contains NaN")
    order = torch.argsort(h, descending=True, stable=True)   # ties: lower row id first
    return order[:k].to(torch.int64).contiguous()


def cache(table, ids=None, *, hotness: Optional[torch.Tensor] = None, max_rows: Optional[int] = None,
          max_bytes: Optional[int] = None, device: Union[None, str, int, torch.device] = None):
    """Keep rows of ``table`` in GPU memory; CUDA gathers on that GPU read them from there.

    Parameters
    ----------
    table : UnifiedTensor
        The host table (``ut.unified(x)``).
    ids : tensor, array or list of ints, optional
        The rows to cache (distinct, in ``[0, len(table))``).
    hotness : torch.Tensor, optional
        Instead of ``ids``: a score per row (e.g. ``graph.out_degrees()``, or how often a
        presampling run read each row); the highest-scoring rows are cached, as many as
        ``max_rows`` and ``max_bytes`` allow.
    max_rows, max_bytes : int, optional
        Size of a cache chosen by ``hotness``. ``max_bytes`` counts the GPU memory of the rows
        and of the slot map (4 bytes per table row).
    device : CUDA device, optional
        Default: the current CUDA device. Each GPU has its own cache; caching again on a GPU
        replaces its cache.

    Returns
    -------
    UnifiedTensor
        ``table`` itself. Results of gathers do not change, only where rows are read from.

    Examples
    --------
    >>> feats = ut.unified(feats)
    >>> ut.cache(feats, hotness=graph.out_degrees(), max_bytes=4 << 30)   # 4 GiB of hot rows
    """
    from ._deps import cuda_available
    from ._tensor import UnifiedTensor

    user_table = table
    table = _values_of(table)   # a compressed table caches its compressed rows
    if not isinstance(table, UnifiedTensor):
        raise TypeError(f"ut.cache expects a UnifiedTensor (ut.unified(x)) or a compressed table "
                        f"(ut.compress(x)), got {type(table).__name__}")
    plain = table._ut_plain
    if plain.dim() == 0:
        raise ValueError("table must have at least one dimension (rows)")
    n = plain.shape[0]
    row_bytes = plain[0].numel() * plain.element_size() if n else 0
    ids = _select(n, row_bytes, ids, hotness, max_rows, max_bytes)
    dev = _device_of(device)
    if not cuda_available():
        raise RuntimeError("ut.cache needs the zero-copy CUDA path (a GPU and CuPy); without it "
                           "CUDA gathers from this table are unavailable anyway")
    if not plain.is_contiguous():
        raise ValueError("ut.cache needs a contiguous table")
    if ids.numel() >= 2**31:
        raise ValueError(f"a cache holds fewer than 2**31 rows, got {ids.numel()}")
    uncache(table, dev)
    if ids.numel() == 0:
        return user_table
    table._ut_caches[dev.index] = GpuRowCache(table, ids, dev)
    return user_table


def uncache(table, device: Union[None, str, int, torch.device] = None) -> None:
    """Drop ``table``'s GPU cache on ``device`` (all devices when ``None``); frees its memory."""
    from ._tensor import UnifiedTensor

    table = _values_of(table)
    if not isinstance(table, UnifiedTensor):
        raise TypeError(f"ut.uncache expects a UnifiedTensor, got {type(table).__name__}")
    caches: Dict[int, GpuRowCache] = table._ut_caches
    if not caches:   # nothing to drop: a no-op, on any machine (a bad device type still raises)
        if device is not None and (isinstance(device, bool)
                                   or not isinstance(device, (int, str, torch.device))):
            raise TypeError(f"ut.uncache: device must be None, an int, a str or a torch.device, "
                            f"got {type(device).__name__}")
        return
    if device is None:
        keys = list(caches)
    else:
        keys = [_device_of(device, "ut.uncache").index]
    for k in keys:   # gathers in flight keep the memory: see GpuRowCache.note_stream
        caches.pop(k, None)


def cache_info(table) -> Dict[str, dict]:
    """``{"cuda:i": {"rows": k, "bytes": GPU bytes}}`` of ``table``'s caches."""
    from ._tensor import UnifiedTensor

    table = _values_of(table)
    if not isinstance(table, UnifiedTensor):
        raise TypeError(f"ut.cache_info expects a UnifiedTensor, got {type(table).__name__}")
    return {str(c.device): {"rows": c.ids.numel(), "bytes": c.nbytes}
            for c in table._ut_caches.values()}


def fresh_cache(table, dev_index: int) -> Optional["GpuRowCache"]:
    """``table``'s cache on ``cuda:dev_index``, refreshed first if the table was written since
    (any write torch counts: through the table, a view of it, or the tensor it wraps)."""
    cache = table._ut_caches.get(dev_index) if table._ut_caches else None
    if cache is not None and cache.version != table._ut_plain._version:
        # what changed and on which stream is unknown: every row, after the default stream too
        refresh_all(table, wait_default=True, if_stale=True)
        cache = table._ut_caches.get(dev_index)
    return cache


def refresh_all(table, rows: Optional[DirtyRows] = None, version_before: Optional[int] = None,
                wait_default: bool = False, if_stale: bool = False) -> None:
    """Refresh every cache of ``table`` after an in-place change made through it: the cached
    rows among ``rows`` (what the change touched; ``None``: all) when the cache was current at
    ``version_before``. No host sync: see :meth:`GpuRowCache.refresh`."""
    for c in list(table._ut_caches.values()):
        c.refresh(table, rows, version_before, wait_default, if_stale)
