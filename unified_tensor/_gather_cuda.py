"""Launching the zero-copy row gather kernel (cuda/gather.cu)."""
from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch

from . import _kernels

__all__ = ["gather_rows_cuda", "vec_bytes", "group_size", "INSTANCES"]

SOURCE = "gather.cu"
_VECS = (16, 8, 4, 2, 1)
_IDX = {torch.int32: "int", torch.int64: "long long"}


def _name(vec: int, aligned: bool, idx_dtype: torch.dtype) -> str:
    return f"ut::gather_rows<{vec}, {'true' if aligned else 'false'}, {_IDX[idx_dtype]}>"


INSTANCES = [_name(v, a, d) for v in _VECS for a in (True, False) for d in _IDX]
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


@functools.lru_cache(maxsize=None)
def _resident_threads(device: int) -> int:
    p = torch.cuda.get_device_properties(device)
    return int(p.multi_processor_count) * int(getattr(p, "max_threads_per_multi_processor", 2048))


def gather_rows_cuda(table_dev_ptr: int, num_rows: int, row_bytes: int, index: torch.Tensor,
                     out: torch.Tensor, *, perm: Optional[torch.Tensor] = None, aligned: bool = True,
                     max_threads: Optional[int] = None) -> None:
    """Launch ``out[q] = table[wrap(index[q])]`` on ``index.device`` in the current stream.

    ``table_dev_ptr`` is a device-accessible address (pinned host memory through UVA, or device
    memory) of a contiguous table of ``num_rows`` rows of ``row_bytes`` bytes. ``index`` is a 1-D
    contiguous int32/int64 CUDA tensor; ``out`` a contiguous CUDA tensor of ``len(index)`` rows.
    Out-of-range indices are skipped by the kernel (callers validate first).
    """
    m = index.shape[0]
    if m == 0 or row_bytes == 0:
        return
    device = index.device.index if index.device.index is not None else torch.cuda.current_device()
    vec = vec_bytes(row_bytes, table_dev_ptr, out.data_ptr())
    group = group_size(row_bytes // vec)
    cap = _resident_threads(device) if max_threads is None else max(int(max_threads), BLOCK)
    threads = min(m * group, cap)
    grid = max(1, -(-threads // BLOCK))
    fn = _kernels.get_function(SOURCE, _name(vec, aligned, index.dtype), device)
    args = (np.uint64(table_dev_ptr), np.int64(num_rows), np.int64(row_bytes),
            np.uint64(index.data_ptr()), np.uint64(perm.data_ptr() if perm is not None else 0),
            np.int64(m), np.uint64(out.data_ptr()), np.int32(group))
    _kernels.launch(fn, grid, BLOCK, args, device)
