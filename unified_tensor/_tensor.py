"""``UnifiedTensor``: a host tensor pinned in place whose CUDA-indexed reads are zero-copy gathers."""
from __future__ import annotations

import os
import threading
import warnings
import weakref
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ._deps import cuda_available
from ._gather import gather
from ._writes import TableView, watched_call, watched_tables

__all__ = ["UnifiedTensor", "unified", "unpin", "device_pointer", "is_unified"]

# The builtin itself, not whatever ``torch.index_select`` is bound to now: PyG replaces that name
# with a Python wrapper (torch_geometric.hash_tensor) that calls the builtin, so importing PyG
# before this module would otherwise leave torch.index_select(t, 0, idx) unrecognised.
_INDEX_SELECTS = (torch._C._VariableFunctions.index_select, torch.Tensor.index_select)

# Byte ranges of read-only sources (a read-only NumPy array, np.load(..., mmap_mode="r"),
# np.frombuffer over bytes) that UnifiedTensors were made over; dropped when the source dies.
# Writing there through torch would change immutable data or fault on PROT_READ pages.
_readonly_ranges: Dict[int, Tuple[int, int]] = {}
_readonly_lock = threading.Lock()
_READONLY_KEY = iter(range(1 << 62))
# Tensor methods named like in-place ops that only touch metadata, not the data.
_METADATA_INPLACE = {"requires_grad_", "share_memory_", "rename_", "refine_names_", "retain_grad"}


def _note_readonly(source: Any, start: int, nbytes: int) -> None:
    if nbytes <= 0:
        return
    with _readonly_lock:
        key = next(_READONLY_KEY)
        _readonly_ranges[key] = (start, start + nbytes)
    weakref.finalize(source, _forget_readonly, key)


def _forget_readonly(key: int) -> None:
    with _readonly_lock:
        _readonly_ranges.pop(key, None)


def check_writable(t: torch.Tensor, name: str) -> None:
    """RuntimeError when ``t`` (a CPU tensor) lies over a read-only table's memory."""
    if not _readonly_ranges or not isinstance(t, torch.Tensor) or t.device.type != "cpu" \
            or t.numel() == 0:
        return
    a0 = t.data_ptr()
    a1 = a0 + t.numel() * t.element_size()
    with _readonly_lock:
        hit = any(a0 < e and s < a1 for s, e in _readonly_ranges.values())
    if hit:
        raise RuntimeError(f"{name} points into a read-only table (its source is read-only, e.g. "
                           f"np.load(..., mmap_mode='r') or np.frombuffer over bytes); write into "
                           f"another tensor or pass a writable copy to ut.unified")


# Augmented assignments (t += 1 ...): in place. Not __int__, __index__, __invert__, __iter__.
_INPLACE_DUNDERS = {f"__i{op}__" for op in ("add", "sub", "mul", "matmul", "truediv", "floordiv",
                                            "div", "mod", "pow", "lshift", "rshift", "and", "or",
                                            "xor")} | {"__setitem__"}


def _is_inplace(func) -> bool:
    name = getattr(func, "__name__", "")
    if name in _INPLACE_DUNDERS:
        return True
    return name.endswith("_") and not name.startswith("_") and name not in _METADATA_INPLACE


def _unwrap(x: Any) -> Any:
    if isinstance(x, (UnifiedTensor, TableView)):
        return x._ut_plain
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _is_row_index(key: Any) -> bool:
    """Whether ``t[key]`` is a row gather (an index tensor/array/list), not a slice or element."""
    if isinstance(key, torch.Tensor):
        return True  # gather() rejects bool/float index tensors with a TypeError
    if isinstance(key, np.ndarray):
        return key.ndim > 0
    if isinstance(key, list):
        # ints are row ids; floats go to the gather too, which refuses them (plain torch would
        # truncate [1.9, 0.2] to rows 1 and 0 silently); bool lists stay torch masks
        return bool(key) and not any(isinstance(v, (bool, np.bool_)) for v in key) and all(
            isinstance(v, (int, float, np.integer, np.floating)) for v in key)
    return False


