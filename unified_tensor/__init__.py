"""unified-tensor: zero-copy GPU access to host-resident tables (PyTorch-Direct style).

>>> import unified_tensor as ut
>>> feats = ut.unified(feats)      # pins in place, no copy
>>> x = feats[input_nodes]         # CUDA index -> zero-copy gather -> CUDA tensor
"""
from ._cache import cache, cache_info, uncache
from ._checks import DeferredIndexError, synchronize
from ._compressed import CompressedTensor, compress, load_compressed
from ._deps import cuda_available
from ._gather import gather
from ._tensor import UnifiedTensor, device_pointer, is_unified, unified, unpin

__all__ = ["UnifiedTensor", "unified", "unpin", "gather", "is_unified", "device_pointer",
           "cuda_available", "synchronize", "DeferredIndexError", "cache", "uncache", "cache_info",
           "CompressedTensor", "compress", "load_compressed"]
__version__ = "0.1.0"
