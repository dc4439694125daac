"""``ut.gather``: the one entry point behind ``t[idx]``, ``index_select`` and ``embedding``.

Backend choice, in one place: index on CUDA -> the zero-copy kernel (table pinned in host memory)
or ``index_select`` (table already on that GPU); index on the CPU -> the Numba row gather
(``torch.index_select`` without Numba). The result is always a plain ``torch.Tensor`` on the
index's device.
"""
from __future__ import annotations

import collections
import math
import os
import threading
from typing import Optional, Sequence, Union

import numpy as np
import torch

from . import _checks
from ._deps import cuda_available, cuda_disabled_by_env
from ._gather_cpu import gather_rows_cpu
from ._host_pool import host_pool

__all__ = ["gather", "as_index_tensor"]

IndexLike = Union[torch.Tensor, np.ndarray, Sequence[int]]

# sorted_order=None (auto) reads rows in ascending id order when they are shorter than this many
# bytes and there are at least SORT_MIN_ROWS of them. Measured on an H200 (2026-11-26, 8 GiB
# pinned table, uniform ids): random zero-copy reads are limited to about 35-40 M rows/s by address
# translation, whatever the kernel does; ascending order gave 10.7x at 64 B rows, 2.1x at 512 B
# and 0.97x at 4 KB (argsort included).
SORT_ROWS_BELOW = 2048
SORT_MIN_ROWS = 1024
_UPCAST = {torch.int8: torch.int32, torch.int16: torch.int32}


def _first_non_int(seq) -> object:
    """The first element of a (nested) list/tuple that is not an int (bools and floats included),
    or ``None`` when all are ints."""
    if isinstance(seq, range):
        return None
    stack = [iter(seq)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, (list, tuple)):
                stack.append(iter(v))
                break
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point() \
                        and v.dtype != torch.bool:
                    continue
                return v
        else:
            stack.pop()
    return None


def as_index_tensor(index: IndexLike, name: str = "index") -> torch.Tensor:
    """``index`` as an int32/int64 tensor (no copy for int32/int64 tensors).

    Lists and NumPy arrays become CPU tensors; int8/int16 are widened to int32 (lossless).
    Bool, unsigned and floating indices raise ``TypeError``.
    """
    if isinstance(index, np.ndarray):
        if index.dtype.kind not in "iu" or index.dtype == np.uint64:
            raise TypeError(f"{name} must hold integers, got a NumPy array of dtype {index.dtype}")
        index = torch.from_numpy(np.ascontiguousarray(index).astype(np.int64, copy=False))
    elif isinstance(index, (list, tuple, range)):
        bad = _first_non_int(index)
        if bad is not None:
            raise TypeError(f"{name} must be a sequence of integers, got {bad!r} of type "
                            f"{type(bad).__name__} (no implicit truncation to row ids)")
        try:
            index = torch.as_tensor(index, dtype=torch.int64) if len(index) else torch.empty(0, dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a sequence of integers ({exc})") from None
    elif not isinstance(index, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, NumPy array or list of ints, "
                        f"got {type(index).__name__}")
    if index.dtype in (torch.int32, torch.int64):
        return index
    if index.dtype in _UPCAST:
        return index.to(_UPCAST[index.dtype])
    if index.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer row ids, got a bool tensor; for a mask use "
                        f"{name}.nonzero().flatten() to turn it into ids")
    raise TypeError(f"{name} must be an int32 or int64 tensor, got dtype {index.dtype}")


# Tables pinned by PyTorch (not registered by this library) hold no registration that would sync
# before their memory goes: each gather from one keeps the table alive until an event recorded
# after the kernel has completed (polled without blocking at the next such gather).
_inflight: "collections.deque" = collections.deque()
_inflight_lock = threading.Lock()


_inflight_orphans: list = []
_inflight_fork_hook = False


def _inflight_forget_in_child() -> None:
    """A forked child keeps the parent's events and tables referenced forever: releasing them
    would call CUDA, which a forked child cannot use."""
    global _inflight
    _inflight_orphans.append(_inflight)
    _inflight = collections.deque()