class UnifiedTensor(torch.Tensor):
    """A CPU tensor pinned in place (page-locked, mapped into every GPU's address space).

    Indexing it with a CUDA index tensor gathers the rows straight from host memory in a GPU
    kernel (zero-copy over PCIe); a CPU index gathers on the CPU. ``t[idx]``,
    ``torch.index_select(t, 0, idx)``, ``F.embedding(idx, t)`` and ``ut.gather(t, idx)`` all take
    that path and return a plain ``torch.Tensor`` on ``idx``'s device. Every other operation runs
    on the underlying CPU tensor as usual and returns plain tensors, so the subclass never leaks.
    Create one with :func:`unified`.
    """

    _ut_plain: torch.Tensor
    _ut_reg: Optional[Any]
    _ut_readonly: bool = False
    _ut_caches: Optional[dict] = None   # device index -> GpuRowCache (ut.cache)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "out" in kwargs:
            for o in (kwargs["out"] if isinstance(kwargs["out"], (tuple, list)) else (kwargs["out"],)):
                check_writable(o, "out")
        if func is torch.Tensor.share_memory_ and args and isinstance(args[0], UnifiedTensor):
            if args[0]._ut_plain.is_shared():
                return args[0]
            raise RuntimeError("share_memory_() on a UnifiedTensor: it would move the data to new "
                               "memory, away from the pinned pages GPU kernels read; call "
                               "x.share_memory_() before ut.unified(x) (then every process that "
                               "receives the table shares one host copy)")
        if func is torch.Tensor.__getitem__ and len(args) == 2 and isinstance(args[0], UnifiedTensor):
            key = args[1]
            if _is_row_index(key):
                return gather(args[0], key)
        elif func in _INDEX_SELECTS:
            bound = _bind_index_select(*args, **kwargs)
            if bound is not None:
                table, index, out = bound
                return gather(table, index, out=out)
        elif func is F.embedding:
            bound = _bind_embedding(*args, **kwargs)
            if bound is not None:
                return gather(bound[1], bound[0])
        # A read-only or cached table: every write the op makes is checked (refused, or the caches
        # refreshed), whatever route it takes, and views come back watched (see _writes.py).
        watched = watched_tables(args, kwargs)
        if watched:
            result = watched_call(func, args, kwargs, watched, _unwrap)
        else:
            result = func(*_unwrap(args), **_unwrap(kwargs))
        target = kwargs.get("out")
        if not isinstance(target, UnifiedTensor):
            target = args[0] if args and isinstance(args[0], UnifiedTensor) and _is_inplace(func) \
                else None
        if target is not None and result is target._ut_plain:   # t.mul_(2), t += 1: t stays a
            return target                                        # UnifiedTensor
        return result

    @property
    def is_registered(self) -> bool:
        """Whether the memory is currently registered with CUDA (readable from GPU kernels)."""
        return self._ut_reg is not None and self._ut_reg.active

    def unpin(self) -> None:
        """Release this tensor's registration now (see :func:`unpin`), and its GPU row caches
        (``ut.cache``): CUDA gathers from it are over."""
        if self._ut_caches:
            from ._cache import uncache

            uncache(self)
        if self._ut_reg is not None:
            self._ut_reg.release()

    def __enter__(self) -> "UnifiedTensor":
        return self

    def __exit__(self, *exc) -> None:
        self.unpin()

    def __repr__(self, *args, **kwargs) -> str:  # noqa: D105
        state = ("registered" if self.is_registered else
                 "pinned by torch" if self._ut_external_pin else "host")
        return f"UnifiedTensor({state}, shape={tuple(self._ut_plain.shape)}, dtype={self._ut_plain.dtype})"

    def __reduce_ex__(self, proto):
        """Pickling by value (``torch.save``, ``pickle``, ``copy.deepcopy``): the values, as for
        any tensor, so a checkpoint never holds a file name or a shared-memory handle whose
        contents may change later. Loading gives a UnifiedTensor over new memory (read-only
        tables stay read-only).

        Between processes (``torch.multiprocessing`` queues and spawn arguments, DDP spawn,
        DataLoader workers: everything multiprocessing's ``ForkingPickler`` sends) the table
        travels by reference instead (:func:`_reduce_for_ipc`), so N ranks hold one host copy.
        """
        # The plain tensor goes by value under these picklers (torch.save writes its storage).
        return (_unified_from_tensor, (self._ut_plain, self._ut_readonly))


