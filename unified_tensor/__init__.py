"""unified-tensor: zero-copy GPU access to host-resident tables (PyTorch-Direct style).

>>> import unified_tensor as ut
>>> feats = ut.unified(feats)      # pins in place, no copy
>>> x = feats[input_nodes]         # CUDA index -> zero-copy gather -> CUDA tensor
"""
from ._cache import cache, cache_info, uncache
from ._checks import DeferredIndexError, synchronize
from ._cudart import CudaRuntimeError
from ._compressed import CompressedTensor, compress, load_compressed
from ._deps import cuda_available
from ._gather import gather
from ._kernels import KernelCompileError
from ._tensor import UnifiedTensor, device_pointer, is_unified, unified, unpin

__all__ = ["UnifiedTensor", "unified", "unpin", "gather", "is_unified", "device_pointer",
           "cuda_available", "synchronize", "DeferredIndexError", "cache", "uncache", "cache_info",
           "CompressedTensor", "compress", "load_compressed", "KernelCompileError",
           "CudaRuntimeError", "__version__"]


def _version() -> str:
    """The distribution's version, written in one place: pyproject.toml. Running from a checkout
    (PYTHONPATH=., as CI and the GPU machine do) it is read from there; installed, from the
    package metadata pip wrote from it."""
    import re
    from importlib import metadata
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        text = pyproject.read_text()
    except OSError:
        text = ""
    if re.search(r'^name\s*=\s*"unified-tensor"', text, re.M):
        m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
        if m:
            return m.group(1)
    try:
        return metadata.version("unified-tensor")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()
