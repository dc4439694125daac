"""Shared test helpers: dtypes, index dtypes, odd shapes, capability probes, fixtures."""
from __future__ import annotations

import contextlib
import functools

import torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
          torch.int16, torch.int32, torch.int64, torch.bool]
IDTYPES = [torch.int32, torch.int64]
# Trailing shapes of a table row: widths 1, 3, 100, 257 and a multi-dimensional row.
ROW_SHAPES = [(1,), (3,), (100,), (257,), (13, 3), ()]


@functools.lru_cache(maxsize=None)
def has_gpu() -> bool:
    from unified_tensor._deps import cuda_available
    return cuda_available()


@functools.lru_cache(maxsize=None)
def has_dgl() -> bool:
    try:
        import dgl  # noqa: F401
    except Exception:
        return False
    return True


def make_table(n: int, row_shape, dtype, seed: int = 0) -> torch.Tensor:
    """A contiguous CPU table of `n` rows with distinct-ish values of any dtype."""
    g = torch.Generator().manual_seed(seed)
    shape = (n,) + tuple(row_shape)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return torch.randint(lo, hi, shape, generator=g, dtype=torch.int64).to(dtype)


@contextlib.contextmanager
def cuda_path_disabled(monkeypatch):
    """Run the body with the CUDA path switched off by the library's env switch."""
    monkeypatch.setenv("UNIFIED_TENSOR_DISABLE_CUDA", "1")
    yield
