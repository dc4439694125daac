"""Fake CUDA: run the library's GPU code paths on a CPU-only machine and check their device handling.

CI has no GPU, so without this the branches of the samplers, loaders and gathers that only run
for CUDA tensors would be checked only on the rare GPU machine. :func:`install` makes them run on
the CPU, in a child process (it patches ``torch.cuda`` for the whole process: never call it in
the pytest process itself; ``tests/test_fake_cuda.py`` runs ``tests/fake_cuda/run.py``).

What it emulates
----------------
* **CUDA tensors.** A "CUDA" tensor is a CPU tensor of the subclass :class:`FC`. A
  ``TorchFunctionMode`` (:class:`Mode`, active in the main thread and in every thread started
  after :func:`install`) makes ``.device`` say ``cuda:0`` and ``.is_cuda`` say ``True`` for them,
  turns ``device="cuda"`` factories, ``.to("cuda")`` / ``.cuda()`` into FC tensors and ``.cpu()`` /
  ``.to("cpu")`` back into plain ones (copies, as PyTorch makes), and propagates FC through every
  op that has an FC input.
* **PyTorch's device rules**, each a *violation* (``DeviceError`` at once, and recorded in
  :data:`VIOLATIONS` even where library code catches it): an op mixing CUDA tensors with CPU
  tensors of one or more dimensions (0-d CPU tensors are allowed where TensorIterator takes them as
  scalars, as in PyTorch; ``copy_`` and the ``*_as`` shape helpers may mix); indexing a CPU tensor
  with a CUDA index; ``index_put_`` of CPU values into a CUDA tensor, or of anything CUDA into a
  CPU tensor; ``.numpy()`` / ``__array__`` of a CUDA tensor; a CPU ``torch.Generator`` driving a
  CUDA op; ``pin_memory()`` of a CUDA tensor; ``record_stream`` on a CPU tensor; a second GPU.
* **CUDA-only hazards a CPU run hides**, also violations: reading or writing host memory that an
  asynchronous device-to-host copy (``.to("cpu", non_blocking=True)``, ``copy_(...,
  non_blocking=True)``) may still be writing, before any sync or a wait on an event recorded
  after the copy (PyTorch returns such copies at once, into pinned memory); writes through
  repeated indices with different values (``index_put_`` / ``__setitem__`` / ``scatter_`` /
  ``index_copy_``: on a GPU which write wins is undefined); random draws on the device (CUDA's
  generator draws other numbers than the CPU's, so a GPU path that uses it cannot match the CPU
  path, and this harness, which draws the CPU's, would not notice).
* **Host syncs**, counted in :data:`SYNCS` per ``(kind, site)``: reads of CUDA values on the host
  (``tolist``, ``item``, ``int()`` / ``bool()`` / ``float()`` / ``__index__``, ``repr``), ops whose
  output size depends on CUDA data (``nonzero``, ``unique``, ``masked_select``, boolean-mask
  indexing, ``bincount``, ``repeat_interleave`` without ``output_size``, one-argument ``where``,
  ``equal``), blocking device-to-host copies (``.cpu()``, ``.to("cpu")``, ``copy_`` into a CPU
  tensor, without ``non_blocking``), blocking host-to-device copies (PyTorch synchronises the
  stream after a ``non_blocking=False`` H2D copy) and ``synchronize()`` calls.
* **Pinned memory and UVA.** ``unified_tensor``'s in-place pinning runs against
  :class:`FakeHostRuntime` (``cudaHostRegister`` bookkeeping: ranges, overlaps, device addresses
  at a fixed offset from host addresses, so a host address passed where a device one belongs is
  caught); ``pin_memory()`` / ``pin_memory=True`` allocations are tracked too, and ``is_pinned()``
  answers from both, as CUDA does (memory registered in place reports pinned).
* **Kernels.** The neighbour-sampling kernels (``samplers.sampling._layer_cuda._Launch``) are replaced
  by :class:`FakeLaunch`, a subclass that keeps the real argument preparation and checks every
  array the kernel would read (seeds, counts, offsets, outputs on the device with the dtype and
  size the kernel expects; the graph arrays' device addresses derived as the real launch derives
  them and covered by a live registration, or on the device), then computes the result with the
  CPU sampler's NumPy/Numba layer (the CPU and GPU draws are the same counter-based function of
  ``(key, node, t)``, checked against the kernels elsewhere). The zero-copy gather kernel
  (``unified_tensor._gather_cuda.gather_rows_cuda``) is replaced by :func:`fake_gather_rows_cuda`,
  which resolves the table's device address through the fake registrations (reading a table
  that is not registered is a violation, never a read), writes zeros for out-of-range ids and
  records them in the deferred-check record as the kernel does. With the GPU row cache
  (``ut.cache``: ``slot_ptr`` / ``cache_ptr``) it reads row ``r`` from ``cache_ptr + slot_of[r] *
  row_bytes`` when ``slot_of[r] >= 0``, as cuda/gather.cu does; both addresses are resolved
  through :data:`DEVICE_MEMORY` (every live storage of a CUDA tensor), and a slot map that is
  not an int32 CUDA tensor of ``num_rows`` entries, cache rows that are not device memory (host,
  pinned or mapped pinned memory, freed memory) or of another row width, and a slot past the
  cache's allocation are violations. The fused compressed-row gather
  (``unified_tensor._convert_cuda.gather_convert_rows_cuda``) is replaced by
  :func:`fake_gather_convert_rows_cuda`: the same checks and pointer resolution (its table may also
  be device memory; int8 scales and offsets must be float32 device memory of ``num_cols`` entries,
  or ``num_rows`` per row; cache rows are compressed rows), then bf16/fp16 rows are converted
  through float (the same dtype: copied bit for bit) and int8 rows as ``q.float() * scale +
  offset``, as cuda/gather_convert.cu does. Any other kernel launch
  (``unified_tensor._kernels.get_function`` / ``launch``) raises: nothing reaches NVRTC.
* **Streams and events.** ``torch.cuda.Stream`` / ``Event`` / ``stream()`` / ``current_stream()``
  are stand-ins with a per-thread current-stream stack. Work runs when it is issued; an event is
  complete once recorded, and querying or waiting on it lands the asynchronous copies issued
  before it was recorded (see above). ``record_stream`` calls are remembered per storage
  (:data:`RECORDED`), so a test can check that a loader handed every CUDA tensor of a batch over
  to the consumer's stream (:func:`assert_handed_over`). Stream waits, event records and gather
  launches are logged in issue order (:data:`STREAM_LOG`), so a scenario can check how work is
  ordered across streams; a stream waiting on itself is a violation.
* **CUDA graph capture, as far as the rules go.** :func:`capture` makes a fresh stream current and
  capturing in the calling thread (in global, thread-local or relaxed mode). An event query or
  synchronize, a stream wait or a device sync from a thread that CUDA forbids them to while that
  capture is underway (any thread during a global-mode capture, unless its own mode was set to
  relaxed through ``cudaThreadExchangeStreamCaptureMode``, which :class:`FakeHostRuntime`
  provides), and a host query of an event recorded during a capture, are violations.
* **GPU memory.** ``torch.cuda.mem_get_info`` reports :data:`FREE_MEMORY` free (a scenario may
  lower it); the caching allocator holds nothing unused.

What it cannot emulate
----------------------
* **Concurrency.** Work is executed when it is issued; there are no real streams, so missing
  waits, events recorded too early, allocator reuse across streams and races between the
  producer thread's side stream and the training stream are invisible (only the bookkeeping of
  ``record_stream`` is checked). Streams are not told apart: an event or a sync completes every
  asynchronous copy issued before it, whatever stream either was on, and a host-to-device copy
  whose pinned source is modified before the copy ran is not caught.
* **Real pointers and kernel memory safety.** The fake kernels compute on tensors, not on the
  addresses the real kernels receive: argument order and types of the real launches, indexing
  inside the kernels, out-of-bounds reads and writes, alignment and the warp-level lane mapping
  are not exercised (the kernel index math has its own host-compiled tests, tests/cpp, and NVRTC
  compiles every instance in CI). Memory a registration does not cover is refused only where
  the harness resolves an address itself (the gather table, the graph arrays, the row cache's
  slot map and rows). Device memory is known by storage: an address inside a live CUDA
  allocation but outside the tensor the library meant is not caught (the slot map's dtype and
  length are checked against the CUDA tensors starting at its address).
* **Performance, occupancy, ``max_threads``**, several GPUs (there is one, ``cuda:0``, so the
  row cache's per-device maps hold one entry), what a captured graph records and replays, DGL's
  own CUDA code, CUDA's random numbers (device draws are refused, see above;
  ``ALLOW_DEVICE_RNG = True`` lets them draw the CPU's numbers).
* **Fidelity limits** of the device rules: Python code inside PyTorch that a mode cannot see
  (the body of a Python-level torch function runs with the mode popped) is not checked; a view
  of a ``pin_memory()`` tensor that outlives the tensor stops counting as pinned; repeated-index
  writes are checked for 1-D indices only; CUDA tensors are CPU memory, so an op that PyTorch
  implements differently on CUDA (sort stability of equal keys, atomics' order in reductions of
  floats) gives the CPU's answer.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import itertools
import os
import threading
import traceback
import weakref
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

__all__ = ["FC", "DeviceError", "Mode", "install", "is_fc", "to_host", "VIOLATIONS", "SYNCS",
           "RECORDED", "count_syncs", "report", "assert_clean", "assert_handed_over",
           "assert_all_on_device", "REPO_ROOT", "RUNTIME", "DEVICE_MEMORY", "device_operand",
           "STREAM_LOG", "capture"]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))   # tests/fake_cuda/harness.py -> the checkout

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


class DeviceError(RuntimeError):
    """Something PyTorch (or the CUDA runtime) would refuse on a real GPU."""


class FC(torch.Tensor):
    """A "CUDA" tensor: CPU memory, ``cuda:0`` to every caller (see :class:`Mode`)."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    def as_subclass(self, cls):
        """Library code strips tensor subclasses (``UnifiedTensor``) with
        ``t.as_subclass(torch.Tensor)``; for a CUDA tensor the result is still on CUDA.
        (``as_subclass`` does not go through torch-function modes, hence this method.)"""
        if cls is torch.Tensor:
            return self
        return torch.Tensor.as_subclass(self, cls)


