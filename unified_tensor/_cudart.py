"""The few CUDA runtime calls that in-place pinning needs, with every return code checked.

The calls go to the CUDA runtime library PyTorch itself loaded (found in the process's memory
map), so that clearing the runtime's last-error state after a failed call (``cudaGetLastError``)
also clears it for PyTorch's own launch checks. Where that library cannot be found (a PyTorch
build that links the runtime statically), CuPy's runtime bindings are used instead.
Tests replace the object returned by :func:`runtime` with a fake (see ``_pinning.set_runtime``).
"""
from __future__ import annotations

import ctypes
import logging
import threading
from typing import Optional

__all__ = ["CudaRuntimeError", "HostRuntime", "runtime",
           "REGISTER_PORTABLE", "REGISTER_MAPPED", "REGISTER_READ_ONLY",
           "CAPTURE_MODE_GLOBAL", "CAPTURE_MODE_THREAD_LOCAL", "CAPTURE_MODE_RELAXED"]

logger = logging.getLogger("unified_tensor")

REGISTER_PORTABLE = 0x01
REGISTER_MAPPED = 0x02
REGISTER_READ_ONLY = 0x08
_ATTR_READ_ONLY_SUPPORTED = 113  # cudaDevAttrHostRegisterReadOnlySupported
# enum cudaStreamCaptureMode
CAPTURE_MODE_GLOBAL = 0
CAPTURE_MODE_THREAD_LOCAL = 1
CAPTURE_MODE_RELAXED = 2


class CudaRuntimeError(RuntimeError):
    """A CUDA runtime call failed; the message carries CUDA's error name and text."""


class HostRuntime:
    """cudaHostRegister / cudaHostUnregister / cudaHostGetDevicePointer with checked returns."""

    def __init__(self) -> None:
        self._lib = self._find_torch_cudart()
        if self._lib is None:
            import cupy.cuda.runtime  # noqa: F401  (fallback; raises ImportError if absent)
            logger.debug("unified_tensor: using CuPy's CUDA runtime bindings for host registration")

    @staticmethod
    def _find_torch_cudart() -> Optional[ctypes.CDLL]:
        import torch

        torch.cuda.init()
        try:
            with open("/proc/self/maps") as f:
                paths = {line.split()[-1] for line in f if "libcudart.so" in line}
        except OSError:
            return None
        for path in sorted(paths):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            lib.cudaHostRegister.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
            lib.cudaHostUnregister.argtypes = [ctypes.c_void_p]
            lib.cudaHostGetDevicePointer.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                                                     ctypes.c_uint]
            lib.cudaDeviceGetAttribute.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int,
                                                   ctypes.c_int]
            try:   # CUDA >= 10.1 (every runtime PyTorch ships)
                lib.cudaThreadExchangeStreamCaptureMode.argtypes = [ctypes.POINTER(ctypes.c_int)]
            except AttributeError:
                pass
            lib.cudaGetErrorName.restype = ctypes.c_char_p
            lib.cudaGetErrorString.restype = ctypes.c_char_p
            return lib
        return None

    def _check(self, code: int, what: str) -> None:
        if code == 0:
            return
        lib = self._lib
        name = lib.cudaGetErrorName(code).decode() if lib.cudaGetErrorName(code) else str(code)
        text = lib.cudaGetErrorString(code).decode() if lib.cudaGetErrorString(code) else ""
        lib.cudaGetLastError()  # clear the runtime's last-error state so later launches are not blamed
        raise CudaRuntimeError(f"{what} failed: {name}: {text}")

    def host_register(self, ptr: int, size: int, flags: int) -> None:
        if self._lib is not None:
            self._check(self._lib.cudaHostRegister(ctypes.c_void_p(ptr), size, flags),
                        f"cudaHostRegister(ptr=0x{ptr:x}, size={size}, flags={flags})")
            return
        import cupy.cuda.runtime as rt

        try:
            rt.hostRegister(ptr, size, flags)
        except rt.CUDARuntimeError as exc:
            raise CudaRuntimeError(f"cudaHostRegister(ptr=0x{ptr:x}, size={size}, flags={flags}) "
                                   f"failed: {exc}") from None

    def host_unregister(self, ptr: int) -> None:
        if self._lib is not None:
            self._check(self._lib.cudaHostUnregister(ctypes.c_void_p(ptr)),
                        f"cudaHostUnregister(ptr=0x{ptr:x})")
            return
        import cupy.cuda.runtime as rt

        try:
            rt.hostUnregister(ptr)
        except rt.CUDARuntimeError as exc:
            raise CudaRuntimeError(f"cudaHostUnregister(ptr=0x{ptr:x}) failed: {exc}") from None

    def device_pointer(self, ptr: int) -> int:
        if self._lib is not None:
            out = ctypes.c_void_p()
            self._check(self._lib.cudaHostGetDevicePointer(ctypes.byref(out), ctypes.c_void_p(ptr), 0),
                        f"cudaHostGetDevicePointer(ptr=0x{ptr:x})")
            return int(out.value or 0)
        import cupy.cuda.runtime as rt

        try:
            return int(rt.pointerGetAttributes(ptr).devicePointer)
        except rt.CUDARuntimeError as exc:
            raise CudaRuntimeError(f"cudaPointerGetAttributes(ptr=0x{ptr:x}) failed: {exc}") from None

    def read_only_supported(self, device: Optional[int] = None) -> bool:
        """Whether ``device`` (default: the current one) can map read-only registered memory."""
        if device is None:
            import torch

            device = torch.cuda.current_device()
        if self._lib is not None:
            v = ctypes.c_int()
            self._check(self._lib.cudaDeviceGetAttribute(ctypes.byref(v), _ATTR_READ_ONLY_SUPPORTED, device),
                        "cudaDeviceGetAttribute(HostRegisterReadOnlySupported)")
            return bool(v.value)
        import cupy.cuda.runtime as rt

        return bool(rt.deviceGetAttribute(rt.cudaDevAttrHostRegisterReadOnlySupported, device))


    def exchange_capture_mode(self, mode: int) -> Optional[int]:
        """``cudaThreadExchangeStreamCaptureMode``: set the calling thread's stream-capture
        interaction mode to ``mode`` and return the one it had; ``None`` (nothing changed) where
        only CuPy's bindings are available (they do not expose the call).

        A thread in relaxed mode may make calls that are otherwise illegal while another thread
        captures a CUDA graph in global mode (``torch.cuda.graph``'s default), such as querying
        an event recorded outside the capture: without it such a call invalidates the capture.
        """
        fn = getattr(self._lib, "cudaThreadExchangeStreamCaptureMode", None) \
            if self._lib is not None else None
        if fn is None:
            return None
        v = ctypes.c_int(int(mode))
        self._check(fn(ctypes.byref(v)),
                    f"cudaThreadExchangeStreamCaptureMode(mode={int(mode)})")
        return int(v.value)


_runtime: Optional[HostRuntime] = None
_runtime_lock = threading.Lock()


def runtime() -> HostRuntime:
    """The process-wide :class:`HostRuntime` (created on first use, never at import)."""
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = HostRuntime()
    return _runtime