def _reduce_for_ipc(t: "UnifiedTensor"):
    """How multiprocessing's ``ForkingPickler`` sends a UnifiedTensor to another process: over
    the **same host memory** where it can be shared, so each process registers it for its own GPU:

    * a table in shared memory (``x.share_memory_()`` before ``ut.unified(x)``, or one received
      from another process): the tensor, which ``torch.multiprocessing`` sends as a handle;
    * a file-backed ``np.memmap`` (``np.load(path, mmap_mode="r"|"r+")``): the file, offset, dtype,
      shape, mode and the file's identity (device, inode, size); the receiver maps the same file
      (one copy in the page cache) and raises if the file was replaced or truncated meanwhile;
    * anything else: a copy of the values (warned about above ``COPY_WARN_BYTES``).
    """
    plain = t._ut_plain
    where = _memmap_location(t._ut_source, plain)
    if where is not None:
        return (_unified_from_file, where + (_file_identity(where[0]),))
    if plain.is_shared():
        return (_unified_from_tensor, (plain, t._ut_readonly))
    nbytes = plain.numel() * plain.element_size()
    if nbytes >= COPY_WARN_BYTES:
        warnings.warn(f"pickling a UnifiedTensor of {nbytes / 2**30:.2f} GiB that is neither in "
                      f"shared memory nor a file-backed np.memmap: the receiving process gets "
                      f"its own copy. To share one host copy between processes (DDP ranks), "
                      f"call x.share_memory_() before ut.unified(x), or open the table with "
                      f"np.load(path, mmap_mode='r')", stacklevel=2)
    # By value as a NumPy byte array: pickled as bytes under any pickler (a temporary torch
    # tensor would go to torch.multiprocessing as a shared-memory handle that dies with it).
    raw = plain.reshape(-1).view(torch.uint8).numpy()
    return (_unified_from_bytes, (raw, str(plain.dtype).replace("torch.", ""), tuple(plain.shape),
                                  t._ut_readonly))


COPY_WARN_BYTES = 256 << 20


def _memmap_location(source: Any, plain: torch.Tensor) -> Optional[tuple]:
    """``(filename, file offset, dtype str, shape, writable)`` when ``plain`` is exactly the
    data of a file-backed ``np.memmap`` opened "r" or "r+" (slices included), else ``None``."""
    import mmap

    if not isinstance(source, np.memmap) or getattr(source, "filename", None) is None:
        return None
    if source.mode not in ("r", "r+", "readonly", "readwrite") or source._mmap is None:
        return None   # "c": private copy-on-write pages, "w+": fine to reopen only as r+
    try:
        base = np.frombuffer(source._mmap, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):
        return None
    start = source.offset - source.offset % mmap.ALLOCATIONGRANULARITY
    file_offset = start + (plain.data_ptr() - base)
    if plain.data_ptr() < base or file_offset < 0:
        return None
    writable = source.mode in ("r+", "readwrite")
    return (str(source.filename), int(file_offset), source.dtype.str, tuple(source.shape), writable)


def _file_identity(filename: str) -> Tuple[int, int, int]:
    st = os.stat(filename)
    return (st.st_dev, st.st_ino, st.st_size)


def _unified_from_file(filename: str, offset: int, dtype: str, shape: tuple, writable: bool,
                       identity: Optional[Tuple[int, int, int]] = None) -> "UnifiedTensor":
    try:
        now = _file_identity(filename)
    except OSError as exc:
        raise RuntimeError(f"a UnifiedTensor sent from another process maps {filename}, which "
                           f"cannot be opened now ({exc})") from None
    if identity is not None and tuple(identity) != now:
        raise RuntimeError(f"a UnifiedTensor sent from another process maps {filename}, but the "
                           f"file was replaced or truncated since it was sent (device, inode, "
                           f"size {tuple(identity)} then, {now} now); refusing to map other data")
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if offset + nbytes > now[2]:
        raise RuntimeError(f"a UnifiedTensor sent from another process maps bytes "
                           f"[{offset}, {offset + nbytes}) of {filename}, which now has only "
                           f"{now[2]} bytes (truncated?)")
    arr = np.memmap(filename, dtype=np.dtype(dtype), mode="r+" if writable else "r",
                    offset=offset, shape=shape)
    return unified(arr)