def is_fc(t: Any) -> bool:
    return isinstance(t, FC)


# ------------------------------------------------------------------------------------ records
SYNCS: "collections.Counter[Tuple[str, str]]" = collections.Counter()
VIOLATIONS: List[Tuple[str, str, str]] = []   # (message, site, stack)
RECORDED: set = set()                         # storage addresses given record_stream
STRICT = True                                 # raise DeviceError at a violation
_lock = threading.Lock()


def _site() -> str:
    """``path:line`` (relative to the repository) of the innermost frame of the checkout outside
    this harness: the library line (or the scenario line) that did it; when the op itself ran in
    a third-party package (PyG), `` via <package path>:line`` names that frame too."""
    via = ""
    for fr in reversed(traceback.extract_stack()):
        fn = os.path.abspath(fr.filename)
        if fn == os.path.abspath(__file__):
            continue
        if not fn.startswith(REPO_ROOT + os.sep):
            if not via and "site-packages" in fn and f"{os.sep}torch{os.sep}" not in fn:
                via = f" via {fn.split('site-packages' + os.sep, 1)[1]}:{fr.lineno}"
            continue
        return f"{os.path.relpath(fn, REPO_ROOT)}:{fr.lineno}{via}"
    return "?" + via


def violation(msg: str) -> None:
    """Record a device-rule violation; raise :class:`DeviceError` when :data:`STRICT`."""
    site = _site()
    with _lock:
        VIOLATIONS.append((msg, site, "".join(traceback.format_stack(limit=14)[:-2])))
    if STRICT:
        raise DeviceError(f"{msg} (at {site})")


def _sync(kind: str) -> None:
    """A host sync: counted, and every asynchronous copy issued so far has landed."""
    with _lock:
        SYNCS[(kind, _site())] += 1
    _complete()


# Asynchronous device-to-host copies (non_blocking=True) still "in flight": host bytes a real GPU
# may still be writing. Reading or writing them before a sync (or an event recorded after the
# copy has been waited for) is a race on a real GPU; here it is a violation.
_pending: Dict[int, Tuple[int, int, str]] = {}   # copy number -> (start, end, issuing site)
_copies = itertools.count(1)
_last_copy = 0


def _span(t: torch.Tensor) -> Tuple[int, int]:
    p = _plain(t)
    if p.numel() == 0:
        return (0, 0)
    extent = 1 + sum((n - 1) * abs(st) for n, st in zip(p.shape, p.stride()))
    return p.data_ptr(), p.data_ptr() + extent * p.element_size()


def _note_async_d2h(t: torch.Tensor) -> None:
    global _last_copy
    with _lock:
        _last_copy = next(_copies)
        _pending[_last_copy] = _span(t) + (_site(),)


def _complete(upto: Optional[int] = None) -> None:
    with _lock:
        if upto is None:
            _pending.clear()
        else:
            for k in [k for k in _pending if k <= upto]:
                del _pending[k]


def _check_host_access(tensors: list, what: str) -> None:
    """A violation when a host tensor overlaps memory an async D2H copy may still be writing."""
    if not _pending:
        return
    with _lock:
        spans = list(_pending.values())
    for t in tensors:
        if is_fc(t):
            continue
        a, b = _span(t)
        hit = [site for s, e, site in spans if a != b and a < e and s < b]
        if hit:
            violation(f"{what}: touches host memory that an asynchronous device-to-host copy "
                      f"(non_blocking=True, issued at {hit[0]}) may still be writing: no sync "
                      f"or event wait since")


@contextlib.contextmanager
def count_syncs() -> Iterator["collections.Counter[Tuple[str, str]]"]:
    """``with count_syncs() as c:`` -> ``c`` holds the syncs of the body, per ``(kind, site)``
    (all threads; keep the body single-threaded for exact counts)."""
    before = collections.Counter(SYNCS)
    out: "collections.Counter[Tuple[str, str]]" = collections.Counter()
    try:
        yield out
    finally:
        out.update(SYNCS - before)


def report() -> str:
    lines = ["== host syncs on CUDA data (kind @ site: count)"]
    for (kind, site), n in sorted(SYNCS.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"   {kind:<22} @ {site}: {n}")
    lines.append(f"== device violations: {len(VIOLATIONS)}")
    seen = set()
    for msg, site, _ in VIOLATIONS:
        if (msg, site) not in seen:
            seen.add((msg, site))
            lines.append(f"   {msg} @ {site}")
    return "\n".join(lines)


def assert_clean(since: int = 0) -> None:
    """No violation recorded after index ``since`` of :data:`VIOLATIONS` (library code may have
    caught the DeviceError: the record stays)."""
    new = VIOLATIONS[since:]
    if new:
        msg, site, stack = new[0]
        raise AssertionError(f"{len(new)} device violation(s); first: {msg} at {site}\n{stack}")


# ------------------------------------------------------------------------------------ helpers
def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a plain CPU ``torch.Tensor`` over the same memory (FC and UnifiedTensor stripped)."""
    with torch._C.DisableTorchFunction():
        return torch.Tensor.as_subclass(t, torch.Tensor) if type(t) is not torch.Tensor else t


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of any tensor's memory (FC included), bypassing the device rules."""
    with torch._C.DisableTorchFunction():
        return _plain(t).detach().numpy()


def to_host(t: torch.Tensor) -> torch.Tensor:
    """A plain CPU copy of ``t`` (FC or not), for comparisons; no sync is counted. Reading a host
    tensor that an async device-to-host copy may still be writing is a violation (the caller
    stands for the user reading a result)."""
    _check_host_access([t], "reading a result")
    with torch._C.DisableTorchFunction():
        return _plain(t).detach().clone()


def _storage_ptr(t: torch.Tensor) -> int:
    with torch._C.DisableTorchFunction():
        return _plain(t).untyped_storage().data_ptr()


def _leaves(x: Any, out: list) -> list:
    if isinstance(x, torch.Tensor):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _leaves(v, out)
    elif isinstance(x, dict):
        for v in x.values():
            _leaves(v, out)
    return out


def _is_cuda_dev(d: Any) -> bool:
    if isinstance(d, torch.device):
        return d.type == "cuda"
    if isinstance(d, str):
        return d.startswith("cuda")
    return isinstance(d, int) and not isinstance(d, bool)


def _is_dev(d: Any) -> bool:
    if isinstance(d, torch.device):
        return True
    if isinstance(d, str):
        return d.split(":")[0] in ("cuda", "cpu")
    return False


def _check_cuda_index(d: Any) -> None:
    """Only ``cuda:0`` exists."""
    idx = d.index if isinstance(d, torch.device) else (
        int(d.split(":")[1]) if isinstance(d, str) and ":" in d else (d if isinstance(d, int) else None))
    if idx not in (None, 0):
        violation(f"device {d!r}: the fake machine has one GPU, cuda:0")


def _wrap(out: Any) -> Any:
    if isinstance(out, FC):
        return out
    if isinstance(out, torch.Tensor):
        with torch._C.DisableTorchFunction():
            fc = torch.Tensor.as_subclass(out, FC)
        DEVICE_MEMORY.note(fc)
        return fc
    if isinstance(out, list):
        return [_wrap(v) for v in out]
    if isinstance(out, tuple):
        items = [_wrap(v) for v in out]
        if type(out) is tuple:
            return tuple(items)
        try:
            return type(out)(items)          # torch.return_types.* (structseq)
        except TypeError:
            return type(out)(*items)         # namedtuple
    return out


def _unwrap(out: Any) -> Any:
    if isinstance(out, FC):
        return _plain(out)
    if isinstance(out, list):
        return [_unwrap(v) for v in out]
    if isinstance(out, tuple) and type(out) is tuple:
        return tuple(_unwrap(v) for v in out)
    return out


