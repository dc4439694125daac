"""Optional dependencies, probed once and lazily.

A missing package is silent; a package that is installed but fails to import warns once. Setting
``UNIFIED_TENSOR_DISABLE_CUDA=1`` turns the CUDA path off (the CPU path keeps working). Nothing here
touches the GPU at import time: the probes run on first use.
"""
from __future__ import annotations

import functools
import importlib
import logging
import warnings

from ._env import env_flag

__all__ = ["has_cupy", "has_numba", "has_dgl", "has_pyg", "cuda_available", "cuda_disabled_by_env"]

logger = logging.getLogger("unified_tensor")

ENV_DISABLE_CUDA = "UNIFIED_TENSOR_DISABLE_CUDA"


def _probe(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    except Exception as exc:  # a broken install: say so once, then behave as if absent
        warnings.warn(f"unified_tensor: '{name}' is installed but failed to import ({exc!r}); "
                      f"the features that need it are off", RuntimeWarning, stacklevel=3)
        return False
    return True


@functools.lru_cache(maxsize=None)
def has_cupy() -> bool:
    """Whether CuPy imports (needed to compile and launch the CUDA kernels)."""
    return _probe("cupy")


@functools.lru_cache(maxsize=None)
def has_numba() -> bool:
    """Whether Numba imports (the fast CPU gather and CPU sampler)."""
    if not _probe("numba"):
        return False
    from ._numba_guard import announce_compiles

    announce_compiles()   # say "compiling CPU kernels" once when the first real compile starts
    return True


@functools.lru_cache(maxsize=None)
def has_dgl() -> bool:
    """Whether DGL imports."""
    return _probe("dgl")


@functools.lru_cache(maxsize=None)
def has_pyg() -> bool:
    """Whether PyTorch Geometric imports."""
    return _probe("torch_geometric")


def cuda_disabled_by_env() -> bool:
    """Whether ``UNIFIED_TENSOR_DISABLE_CUDA`` asks for the CPU path only."""
    return env_flag("DISABLE_CUDA")


def cuda_available() -> bool:
    """Whether the CUDA path can be used: a CUDA device, CuPy, and not disabled by the env switch."""
    if cuda_disabled_by_env():
        return False
    import torch

    return bool(torch.cuda.is_available()) and has_cupy()
