"""Launching the zero-copy row gather kernel (cuda/gather.cu)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from . import _kernels

__all__ = ["gather_rows_cuda", "vec_bytes", "group_size", "INSTANCES"]

SOURCE = "gather.cu"
_VECS = (16, 8, 4, 2, 1)
_IDX = {torch.int32: "int", torch.int64: "long long"}


# Rows each group keeps in flight (the kernel's BATCH): 4 by default; 1 is the one-load-per-lane
# kernel, kept for benchmarks (bench/gather.py times both).
ROWS_IN_FLIGHT = 4
_BATCHES = (4, 1)


def _name(vec: int, aligned: bool, idx_dtype: torch.dtype, batch: int = ROWS_IN_FLIGHT) -> str:
    return f"ut::gather_rows<{vec}, {'true' if aligned else 'false'}, {_IDX[idx_dtype]}, {batch}>"


INSTANCES = [_name(v, a, d, b) for b in _BATCHES for v in _VECS for a in (True, False) for d in _IDX]
_kernels.register(SOURCE, INSTANCES)

BLOCK = 256


def vec_bytes(row_bytes: int, src_addr: int, dst_addr: int) -> int:
    """Host twin of ``ut::vec_bytes`` (cuda/gather_math.cuh): the template argument to launch."""
    combined = row_bytes | src_addr | dst_addr
    for v in _VECS:
        if combined % v == 0:
            return v
    return 1


def group_size(units: int) -> int:
    """Host twin of ``ut::group_size``: lanes per row (power of two, at most a warp)."""
    g = 1
    while g < 32 and g < units:
        g <<= 1
    return g


_resident: dict = {}


def resident_threads(fn, device: int) -> int:
    """Threads of ``fn`` (blocks of BLOCK) that fit on ``device`` at once, from the occupancy API
    (register use differs per instance: 8 blocks per SM are not a given). Cached per kernel."""
    key = (device, id(fn))
    n = _resident.get(key)
    if n is None:
        from cupy_backends.cuda.api import driver

        ptr = getattr(fn, "ptr", None) or fn.kernel.ptr
        blocks = driver.occupancyMaxActiveBlocksPerMultiprocessor(ptr, BLOCK, 0)
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        n = _resident[key] = max(1, int(blocks)) * BLOCK * int(sms)
    return n


def gather_rows_cuda(table_dev_ptr: int, num_rows: int, row_bytes: int, index: torch.Tensor,
                     out: torch.Tensor, *, perm: Optional[torch.Tensor] = None, aligned: bool = True,
                     max_threads: Optional[int] = None, bad_ptr: int = 0, cache_ptr: int = 0,
                     slot_ptr: int = 0) -> None:
    """Launch ``out[q] = table[wrap(index[q])]`` on ``index.device`` in the current stream.

    ``table_dev_ptr`` is a device-accessible address (pinned host memory through UVA, or device
    memory) of a contiguous table of ``num_rows`` rows of ``row_bytes`` bytes. ``index`` is a 1-D
    contiguous int32/int64 CUDA tensor; ``out`` a contiguous CUDA tensor of ``len(index)`` rows.
    An out-of-range index is never read: its output row is written as zeros and, when
    ``bad_ptr`` (the device address of two int64: smallest and largest bad value, starting at
    INT64_MAX and INT64_MIN) is not 0, its value is recorded there for a deferred IndexError.

    ``slot_ptr`` (not 0): device address of ``num_rows`` int32, the cache slot of each row or -1;
    cached rows are read from ``cache_ptr`` (device memory, ``row_bytes`` per slot) instead.
    """
    m = index.shape[0]
    if m == 0 or row_bytes == 0:
        return
    device = index.device.index if index.device.index is not None else torch.cuda.current_device()
    vec = vec_bytes(row_bytes, table_dev_ptr | (cache_ptr if slot_ptr else 0), out.data_ptr())
    group = group_size(row_bytes // vec)
    batch = ROWS_IN_FLIGHT
    fn = _kernels.get_function(SOURCE, _name(vec, aligned, index.dtype, batch), device)
    full = resident_threads(fn, device)
    cap = full if max_threads is None else min(full, max(int(max_threads), BLOCK))
    threads = min(-(-m // batch) * group, cap)
    grid = max(1, -(-threads // BLOCK))
    args = (np.uint64(table_dev_ptr), np.int64(num_rows), np.int64(row_bytes),
            np.uint64(index.data_ptr()), np.uint64(perm.data_ptr() if perm is not None else 0),
            np.int64(m), np.uint64(out.data_ptr()), np.int32(group), np.uint64(bad_ptr),
            np.uint64(cache_ptr if slot_ptr else 0), np.uint64(slot_ptr))
    _kernels.launch(fn, grid, BLOCK, args, device)