# ------------------------------------------------------------------------------ pinned memory
class FakeHostRuntime:
    """``cudaHostRegister`` & co. on the CPU (``unified_tensor._pinning`` / ``_cudart`` talk to
    it): registered ranges may not overlap, unregister takes the exact start, the device address
    of host byte ``p`` is ``p + OFFSET`` (never a valid host address, so mixing them up shows)."""

    OFFSET = 1 << 52

    def __init__(self) -> None:
        self.ranges: Dict[int, int] = {}                       # start -> end (registered)
        self.pinned: Dict[int, Tuple[int, Any]] = {}           # start -> (end, weakref)
        self._lock = threading.Lock()

    # -- the runtime interface of unified_tensor._pinning / _cudart
    def host_register(self, ptr: int, size: int, flags: int) -> None:
        from unified_tensor._cudart import CudaRuntimeError

        with self._lock:
            for s, e in self.ranges.items():
                if ptr < e and s < ptr + size:
                    raise CudaRuntimeError("cudaHostRegister failed: "
                                           "cudaErrorHostMemoryAlreadyRegistered")
            self.ranges[ptr] = ptr + size

    def host_unregister(self, ptr: int) -> None:
        from unified_tensor._cudart import CudaRuntimeError

        with self._lock:
            if ptr not in self.ranges:
                raise CudaRuntimeError("cudaHostUnregister failed: cudaErrorHostMemoryNotRegistered")
            del self.ranges[ptr]

    def device_pointer(self, ptr: int) -> int:
        from unified_tensor._cudart import CudaRuntimeError

        if self._covering(ptr, 1) is None:
            raise CudaRuntimeError(f"cudaHostGetDevicePointer(ptr=0x{ptr:x}) failed: "
                                   f"cudaErrorInvalidValue (not pinned)")
        return ptr + self.OFFSET

    def read_only_supported(self, device: Optional[int] = None) -> bool:
        return True

    def synchronize(self, devices) -> None:   # before an unregister: nothing is in flight
        pass

    def exchange_capture_mode(self, mode: int) -> int:
        return exchange_capture_mode(mode)

    # -- harness side
    def note_pinned(self, t: torch.Tensor) -> None:
        """``t`` came from ``pin_memory()`` / ``pin_memory=True``."""
        p = t.data_ptr() if not is_fc(t) else _plain(t).data_ptr()
        n = max(1, _plain(t).numel() * t.element_size())
        with self._lock:
            self.pinned[p] = (p + n, weakref.ref(t))
        weakref.finalize(t, self._forget_pinned, p)

    def _forget_pinned(self, p: int) -> None:
        with self._lock:
            self.pinned.pop(p, None)

    def _covering(self, ptr: int, nbytes: int) -> Optional[Tuple[int, int]]:
        """The registered or pinned range holding ``[ptr, ptr + nbytes)``, or ``None``."""
        end = ptr + max(nbytes, 1)
        with self._lock:
            for s, e in self.ranges.items():
                if s <= ptr and end <= e:
                    return s, e
            for s, (e, _) in self.pinned.items():
                if s <= ptr and end <= e:
                    return s, e
        return None

    def is_pinned(self, t: torch.Tensor) -> bool:
        pt = _plain(t)
        return pt.numel() > 0 and self._covering(pt.data_ptr(), 1) is not None

    def host_address(self, dev_ptr: int, nbytes: int, what: str) -> Optional[int]:
        """The host address behind device address ``dev_ptr`` when ``nbytes`` from it are mapped
        (registered or pinned memory); a violation otherwise (``None`` when not strict)."""
        host = int(dev_ptr) - self.OFFSET
        if host < 0 or self._covering(host, nbytes) is None:
            if self._covering(int(dev_ptr), nbytes) is not None:
                violation(f"{what}: the kernel got the host address 0x{int(dev_ptr):x} of pinned "
                          f"memory, not its device address (ut.device_pointer)")
            else:
                violation(f"{what}: device address 0x{int(dev_ptr):x} ({nbytes} bytes) is not "
                          f"mapped pinned memory (unregistered, released, or pageable)")
            return None
        return host


RUNTIME = FakeHostRuntime()


# ----------------------------------------------------------------------------- device memory
class DeviceMemory:
    """The fake GPU's memory: every storage a CUDA (FC) tensor lives in, noted as tensors become
    FC (:func:`_wrap`), so a raw device address handed to a fake kernel resolves to the CUDA
    tensors it points into, the way :class:`FakeHostRuntime` resolves mapped host memory. A
    storage counts while it is alive (a weak reference to the storage itself, so views keep it);
    its FC tensors are kept in a ``WeakSet`` (for dtype and shape checks of kernel arguments)."""

    def __init__(self) -> None:
        from torch.multiprocessing.reductions import StorageWeakRef

        self._weak = StorageWeakRef
        self._by_start: Dict[int, Tuple[int, Any, "weakref.WeakSet"]] = {}   # start -> (end, ref, tensors)
        self._lock = threading.Lock()
        self._added = 0

    def note(self, t: torch.Tensor) -> None:
        with torch._C.DisableTorchFunction():
            st = _plain(t).untyped_storage()
            start, nbytes = st.data_ptr(), st.nbytes()
        if not start or not nbytes:
            return
        with self._lock:
            ent = self._by_start.get(start)
            if ent is None or ent[0] != start + nbytes or ent[1].expired():
                ent = self._by_start[start] = (start + nbytes, self._weak(st), weakref.WeakSet())
                self._added += 1
                if self._added % 4096 == 0:      # forget freed storages now and then
                    for k in [k for k, v in self._by_start.items() if v[1].expired()]:
                        del self._by_start[k]
            ent[2].add(t)

    def find(self, ptr: int) -> Optional[Tuple[int, int, List[torch.Tensor]]]:
        """``(start, end, live FC tensors)`` of the live CUDA allocation holding byte ``ptr``."""
        with self._lock:
            ent = self._by_start.get(ptr)
            if ent is not None and not ent[1].expired():
                return ptr, ent[0], list(ent[2])
            for s, (e, ref, ts) in self._by_start.items():
                if s <= ptr < e and not ref.expired():
                    return s, e, list(ts)
        return None


DEVICE_MEMORY = DeviceMemory()


def device_operand(ptr: int, nbytes: int, what: str, dtype: Optional[torch.dtype] = None,
                   numel: Optional[int] = None) -> Optional[Tuple[int, List[torch.Tensor]]]:
    """Resolve the raw device address ``ptr`` a fake kernel got for ``nbytes`` of device memory:
    ``(end of its allocation, the live contiguous CUDA tensors starting at ptr, as plain
    tensors)``. With ``dtype`` (and ``numel``) only those of that dtype and size, and there must
    be one. A
    violation (``None`` when not strict) where the address is host memory (pinned or mapped
    pinned memory: read over PCIe, or a host pointer), no live CUDA allocation, or the bytes run
    past the allocation."""
    ptr = int(ptr)
    hit = DEVICE_MEMORY.find(ptr) if ptr else None
    if hit is None:
        if ptr >= RUNTIME.OFFSET and RUNTIME._covering(ptr - RUNTIME.OFFSET, 1) is not None:
            violation(f"{what}: 0x{ptr:x} is mapped pinned host memory, not device memory")
        elif ptr and RUNTIME._covering(ptr, 1) is not None:
            violation(f"{what}: 0x{ptr:x} is a host address of pinned memory, not device memory")
        else:
            violation(f"{what}: 0x{ptr:x} is not in a live CUDA allocation (host memory, freed, "
                      f"or no pointer)")
        return None
    start, end, tensors = hit
    if ptr + nbytes > end:
        violation(f"{what}: {nbytes} bytes from 0x{ptr:x} run {ptr + nbytes - end} bytes past "
                  f"the CUDA allocation")
        return None
    with torch._C.DisableTorchFunction():
        at = [_plain(t) for t in tensors]
        at = [p for p in at if p.data_ptr() == ptr and p.is_contiguous()]
        if dtype is not None:
            ok = [p for p in at if p.dtype == dtype and (numel is None or p.numel() == numel)]
            if not ok:
                violation(f"{what}: expected a CUDA {dtype} tensor of {numel} elements at 0x{ptr:x}, "
                          f"the CUDA tensors there are {[(p.dtype, tuple(p.shape)) for p in at]}")
                return None
            at = ok
    return end, at


# ----------------------------------------------------------------------------- streams/events
# Stream-ordering bookkeeping, in issue order: ("wait_stream", waiter, other),
# ("record", stream, event), ("wait_event", waiter, event), ("gather", stream, rows) with streams'
# and events' ids. Work runs when issued, so nothing is enforced; scenarios read it to check
# that the library orders its work (a cache refresh, say) against other streams as it should.
STREAM_LOG: List[Tuple[str, int, int]] = []
_event_ids = itertools.count(1)


