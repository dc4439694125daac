"""In-place pinning: refcounted ``cudaHostRegister`` of byte ranges, shared by every tensor over them.

A registration covers exactly the bytes of the table, never the rest of its first and last pages:
CUDA treats a host buffer that starts inside a registered range as page-locked, and a copy of a
buffer that starts inside one registration and runs past its end fails with
``cudaErrorInvalidValue``. Rounding out to pages made every small tensor that malloc later put
next to a registered table fail in ``.cuda()`` (seen on an H200, 2026-11-26); DGL's
``pin_memory_`` registers exact ranges too. For the same reason a table is registered in one call
(``chunk_bytes`` is for tests), so a copy of the whole table stays inside one registration.

Each :class:`Registration` (one per ``ut.unified`` call) holds one reference on every region its
bytes touch; a region is registered when first needed (the parts of a request not yet covered)
and unregistered when its last reference goes. So registering the same memory twice, overlapping ranges, and views
into a registered table all work. Before a region is unregistered every device that ran a gather is
synchronised, so no kernel can still be reading it. A registration keeps the memory it covers
alive (it holds the tensor), so the memory can never be freed while it is registered.
"""
from __future__ import annotations

import bisect
import logging
import mmap
import threading
import weakref
from typing import Callable, List, Optional, Set

from ._cudart import REGISTER_MAPPED, REGISTER_PORTABLE, REGISTER_READ_ONLY, CudaRuntimeError

__all__ = ["Registry", "Registration", "registry", "set_runtime", "note_device_use", "PAGE_BYTES"]

logger = logging.getLogger("unified_tensor")

PAGE_BYTES = mmap.PAGESIZE
DEFAULT_CHUNK_BYTES = 1 << 62  # one cudaHostRegister call per table (tests use small chunks)


# What cudaHostRegister answers when the kernel refuses to pin pages for writing (a shared file
# mapping on Linux >= 6.5: cudaErrorInvalidValue, seen on an H200 with kernel 6.18).
_REFUSED_WRITABLE = ("cudaErrorInvalidValue", "cudaErrorNotPermitted", "cudaErrorNotSupported")


class _Region:
    __slots__ = ("start", "end", "dev", "refs", "readonly")

    def __init__(self, start: int, end: int, dev: int, readonly: bool):
        self.start, self.end, self.dev, self.refs, self.readonly = start, end, dev, 0, readonly

    def __repr__(self) -> str:
        return f"_Region(0x{self.start:x}..0x{self.end:x}, refs={self.refs})"


