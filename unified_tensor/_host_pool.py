"""Recycled host buffers for large CPU gather outputs.

A minibatch gather on the CPU writes a fresh ``[num_input_nodes, feat]`` table every batch
(hundreds of MB for GraphSAGE on a large graph). glibc serves blocks that large with ``mmap`` and
returns them with ``munmap``, so every batch pays the kernel for zeroed pages on first touch:
measured on a 2-core VM, a 186 MB gather took 200-490 ms into a new tensor against 53 ms into a
reused one. This pool keeps a few large buffers and hands one out again once nothing holds it.

Each buffer is an ordinary storage allocated by ``torch.empty``; the pool keeps one tensor over it
(its handle) and hands out tensors that share that storage. Results are therefore plain resizable
torch storages with torch's own data pointer: ``resize_``, ``torch._lazy_clone``, pickling,
``.numpy()``, ``share_memory_()`` and ``pin_memory()`` behave as for ``torch.empty`` results. The
one visible difference: the storage may be larger than the tensor (the buffer's headroom).

A buffer is free when torch's use count of its storage is 1, i.e. the pool's handle is its only
owner. Everything through which the memory can be reached (a tensor or view, a storage object, a
NumPy array from ``.numpy()``, a DLPack capsule, a tensor saved by autograd, in any thread) owns a
strong reference to the storage, since that is what keeps the memory alive in torch; so the count
never reads lower than the number of holders, whatever CPython's reference counts do. A count that
reads higher (a storage object that torch keeps alive with its storage, a temporary not yet freed)
only keeps the buffer out of the pool. A buffer whose memory torch replaced (``resize_`` beyond it,
``share_memory_()``, a copy-on-write copy) is dropped, so the pool only ever hands out memory it
allocated itself.
"""
from __future__ import annotations

import math
import threading
from typing import List, Optional, Sequence

import torch

__all__ = ["HostBufferPool", "host_pool"]

# torch has no public storage use count; these are the calls its own CUDA-graph memory reuse makes
# (torch/_inductor/cudagraph_trees.py). Checked once before first use; without them (or if they
# misbehave) the pool is off and every request gets a plain torch.empty.
_storage_id = getattr(torch._C, "_storage_id", None)
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)
_COUNTS_OK: Optional[bool] = None


def _counts_ok() -> bool:
    """Whether torch reports storage addresses and use counts as the pool relies on."""
    global _COUNTS_OK
    if _COUNTS_OK is None:
        _COUNTS_OK = False
        if _storage_id is not None and _storage_use_count is not None:
            probe = torch.empty(8, dtype=torch.uint8)
            if _storage_id(probe) == probe.untyped_storage()._cdata:   # an address, not an id
                t = torch.empty(8, dtype=torch.uint8)
                sid = _storage_id(t)
                alone = _storage_use_count(sid)
                view = t[2:]
                shared = _storage_use_count(sid)
                del view
                _COUNTS_OK = (alone, shared, _storage_use_count(sid)) == (1, 2, 1)
    return _COUNTS_OK


class _Buffer:
    """One pooled storage: the pool's only reference to it, and the address it was allocated at."""

    __slots__ = ("handle", "sid", "addr", "nbytes")

    def __init__(self, nbytes: int) -> None:
        self.handle = torch.empty(nbytes, dtype=torch.uint8)   # never read: only keeps the storage
        self.sid = _storage_id(self.handle)
        self.addr = self.handle.data_ptr()
        self.nbytes = nbytes

    def in_use(self) -> bool:
        return _storage_use_count(self.sid) != 1

    def replaced(self) -> bool:
        """Whether torch gave the storage other memory; asked only while it is not in use."""
        return self.handle.data_ptr() != self.addr

    def tensor(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """A contiguous tensor at the start of the storage (not a view: ``_base`` is None)."""
        return torch.empty(0, dtype=dtype).set_(self.handle[:0].view(dtype)).resize_(shape)


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
        self._bufs: List[_Buffer] = []     # oldest first
        self._lock = threading.Lock()

    def empty(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised contiguous tensor on the CPU, like ``torch.empty(shape, dtype=dtype)``.

        Parameters
        ----------
        shape : sequence of int
            Shape of the result.
        dtype : torch.dtype
            Its dtype.

        Returns
        -------
        torch.Tensor
            A CPU tensor; from a recycled buffer when its size is in ``[min_bytes, max_bytes]``.

        Examples
        --------
        >>> pool = HostBufferPool(min_bytes=1024)
        >>> a = pool.empty((1000, 4), torch.float32)
        >>> ptr = a.data_ptr()
        >>> del a                                   # the last holder is gone: the buffer is free
        >>> pool.empty((990, 4), torch.float32).data_ptr() == ptr
        True
        """
        shape = tuple(int(s) for s in shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes == 0 or not self.min_bytes <= nbytes <= self.max_bytes or not _counts_ok():
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            out = self._take(nbytes).tensor(shape, dtype)   # in use from here on
            self._trim()
        return out

    def _free(self) -> List[_Buffer]:
        """The buffers no one else holds, oldest first; drops those whose memory was replaced."""
        free = []
        for buf in list(self._bufs):
            if buf.in_use():
                continue
            if buf.replaced():
                self._bufs.remove(buf)
            else:
                free.append(buf)
        return free

    def _take(self, nbytes: int) -> _Buffer:
        free = self._free()
        fits = [buf for buf in free if buf.nbytes >= nbytes]
        if fits:
            buf = min(fits, key=lambda b: b.nbytes)
            self._bufs.remove(buf)
            self._bufs.append(buf)                 # most recently used last
            return buf
        if len(self._bufs) >= self.max_buffers:
            self._bufs.remove(free[0] if free else self._bufs[0])
        # Headroom: minibatch sizes vary by a few percent, so round up by 1/8 and to 2 MiB.
        cap = -(-(nbytes + nbytes // 8) // (2 << 20)) * (2 << 20)
        buf = _Buffer(cap)
        self._bufs.append(buf)
        return buf

    def _trim(self) -> None:
        """Release the oldest free buffers while the free ones hold more than max_free_bytes."""
        free = self._free()
        total = sum(buf.nbytes for buf in free)
        for buf in free:
            if total <= self.max_free_bytes:
                break
            total -= buf.nbytes
            self._bufs.remove(buf)

    def clear(self) -> None:
        """Forget every buffer (those in use stay alive with their tensors)."""
        with self._lock:
            self._bufs.clear()

    def __len__(self) -> int:
        return len(self._bufs)

    def retained_bytes(self) -> int:
        """Bytes held by buffers that nothing outside the pool holds."""
        with self._lock:
            return sum(buf.nbytes for buf in self._free())


#: The process-wide pool used by the CPU gather when no ``out=`` is given.
host_pool = HostBufferPool()
