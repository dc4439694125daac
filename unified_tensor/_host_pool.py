"""Recycled host buffers for large CPU gather outputs.

A minibatch gather on the CPU writes a fresh ``[num_input_nodes, feat]`` table every batch
(hundreds of MB for GraphSAGE on a large graph). glibc serves blocks that large with ``mmap`` and
returns them with ``munmap``, so every batch pays the kernel for zeroed pages on first touch:
measured on a 2-core VM, a 186 MB gather took 200-490 ms into a new tensor against 53 ms into a
reused one. This pool keeps a few large buffers and hands one out again once nothing references
it any more.

"Nothing references it" is read from CPython's reference count of the pooled NumPy array: the
tensor handed out is ``torch.from_numpy`` of a view of that array, so the array's count stays up
while the tensor, any view of it, or autograd's saved copy of it is alive. No buffer is ever
handed out twice while in use; a buffer that a user keeps for good is simply forgotten by the pool.
"""
from __future__ import annotations

import math
import sys
import threading
from typing import List, Sequence

import numpy as np
import torch

__all__ = ["HostBufferPool", "host_pool"]

# sys.getrefcount(self._bufs[i]) of a buffer no one else holds: the list's reference + the argument.
_FREE_REFS = 2


class HostBufferPool:
    """A small set of reusable CPU buffers for outputs of at least ``min_bytes``.

    Parameters
    ----------
    max_buffers : int
        Buffers remembered at most (free or in use). When a new one would exceed this, a free one
        is released first, else the pool forgets the oldest one in use (its owner keeps it).
    min_bytes : int
        Smaller requests get an ordinary ``torch.empty`` (malloc serves them from its own free
        lists, with no page faults).
    max_bytes : int
        Larger requests get an ordinary ``torch.empty`` too, so a one-off huge gather is never
        kept alive by the pool.
    max_free_bytes : int
        Free buffers beyond this total are released (oldest first) at every request, which bounds
        the memory the pool holds while nothing uses it.
    """

    def __init__(self, max_buffers: int = 6, min_bytes: int = 1 << 20,
                 max_bytes: int = 1 << 30, max_free_bytes: int = 1 << 30) -> None:
        self.max_buffers = max_buffers
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.max_free_bytes = max_free_bytes
        self._bufs: List[np.ndarray] = []     # uint8, oldest first
        self._lock = threading.Lock()

    def empty(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised contiguous CPU tensor of ``shape`` and ``dtype`` (like ``torch.empty``)."""
        shape = tuple(int(s) for s in shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        nbytes = math.prod(shape) * itemsize
        if nbytes < self.min_bytes or nbytes > self.max_bytes:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            buf = self._take(nbytes)
            view = buf[:nbytes]
            del buf
            self._trim()
        return torch.from_numpy(view).view(dtype).view(shape)

    def _take(self, nbytes: int) -> np.ndarray:
        best = -1
        for i in range(len(self._bufs)):
            if sys.getrefcount(self._bufs[i]) == _FREE_REFS and self._bufs[i].nbytes >= nbytes \
                    and (best < 0 or self._bufs[i].nbytes < self._bufs[best].nbytes):
                best = i
        if best >= 0:
            buf = self._bufs.pop(best)
            self._bufs.append(buf)                 # most recently used last
            return buf
        if len(self._bufs) >= self.max_buffers:
            free = [i for i in range(len(self._bufs))
                    if sys.getrefcount(self._bufs[i]) == _FREE_REFS]
            del self._bufs[free[0] if free else 0]
        # Headroom: minibatch sizes vary by a few percent, so round up by 1/8 and to 2 MiB.
        cap = -(-(nbytes + nbytes // 8) // (2 << 20)) * (2 << 20)
        buf = np.empty(cap, dtype=np.uint8)
        self._bufs.append(buf)
        return buf

    def _trim(self) -> None:
        """Release the oldest free buffers while the free ones hold more than max_free_bytes."""
        free = [i for i in range(len(self._bufs)) if sys.getrefcount(self._bufs[i]) == _FREE_REFS]
        total = sum(self._bufs[i].nbytes for i in free)
        drop = []
        for i in free:
            if total <= self.max_free_bytes:
                break
            total -= self._bufs[i].nbytes
            drop.append(i)
        for i in reversed(drop):
            del self._bufs[i]

    def clear(self) -> None:
        """Forget every buffer (those in use stay alive with their tensors)."""
        with self._lock:
            self._bufs.clear()

    def __len__(self) -> int:
        return len(self._bufs)

    def retained_bytes(self) -> int:
        """Bytes held by buffers that nothing outside the pool references."""
        with self._lock:
            return sum(self._bufs[i].nbytes for i in range(len(self._bufs))
                       if sys.getrefcount(self._bufs[i]) == _FREE_REFS)


#: The process-wide pool used by the CPU gather when no ``out=`` is given.
host_pool = HostBufferPool()
