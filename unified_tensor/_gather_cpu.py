"""CPU row gather: Numba ``prange`` over output rows (torch ``index_select`` when Numba is absent).

Rows are moved as fixed-width unsigned words (8/4/2/1 bytes, the widest dividing the row size and
the base address), so one compiled kernel per word width serves every dtype and row shape.
"""
from __future__ import annotations

import torch

from ._deps import has_numba
from ._numba_guard import ParallelKernel

__all__ = ["gather_rows_cpu"]

_WORD = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}


@ParallelKernel
def _kernel():
    """Source of the gather kernel (built on first use, so importing this module needs no Numba)."""
    from numba import prange

    def gather_words(table, idx, out):  # pragma: no cover - compiled
        n = table.shape[0]
        w = table.shape[1]
        bad = 0
        for i in prange(idx.shape[0]):
            r = idx[i]
            if r < 0:
                r += n
            if r < 0 or r >= n:
                bad += 1
            else:
                for j in range(w):
                    out[i, j] = table[r, j]
        return bad

    return gather_words


def _as_words(t: torch.Tensor, rows: int, row_bytes: int) -> torch.Tensor:
    """View a contiguous tensor of ``rows`` rows as a 2-D tensor of unsigned words."""
    addr = t.data_ptr()
    for width, dt in _WORD.items():
        if row_bytes % width == 0 and addr % width == 0:
            return t.view(torch.uint8).view(-1).view(dt).view(rows, row_bytes // width)
    raise RuntimeError("unreachable: a width of 1 byte always divides")


def gather_rows_cpu(table: torch.Tensor, index: torch.Tensor, out: torch.Tensor) -> int:
    """Copy ``table[index[i]]`` into ``out[i]`` for every i (negative indices wrap).

    ``table`` and ``out`` are contiguous CPU tensors with the same dtype and row shape, ``index`` a
    1-D int32/int64 CPU tensor. Returns the number of out-of-range indices (their rows are left
    untouched); the caller turns a non-zero count into an ``IndexError``.
    """
    n, m = table.shape[0], index.shape[0]
    row_bytes = table[0].numel() * table.element_size() if n else 0
    if m == 0 or row_bytes == 0:
        bad = ((index < -n) | (index >= n)).sum().item() if m else 0
        return int(bad)
    if not has_numba():
        wrapped = torch.where(index < 0, index + n, index)
        bad = int(((wrapped < 0) | (wrapped >= n)).sum().item())
        if bad:
            return bad
        torch.index_select(table.view(n, -1), 0, wrapped, out=out.view(m, -1))
        return 0
    # Each side picks the widest word its address allows; an offset view (or a caller's `out=`)
    # can disagree with the other side, and then both use the narrower width.
    src = _as_words(table, n, row_bytes)
    dst = _as_words(out, m, row_bytes)
    if src.dtype != dst.dtype:
        width = min(src.element_size(), dst.element_size())
        src = table.view(torch.uint8).view(-1).view(_WORD[width]).view(n, row_bytes // width)
        dst = out.view(torch.uint8).view(-1).view(_WORD[width]).view(m, row_bytes // width)
    return int(_kernel(src.numpy(), index.numpy(), dst.numpy()))
