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
``out=(feats, idx)``, a view's ``mul_``; see ``_writes.py``) refreshes it after the op, and any
other write torch counts (through the tensor it wraps, or an older plain view) is seen by the next
gather, which compares the table's version counter with the one the cache was filled at. Writes
torch does not count (through ``.data`` or a NumPy array over the memory) need
``ut.cache(feats, ...)`` again.
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch

__all__ = ["GpuRowCache", "cache", "uncache", "cache_info"]

_CHUNK_BYTES = 64 << 20   # host rows staged per copy when (re)filling a cache


class GpuRowCache:
    """Rows ``ids`` of one table held on one CUDA device."""

    def __init__(self, plain: torch.Tensor, ids: torch.Tensor, device: torch.device):
        n = plain.shape[0]
        self.device = device
        self.ids = ids                                    # CPU int64, distinct, in [0, n)
        k = ids.numel()
        self.rows = torch.empty((k,) + tuple(plain.shape[1:]), dtype=plain.dtype, device=device)
        slot_of = torch.full((n,), -1, dtype=torch.int32)
        slot_of[ids] = torch.arange(k, dtype=torch.int32)
        self.slot_of = slot_of.to(device)
        self.stream = torch.cuda.current_stream(device)   # where the memory was allocated
        self._streams = {self.stream}
        self.refresh(plain)

    def note_stream(self, stream) -> None:
        """A gather on ``stream`` reads this cache: tell PyTorch's allocator (``record_stream``),
        so the memory is not handed out again before that stream's kernels are done, whoever
        drops the last reference and when (no sync)."""
        if stream not in self._streams:
            self.rows.record_stream(stream)
            self.slot_of.record_stream(stream)
            self._streams.add(stream)

    def refresh(self, plain: torch.Tensor) -> None:
        """Copy the cached rows from ``plain`` again (after the table changed)."""
        k = self.ids.numel()
        row_bytes = max(1, self.rows[0].numel() * self.rows.element_size()) if k else 1
        step = max(1, _CHUNK_BYTES // row_bytes)
        for s in range(0, k, step):
            self.rows[s:s + step].copy_(plain.index_select(0, self.ids[s:s + step]))
        # Kernels of any stream may read the rows from now on: the copies must have landed.
        torch.cuda.synchronize(self.device)
        # torch counts every in-place write to the table and to any view of it (the user's own
        # tensor included: ut.unified shares it): a different count later means the rows changed
        self.version = plain._version

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
    table._ut_caches[dev.index] = GpuRowCache(plain, ids, dev)
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
        refresh_all(table)
        cache = table._ut_caches.get(dev_index)
    return cache


def refresh_all(table) -> None:
    """Re-copy every cache of ``table`` (after an in-place change made through it). Waits for
    the GPUs first: the change may be an asynchronous copy into the table (``t.copy_(src,
    non_blocking=True)``; the table is pinned) that has not landed yet."""
    if not table._ut_caches:
        return
    if torch.cuda.is_available():
        devices = {c.device for c in table._ut_caches.values() if getattr(c, "device", None)}
        if torch.cuda.is_initialized():
            devices.add(torch.device("cuda", torch.cuda.current_device()))
        for d in devices:
            torch.cuda.synchronize(d)
    for c in table._ut_caches.values():
        c.refresh(table._ut_plain)