# Tables of that kind read by a gather captured into a CUDA graph: every replay reads them again,
# and nothing says when the graph is gone, so they are kept for the life of the process (one
# entry per table; no event may be recorded or queried in the capture).
_kept_for_graphs: dict = {}


def _keep_until_done(obj, device: torch.device) -> None:
    global _inflight_fork_hook
    if not _inflight_fork_hook:
        _inflight_fork_hook = True
        os.register_at_fork(after_in_child=_inflight_forget_in_child)
    if _checks.capturing():
        with _inflight_lock:
            _kept_for_graphs[(obj.data_ptr(), obj.numel(), obj.dtype)] = obj
        return
    ev = torch.cuda.Event()
    ev.record(torch.cuda.current_stream(device))
    # relaxed capture mode: the queries are legal while another thread captures a graph
    with _checks.relaxed_capture_mode(), _inflight_lock:
        while _inflight and _inflight[0][0].query():
            _inflight.popleft()
        _inflight.append((ev, obj))


def _check_range(index: torch.Tensor, n: int) -> None:
    """IndexError naming the first bad value when ``index`` leaves ``[-n, n)`` (one sync on CUDA)."""
    if index.numel() == 0:
        return
    lo, hi = torch.stack(torch.aminmax(index)).tolist()
    bad = _checks.first_bad(lo, hi, n)
    if bad is not None:
        raise _checks.range_error(bad, n)


def _check_mode(validate) -> str:
    """"off", "deferred" or "sync" for a CUDA gather (see :mod:`._checks`)."""
    if validate is False:
        return "off"
    if validate is True:
        return "sync" if _checks.sync_checks_forced() else "deferred"
    if validate == "sync":
        return "sync"
    raise ValueError(f"validate must be True, False or 'sync', got {validate!r}")


def _defer_range_check(device: torch.device, flat: torch.Tensor, n: int,
                       valid: Optional[torch.Tensor] = None) -> None:
    """Record the smallest and largest **out-of-range** id of ``flat`` on the device for a
    deferred IndexError (no host sync), where no gather kernel records them. In-range ids leave
    the record at its sentinels, as the kernel does, so a clean slot is reused as it is."""
    fl = flat.long()
    if valid is None:
        valid = (fl >= -n) & (fl < n)
    lo = torch.where(valid, _checks.INT64_MAX, fl).amin()
    hi = torch.where(valid, _checks.INT64_MIN, fl).amax()
    q = _checks.queue_for(device)
    slot = q.acquire()
    try:
        q.device_buf[slot].copy_(torch.stack((lo, hi)))
    except BaseException:
        _release_quietly(q, slot)
        raise
    q.submit(slot, n)


def _release_quietly(q, slot: int) -> None:
    """Give a record slot back after a failed launch without hiding the launch's error (a
    release on a broken context may fail too; the slot is then lost, not reused dirty)."""
    try:
        q.release(slot)
    except Exception:
        pass


def _gather_device_table(plain: torch.Tensor, flat: torch.Tensor, n: int, shape, row_shape,
                         out: Optional[torch.Tensor], mode: str, device: torch.device) -> torch.Tensor:
    """Rows of a table already in this GPU's memory (``index_select``). Out-of-range ids read
    row 0 and come out as zeros (``index_select`` would assert on the device and poison the
    context); ``mode`` "deferred" records them for a later IndexError, "sync" checks first.
    Without ``out`` the result keeps autograd (a table that requires grad)."""
    if mode == "sync" or n == 0:
        _check_range(flat, n)
    if n > 2**31 - 1:   # int32 ids against a table this long: compare in int64
        flat = flat.long()
    valid = (flat >= -n) & (flat < n)
    wrapped = torch.where(valid, torch.where(flat < 0, flat + n, flat), 0)
    keep = valid.view((-1,) + (1,) * len(row_shape))
    if out is None:
        res = torch.index_select(plain, 0, wrapped).masked_fill(~keep, 0).view(shape)
    else:
        res = _prepare_out(out, shape, plain.dtype, device)
        flat_res = res.view((flat.shape[0],) + row_shape)
        torch.index_select(plain, 0, wrapped, out=flat_res)
        flat_res.masked_fill_(~keep, 0)
    if mode == "deferred":
        _defer_range_check(device, flat, n, valid)
    return res


