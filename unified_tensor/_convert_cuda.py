"""Launching the fused compressed-row gather (cuda/gather_convert.cu).

``out[q] = convert(values[wrap(index[q])])``: the kernel reads a row of a bf16, fp16 or int8
table (int8: affine, ``float(q) * scale + offset`` per column or per row) and writes it as
float32, bfloat16 or float16 in one pass. Everything else (wrapping, out-of-range ids, ``perm``,
``max_threads``, the GPU row cache) is :func:`unified_tensor._gather_cuda.gather_rows_cuda`'s.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from . import _kernels
from ._gather_cuda import BLOCK, group_size, resident_threads

__all__ = ["gather_convert_rows_cuda", "elems_per_lane", "IN_KINDS", "OUT_DTYPES", "INSTANCES"]

SOURCE = "gather_convert.cu"
# Compressed element kinds: (kernel tag type, bytes per element).
IN_KINDS: Dict[str, Tuple[str, int]] = {"int8": ("ut::I8", 1), "bf16": ("ut::BF16", 2),
                                        "fp16": ("ut::F16", 2)}
# Output dtypes: (kernel tag type, bytes per element).
OUT_DTYPES: Dict[torch.dtype, Tuple[str, int]] = {torch.float32: ("ut::F32", 4),
                                                  torch.bfloat16: ("ut::BF16", 2),
                                                  torch.float16: ("ut::F16", 2)}
_IDX = {torch.int32: "int", torch.int64: "long long"}
# Rows each group keeps in flight (the kernel's BATCH), as in gather.cu.
ROWS_IN_FLIGHT = 4


def max_elems_per_lane(in_size: int, out_size: int) -> int:
    """Host twin of ``ut::max_elems_per_lane`` (cuda/convert_math.cuh): stores of at most 16 bytes."""
    return 16 // max(in_size, out_size)


def elems_per_lane(num_cols: int, in_size: int, out_size: int, in_addr: int, out_addr: int) -> int:
    """Host twin of ``ut::elems_per_lane``: the elements a lane moves per pass (a template argument),
    the largest power of two up to :func:`max_elems_per_lane` that divides ``num_cols`` and keeps
    every load (``in_addr``) and store (``out_addr``) naturally aligned."""
    e = max_elems_per_lane(in_size, out_size)
    while e > 1 and (num_cols % e or in_addr % (e * in_size) or out_addr % (e * out_size)):
        e >>= 1
    return e


def _widths(in_size: int, out_size: int) -> List[int]:
    e, out = max_elems_per_lane(in_size, out_size), []
    while e >= 1:
        out.append(e)
        e >>= 1
    return out


def _name(in_kind: str, out_dtype: torch.dtype, idx_dtype: torch.dtype, per_row: bool, elems: int,
          batch: int = ROWS_IN_FLIGHT) -> str:
    return (f"ut::gather_convert_rows<{IN_KINDS[in_kind][0]}, {OUT_DTYPES[out_dtype][0]}, "
            f"{_IDX[idx_dtype]}, {'true' if per_row else 'false'}, {elems}, {batch}>")


INSTANCES = [_name(k, o, d, pr, e)
             for k, (_, in_size) in IN_KINDS.items()
             for o, (_, out_size) in OUT_DTYPES.items()
             for pr in ((False, True) if k == "int8" else (False,))
             for e in _widths(in_size, out_size)
             for d in _IDX]
_kernels.register(SOURCE, INSTANCES)


def _cuda_tensor(t, what: str, dtypes: tuple, device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{what} must have dtype {' or '.join(map(str, dtypes))}, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{what} must be on {device} (the index's device), got {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"{what} must be contiguous")


def _int(x, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(x).__name__}")
    return int(x)


def _address(x, what: str, align: int) -> int:
    p = _int(x, what)
    if p < 0 or p % align:
        raise ValueError(f"{what} must be a device address aligned to {align} bytes, got 0x{p:x}")
    return p


def gather_convert_rows_cuda(values_dev_ptr: int, num_rows: int, num_cols: int, in_kind: str,
                             index: torch.Tensor, out: torch.Tensor, *, scale_ptr: int = 0,
                             offset_ptr: int = 0, per_row: bool = False,
                             perm: Optional[torch.Tensor] = None,
                             max_threads: Optional[int] = None, bad_ptr: int = 0,
                             cache_ptr: int = 0, slot_ptr: int = 0) -> None:
    """Launch ``out[q] = convert(values[wrap(index[q])])`` on ``index.device`` in the current stream.

    ``values_dev_ptr`` is a device-accessible address (pinned host memory through UVA, or device
    memory) of a contiguous ``num_rows`` x ``num_cols`` table of ``in_kind`` elements (``"int8"``,
    ``"bf16"`` or ``"fp16"``). ``out`` (CUDA, contiguous, ``len(index) * num_cols`` elements of
    float32, bfloat16 or float16) receives the converted rows: bf16/fp16 through float, rounded to
    nearest even (the same kind: a bitwise copy); int8 as ``float(q) * scale + offset`` (a multiply
    and an add, each rounded, as ``q.float() * scale + offset`` in PyTorch) with float32 ``scale``
    and ``offset`` in device memory at ``scale_ptr`` / ``offset_ptr``, ``num_cols`` of each, or
    ``num_rows`` with ``per_row``.

    ``index`` is a 1-D contiguous int32/int64 CUDA tensor; negative ids wrap. An out-of-range id is
    never read: its output row is written as zeros and, when ``bad_ptr`` (the device address of
    two int64, starting at INT64_MAX and INT64_MIN) is not 0, its value is folded into them.
    ``perm`` (int64, the argsort of ``index``) makes the kernel read rows in ascending order while
    writing them in the caller's order; ``max_threads`` caps the resident threads.
    ``slot_ptr`` (not 0): device address of ``num_rows`` int32, the cache slot of each row or -1;
    cached rows are read compressed from ``cache_ptr`` (device memory, ``num_cols`` elements of
    ``in_kind`` per slot) instead of the table.

    Raises ``TypeError`` / ``ValueError`` naming the argument for anything checkable here that
    would make the kernel read or write out of bounds. What the caller guarantees (checking it
    would cost a sync): the memory behind the raw pointers is as large as stated, ``perm`` is a
    permutation of ``range(len(index))``, every slot in the slot map is a row of the cache.

    >>> gather_convert_rows_cuda(ut.device_pointer(codes), n, f, "bf16", idx, out)  # doctest: +SKIP
    """
    if in_kind not in IN_KINDS:
        raise ValueError(f"in_kind must be one of {sorted(IN_KINDS)}, got {in_kind!r}")
    in_size = IN_KINDS[in_kind][1]
    num_rows, num_cols = _int(num_rows, "num_rows"), _int(num_cols, "num_cols")
    if num_rows < 0 or num_cols < 0:
        raise ValueError(f"num_rows and num_cols must be >= 0, got {num_rows} x {num_cols}")
    if not isinstance(index, torch.Tensor):
        raise TypeError(f"index must be a torch.Tensor, got {type(index).__name__}")
    if index.device.type != "cuda":
        raise ValueError(f"index must be a CUDA tensor, got one on {index.device}")
    if index.dim() != 1:
        raise ValueError(f"index must be 1-D, got shape {tuple(index.shape)}")
    _cuda_tensor(index, "index", tuple(_IDX), index.device)
    m = index.shape[0]
    _cuda_tensor(out, "out", tuple(OUT_DTYPES), index.device)
    if out.dim() == 0 or out.shape[0] != m or out.numel() != m * num_cols:
        raise ValueError(f"out must hold len(index) = {m} rows of num_cols = {num_cols} "
                         f"elements, got shape {tuple(out.shape)}")
    if perm is not None:
        _cuda_tensor(perm, "perm", (torch.int64,), index.device)
        if tuple(perm.shape) != (m,):
            raise ValueError(f"perm must have the index's shape ({m},), got {tuple(perm.shape)}")
    if not isinstance(per_row, (bool, np.bool_)):
        raise TypeError(f"per_row must be a bool, got {type(per_row).__name__}")
    per_row = bool(per_row)
    values_dev_ptr = _address(values_dev_ptr, "values_dev_ptr", in_size)
    scale_ptr = _address(scale_ptr, "scale_ptr", 4)
    offset_ptr = _address(offset_ptr, "offset_ptr", 4)
    bad_ptr = _address(bad_ptr, "bad_ptr", 8)
    cache_ptr = _address(cache_ptr, "cache_ptr", in_size)
    slot_ptr = _address(slot_ptr, "slot_ptr", 4)
    if in_kind == "int8":
        if not scale_ptr or not offset_ptr:
            raise ValueError("an int8 table needs scale_ptr and offset_ptr (float32 in device "
                             f"memory), got scale_ptr=0x{scale_ptr:x}, offset_ptr=0x{offset_ptr:x}")
    elif scale_ptr or offset_ptr or per_row:
        raise ValueError(f"scale_ptr, offset_ptr and per_row apply to int8 tables only, got them "
                         f"for in_kind={in_kind!r}")
    if slot_ptr and not cache_ptr:
        raise ValueError("slot_ptr (the row cache's slot map) needs cache_ptr (its rows), got 0")
    if num_rows and not values_dev_ptr:
        raise ValueError(f"values_dev_ptr is 0 for a table of {num_rows} rows")
    if max_threads is not None and _int(max_threads, "max_threads") <= 0:
        raise ValueError(f"max_threads must be positive or None, got {max_threads}")
    if m == 0 or num_cols == 0:
        return
    device = index.device.index if index.device.index is not None else torch.cuda.current_device()
    out_size = OUT_DTYPES[out.dtype][1]
    elems = elems_per_lane(num_cols, in_size, out_size,
                           values_dev_ptr | (cache_ptr if slot_ptr else 0), out.data_ptr())
    group = group_size(num_cols // elems)
    batch = ROWS_IN_FLIGHT
    fn = _kernels.get_function(SOURCE, _name(in_kind, out.dtype, index.dtype, per_row, elems, batch),
                               device)
    full = resident_threads(fn, device)
    cap = full if max_threads is None else min(full, max(int(max_threads), BLOCK))
    threads = min(-(-m // batch) * group, cap)
    grid = max(1, -(-threads // BLOCK))
    args = (np.uint64(values_dev_ptr), np.int64(num_rows), np.int64(num_cols),
            np.uint64(index.data_ptr()), np.uint64(perm.data_ptr() if perm is not None else 0),
            np.int64(m), np.uint64(out.data_ptr()), np.int32(group), np.uint64(bad_ptr),
            np.uint64(cache_ptr if slot_ptr else 0), np.uint64(slot_ptr), np.uint64(scale_ptr),
            np.uint64(offset_ptr))
    _kernels.launch(fn, grid, BLOCK, args, device)
