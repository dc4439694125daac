"""Deferred range checks: CUDA gathers validate their indices without a host sync per call.

A CUDA gather with ``validate=True`` (the default) does not read its index back to the host before
the launch. The gather kernel folds every out-of-range value into a record of two int64 in device
memory (smallest, largest; it writes that row as zeros and never reads it); after the kernel the
record is copied asynchronously into pinned host memory and an event is recorded. The check is
settled once that event has completed:

- at the start of the next CUDA gather, from any thread and any table (a poll that never blocks);
- at :func:`unified_tensor.synchronize` (blocks);
- at the end of each DataLoader epoch (blocks once per epoch);
- at interpreter exit, where an error nobody raised is printed to stderr.

A bad record raises the very ``IndexError`` an immediate check raises (same message), with a note
saying that the gather that read the index ran earlier. ``validate="sync"``, or the environment
variable ``UNIFIED_TENSOR_SYNC_CHECKS=1`` for every call, checks before the launch instead (one
host sync per call), as ``CUDA_LAUNCH_BLOCKING=1`` does for kernel errors.

The bookkeeping (:class:`CheckQueue`) knows nothing of CUDA: it is given its two record buffers
and an event factory, so the CPU tests drive it with CPU tensors and fake events.

CUDA graph capture: a gather in a capturing thread records nothing and queries nothing (its check
is off, see :func:`capturing`). Every event query or wait of this module (and of the in-flight
list of ``_gather``) runs in relaxed capture mode (:class:`relaxed_capture_mode`,
``cudaThreadExchangeStreamCaptureMode``), so a producer thread polling while the training thread
captures a graph in global mode (``torch.cuda.graph``'s default, ``torch.compile(mode=
"reduce-overhead")``) does not invalidate the capture; the events it queries were all recorded
outside any capture.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import os
import sys
import threading
from typing import Callable, ContextManager, Dict, List, Optional

import torch

from ._cudart import CAPTURE_MODE_RELAXED
from ._env import env_flag

__all__ = ["CheckQueue", "DeferredIndexError", "range_error", "sync_checks_forced", "queue_for", "poll", "settle_all",
           "synchronize", "INT64_MAX", "INT64_MIN", "SLOTS", "capturing", "stream_capturing",
           "relaxed_capture_mode"]

INT64_MAX = 2**63 - 1
INT64_MIN = -2**63
SLOTS = 256   # records per device; more checks in flight than this wait for the oldest

NOTE = ("raised by a deferred check: a CUDA gather that ran earlier read this index (CUDA gathers "
        "validate without a host sync per call; the check is settled at the next CUDA gather, at "
        "ut.synchronize() or at the end of a DataLoader epoch). Pass validate='sync' or set "
        "UNIFIED_TENSOR_SYNC_CHECKS=1 to raise at the gather itself.")


class DeferredIndexError(IndexError):
    """The IndexError of an out-of-range id found by a deferred check (raised by a later call
    than the gather that read it); same message as the immediate check."""


def range_error(bad: int, n: int, deferred: bool = False) -> IndexError:
    """The IndexError of an out-of-range row id (the one message, immediate or deferred)."""
    cls = DeferredIndexError if deferred else IndexError
    return cls(f"index {bad} is out of range for a table of {n} rows (valid: -{n} <= index < {n})")


def first_bad(lo: int, hi: int, n: int) -> Optional[int]:
    """The value to report for indices whose range (or out-of-range range) is ``[lo, hi]``: the
    smallest when it is below ``-n``, else the largest when it is ``>= n``, else ``None``."""
    if lo < -n:
        return lo
    if hi >= n:
        return hi
    return None


def sync_checks_forced() -> bool:
    """``UNIFIED_TENSOR_SYNC_CHECKS`` set to anything but "", "0", "false", "no", "off"."""
    return env_flag("SYNC_CHECKS")


class CheckQueue:
    """Records and pending checks of one device.

    ``device_buf`` and ``host_buf`` are ``(slots, 2)`` int64 tensors: the kernel writes
    ``device_buf[s]``, :meth:`submit` copies it to ``host_buf[s]`` without blocking and records an
    event with ``record_event(reuse)`` (records ``reuse``, the slot's previous event, or a new one
    when it is ``None``; returns an object with ``query()`` and ``synchronize()``). A slot is
    reused only after its event completed, and a slot that was never hit still holds its
    sentinels, so the hot path never resets anything.
    """

    def __init__(self, device_buf: torch.Tensor, host_buf: torch.Tensor,
                 record_event: Callable[..., object],
                 guard: Callable[[], ContextManager] = contextlib.nullcontext):
        if device_buf.shape != host_buf.shape or device_buf.dim() != 2 or device_buf.shape[1] != 2:
            raise ValueError("record buffers must both have shape (slots, 2)")
        self._guard = guard   # entered around every event query / wait (relaxed capture mode)
        self.device_buf = device_buf
        self.host_buf = host_buf
        self._record_event = record_event
        self._slot_events: List[Optional[object]] = [None] * device_buf.shape[0]
        self._lock = threading.Lock()
        self._free: List[int] = list(range(device_buf.shape[0] - 1, -1, -1))
        self._pending: "collections.deque" = collections.deque()   # (slot, event, n)
        self._errors: List[IndexError] = []
        self.reset_slots(range(device_buf.shape[0]))

    # -- the two calls around a launch ------------------------------------------------------
    def acquire(self) -> int:
        """A free record slot (raises a deferred error first, if one has been settled)."""
        with self._guard(), self._lock:
            self._settle_locked(block=False)
            while not self._free:   # every slot in flight: wait for the oldest check
                if not self._pending:
                    raise RuntimeError(f"all {self.device_buf.shape[0]} deferred index-check "
                                       f"records are taken by gathers being launched")
                self._pending[0][1].synchronize()
                self._settle_locked(block=False)
            self._raise_locked()
            return self._free.pop()

    def address(self, slot: int) -> int:
        """Device address of record ``slot`` (two int64)."""
        return self.device_buf.data_ptr() + slot * 2 * self.device_buf.element_size()

    def submit(self, slot: int, n: int) -> None:
        """After the kernel that writes ``slot`` was enqueued: copy the record back without
        blocking and remember to check it against a table of ``n`` rows."""
        with self._lock:
            self.host_buf[slot].copy_(self.device_buf[slot], non_blocking=True)
            # A slot's event is recorded again only once its last check settled: one event per
            # slot for the queue's life, no event created per gather.
            ev = self._slot_events[slot] = self._record_event(self._slot_events[slot])
            self._pending.append((slot, ev, int(n)))

    def release(self, slot: int) -> None:
        """Give back a slot whose kernel was never enqueued (the launch raised)."""
        with self._lock:
            self.reset_slots([slot])
            self._free.append(slot)

    # -- settling ---------------------------------------------------------------------------
    def settle(self, block: bool = False) -> None:
        """Check every record whose copy has landed (all of them with ``block``) and raise the
        oldest error found, if any."""
        with self._guard(), self._lock:
            self._settle_locked(block)
            self._raise_locked()

    def take_errors(self, block: bool = False) -> List[IndexError]:
        """Settle like :meth:`settle` but hand the errors back instead of raising them."""
        with self._guard(), self._lock:
            self._settle_locked(block)
            errors, self._errors = self._errors, []
            return errors

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def _settle_locked(self, block: bool) -> None:
        """Check the records whose copies have landed, oldest first. Without ``block`` it stops at
        the first check still in flight (events of one stream complete in order, so this is one
        query per call in the common case; a check on another stream waits its turn)."""
        pending, done = self._pending, []
        try:
            while pending:
                slot, event, n = pending[0]
                if block:
                    event.synchronize()
                elif not event.query():
                    break
                pending.popleft()
                done.append((slot, n))
        finally:   # whatever was taken off the queue is settled, even if a wait raised
            dirty = []
            for slot, n in done:
                lo, hi = (int(v) for v in self.host_buf[slot].tolist())
                bad = first_bad(lo, hi, n)
                if bad is not None:
                    err = range_error(bad, n, deferred=True)
                    if hasattr(err, "add_note"):
                        err.add_note(NOTE)
                    self._errors.append(err)
                if (lo, hi) != (INT64_MAX, INT64_MIN):   # hit (or written): reset before reuse
                    dirty.append(slot)
            try:
                if dirty:
                    self.reset_slots(dirty)
            finally:
                self._free.extend(slot for slot, _ in done)

    def _raise_locked(self) -> None:
        if self._errors:
            err, rest = self._errors[0], self._errors[1:]
            self._errors = []
            if rest and hasattr(err, "add_note"):
                err.add_note(f"{len(rest)} more deferred out-of-range error(s) were settled at the "
                             f"same time and are not raised separately")
            raise err

    def reset_slots(self, slots) -> None:
        """Put the sentinels back in ``slots`` and wait until they are there (only at creation and
        after an error): fills in the current stream, then a wait on an event, so no pageable
        copy and no slot reused by a kernel of another stream before its reset landed."""
        slots = list(slots)
        if not slots:
            return
        if len(slots) == self.device_buf.shape[0]:
            views = [(self.device_buf, self.host_buf)]
        else:
            views = [(self.device_buf[s], self.host_buf[s]) for s in slots]
        for dev, host in views:
            dev[..., 0].fill_(INT64_MAX)
            dev[..., 1].fill_(INT64_MIN)
            host[..., 0].fill_(INT64_MAX)
            host[..., 1].fill_(INT64_MIN)
        with self._guard():
            self._record_event().synchronize()


# ------------------------------------------------------------------------------ per CUDA device
_queues: Dict[int, CheckQueue] = {}
_queues_lock = threading.Lock()
_hooks_installed = False


def _cuda_event_factory(device: torch.device) -> Callable[..., object]:
    def record(reuse=None):
        ev = torch.cuda.Event() if reuse is None else reuse
        ev.record(torch.cuda.current_stream(device))
        return ev
    return record


def queue_for(device: torch.device) -> CheckQueue:
    """The check queue of CUDA ``device`` (created on first use)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    q = _queues.get(index)
    if q is not None:
        return q
    with _queues_lock:
        q = _queues.get(index)
        if q is None:
            dev = torch.device("cuda", index)
            q = CheckQueue(torch.empty((SLOTS, 2), dtype=torch.int64, device=dev),
                           torch.empty((SLOTS, 2), dtype=torch.int64, pin_memory=True),
                           _cuda_event_factory(dev), guard=relaxed_capture_mode)
            _queues[index] = q
            _install_hooks()
    return q