class FakeStream:
    """``torch.cuda.Stream``: work runs when issued, so waits are no-ops (logged in
    :data:`STREAM_LOG`). A stream waiting on itself is a violation: a wait meant for another
    stream (the consumer's) was issued on the wrong one."""

    _ids = iter(range(1, 1 << 30))

    def __init__(self, device: Any = None, priority: int = 0, **_: Any) -> None:
        if device is not None:
            _check_cuda_index(device)
        self.device = CUDA
        self.cuda_stream = next(self._ids)

    def wait_stream(self, other: "FakeStream") -> None:
        if not isinstance(other, FakeStream):
            violation(f"wait_stream({other!r}): not a stream")
            return
        if other is self:
            violation(f"{self!r}.wait_stream(itself): a no-op where a wait on another stream was meant")
        if self in _CAPTURING and other not in _CAPTURING:
            violation(f"{self!r} (capturing) waits on a stream outside its capture: an event "
                      f"recorded outside the capture (invalid without cudaEventWaitExternal)")
        _capture_check("wait_stream")
        STREAM_LOG.append(("wait_stream", self.cuda_stream, other.cuda_stream))

    def wait_event(self, event: "FakeEvent") -> None:
        if not isinstance(event, FakeEvent):
            violation(f"wait_event({event!r}): not an event")
            return
        if self in _CAPTURING and not event.in_capture:
            violation(f"{self!r} (capturing) waits on an event recorded outside its capture "
                      f"(invalid without cudaEventWaitExternal)")
        STREAM_LOG.append(("wait_event", self.cuda_stream, event.id))

    def record_event(self, event: Optional["FakeEvent"] = None) -> "FakeEvent":
        event = event or FakeEvent()
        event.record(self)
        return event

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        _sync("stream.synchronize")

    def __repr__(self) -> str:
        return f"<FakeStream {self.cuda_stream}>"


class FakeEvent:
    """``torch.cuda.Event``: complete once recorded."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False,
                 interprocess: bool = False) -> None:
        self.recorded = False
        self.after = 0     # the async copies issued before it was recorded
        self.id = next(_event_ids)
        self.in_capture = False   # last recorded on a capturing stream

    def record(self, stream: Optional[FakeStream] = None) -> None:
        if stream is not None and not isinstance(stream, FakeStream):
            violation(f"Event.record({stream!r}): not a stream")
        stream = stream or _current_stream()
        self.recorded = True
        self.after = _last_copy
        self.in_capture = stream in _CAPTURING
        STREAM_LOG.append(("record", stream.cuda_stream, self.id))

    def query(self) -> bool:
        _capture_check("Event.query", self)
        _complete(self.after)     # complete: so is everything issued before it
        return True

    def synchronize(self) -> None:
        _capture_check("Event.synchronize", self)
        with _lock:
            SYNCS[("event.synchronize", _site())] += 1
        _complete(self.after)

    def wait(self, stream: Optional[FakeStream] = None) -> None:
        pass

    def elapsed_time(self, other: "FakeEvent") -> float:
        return 0.0


_DEFAULT_STREAM = FakeStream()
_stream_tls = threading.local()

# CUDA graph capture, as far as the library's own calls go: the streams capturing (with the mode
# each began in) and each thread's capture mode (cudaThreadExchangeStreamCaptureMode). CUDA's
# rule: a thread may not make a potentially unsafe call (an event query or synchronize, a stream
# wait on a capturing stream from outside, a device sync) while it captures in a mode other than
# relaxed, or while any thread captures in global mode, unless its own mode is relaxed; and an
# event recorded during capture may never be queried or waited on by the host.
_CAPTURING: Dict[FakeStream, str] = {}
# GPU memory torch.cuda.mem_get_info reports (free, total): a scenario may lower FREE_MEMORY.
TOTAL_MEMORY = 80 << 30
FREE_MEMORY = 64 << 30
_CAPTURE_MODES = {"global": 0, "thread_local": 1, "relaxed": 2}
_capture_tls = threading.local()


def _thread_capture_mode() -> int:
    return getattr(_capture_tls, "mode", 0)


def _capture_check(what: str, event: Optional["FakeEvent"] = None) -> None:
    if event is not None and event.in_capture:
        violation(f"{what} of an event recorded during CUDA graph capture (illegal)")
        return
    if not _CAPTURING or _thread_capture_mode() == _CAPTURE_MODES["relaxed"]:
        return
    mine = [s for s in _stream_stack() if s in _CAPTURING]
    if any(_CAPTURING[s] != "relaxed" for s in mine) or "global" in _CAPTURING.values():
        violation(f"{what} while a CUDA graph capture is underway (mode "
                  f"{sorted(set(_CAPTURING.values()))}) from a thread in capture mode "
                  f"{_thread_capture_mode()}: this invalidates the capture")


@contextlib.contextmanager
def capture(mode: str = "global") -> Iterator[FakeStream]:
    """``torch.cuda.graph(g, capture_error_mode=mode)`` as far as the harness goes: a fresh
    stream becomes current and capturing in this thread for the body."""
    s = FakeStream()
    _CAPTURING[s] = mode
    try:
        with _stream_ctx(s):
            yield s
    finally:
        del _CAPTURING[s]


def _is_current_stream_capturing() -> bool:
    return _current_stream() in _CAPTURING


def exchange_capture_mode(mode: int) -> int:
    """``cudaThreadExchangeStreamCaptureMode``: set this thread's mode, return the old one."""
    old = _thread_capture_mode()
    _capture_tls.mode = mode
    return old


def _stream_stack() -> list:
    st = getattr(_stream_tls, "stack", None)
    if st is None:
        st = _stream_tls.stack = []
    return st


def _current_stream(device: Any = None) -> FakeStream:
    if device is not None:
        _check_cuda_index(device)
    st = _stream_stack()
    return st[-1] if st else _DEFAULT_STREAM


@contextlib.contextmanager
def _stream_ctx(stream: Optional[FakeStream]) -> Iterator[None]:
    if stream is None:
        yield
        return
    if not isinstance(stream, FakeStream):
        violation(f"torch.cuda.stream({stream!r}): not a stream")
    st = _stream_stack()
    st.append(stream)
    try:
        yield
    finally:
        st.pop()


@contextlib.contextmanager
def _device_ctx(device: Any) -> Iterator[None]:
    if device is not None and not (isinstance(device, torch.device) and device.type == "cpu"):
        _check_cuda_index(device)
    yield


# ----------------------------------------------------------------------------- the device mode
# Reads of CUDA values on the host, and ops whose output size depends on CUDA data.
_SYNC_OPS = {"tolist", "item", "__int__", "__float__", "__bool__", "__index__", "__complex__",
             "__repr__", "__format__", "nonzero", "argwhere", "unique", "unique_consecutive",
             "_unique", "_unique2", "masked_select", "equal", "allclose", "bincount"}
# Ops returning host values (not tensors) or nothing to wrap.
_HOST_RESULT = {"tolist", "item", "__int__", "__float__", "__bool__", "__index__", "__complex__",
                "__repr__", "__format__", "__str__", "data_ptr", "numpy", "__array__", "dim",
                "numel", "size", "stride", "element_size", "is_contiguous", "equal", "allclose",
                "__len__", "storage_offset", "untyped_storage", "nelement", "ndimension",
                "is_floating_point", "is_complex", "get_device", "__reduce_ex__"}
# Ops that take CPU tensors next to CUDA ones in PyTorch (sizes only, or cross-device copies).
_MIX_OK = {"copy_", "view_as", "expand_as", "reshape_as", "__getitem__", "__setitem__",
           "index_put_", "index_put", "size", "dim", "numel", "__len__"}
# Ops that refuse even 0-d CPU tensors next to CUDA tensors (not TensorIterator ops).
_NO_SCALAR_MIX = {"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack",
                  "index_select", "gather", "scatter", "scatter_", "scatter_add", "scatter_add_",
                  "scatter_reduce", "scatter_reduce_", "take", "embedding", "searchsorted",
                  "index_add", "index_add_", "index_copy", "index_copy_", "bucketize"}
# Random draws. On a real GPU they come from CUDA's generator, not the CPU's: the library's GPU
# paths promise the CPU path's draws, which device RNG would break (invisibly here).
_RANDOM = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like",
           "normal", "bernoulli", "multinomial", "poisson", "uniform_", "normal_", "random_",
           "exponential_", "geometric_", "cauchy_", "log_normal_", "bernoulli_", "dropout"}
ALLOW_DEVICE_RNG = False   # a scenario of user code that draws on the device may set it
CHECK_REPEATED_WRITES = True   # off only where a scenario checks the rest of a known-bad path

# Ops that read no element (metadata, views): fine on memory a copy is still writing.
_NO_DATA_ACCESS = {"is_pinned", "pin_memory", "size", "dim", "numel", "stride", "storage_offset",
                   "data_ptr", "untyped_storage", "element_size", "is_contiguous", "view", "reshape",
                   "flatten", "squeeze", "unsqueeze", "t", "transpose", "permute", "narrow",
                   "select", "expand", "detach", "as_strided", "unbind", "split", "chunk",
                   "__len__", "requires_grad_", "record_stream", "nelement", "ndimension",
                   "is_floating_point", "is_complex", "get_device", "type_as", "view_as",
                   "reshape_as", "expand_as", "contiguous"}