def _unified_from_bytes(raw: np.ndarray, dtype: str, shape: tuple, readonly: bool) -> "UnifiedTensor":
    dt = getattr(torch, dtype)
    if raw.size == 0:
        plain = torch.empty(shape, dtype=dt)
    else:   # an unpickled array owns its writable bytes: no second copy
        plain = torch.from_numpy(np.require(raw, np.uint8, ["C", "W"])).view(dt).view(shape)
    t = unified(plain)
    if readonly:
        t._ut_readonly = True
    return t


def _unified_from_tensor(plain: torch.Tensor, readonly: bool) -> "UnifiedTensor":
    """A UnifiedTensor over ``plain`` (what a pickled one becomes: ``plain`` holds the values, or
    is the shared-memory tensor ``torch.multiprocessing`` sent)."""
    t = unified(plain)
    if readonly:
        t._ut_readonly = True
    return t


_unified_shared = _unified_from_tensor   # the name older pickles refer to


def _register_reducers() -> None:
    """Process-to-process pickling by reference (:func:`_reduce_for_ipc`), and the rebuild
    function allowed under ``torch.load(weights_only=True)`` (the default since torch 2.6), so a
    checkpoint holding a UnifiedTensor loads like one holding a plain tensor."""
    from multiprocessing.reduction import ForkingPickler

    ForkingPickler.register(UnifiedTensor, _reduce_for_ipc)
    add_safe = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe is not None:
        add_safe([_unified_from_tensor])


_register_reducers()


def _bind_index_select(input=None, dim=None, index=None, *, out=None):
    if isinstance(input, UnifiedTensor) and dim is not None and index is not None:
        if dim in (0, -input._ut_plain.dim()) and isinstance(index, torch.Tensor) and index.dim() == 1:
            return input, index, out
    return None


def _bind_embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
                    scale_grad_by_freq=False, sparse=False):
    if isinstance(weight, UnifiedTensor) and padding_idx is None and max_norm is None \
            and isinstance(input, torch.Tensor) and not weight._ut_plain.requires_grad:
        return input, weight
    return None


def _as_host_tensor(x: Union[torch.Tensor, np.ndarray]) -> tuple:
    """(contiguous CPU torch tensor sharing x's memory, read-only flag, object to keep alive)."""
    if isinstance(x, np.ndarray):
        if not x.flags.c_contiguous:
            raise ValueError("the array is not C-contiguous; pass np.ascontiguousarray(x) "
                             "(that copies it) or a contiguous array")
        if x.dtype.hasobject or x.dtype.kind not in "biufc":
            raise TypeError(f"unsupported NumPy dtype {x.dtype}")
        if not x.dtype.isnative:
            raise TypeError(f"the array's byte order is not the machine's (dtype {x.dtype.str}); "
                            f"convert it with x.astype(x.dtype.newbyteorder('=')) (that copies it)")
        readonly = not x.flags.writeable
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not writable.*")
            t = torch.from_numpy(x)
        return t, readonly, x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"ut.unified expects a torch.Tensor or NumPy array, got {type(x).__name__}")
    if x.is_quantized:
        raise TypeError(f"ut.unified expects a plain dense tensor, got a quantized tensor "
                        f"({x.dtype}); pass x.dequantize() or x.int_repr()")
    if getattr(x, "is_nested", False):
        raise TypeError("ut.unified expects a plain dense tensor, got a nested tensor; pass a "
                        "padded dense tensor (x.to_padded_tensor(0))")
    if x.layout != torch.strided:
        raise TypeError(f"ut.unified expects a dense (strided) tensor, got layout {x.layout}")
    if x.device.type == "meta":
        raise ValueError("ut.unified expects a CPU tensor with data, got a meta tensor (shape and "
                         "dtype only, no memory)")
    if x.device.type != "cpu":
        raise ValueError(f"ut.unified expects a CPU tensor, got one on {x.device}; it is already in "
                         f"GPU memory, index it directly")
    if not x.is_contiguous():
        raise ValueError("the tensor is not contiguous; call .contiguous() first (that copies it) "
                         "or pass the original tensor")
    if x.requires_grad:
        raise ValueError("ut.unified does not track gradients; pass tensor.detach()")
    return x, False, None