def capturing() -> bool:
    """Whether the current CUDA stream is capturing a CUDA graph (False without CUDA). Captures
    on other threads' streams are not seen here: the calls they forbid are made in
    :class:`relaxed_capture_mode`, where they are legal."""
    try:
        return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
    except RuntimeError:
        return False


def stream_capturing(stream) -> bool:
    """Whether CUDA ``stream`` (of any thread) is capturing a CUDA graph (a capture-status
    query, legal during any capture)."""
    try:
        with torch.cuda.stream(stream):
            return torch.cuda.is_current_stream_capturing()
    except RuntimeError:
        return False


class relaxed_capture_mode:
    """``with relaxed_capture_mode():`` runs its body with the calling thread's stream-capture
    mode set to relaxed (``cudaThreadExchangeStreamCaptureMode``) and restores the mode after:
    event queries and waits made in the body do not invalidate a CUDA graph that another thread
    is capturing in global mode. The body must not query events recorded during a capture (none
    of this library's are). A no-op without CUDA's runtime (CuPy's bindings lack the call)."""

    __slots__ = ("_rt", "_old")

    def __enter__(self) -> "relaxed_capture_mode":
        self._rt = rt = _capture_runtime()
        self._old = None if rt is None else rt.exchange_capture_mode(CAPTURE_MODE_RELAXED)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None and self._old != CAPTURE_MODE_RELAXED:
            self._rt.exchange_capture_mode(self._old)