_NEW = {"new_tensor", "new_empty", "new_zeros", "new_ones", "new_full", "new_empty_strided"}


def _custom_subclass(types: tuple) -> Optional[type]:
    """A tensor subclass with its own ``__torch_function__`` (``UnifiedTensor``), if any."""
    base = torch.Tensor.__torch_function__.__func__
    for t in types:
        tf = getattr(t, "__torch_function__", None)
        f = getattr(tf, "__func__", tf)
        if t is not FC and t is not torch.Tensor and f not in (base, torch._C._disabled_torch_function_impl):
            return t
    return None


def _check_duplicate_writes(name: str, index: torch.Tensor, values: Any) -> None:
    """CUDA writes through an index with repeats are nondeterministic (which write wins is not
    defined) unless the repeats write equal values: a violation when they differ."""
    if not CHECK_REPEATED_WRITES:
        return
    idx = _np(index).reshape(-1)
    if idx.size < 2:
        return
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    rep = np.nonzero(s[1:] == s[:-1])[0]
    if rep.size == 0:
        return
    if not isinstance(values, torch.Tensor) or _plain(values).numel() <= 1:
        return                              # one value for every write: deterministic
    v = _np(values)
    if v.shape[0] != idx.size:
        return                              # broadcast shapes: not checked
    v = v[order]
    diff = np.any((v[1:] != v[:-1]).reshape(len(s) - 1, -1), axis=1)
    if np.any(diff[rep]):
        violation(f"{name}: repeated indices write different values; on a GPU which one wins is "
                  f"undefined (here: the last)")


def _is_tensor_index(key: Any) -> bool:
    return bool(_leaves(key if isinstance(key, tuple) else (key,), []))


def _has_bool_index(key: Any) -> bool:
    return any(t.dtype == torch.bool for t in _leaves(key if isinstance(key, tuple) else (key,), []))


