"""Recycled host buffers for large CPU gather outputs.

A minibatch gather on the CPU writes a fresh ``[num_input_nodes, feat]`` table every batch
(hundreds of MB for GraphSAGE on a large graph). glibc serves blocks that large with ``mmap`` and
returns them with ``munmap``, so every batch pays the kernel for zeroed pages on first touch:
measured on a 2-core VM, a 186 MB gather took 200-490 ms into a new tensor against 53 ms into a
reused one. This pool keeps a few large buffers and hands one out again once nothing holds it.

Each buffer is an ordinary storage allocated by ``torch.empty``, held by the pool alone (its
handle) and never handed out itself. A result is a tensor on a storage of its own that covers
exactly the result's bytes at the start of a buffer: ``torch.from_dlpack`` of a slice of the
handle. So ``x.untyped_storage().nbytes() == x.numel() * x.element_size()`` as for
``torch.empty``, and ``torch.save``, pickling, ``share_memory_()`` and a DataLoader worker's
hand-over move only the result's bytes, not the buffer's headroom. Pickling, ``.numpy()``,
``share_memory_()``, ``pin_memory()`` and DLPack behave as for ``torch.empty`` results. What
differs: like ``torch.from_numpy`` results, the storage cannot grow (``resize_`` beyond the
tensor's size raises "Trying to resize storage that is not resizable"; shrinking works), and
``torch._lazy_clone`` refuses it. torch has no storage that is both exactly sized inside a larger
recycled allocation and growable; exact size is what a saved or shipped result needs.

A buffer is free when torch's use count of its storage is 1, i.e. the pool's handle is its only
owner. Each result's storage holds the imported DLPack tensor, which holds a tensor over the
buffer, for as long as the result's storage lives; everything through which the memory can be
reached (a tensor or view, a storage object, a NumPy array from ``.numpy()``, a DLPack capsule, a
tensor saved by autograd, in any thread) keeps that storage alive. So the count never reads lower
than the number of holders, and it is kept by torch in C++, whatever CPython's reference counts
do. A count that reads higher (a temporary not yet freed) only keeps the buffer out of the pool.
``share_memory_()`` on a result moves the result into shared memory and gives the buffer back.

A process forked while another thread held the pool's lock gets it back free (see
:func:`~unified_tensor._numba_guard.reset_locks_after_fork`); the child shares the parent's free
buffers copy-on-write and recycles them like its own.
"""
from __future__ import annotations

import math
import threading
from typing import List, Optional, Sequence

import torch

from ._numba_guard import reset_locks_after_fork

__all__ = ["HostBufferPool", "host_pool"]

# torch has no public storage use count; these are the calls its own CUDA-graph memory reuse makes
# (torch/_inductor/cudagraph_trees.py). Checked once before first use; without them (or if they
# misbehave) the pool is off and every request gets a plain torch.empty.
_storage_id = getattr(torch._C, "_storage_id", None)
_storage_use_count = getattr(torch._C, "_storage_Use_Count", None)
_COUNTS_OK: Optional[bool] = None


def _counts_ok() -> bool:
    """Whether torch reports storage addresses and use counts as the pool relies on, and a DLPack
    import of a slice is an exactly-sized storage of its own that holds the sliced storage."""
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
                alias = torch.from_dlpack(t[:6])
                held = _storage_use_count(sid)
                exact = (_storage_id(alias) != sid and alias.untyped_storage().nbytes() == 6
                         and alias.data_ptr() == t.data_ptr())
                del alias
                _COUNTS_OK = exact and (alone, shared, held, _storage_use_count(sid)) == (1, 2, 2, 1)
    return _COUNTS_OK


class _Buffer:
    """One pooled storage: the pool's only reference to it (never handed out) and its size."""

    __slots__ = ("handle", "sid", "nbytes")

    def __init__(self, nbytes: int) -> None:
        self.handle = torch.empty(nbytes, dtype=torch.uint8)   # never handed out itself
        self.sid = _storage_id(self.handle)
        self.nbytes = nbytes

    def in_use(self) -> bool:
        return _storage_use_count(self.sid) != 1

    def tensor(self, shape: Sequence[int], dtype: torch.dtype, nbytes: int) -> torch.Tensor:
        """A contiguous tensor over the first ``nbytes`` bytes, on a storage of exactly that size
        that holds the buffer while it lives (not a view: ``_base`` is None)."""
        exact = torch.from_dlpack(self.handle[:nbytes])
        return torch.empty(0, dtype=dtype).set_(exact.view(dtype)).resize_(shape)


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
        self._fork_safe = False

    def _locked(self) -> threading.Lock:
        """The pool's lock; the first call registers it to be replaced in forked children (not
        at construction: the module-level pool is made at import)."""
        if not self._fork_safe:
            reset_locks_after_fork(self, "_lock")
            self._fork_safe = True
        return self._lock

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
            A CPU tensor whose storage is exactly its size; from a recycled buffer when that size
            is in ``[min_bytes, max_bytes]`` (the storage then cannot grow, see the module notes).

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
        with self._locked():
            out = self._take(nbytes).tensor(shape, dtype, nbytes)   # in use from here on
            self._trim()
        return out

    def _free(self) -> List[_Buffer]:
        """The buffers no one else holds, oldest first."""
        return [buf for buf in self._bufs if not buf.in_use()]

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
        with self._locked():
            self._bufs.clear()

    def __len__(self) -> int:
        return len(self._bufs)

    def retained_bytes(self) -> int:
        """Bytes held by buffers that nothing outside the pool holds."""
        with self._locked():
            return sum(buf.nbytes for buf in self._free())


#: The process-wide pool used by the CPU gather when no ``out=`` is given.
host_pool = HostBufferPool()