def unified(x: Union[torch.Tensor, np.ndarray, UnifiedTensor]) -> UnifiedTensor:
    """Pin a host table in place and return it as a :class:`UnifiedTensor` (no copy).

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray
        A contiguous CPU tensor or C-contiguous array (``np.memmap`` and shared memory included)
        of any dtype and trailing shape. Its storage is shared, never copied: the result's
        ``data_ptr()`` equals ``x``'s. A tensor PyTorch already pinned is used as it is. A
        UnifiedTensor is returned unchanged.

    Returns
    -------
    UnifiedTensor
        A CPU tensor. Without a usable CUDA device (or with ``UNIFIED_TENSOR_DISABLE_CUDA=1``) it
        is not registered and only CPU indexing works, so the same script runs on a laptop.
        The registration is released when the last UnifiedTensor over the memory is gone, by
        :func:`unpin`, or at the end of a ``with ut.unified(x) as t:`` block.

    Raises
    ------
    TypeError, ValueError
        Wrong type, not contiguous, on a GPU, requires grad.
    RuntimeError
        The memory cannot be registered (the message carries CUDA's error text).

    Examples
    --------
    >>> import torch, unified_tensor as ut
    >>> feats = torch.randn(1000, 128)
    >>> t = ut.unified(feats)
    >>> t.data_ptr() == feats.data_ptr()
    True
    >>> t[torch.tensor([0, 5])].shape
    torch.Size([2, 128])
    """
    if isinstance(x, UnifiedTensor):
        return x
    from ._compressed import CompressedTensor

    if isinstance(x, CompressedTensor):   # its stored values are a UnifiedTensor already
        return x
    plain, readonly, source = _as_host_tensor(x)
    if plain.dim() == 0:
        raise ValueError("ut.unified expects a table with at least one dimension, got a scalar")
    reg, external = None, False
    if cuda_available():
        from . import _pinning

        nbytes = plain.numel() * plain.element_size()
        registry = _pinning.registry()
        # Memory this library registered (any byte of it) reports is_pinned() too: take a
        # reference on it. Memory PyTorch pinned itself (pin_memory) is used as it is.
        if not registry.overlaps(plain.data_ptr(), nbytes) and plain.is_pinned():
            external = True
        else:
            reg = registry.acquire(plain.data_ptr(), nbytes, readonly=readonly,
                                   keepalive=(plain, source))
    out = plain.as_subclass(UnifiedTensor)
    out._ut_plain = plain
    out._ut_reg = reg
    out._ut_external_pin = external
    out._ut_source = source
    out._ut_readonly = readonly
    out._ut_caches = {}
    if readonly:
        _note_readonly(source if source is not None else plain, plain.data_ptr(),
                       plain.numel() * plain.element_size())
    return out


def unpin(t: UnifiedTensor) -> None:
    """Release ``t``'s registration now; later CUDA gathers from ``t`` raise ``RuntimeError``.

    The pages stay registered while another UnifiedTensor over them holds a registration.
    """
    from ._compressed import CompressedTensor

    if isinstance(t, CompressedTensor):   # its stored values hold the registration
        t = t._ut_values
    if not isinstance(t, UnifiedTensor):
        raise TypeError(f"ut.unpin expects a UnifiedTensor, got {type(t).__name__}")
    t.unpin()


def is_unified(t: Any) -> bool:
    """Whether ``t`` is a :class:`UnifiedTensor`."""
    return isinstance(t, UnifiedTensor)


def device_pointer(t: torch.Tensor) -> int:
    """Device-accessible address of ``t``'s first element, for kernels that read it over UVA.

    ``t`` is a registered UnifiedTensor, a tensor pinned by PyTorch, or a CUDA tensor.
    """
    if isinstance(t, UnifiedTensor):
        if t._ut_reg is not None:
            if not t._ut_reg.active:
                raise RuntimeError("this UnifiedTensor was unpinned (ut.unpin); it has no device "
                                   "address; call ut.unified(t) again to re-register it")
            return int(t._ut_reg.dev_ptr)
        if not t._ut_external_pin:
            raise RuntimeError("this UnifiedTensor is not registered with CUDA: the CUDA path was "
                               "unavailable when it was made (no GPU, no CuPy, or "
                               "UNIFIED_TENSOR_DISABLE_CUDA set); call ut.unified(x) again where "
                               "the CUDA path is available")
        t = t._ut_plain
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(t).__name__}")
    if t.device.type == "cuda":
        return int(t.data_ptr())
    if cuda_available() and t.is_pinned():
        from ._cudart import runtime

        return runtime().device_pointer(t.data_ptr())
    raise ValueError("tensor is in pageable host memory; wrap it with ut.unified(t) first")