class Registry:
    """Page-granular, refcounted host registrations over one CUDA runtime (real or fake)."""

    def __init__(self, runtime_factory: Callable[[], object], chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 synchronize: Optional[Callable[[Set[int]], None]] = None):
        self._runtime_factory = runtime_factory
        self._rt = None
        self.chunk_bytes = max(1, int(chunk_bytes))
        self._regions: List[_Region] = []  # sorted by start, disjoint
        self._lock = threading.RLock()
        self._synchronize = synchronize
        self.devices_used: Set[int] = set()

    @property
    def runtime(self):
        if self._rt is None:
            self._rt = self._runtime_factory()
        return self._rt

    # -- queries -------------------------------------------------------------------------------
    def regions(self) -> List[tuple]:
        """``(start, end, refs)`` of every registered region (for tests and debugging)."""
        with self._lock:
            return [(r.start, r.end, r.refs) for r in self._regions]

    def covers(self, ptr: int, nbytes: int) -> bool:
        """Whether ``[ptr, ptr + nbytes)`` lies entirely in registered regions."""
        with self._lock:
            return self._covering(ptr, ptr + max(nbytes, 1), allow_gaps=False) is not None

    def overlaps(self, ptr: int, nbytes: int) -> bool:
        """Whether any byte of ``[ptr, ptr + nbytes)`` lies in a registered region."""
        with self._lock:
            return bool(self._covering(ptr, ptr + max(nbytes, 1), allow_gaps=True))

    def _covering(self, start: int, end: int, allow_gaps: bool):
        i = bisect.bisect_right([r.start for r in self._regions], start) - 1
        i = max(i, 0)
        out, pos = [], start
        for r in self._regions[i:]:
            if r.start >= end:
                break
            if r.end <= start:
                continue
            if r.start > pos and not allow_gaps:
                return None
            out.append(r)
            pos = max(pos, r.end)
        if not allow_gaps and pos < end:
            return None
        return out

    # -- acquire / release ---------------------------------------------------------------------
    def acquire(self, ptr: int, nbytes: int, readonly: bool = False, keepalive: object = None) -> "Registration":
        """Register (or reuse) the pages of ``[ptr, ptr + nbytes)``; returns a :class:`Registration`.

        ``keepalive`` (the tensor over the memory) is held until the registration is released.
        """
        if nbytes <= 0:
            return Registration(self, [], ptr, 0, ptr, keepalive)
        start, end = ptr, ptr + nbytes
        with self._lock:
            existing = self._covering(start, end, allow_gaps=True)
            gaps, pos = [], start
            for r in existing:
                if r.start > pos:
                    gaps.append((pos, r.start))
                pos = max(pos, r.end)
            if pos < end:
                gaps.append((pos, end))
            created: List[_Region] = []
            try:
                for g0, g1 in gaps:
                    for c0 in range(g0, g1, self.chunk_bytes):
                        c1 = min(c0 + self.chunk_bytes, g1)
                        created.append(self._register(c0, c1, readonly))
            except CudaRuntimeError:
                for r in created:
                    self._unregister(r)
                raise
            for r in created:
                bisect.insort(self._regions, r, key=lambda x: x.start)
            regions = self._covering(start, end, allow_gaps=False)
            # One contiguous device range is needed: every region must map with the same offset.
            offsets = {r.dev - r.start for r in regions}
            if len(offsets) != 1:
                for r in created:
                    self._regions.remove(r)
                    self._unregister(r)
                raise CudaRuntimeError(
                    f"memory at 0x{ptr:x} ({nbytes} bytes) spans host registrations whose device "
                    f"addresses are not contiguous on this system; register the whole table once "
                    f"(call ut.unified on the full tensor before any view of it)")
            for r in regions:
                r.refs += 1
            dev_ptr = ptr + offsets.pop()
            return Registration(self, regions, ptr, nbytes, dev_ptr, keepalive)

    def _register(self, start: int, end: int, readonly: bool) -> _Region:
        """Register ``[start, end)``. GPU kernels only read tables, so where a writable registration
        is refused (Linux >= 6.5 refuses to pin shared file mappings for writing: ``np.load(...,
        mmap_mode='r+')`` on ext4/xfs) it is retried read-only (``cudaHostRegisterReadOnly``) where
        the device supports that. Read-only sources are registered read-only from the start."""
        rt = self.runtime
        flags = REGISTER_PORTABLE | REGISTER_MAPPED
        if readonly:
            if not rt.read_only_supported():
                raise CudaRuntimeError("cannot register read-only host memory: this GPU/driver does not "
                                       "support cudaHostRegisterReadOnly; copy it into writable RAM "
                                       "(e.g. np.array(x)) or open it writable")
            flags |= REGISTER_READ_ONLY
        try:
            rt.host_register(start, end - start, flags)
        except CudaRuntimeError as exc:
            refused = any(code in str(exc) for code in _REFUSED_WRITABLE)
            if not refused:
                raise
            if readonly or not rt.read_only_supported():
                raise CudaRuntimeError(f"{exc}. The memory cannot be pinned in place (file-backed "
                                       f"mappings often cannot); copy it into RAM or shared memory "
                                       f"(/dev/shm) first") from None
            try:
                rt.host_register(start, end - start, flags | REGISTER_READ_ONLY)
            except CudaRuntimeError as exc2:
                raise CudaRuntimeError(f"{exc}; read-only registration failed too ({exc2}). The "
                                       f"memory cannot be pinned in place (file-backed mappings often "
                                       f"cannot); copy it into RAM or shared memory (/dev/shm) first"
                                       ) from None
            readonly = True
            logger.info("unified_tensor: host range 0x%x..0x%x registered read-only (a writable "
                        "registration was refused: %s)", start, end, exc)
        try:
            dev = rt.device_pointer(start)
        except CudaRuntimeError:
            rt.host_unregister(start)
            raise
        logger.debug("unified_tensor: registered host range 0x%x..0x%x", start, end)
        return _Region(start, end, dev, readonly)

    def _unregister(self, r: _Region) -> None:
        try:
            self.runtime.host_unregister(r.start)
        except CudaRuntimeError as exc:  # never raise from a finaliser; the memory stays pinned
            logger.warning("unified_tensor: %s", exc)

    def release(self, regions: List[_Region]) -> None:
        with self._lock:
            dead = []
            for r in regions:
                r.refs -= 1
                if r.refs == 0:
                    dead.append(r)
            if not dead:
                return
            if self._synchronize is not None and self.devices_used:
                self._synchronize(set(self.devices_used))
            for r in dead:
                self._regions.remove(r)
                self._unregister(r)


class Registration:
    """One reference on the registered pages under one tensor; released once (idempotent)."""

    def __init__(self, registry: Registry, regions: List[_Region], ptr: int, nbytes: int, dev_ptr: int,
                 keepalive: object = None):
        self.ptr, self.nbytes, self.dev_ptr = ptr, nbytes, dev_ptr
        # The finaliser holds `keepalive` (the tensor over the memory) until the pages are
        # unregistered, so the memory cannot be freed while registered.
        self._finalizer = weakref.finalize(self, _release, registry, list(regions), keepalive)

    @property
    def active(self) -> bool:
        return self._finalizer.alive

    def release(self) -> None:
        self._finalizer()


def _release(registry: Registry, regions: List[_Region], keepalive: object) -> None:
    registry.release(regions)


def _synchronize_devices(devices: Set[int]) -> None:
    import torch

    for d in sorted(devices):
        torch.cuda.synchronize(d)


def _default_runtime():
    from ._cudart import runtime

    return runtime()


_registry = Registry(_default_runtime, synchronize=_synchronize_devices)


def registry() -> Registry:
    """The process-wide registry."""
    return _registry


def set_runtime(rt, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Registry:
    """Replace the process-wide registry with one over ``rt`` (tests use a fake runtime)."""
    global _registry
    _registry = Registry(lambda: rt, chunk_bytes=chunk_bytes,
                         synchronize=None if not hasattr(rt, "synchronize") else rt.synchronize)
    return _registry


def note_device_use(device: int) -> None:
    """Record that a kernel on ``device`` may read registered memory (synchronised before unregister)."""
    _registry.devices_used.add(device)