def _capture_runtime():
    """The process's CUDA runtime wrapper, or ``None`` where there is none to ask."""
    from . import _cudart

    global _no_runtime
    rt = _cudart._runtime
    if rt is None:
        if _no_runtime:
            return None
        try:
            rt = _cudart.runtime()
        except (ImportError, OSError, RuntimeError):
            _no_runtime = True   # asked once
            return None
    return rt if hasattr(rt, "exchange_capture_mode") else None


_no_runtime = False


def poll() -> None:
    """Raise the oldest deferred error whose check has landed, on any device (never blocks).
    Not to be called while a CUDA graph is being captured (event queries are illegal then)."""
    if _queues:
        for q in list(_queues.values()):
            q.settle(block=False)


def settle_all(block: bool = True) -> None:
    """Settle every device's pending checks (waiting for them with ``block``); raise the oldest
    error."""
    for q in list(_queues.values()):
        q.settle(block=block)


def synchronize(device=None) -> None:
    """Wait for all work on the GPU (``torch.cuda.synchronize(device)``) and raise the oldest
    deferred ``IndexError`` of a CUDA gather, if any (all devices' checks without ``device``).

    A CUDA gather validates its indices without a host sync; its ``IndexError`` surfaces at the
    next CUDA gather, at the end of a DataLoader epoch, or here: call it where a run must know
    that every gather so far read valid ids (before saving a checkpoint, at the end of a test).
    """
    if device is not None:
        device = torch.device(device) if not isinstance(device, torch.device) else device
        if device.type != "cuda":
            raise ValueError(f"synchronize() takes a CUDA device, got {device}")
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize(device)
    if device is None:
        settle_all(block=True)
    else:
        index = device.index if device.index is not None else torch.cuda.current_device()
        q = _queues.get(index)
        if q is not None:
            q.settle(block=True)


def _report_at_exit() -> None:
    """Print deferred errors that no later call raised (the run ended first)."""
    for index, q in list(_queues.items()):
        try:
            errors = q.take_errors(block=True)
        except Exception as exc:   # CUDA already torn down: nothing more can be learnt
            sys.stderr.write(f"unified_tensor: could not settle deferred index checks on cuda:{index} "
                             f"at exit ({exc})\n")
            continue
        for err in errors:
            sys.stderr.write(f"unified_tensor: a CUDA gather on cuda:{index} read an out-of-range "
                             f"index and nothing raised it before exit: IndexError: {err}\n")


_orphans: list = []


def _forget_in_child() -> None:
    """A forked child cannot use the parent's CUDA state: it starts with no queue, and keeps the
    parent's alive forever (freeing pinned memory or events there would call CUDA)."""
    _orphans.append(dict(_queues))
    _queues.clear()


def _install_hooks() -> None:
    global _hooks_installed
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_report_at_exit)
        os.register_at_fork(after_in_child=_forget_in_child)