class Mode(TorchFunctionMode):
    """Device semantics for :class:`FC` tensors and the device rules (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", None) or str(func)

        # A subclass's own handler runs only where PyTorch would run it: not inside its
        # DisableTorchFunctionSubclass() (where a handler calls func on itself: no recursion).
        sub = _custom_subclass(types) if torch._C._is_torch_function_enabled() else None
        if sub is not None:   # e.g. UnifiedTensor's gather: its Python body must see this mode
            with Mode():
                return sub.__torch_function__(func, types, args, kwargs)

        if name == "__get__":
            prop = getattr(getattr(func, "__self__", None), "__name__", "")
            self_ = args[0]
            if prop == "is_cuda":
                return is_fc(self_)
            if prop == "is_cpu":
                return not is_fc(self_)
            if prop == "device":
                return CUDA if is_fc(self_) else func(*args, **kwargs)
            out = func(*args, **kwargs)
            return _wrap(out) if is_fc(self_) and isinstance(out, torch.Tensor) else out

        if func is torch.device and len(args) == 1 and not kwargs and isinstance(args[0], int) \
                and not isinstance(args[0], bool):   # torch.device(i): accelerator i, a GPU here
            _check_cuda_index(args[0])
            return torch.device("cuda", args[0])

        leaves = _leaves(args, []) + _leaves(kwargs, [])
        on_cuda = any(is_fc(t) for t in leaves)
        self_ = args[0] if args else None
        if _pending and name not in _NO_DATA_ACCESS and not (
                name == "__getitem__" and not _is_tensor_index(args[1])):
            _check_host_access(leaves, name)

        # ---- conversions and memory kinds -----------------------------------------------------
        if name in ("numpy", "__array__") and is_fc(self_):
            violation(f"{name}() of a CUDA tensor")
            return func(*_unwrap(args), **kwargs)
        if name == "is_pinned":
            return False if is_fc(self_) else RUNTIME.is_pinned(self_)
        if name == "pin_memory":
            if is_fc(self_):
                violation("pin_memory() of a CUDA tensor (only dense CPU tensors can be pinned)")
                return self_
            if RUNTIME.is_pinned(self_):
                return self_
            out = _plain(self_).clone()
            RUNTIME.note_pinned(out)
            return out
        if name == "cuda":
            dev = args[1] if len(args) > 1 else kwargs.get("device")
            if dev is not None:
                _check_cuda_index(dev)
            if is_fc(self_):
                return self_
            if not kwargs.get("non_blocking", False):
                _sync("h2d (blocking)")
            return _wrap(_plain(self_).clone())
        if name == "cpu":
            if not is_fc(self_):
                return self_
            _sync("d2h (.cpu())")
            return _plain(self_).clone()
        if name == "to":
            return self._to(func, args, kwargs)
        if name in _NEW:
            dev = kwargs.get("device")
            target_cuda = _is_cuda_dev(dev) if dev is not None else is_fc(self_)
            if dev is not None:
                kwargs["device"] = "cpu"
            kwargs.pop("pin_memory", None)
            out = func(_plain(self_), *_unwrap(list(args[1:])), **kwargs)
            return _wrap(out) if target_cuda else _unwrap(out)

        # ---- factories and explicit devices ---------------------------------------------------
        dev_kw = kwargs.get("device")
        pin = kwargs.pop("pin_memory", False)
        if dev_kw is not None:
            target_cuda = _is_cuda_dev(dev_kw)
            if target_cuda:
                _check_cuda_index(dev_kw)
                kwargs["device"] = "cpu"
                if pin:
                    violation(f"{name}(pin_memory=True) on a CUDA device")
                self._check_generator(kwargs, name)
                if name in ("tensor", "as_tensor") and args and not is_fc(args[0]):
                    _sync("h2d (blocking tensor(device=cuda))")   # copied, then the stream synced
                out = func(*_unwrap(list(args)), **kwargs)
                if isinstance(out, torch.Tensor) and any(   # as_tensor(cpu_t): a copy on a GPU
                        not is_fc(a) and _storage_ptr(a) == _storage_ptr(out) for a in leaves):
                    out = out.clone()
                return _wrap(out)
            out = func(*_unwrap(list(args)), **kwargs)
            if pin and isinstance(out, torch.Tensor):
                RUNTIME.note_pinned(out)
            if on_cuda and name in ("zeros_like", "empty_like", "ones_like", "full_like",
                                    "rand_like", "randn_like", "randint_like"):
                return _unwrap(out)       # device="cpu" given explicitly: a CPU result
            if name in ("tensor", "as_tensor") and on_cuda:
                _sync("d2h (tensor(device='cpu'))")
            return out if not on_cuda else _unwrap(out)
        if pin:
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor):
                RUNTIME.note_pinned(out)
            return out

        if not on_cuda:
            return func(*args, **kwargs)

        # ---- device rules for ops with CUDA operands --------------------------------------------
        if name == "copy_":
            src = args[1] if len(args) > 1 else kwargs.get("src")
            nb = kwargs.get("non_blocking", False) or (len(args) > 2 and bool(args[2]))
            if not is_fc(self_) and is_fc(src) and not nb:
                _sync("d2h (copy_)")
            if is_fc(self_) and isinstance(src, torch.Tensor) and not is_fc(src) and not nb \
                    and src.dim() > 0:
                _sync("h2d (blocking copy_)")
            out = func(*args, **kwargs)
            if not is_fc(self_) and is_fc(src) and nb:
                _note_async_d2h(self_)
            return out
        if name == "__getitem__":
            key = args[1]
            if not is_fc(self_):
                if any(is_fc(t) for t in _leaves((key,), [])):
                    violation("indexing a CPU tensor with a CUDA index")
            if _has_bool_index(key):
                _sync("bool-mask indexing")
            return _wrap(func(*args, **kwargs))
        if name in ("__setitem__", "index_put_", "index_put"):
            self._check_index_put(name, args, kwargs)
            out = func(*args, **kwargs)
            return out if name == "__setitem__" or out is self_ else _wrap(out)

        plain = [t for t in leaves if not is_fc(t)]
        if plain and name not in _MIX_OK and not name.endswith("_as"):
            bad = plain if name in _NO_SCALAR_MIX else [t for t in plain if t.dim() > 0]
            if bad:
                violation(f"{name}: mixes CUDA and CPU tensors (CPU shapes "
                          f"{[tuple(t.shape) for t in bad]})")
        self._check_generator(kwargs, name)
        if name in ("scatter_", "scatter", "index_copy_", "index_copy") and is_fc(self_):
            if name.startswith("scatter"):
                self._check_scatter(name, args, kwargs)
            elif len(args) > 3 and args[1] == 0:
                _check_duplicate_writes(name, args[2], args[3])
        if name in _SYNC_OPS:
            _sync(name)
        elif name == "repeat_interleave" and kwargs.get("output_size") is None \
                and (isinstance(args[0], torch.Tensor) and len(args) == 1
                     or len(args) > 1 and isinstance(args[1], torch.Tensor)):
            _sync("repeat_interleave")
        elif name == "where" and len(args) == 1 and not kwargs:
            _sync("where(cond)")
        out = func(*args, **kwargs)
        if name in _HOST_RESULT or out is None:
            return out
        if any(out is a for a in args) or ("out" in kwargs and out is kwargs["out"]):
            return out                 # in place: the object itself
        return _wrap(out)

    # --------------------------------------------------------------------------------------
    @staticmethod
    def _check_generator(kwargs: dict, name: str) -> None:
        gen = kwargs.get("generator")
        if isinstance(gen, torch.Generator) and gen.device.type == "cpu":
            violation(f"{name}: a CPU torch.Generator for a CUDA op (PyTorch: 'Expected a 'cuda' "
                      f"device type for generator')")
        if name in _RANDOM and not ALLOW_DEVICE_RNG:
            violation(f"{name}: random numbers drawn on the CUDA device; a GPU draws other numbers "
                      f"than the CPU (here: the CPU's), so the GPU path cannot match the CPU "
                      f"path and this harness cannot tell")

    @staticmethod
    def _check_index_put(name: str, args: tuple, kwargs: dict) -> None:
        self_ = args[0]
        key = args[1] if len(args) > 1 else kwargs.get("indices")
        value = args[2] if len(args) > 2 else kwargs.get("values", kwargs.get("value"))
        tensor_key = _is_tensor_index(key)
        if not tensor_key:   # basic indexing: a copy_ into a view (any devices)
            if not is_fc(self_) and is_fc(value):
                _sync("d2h (setitem)")
            return
        if not is_fc(self_):
            violation(f"{name}: CPU tensor indexed-assigned with CUDA index or values")
            return
        if isinstance(value, torch.Tensor) and not is_fc(value) and value.dim() > 0:
            violation(f"{name}: CUDA tensor indexed-assigned from CPU values")
        if _has_bool_index(key) and isinstance(value, torch.Tensor):
            _sync("bool-mask index_put")
        keys = key if isinstance(key, (tuple, list)) else (key,)
        if len(keys) == 1 and isinstance(keys[0], torch.Tensor) and keys[0].dtype != torch.bool \
                and not kwargs.get("accumulate", len(args) > 3 and bool(args[3])):
            _check_duplicate_writes(name, keys[0], value)

    @staticmethod
    def _check_scatter(name: str, args: tuple, kwargs: dict) -> None:
        """``scatter_`` / ``scatter`` without ``reduce`` along dim 0 of 1-D tensors."""
        if kwargs.get("reduce") is not None or len(args) < 3 or args[0].dim() != 1:
            return
        index = args[2] if len(args) > 2 else kwargs.get("index")
        src = args[3] if len(args) > 3 else kwargs.get("src", kwargs.get("value"))
        if isinstance(index, torch.Tensor):
            _check_duplicate_writes(name, index, src)

    def _to(self, func, args: tuple, kwargs: dict) -> torch.Tensor:
        """``Tensor.to`` in all its forms: device / dtype / other tensor, positional or keyword."""
        self_ = args[0]
        src_cuda = is_fc(self_)
        target = None
        rest = []
        for a in list(args[1:]):
            if _is_dev(a) or (isinstance(a, int) and not isinstance(a, bool)):
                target = CUDA if _is_cuda_dev(a) else CPU
                if target is CUDA:
                    _check_cuda_index(a)
                rest.append("cpu")
            elif isinstance(a, torch.Tensor):          # to(other): other's dtype and device
                target = CUDA if is_fc(a) else CPU
                rest.append(a.dtype)
            else:
                rest.append(a)
        if kwargs.get("device") is not None:
            target = CUDA if _is_cuda_dev(kwargs["device"]) else CPU
            if target is CUDA:
                _check_cuda_index(kwargs["device"])
            kwargs["device"] = "cpu"
        nb = bool(kwargs.pop("non_blocking", False))
        if target is None:
            target = CUDA if src_cuda else CPU
        p = _plain(self_)
        out = func(p, *rest, **kwargs)
        if (target.type == "cuda") != src_cuda:      # a device change: always a copy
            if out is p or _storage_ptr(out) == _storage_ptr(p):
                out = out.clone()
            if not nb:
                _sync("d2h (.to(cpu))" if src_cuda else "h2d (blocking .to(cuda))")
            elif src_cuda:     # PyTorch: pinned destination, copy still in flight
                RUNTIME.note_pinned(out)
                _note_async_d2h(out)
        elif out is p:
            return self_                                 # nothing changed: the tensor itself
        return _wrap(out) if target.type == "cuda" else _unwrap(out)


# --------------------------------------------------------------------------- fake kernels
LAUNCHES: "collections.Counter[str]" = collections.Counter()


def _make_fake_launch(real_launch: type) -> type:
    """A subclass of ``samplers.sampling._layer_cuda._Launch`` whose kernels run on the CPU."""

    class FakeLaunch(real_launch):
        def __init__(self, graph, seeds, excl):
            if not is_fc(seeds):
                violation("sampling kernel launched with CPU seeds (a host pointer passed as a "
                          "device pointer)")
            super().__init__(graph, seeds, excl)     # the real argument preparation
            if self.excl is not None:
                if not is_fc(self.excl):
                    violation("excluded positions not on the device")
                e = _np(self.excl)
                if np.any(e[1:] <= e[:-1]):
                    violation("excluded positions not strictly ascending (the kernel bisects them)")
                self._excl_np = e.astype(np.int64)
            else:
                self._excl_np = None
            if graph.placement not in ("pinned", "cuda"):
                violation(f"sampling kernel reads a graph of placement {graph.placement!r} "
                          f"(pageable host memory)")
            self._check_graph_arrays()
            LAUNCHES["sample"] += 1

        def _check_graph_arrays(self) -> None:
            from samplers.sampling import _layer_cuda as sc

            g = self.graph
            for what, t in (("indptr", g.indptr), ("indices", g.indices), ("edge_ids", g.edge_ids)):
                if t is None:
                    continue
                ptr = int(sc._ptr(t))             # the address the real launch passes
                nbytes = _plain(t).numel() * t.element_size()
                if is_fc(t):
                    if ptr != _plain(t).data_ptr():
                        violation(f"graph {what}: device address of a CUDA array is not its data_ptr")
                elif nbytes:
                    RUNTIME.host_address(ptr, nbytes, f"graph {what}")

        def _chk(self, t, dtype, n, what):
            if not is_fc(t):
                violation(f"{what}: kernel argument not on the device")
            if t.dtype != dtype:
                violation(f"{what}: dtype {t.dtype}, the kernel expects {dtype}")
            if not _plain(t).is_contiguous():
                violation(f"{what}: not contiguous")
            if _plain(t).numel() < n:
                violation(f"{what}: {_plain(t).numel()} entries, the kernel writes {n}")

        def count(self, fanout, replace, pad_negative, counts, err):
            LAUNCHES["sample_count"] += 1
            self._chk(self.seeds, self.graph.idtype, self.n, "seeds")
            self._chk(counts, torch.int64, self.n, "counts")
            self._chk(err, torch.int32, 1, "err")
            s = _np(self.seeds).astype(np.int64)
            c, e = _np(counts), _np(err)
            ip = _np(self.graph.indptr).astype(np.int64)
            pad = (s < 0) & bool(pad_negative)
            bad = ~pad & ((s < 0) | (s >= self.graph.num_nodes))
            ok = ~pad & ~bad
            v = s[ok]
            st, en = ip[v], ip[v + 1]
            deg = en - st
            if self._excl_np is not None:
                ex = self._excl_np
                deg = deg - (np.searchsorted(ex, en) - np.searchsorted(ex, st))
            if fanout < 0:
                k = deg
            elif replace:
                k = np.where(deg == 0, 0, fanout)
            else:
                k = np.minimum(deg, fanout)
            c[:self.n] = 0
            c[:self.n][ok] = k
            if bad.any():
                e[0] = 1

        def fill(self, offsets, fanout, replace, key, out_src, out_eid, out_dst):
            from samplers.sampling._layer_cpu import sample_layer

            LAUNCHES["sample_fill"] += 1
            self._chk(offsets, torch.int64, self.n + 1, "offsets")
            o = _np(offsets)
            total = int(o[self.n])
            self._chk(out_src, self.graph.idtype, total, "out_src")
            self._chk(out_eid, torch.int64, total, "out_eid")
            self._chk(out_dst, torch.int64, total, "out_dst")
            g = self.graph
            s = _np(self.seeds).astype(np.int64)
            valid = np.nonzero((s >= 0) & (s < g.num_nodes))[0]
            ix = _np(g.indices)
            seeds = np.ascontiguousarray(s[valid].astype(ix.dtype))
            eids = None if g.edge_ids is None else _np(g.edge_ids)
            _, ei, eid, _ = sample_layer(_np(g.indptr), ix, eids, seeds, fanout, replace, key,
                                         None, relabel=False, excl=self._excl_np)
            if ei.shape[1] != total:
                violation(f"sample_fill: the counts say {total} edges, the draws give {ei.shape[1]}")
                return
            _np(out_src)[:total] = ei[0]
            _np(out_eid)[:total] = eid
            _np(out_dst)[:total] = valid[ei[1]]

    return FakeLaunch


def _cache_operands(slot_ptr: int, cache_ptr: int, num_rows: int, row_bytes: int, what: str,
                    table: str):
    """A gather kernel's GPU row cache, as the kernel reads it: ``(slot map, cache rows)`` as
    NumPy arrays over the device memory they point at, or ``None`` after reporting a
    violation (unknown pointers, no rows for a slot map, rows of another width)."""
    hit = device_operand(slot_ptr, num_rows * 4, f"{what}: cache slot map (slot_ptr)",
                         torch.int32, num_rows)
    if hit is None:
        return None
    slots = _np(hit[1][0])
    if not cache_ptr:
        violation(f"{what}: a cache slot map without cache rows (cache_ptr is 0)")
        return None
    hit = device_operand(cache_ptr, 0, f"{what}: cache rows (cache_ptr)")
    if hit is None:
        return None
    end, there = hit
    widths = {int(np.prod(p.shape[1:], dtype=np.int64)) * p.element_size()
              for p in there if p.dim() > 0}
    if widths and row_bytes not in widths:
        violation(f"{what}: the cache rows at cache_ptr are {sorted(widths)} bytes each, the "
                  f"{table}'s {row_bytes}")
        return None
    k = (end - int(cache_ptr)) // row_bytes
    cache = np.empty((0, row_bytes), np.uint8) if k == 0 else np.frombuffer(
        (ctypes.c_char * (k * row_bytes)).from_address(int(cache_ptr)),
        dtype=np.uint8).reshape(k, row_bytes)
    return slots, cache


def fake_gather_rows_cuda(table_dev_ptr: int, num_rows: int, row_bytes: int, index: torch.Tensor,
                          out: torch.Tensor, *, perm: Optional[torch.Tensor] = None,
                          aligned: bool = True, max_threads: Optional[int] = None,
                          bad_ptr: int = 0, cache_ptr: int = 0, slot_ptr: int = 0) -> None:
    """``unified_tensor._gather_cuda.gather_rows_cuda`` on the CPU (see the module docstring)."""
    LAUNCHES["gather"] += 1
    m = index.shape[0]
    LAUNCHES["gather_rows"] += m
    STREAM_LOG.append(("gather", _current_stream().cuda_stream, m))
    if m == 0 or row_bytes == 0:
        return
    for t, what in ((index, "index"), (out, "out")) + (((perm, "perm"),) if perm is not None else ()):
        if not is_fc(t):
            violation(f"gather kernel: {what} is not on the device")
        if not _plain(t).is_contiguous():
            violation(f"gather kernel: {what} is not contiguous")
    if index.dtype not in (torch.int32, torch.int64) or index.dim() != 1:
        violation(f"gather kernel: index must be 1-D int32/int64, got {index.dtype} {tuple(index.shape)}")
    if _plain(out).numel() * out.element_size() < m * row_bytes:
        violation("gather kernel: out is smaller than len(index) rows")
        return
    host = RUNTIME.host_address(table_dev_ptr, num_rows * row_bytes, "gather table")
    if host is None:
        return
    slots = cache = None
    if slot_ptr:   # the GPU row cache: the slot map and the rows in device memory
        LAUNCHES["gather_cached"] += 1
        hit = _cache_operands(slot_ptr, cache_ptr, num_rows, row_bytes, "gather kernel", "table")
        if hit is None:
            return
        slots, cache = hit
    table = np.frombuffer((ctypes.c_char * (num_rows * row_bytes)).from_address(host),
                          dtype=np.uint8).reshape(num_rows, row_bytes)
    dst = np.frombuffer((ctypes.c_char * (m * row_bytes)).from_address(_plain(out).data_ptr()),
                        dtype=np.uint8).reshape(m, row_bytes)
    idx = _np(index).astype(np.int64)
    valid = (idx >= -num_rows) & (idx < num_rows)
    rows = np.where(idx < 0, idx + num_rows, idx)
    if slots is None:
        dst[valid] = table[rows[valid]]
    else:   # as the kernel: row r from cache + slot_of[r] * row_bytes when slot_of[r] >= 0
        r = rows[valid]
        c = slots[r].astype(np.int64)
        cached = c >= 0
        if cached.any() and int(c[cached].max()) >= cache.shape[0]:
            violation(f"gather kernel: cache slot {int(c[cached].max())} is past the cache rows "
                      f"({cache.shape[0]} rows of {row_bytes} bytes in its allocation)")
            return
        src = np.empty((r.shape[0], row_bytes), np.uint8)
        src[~cached] = table[r[~cached]]
        src[cached] = cache[c[cached]]
        dst[valid] = src
        LAUNCHES["gather_cache_rows"] += int(cached.sum())
    dst[~valid] = 0
    if bad_ptr and not valid.all():
        _record_bad(int(bad_ptr), idx[~valid])


_CONVERT_IN = {"int8": (torch.int8, 1), "bf16": (torch.bfloat16, 2), "fp16": (torch.float16, 2)}
_CONVERT_OUT = (torch.float32, torch.bfloat16, torch.float16)


def _rows_at(ptr: int, num_rows: int, row_bytes: int, what: str) -> Optional[np.ndarray]:
    """The ``num_rows`` x ``row_bytes`` bytes a kernel reads at device address ``ptr``: device
    memory (a live CUDA allocation) or mapped pinned host memory; ``None`` after a violation."""
    nbytes = num_rows * row_bytes
    if nbytes == 0:
        return np.empty((num_rows, row_bytes), np.uint8)
    if DEVICE_MEMORY.find(int(ptr)) is not None:
        if device_operand(ptr, nbytes, what) is None:
            return None
        addr = int(ptr)
    else:
        addr = RUNTIME.host_address(ptr, nbytes, what)
        if addr is None:
            return None
    return np.frombuffer((ctypes.c_char * nbytes).from_address(addr),
                         dtype=np.uint8).reshape(num_rows, row_bytes)


def _floats_at(ptr: int, count: int, what: str) -> Optional[np.ndarray]:
    """``count`` float32 in device memory at ``ptr`` (``None`` after a violation)."""
    hit = device_operand(ptr, count * 4, what)
    if hit is None:
        return None
    if hit[1] and not any(p.dtype == torch.float32 for p in hit[1]):
        violation(f"{what}: the CUDA tensors at 0x{int(ptr):x} are "
                  f"{sorted({str(p.dtype) for p in hit[1]})}, not float32")
        return None
    if count == 0:
        return np.empty(0, np.float32)
    return np.frombuffer((ctypes.c_char * (count * 4)).from_address(int(ptr)), dtype=np.float32)


def fake_gather_convert_rows_cuda(values_dev_ptr: int, num_rows: int, num_cols: int,
                                  in_kind: str, index: torch.Tensor, out: torch.Tensor, *,
                                  scale_ptr: int = 0, offset_ptr: int = 0, per_row: bool = False,
                                  perm: Optional[torch.Tensor] = None,
                                  max_threads: Optional[int] = None, bad_ptr: int = 0,
                                  cache_ptr: int = 0, slot_ptr: int = 0) -> None:
    """``unified_tensor._convert_cuda.gather_convert_rows_cuda`` on the CPU (see the module
    docstring): the fake gather's checks and pointer resolution, with compressed rows (the table
    in mapped pinned host memory or device memory, the cache's rows ``num_cols`` elements of
    ``in_kind``) converted as cuda/gather_convert.cu converts them."""
    LAUNCHES["gather_convert"] += 1
    what = "gather-convert kernel"
    if in_kind not in _CONVERT_IN:
        violation(f"{what}: in_kind {in_kind!r} is not one of {sorted(_CONVERT_IN)}")
        return
    in_dtype, in_size = _CONVERT_IN[in_kind]
    m = index.shape[0]
    for t, name in ((index, "index"), (out, "out")) + (((perm, "perm"),) if perm is not None else ()):
        if not is_fc(t):
            violation(f"{what}: {name} is not on the device")
        if not _plain(t).is_contiguous():
            violation(f"{what}: {name} is not contiguous")
    if index.dtype not in (torch.int32, torch.int64) or index.dim() != 1:
        violation(f"{what}: index must be 1-D int32/int64, got {index.dtype} {tuple(index.shape)}")
    if perm is not None and (perm.dtype != torch.int64 or tuple(perm.shape) != (m,)):
        violation(f"{what}: perm must be int64 of shape ({m},), got {perm.dtype} {tuple(perm.shape)}")
    if out.dtype not in _CONVERT_OUT:
        violation(f"{what}: out must be float32, bfloat16 or float16, got {out.dtype}")
        return
    if _plain(out).numel() != m * num_cols or out.dim() == 0 or out.shape[0] != m:
        violation(f"{what}: out {tuple(out.shape)} is not len(index) = {m} rows of {num_cols}")
        return
    if in_kind == "int8" and not (scale_ptr and offset_ptr):
        violation(f"{what}: an int8 table without scale_ptr / offset_ptr")
        return
    if in_kind != "int8" and (scale_ptr or offset_ptr or per_row):
        violation(f"{what}: scale_ptr / offset_ptr / per_row given for a {in_kind} table")
    if m == 0 or num_cols == 0:
        return
    row_bytes = num_cols * in_size
    table = _rows_at(values_dev_ptr, num_rows, row_bytes, f"{what}: table (values_dev_ptr)")
    if table is None:
        return
    scale = offset = None
    if in_kind == "int8":
        count = num_rows if per_row else num_cols
        scale = _floats_at(scale_ptr, count, f"{what}: scale (scale_ptr)")
        offset = _floats_at(offset_ptr, count, f"{what}: offset (offset_ptr)")
        if scale is None or offset is None:
            return
    slots = cache = None
    if slot_ptr:   # the GPU row cache: the slot map and the compressed rows in device memory
        LAUNCHES["gather_convert_cached"] += 1
        hit = _cache_operands(slot_ptr, cache_ptr, num_rows, row_bytes, what, "compressed table")
        if hit is None:
            return
        slots, cache = hit
    idx = _np(index).astype(np.int64)
    valid = (idx >= -num_rows) & (idx < num_rows)
    rows = np.where(idx < 0, idx + num_rows, idx)[valid]
    src = np.empty((rows.shape[0], row_bytes), np.uint8)
    if slots is None:
        src[:] = table[rows]
    else:   # as the kernel: row r from cache + slot_of[r] * row_bytes when slot_of[r] >= 0
        c = slots[rows].astype(np.int64)
        cached = c >= 0
        if cached.any() and int(c[cached].max()) >= cache.shape[0]:
            violation(f"{what}: cache slot {int(c[cached].max())} is past the cache rows "
                      f"({cache.shape[0]} rows of {row_bytes} bytes in its allocation)")
            return
        src[~cached] = table[rows[~cached]]
        src[cached] = cache[c[cached]]
        LAUNCHES["gather_cache_rows"] += int(cached.sum())
    with torch._C.DisableTorchFunction():
        codes = torch.from_numpy(src).view(in_dtype)
        if in_kind == "int8":   # float(q) * scale + offset: a multiply, then an add
            if per_row:
                s = torch.from_numpy(scale[rows].copy()).unsqueeze(1)
                o = torch.from_numpy(offset[rows].copy()).unsqueeze(1)
            else:
                s, o = torch.from_numpy(scale.copy()), torch.from_numpy(offset.copy())
            conv = (codes.float() * s + o).to(out.dtype)
        elif in_dtype == out.dtype:   # the same kind: a bitwise copy
            conv = codes
        else:
            conv = codes.float().to(out.dtype)
        dst = _plain(out).view(m, num_cols)
        keep = torch.from_numpy(valid)
        dst[keep] = conv
        dst[~keep] = 0
    if bad_ptr and not valid.all():
        _record_bad(int(bad_ptr), idx[~valid])

def _record_bad(bad_ptr: int, bad: np.ndarray) -> None:
    from unified_tensor import _checks

    for q in list(_checks._queues.values()):
        buf = q.device_buf
        base = _plain(buf).data_ptr()
        if base <= bad_ptr < base + _plain(buf).numel() * 8:
            rec = _np(buf).reshape(-1)
            i = (bad_ptr - base) // 8
            rec[i] = min(int(rec[i]), int(bad.min()))
            rec[i + 1] = max(int(rec[i + 1]), int(bad.max()))
            return
    violation(f"gather kernel: bad-id record 0x{bad_ptr:x} is not a deferred-check slot")


def _record_stream(self: torch.Tensor, stream: Any) -> None:
    """``Tensor.record_stream`` (patched on the class: PyTorch's argument parser rejects a
    stand-in stream before any torch-function handler would see the call)."""
    if not is_fc(self):
        violation("record_stream() on a CPU tensor")
        return
    if not isinstance(stream, FakeStream):
        violation(f"record_stream({stream!r}) needs a torch.cuda.Stream")
    if _plain(self).numel():
        with _lock:
            RECORDED.add(_storage_ptr(self))


def _no_real_kernels(*args: Any, **kwargs: Any) -> Any:
    violation("fake CUDA: a real CUDA kernel was about to be compiled or launched; the harness "
              "fakes only the sampling and gather kernels")
    raise DeviceError("a real CUDA kernel")


# ----------------------------------------------------------------------------------- install
_installed = False


def install() -> None:
    """Patch this process into a fake one-GPU machine (irreversible: call it in a child process
    only) and enter :class:`Mode` in this thread and in every thread started later."""
    global _installed
    if _installed:
        return
    _installed = True
    os.environ.pop("UNIFIED_TENSOR_DISABLE_CUDA", None)
    os.environ.pop("UNIFIED_TENSOR_SYNC_CHECKS", None)

    # -- torch.cuda
    cuda = torch.cuda
    cuda.is_available = lambda: True
    cuda.is_initialized = lambda: True
    cuda.init = lambda: None
    cuda.device_count = lambda: 1
    cuda.current_device = lambda: 0
    cuda.set_device = _check_cuda_index
    cuda.device = _device_ctx
    cuda.Stream = FakeStream
    cuda.Event = FakeEvent
    cuda.current_stream = _current_stream
    cuda.default_stream = lambda device=None: _DEFAULT_STREAM
    cuda.stream = _stream_ctx
    cuda.synchronize = lambda device=None: (_capture_check("torch.cuda.synchronize"),
                                            _sync("torch.cuda.synchronize"))[1]
    cuda.is_current_stream_capturing = _is_current_stream_capturing
    # memory: what a scenario sets in FREE_MEMORY is free; the allocator holds nothing unused
    cuda.mem_get_info = lambda device=None: (_check_cuda_index(device) if device is not None else None,
                                             (FREE_MEMORY, TOTAL_MEMORY))[1]
    cuda.memory_reserved = lambda device=None: 0
    cuda.memory_allocated = lambda device=None: 0
    torch.Tensor.record_stream = _record_stream

    # -- unified_tensor: CuPy "present", host registration and kernels faked
    from unified_tensor import _convert_cuda, _cudart, _deps, _gather_cuda, _kernels, _pinning

    _deps.has_cupy = lambda: True
    _pinning.set_runtime(RUNTIME)
    _cudart._runtime = RUNTIME
    _gather_cuda.gather_rows_cuda = fake_gather_rows_cuda
    _convert_cuda.gather_convert_rows_cuda = fake_gather_convert_rows_cuda
    _kernels.get_function = _no_real_kernels
    _kernels.launch = _no_real_kernels

    # -- samplers: the two sampling kernels
    from samplers.sampling import _layer_cuda as _sampler_cuda

    _sampler_cuda._Launch = _make_fake_launch(_sampler_cuda._Launch)

    # -- the mode, here and in every later thread (modes are thread-local in PyTorch)
    Mode().__enter__()
    orig = threading.Thread.run

    def run(self: threading.Thread) -> None:
        with Mode():
            orig(self)

    threading.Thread.run = run


# ------------------------------------------------------------------------------ assertions
def _walk(x: Any, path: str, out: list, depth: int = 0, seen: Optional[set] = None) -> list:
    """``(path, tensor)`` for every tensor reachable from ``x`` (containers, objects' vars,
    PyG stores)."""
    seen = set() if seen is None else seen
    if depth > 8 or id(x) in seen:
        return out
    if isinstance(x, torch.Tensor):
        out.append((path, x))
        return out
    if isinstance(x, (str, bytes, int, float, bool, type(None), torch.device, torch.dtype)):
        return out
    seen.add(id(x))
    if isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _walk(v, f"{path}[{i}]", out, depth + 1, seen)
    elif isinstance(x, dict):
        for k, v in x.items():
            _walk(v, f"{path}[{k!r}]", out, depth + 1, seen)
    elif type(x).__module__.startswith("torch_geometric") and hasattr(x, "stores"):
        for store in x.stores:      # PyG Data / HeteroData
            key = getattr(store, "_key", None)
            for k, v in store.items():
                _walk(v, f"{path}[{key!r}].{k}", out, depth + 1, seen)
            orig = vars(store).get("_orig_edge_index")
            if orig is not None:
                _walk(orig, f"{path}[{key!r}]._orig_edge_index", out, depth + 1, seen)
    elif hasattr(x, "__dict__"):
        for k, v in vars(x).items():
            _walk(v, f"{path}.{k}", out, depth + 1, seen)
    return out


def assert_all_on_device(batch: Any, what: str = "batch") -> None:
    """Every tensor reachable from ``batch`` is a CUDA (FC) tensor."""
    bad = [p for p, t in _walk(batch, what, []) if not is_fc(t)]
    if bad:
        raise AssertionError(f"CPU tensors in a CUDA result: {bad[:8]}")


def assert_handed_over(batch: Any, what: str = "batch") -> None:
    """Every non-empty CUDA tensor of ``batch`` got ``record_stream`` (clear :data:`RECORDED`
    before fetching the batch)."""
    missing = [p for p, t in _walk(batch, what, [])
               if is_fc(t) and _plain(t).numel() and _storage_ptr(t) not in RECORDED]
    if missing:
        raise AssertionError(f"CUDA tensors of a yielded batch never got record_stream on the "
                             f"consumer's stream: {missing[:8]}")