def _table_parts(table: torch.Tensor):
    """(plain tensor, registration or None) of a UnifiedTensor or plain tensor."""
    from ._tensor import UnifiedTensor

    if isinstance(table, UnifiedTensor):
        return table._ut_plain, table._ut_reg, True
    if isinstance(table, torch.Tensor):
        return table, None, False
    raise TypeError(f"table must be a UnifiedTensor or torch.Tensor, got {type(table).__name__}")


def _prepare_out(out: Optional[torch.Tensor], shape, dtype, device) -> torch.Tensor:
    if out is None:
        if device.type == "cpu":   # large outputs reuse recycled buffers (no page faults)
            return host_pool.empty(shape, dtype)
        return torch.empty(shape, dtype=dtype, device=device)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype} but the table has dtype {dtype} "
                        f"(no implicit casts)")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if out.device != device:
        raise ValueError(f"out is on {out.device} but the result belongs on {device} "
                         f"(the index's device)")
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")
    if out.requires_grad:
        raise RuntimeError("gather(): out= arguments don't support automatic differentiation, but "
                           "out requires grad")
    return out


def _check_out_overlap(out: torch.Tensor, table: torch.Tensor) -> None:
    """RuntimeError, as torch.index_select raises, when ``out`` shares memory with ``table``."""
    if out.device != table.device or out.numel() == 0 or table.numel() == 0:
        return
    a0 = out.data_ptr()
    a1 = a0 + out.numel() * out.element_size()
    b0 = table.data_ptr()
    b1 = b0 + table.numel() * table.element_size()
    if a0 < b1 and b0 < a1:
        raise RuntimeError("unsupported operation: some elements of the input tensor and the "
                           "written-to tensor refer to a single memory location. Please clone() "
                           "the tensor before performing the operation.")


def gather(table: torch.Tensor, index: IndexLike, out: Optional[torch.Tensor] = None, *,
           validate: bool = True, sorted_order: Optional[bool] = None, aligned: bool = True,
           max_threads: Optional[int] = None) -> torch.Tensor:
    """Gather rows ``table[index]`` into a plain tensor on ``index``'s device.

    Parameters
    ----------
    table : UnifiedTensor or torch.Tensor
        Row-major table of any dtype and trailing shape. A CUDA ``index`` needs a UnifiedTensor
        (read zero-copy from pinned host memory), a tensor pinned by PyTorch, or a table on the
        index's GPU.
    index : torch.Tensor, NumPy array or list of ints
        int32/int64 row ids of any shape; negative ids wrap as in ``table[index]``.
    out : torch.Tensor, optional
        Destination of shape ``index.shape + table.shape[1:]``, the table's dtype, on the index's
        device, contiguous.
    validate : bool or "sync"
        CUDA index: ``True`` (default) checks the range without a host sync: an out-of-range id
        is never read, its output row is zeros, and the ``IndexError`` (today's message) is
        raised by the next CUDA gather, :func:`unified_tensor.synchronize` or the end of a
        DataLoader epoch (see :mod:`unified_tensor._checks`). ``"sync"`` (or the environment
        variable ``UNIFIED_TENSOR_SYNC_CHECKS=1``) checks before the launch and raises here (one
        host sync). ``False`` skips the check for ids known valid; the kernel still never reads
        out of bounds. The CPU path always checks at once (it costs nothing there).
    sorted_order : bool or None
        CUDA only: read rows in ascending id order (argsort first), write them in the caller's
        order. ``None`` (default) decides: on for host tables with rows under
        ``SORT_ROWS_BELOW`` bytes and at least ``SORT_MIN_ROWS`` indices (random reads of short
        rows over PCIe are bound by address translation; ascending order is up to 10x faster).
    aligned : bool
        CUDA only: the 128-byte-aligned lane mapping (``False``: plain mapping, for benchmarks).
    max_threads : int, optional
        CUDA only: cap on resident threads of the gather (leave SMs to concurrent training kernels);
        ``None`` fills the GPU.

    Returns
    -------
    torch.Tensor
        Plain tensor of shape ``index.shape + table.shape[1:]`` on ``index``'s device. Without
        ``out``, a CPU result of 1 MiB to 1 GiB is written into a recycled host buffer (a buffer is
        reused only once no tensor, view or array refers to it any more), which spares a minibatch
        loop the page faults of fresh memory. Its storage is exactly its size, as
        ``torch.empty``'s (``torch.save`` and pickling write only its bytes), but, like a
        ``torch.from_numpy`` result, cannot grow in place (``resize_`` beyond its size raises).

    Examples
    --------
    >>> import torch, unified_tensor as ut
    >>> t = ut.unified(torch.arange(12.).view(4, 3))
    >>> ut.gather(t, torch.tensor([3, -4]))
    tensor([[ 9., 10., 11.],
            [ 0.,  1.,  2.]])
    """
    from ._compressed import CompressedTensor

    conv = None
    if isinstance(table, CompressedTensor):   # stored compressed, gathered as float rows
        conv, table = table, table._ut_values
    plain, reg, is_unified = _table_parts(table)
    out_dtype = conv.dtype if conv is not None else plain.dtype
    index = as_index_tensor(index)
    mode = _check_mode(validate)
    if plain.dim() == 0:
        raise ValueError("table must have at least one dimension (rows)")
    n = plain.shape[0]
    row_shape = tuple(plain.shape[1:])
    shape = tuple(index.shape) + row_shape
    device = index.device
    strided = not plain.is_contiguous()
    if strided and device.type != "cpu" and plain.device.type == "cpu":
        raise ValueError("table is a non-contiguous host tensor: the zero-copy gather needs "
                         "contiguous rows; pass ut.unified(table.contiguous()) (a copy) or gather "
                         "with a CPU index")
    flat = index.reshape(-1)
    if out is not None and isinstance(out, torch.Tensor):
        _check_out_overlap(out, plain)
        from ._tensor import check_writable

        check_writable(out, "out")

    if device.type == "cpu":
        if plain.device.type != "cpu":
            raise ValueError(f"index is on the CPU but the table is on {plain.device}; "
                             f"move the index to {plain.device}")
        res = _prepare_out(out, shape, out_dtype, device)
        flat = flat.contiguous()
        if conv is not None:
            from ._convert_cpu import gather_convert_rows_cpu

            bad = gather_convert_rows_cpu(conv.values, flat, res.view((flat.shape[0],) + row_shape),
                                          scale=conv.scale, offset=conv.offset,
                                          per_row=conv.per_row) if flat.numel() else 0
            if bad:
                _check_range(flat, n)
        elif strided:   # any strided table (a column slice, a transpose): torch's strided gather
            _check_range(flat, n)
            wrapped = torch.where(flat < 0, flat + n, flat)
            torch.index_select(plain, 0, wrapped, out=res.view((flat.shape[0],) + row_shape))
        else:
            bad = gather_rows_cpu(plain, flat, res.view((flat.shape[0],) + row_shape)) \
                if flat.numel() else 0
            if bad:
                _check_range(flat, n)
        if getattr(out, "_ut_caches", None):   # gathered into a cached table: refresh its caches
            from ._cache import refresh_all

            refresh_all(out)
        return res

    if device.type != "cuda":
        raise ValueError(f"index on unsupported device {device}")
    if _checks.capturing():
        # CUDA graph capture: no record or event query may be captured; the kernel still never
        # reads out of range and writes such rows as zeros. Check with validate="sync" outside.
        mode = "off" if mode == "deferred" else mode
    else:
        _checks.poll()   # an earlier gather's deferred IndexError surfaces here
    if plain.device.type == "cuda" and conv is None:
        if plain.device != device:
            raise ValueError(f"index is on {device} but the table is on {plain.device}")
        if flat.numel():
            return _gather_device_table(plain, flat, n, shape, row_shape, out, mode, device)
    res = _prepare_out(out, shape, out_dtype, device)
    if flat.numel() == 0:
        return res

    # Say what is actually wrong, most specific first.
    if not is_unified and not plain.is_pinned():
        raise ValueError("table is a plain CPU tensor that is not pinned; wrap it with "
                         "ut.unified(table) (pins in place, no copy) to gather with a CUDA index")
    if cuda_disabled_by_env():
        raise RuntimeError("index is on CUDA but the CUDA path is disabled (UNIFIED_TENSOR_DISABLE_CUDA "
                           "is set); gather with a CPU index instead")
    if not cuda_available():
        raise RuntimeError(f"index is on CUDA but the zero-copy CUDA path is unavailable: CuPy does not "
                           f"import; install the CuPy extra matching torch.version.cuda "
                           f"({torch.version.cuda}), see the README's install section")
    from ._tensor import device_pointer

    if is_unified and reg is None and not table._ut_external_pin:
        raise RuntimeError("this UnifiedTensor was created while the CUDA path was unavailable, so "
                           "it is not registered; call ut.unified(x) again now that CUDA is available")
    dev_ptr = device_pointer(table)
    if mode == "sync":
        _check_range(flat, n)
    from . import _pinning
    from ._cache import fresh_cache
    from ._gather_cuda import gather_rows_cuda

    flat = flat.contiguous()
    row_bytes = math.prod(row_shape) * plain.element_size()
    if sorted_order is None:
        sorted_order = row_bytes < SORT_ROWS_BELOW and flat.numel() >= SORT_MIN_ROWS
    perm = torch.argsort(flat) if sorted_order else None
    dev_index = device.index if device.index is not None else torch.cuda.current_device()
    _pinning.note_device_use(dev_index)
    # A GPU row cache (ut.cache) on this device: its rows are read from GPU memory, in the kernel.
    cache = fresh_cache(table, dev_index) if is_unified and table._ut_caches else None
    q = slot = None
    if mode == "deferred" and row_bytes == 0:   # no kernel runs for zero-width rows
        _defer_range_check(device, flat, n)
    elif mode == "deferred":   # the kernel records out-of-range ids; checked when the copy lands
        q = _checks.queue_for(device)
        slot = q.acquire()
    if cache is not None:
        # Held up to the launch: a refresh from another thread (a write to the table) is
        # enqueued wholly before or wholly after this gather, never around it (no torn rows).
        cache.lock.acquire()
    try:
        if cache is not None:   # its memory is not reused while this stream's kernel may read it
            cache.note_stream(torch.cuda.current_stream(device))
        cache_kw = dict(perm=perm, max_threads=max_threads,
                        bad_ptr=q.address(slot) if q is not None else 0,
                        cache_ptr=cache.rows.data_ptr() if cache is not None else 0,
                        slot_ptr=cache.slot_of.data_ptr() if cache is not None else 0)
        if conv is not None:   # read the compressed row, write the converted row: one kernel
            from ._convert_cuda import gather_convert_rows_cuda

            scale_ptr = offset_ptr = 0
            if conv.kind == "int8":
                s_dev, o_dev = conv.device_scales(dev_index)
                scale_ptr, offset_ptr = s_dev.data_ptr(), o_dev.data_ptr()
            cols = math.prod(row_shape)
            gather_convert_rows_cuda(dev_ptr, n, cols, conv.kind, flat, res.view(flat.shape[0], cols),
                                     scale_ptr=scale_ptr, offset_ptr=offset_ptr,
                                     per_row=conv.per_row, **cache_kw)
        else:
            gather_rows_cuda(dev_ptr, n, row_bytes, flat, res, aligned=aligned, **cache_kw)
    except BaseException:
        if q is not None:
            _release_quietly(q, slot)
        raise
    finally:
        if cache is not None:
            cache.lock.release()
    if q is not None:
        q.submit(slot, n)
    if reg is None:   # pinned by PyTorch: keep the memory alive until the kernel is done
        _keep_until_done(plain, device)
    return res
