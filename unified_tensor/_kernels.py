"""Finding, compiling (NVRTC via CuPy) and launching the CUDA kernels in ``cuda/``.

Kernel sources are plain ``.cu``/``.cuh`` files: in a checkout they sit in ``<repo>/cuda``; in a
wheel they ship as data under ``unified_tensor/kernels``. ``UNIFIED_TENSOR_KERNEL_DIR`` overrides
both. Nothing is written next to the sources; compiled code goes to CuPy's own kernel cache.

A module declares its kernel instances once with :func:`register` (no compilation then);
:func:`get_function` compiles a source on first use, per device, and caches it. Local
``#include "x.cuh"`` lines are inlined before compilation, so a header change changes the source
CuPy hashes for its cache and never serves a stale binary. The CPU test suite compiles every
registered instance with NVRTC (:func:`compile_cubin`), which needs no GPU.

NVRTC comes from NVIDIA's pip wheel for the CUDA major CuPy was built for (``nvidia-cuda-nvrtc-cu12``
for CUDA 12, ``nvidia-cuda-nvrtc`` for CUDA 13). A missing NVRTC, or a GPU older than both
:data:`MIN_ARCH` and the oldest architecture that NVRTC compiles for, raises
:class:`KernelCompileError` saying what to install or which GPUs work.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import re
import sys
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

from ._env import env

__all__ = ["KernelCompileError", "kernel_dir", "register", "registered", "load_source",
           "get_function", "launch", "compile_cubin", "NVRTC_OPTIONS", "CUPY_ADDED_OPTIONS",
           "MIN_ARCH"]

ENV_KERNEL_DIR = "UNIFIED_TENSOR_KERNEL_DIR"
NVRTC_OPTIONS: Tuple[str, ...] = ("-std=c++17",)
# Options CuPy's RawModule adds before it calls NVRTC (cupy/cuda/compiler.py, CuPy 13 and 14; the
# arch flag aside). compile_cubin passes them too, so CI compiles what the GPU machine compiles:
# with --device-as-default-execution-space every unannotated entity is __device__.
CUPY_ADDED_OPTIONS: Tuple[str, ...] = ("-ftz=true", "--device-as-default-execution-space")
# Oldest GPU architecture the library supports (Volta, sm_70). NVRTC may set a higher floor:
# CUDA 13's NVRTC compiles for sm_75 (Turing) and newer only.
MIN_ARCH = 70
# The NVRTC wheel on PyPI for each CUDA major CuPy can be built for, and the extra that brings it.
NVRTC_PACKAGES: Dict[int, Tuple[str, str]] = {12: ("nvidia-cuda-nvrtc-cu12", "cuda12"),
                                              13: ("nvidia-cuda-nvrtc", "cuda13")}

_registry: Dict[str, List[str]] = {}
_cache: Dict[Tuple[int, str, str], object] = {}
_lock = threading.Lock()


class KernelCompileError(RuntimeError):
    """A kernel failed to compile; ``.log`` holds the NVRTC log."""

    def __init__(self, source: str, names: Sequence[str], log: str):
        self.source, self.names, self.log = source, list(names), log
        super().__init__(f"failed to compile CUDA kernel source '{source}' "
                         f"(instances {', '.join(names)}):\n{log}")


def kernel_dir() -> Path:
    """Folder holding the kernel sources (checkout: ``<repo>/cuda``; wheel: ``unified_tensor/kernels``)."""
    folder = env("KERNEL_DIR")
    if folder:
        return Path(folder)
    here = Path(__file__).resolve().parent
    for cand in (here / "kernels", here.parent / "cuda"):
        if (cand / "gather.cu").is_file():
            return cand
    raise FileNotFoundError(f"unified_tensor: CUDA kernel sources not found under {here / 'kernels'} "
                            f"or {here.parent / 'cuda'}; set {ENV_KERNEL_DIR}")


def register(source: str, name_expressions: Sequence[str]) -> None:
    """Declare the template instances of ``source`` that the library launches (no compilation)."""
    with _lock:
        names = _registry.setdefault(source, [])
        for n in name_expressions:
            if n not in names:
                names.append(n)


def registered() -> Dict[str, List[str]]:
    """Every registered source and its instances (a copy)."""
    with _lock:
        return {k: list(v) for k, v in _registry.items()}


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)


@functools.lru_cache(maxsize=None)
def load_source(source: str) -> str:
    """The text of ``source`` with its local ``#include "..."`` headers inlined (each once)."""
    root = kernel_dir()
    seen: set = set()

    def expand(name: str) -> str:
        if name in seen:
            return ""
        seen.add(name)
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"kernel source '{name}' not found in {root}")
        text = path.read_text()
        text = re.sub(r'^\s*#\s*pragma\s+once\s*$', "", text, flags=re.M)
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return f"// ---- {source} (headers inlined) ----\n" + expand(source)


def _cupy_cuda_major() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:  # noqa: BLE001 - no CuPy runtime: try any NVRTC found
        return 0


def _preload_nvrtc() -> None:
    """Load libnvrtc from NVIDIA's pip wheels where CuPy would not find it by itself.

    CUDA 12 wheels (``nvidia-cuda-nvrtc-cu12``) keep it in ``nvidia/cuda_nvrtc/lib``; CUDA 13 wheels
    (``nvidia-cuda-nvrtc``) in ``nvidia/cu13/lib``. Only the major version CuPy was built for is
    loaded, its builtins library first (libnvrtc resolves it by soname).
    """
    major = _cupy_cuda_major()
    for base in sys.path:
        for sub in (("nvidia", "cuda_nvrtc", "lib"), ("nvidia", "cu13", "lib"), ("nvidia", "cu12", "lib")):
            libs = sorted(glob.glob(os.path.join(base, *sub, "libnvrtc*.so*")))
            if major:
                libs = [p for p in libs if re.search(rf"\.so\.{major}(\.|$)", p)]
            builtins = [p for p in libs if "builtins" in p and ".alt." not in p]
            mains = [p for p in libs if "builtins" not in p and ".alt." not in p]
            if not mains:
                continue
            try:
                for lib in builtins:
                    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
                ctypes.CDLL(mains[0], mode=ctypes.RTLD_GLOBAL)
                return
            except OSError:
                continue


_preloaded = False


def _ensure_nvrtc() -> None:
    global _preloaded
    if not _preloaded:
        _preload_nvrtc()
        _preloaded = True


def _is_nvrtc_missing(exc: BaseException) -> bool:
    """Whether ``exc`` says that CuPy's NVRTC bindings or libnvrtc itself could not be loaded."""
    if isinstance(exc, KernelCompileError):
        return False
    if isinstance(exc, ImportError):  # CuPy, its NVRTC bindings or cuda-pathfinder
        return True
    if any(cls.__name__ == "NVRTCError" for cls in type(exc).__mro__):  # NVRTC loaded, then failed
        return False
    # ctypes: OSError("libnvrtc.so.12: cannot open shared object file"); CuPy 13:
    # RuntimeError("CuPy failed to load libnvrtc.so.12: ..."); CuPy 14 finds libraries with
    # cuda-pathfinder: DynamicLibNotFoundError (a RuntimeError) 'Failure finding "libnvrtc.so.13..."'.
    return isinstance(exc, (OSError, RuntimeError)) and "nvrtc" in str(exc).lower()


def _nvrtc_install_hint() -> str:
    major = _cupy_cuda_major()
    if major in NVRTC_PACKAGES:
        pkg, extra = NVRTC_PACKAGES[major]
        return (f"CuPy here is built for CUDA {major}: install NVRTC with `pip install '{pkg}'` "
                f"(or the package's `{extra}` extra)")
    return ("install CuPy and NVRTC for the CUDA major of torch.version.cuda: the `cuda12` extra "
            "(cupy-cuda12x, nvidia-cuda-nvrtc-cu12) or the `cuda13` extra (cupy-cuda13x, "
            "nvidia-cuda-nvrtc)")


@contextlib.contextmanager
def _nvrtc_load_errors(source: str, names: Sequence[str]) -> Iterator[None]:
    """Turn "NVRTC could not be loaded" into a :class:`KernelCompileError` naming the package."""
    try:
        yield
    except (ImportError, OSError, RuntimeError) as exc:
        if not _is_nvrtc_missing(exc):
            raise
        raise KernelCompileError(source, names, f"NVRTC (the CUDA runtime compiler) could not be "
                                 f"loaded: {type(exc).__name__}: {exc}\n"
                                 f"{_nvrtc_install_hint()}") from exc


def _nvrtc_archs() -> Tuple[Tuple[int, int], Tuple[int, ...]]:
    """The version of the NVRTC in use and the architectures it compiles for (``()`` if unknown)."""
    _ensure_nvrtc()
    from cupy_backends.cuda.libs import nvrtc

    version = tuple(nvrtc.getVersion())
    get = getattr(nvrtc, "getSupportedArchs", None)  # NVRTC 11.2+
    return version, tuple(sorted(int(a) for a in get())) if get is not None else ()


def _device_arch(device: int) -> int:
    """Compute capability of CUDA ``device`` as an int (``90`` for sm_90)."""
    import cupy

    return int(cupy.cuda.Device(device).compute_capability)


def _check_arch(source: str, names: Sequence[str], device: int) -> None:
    """Raise :class:`KernelCompileError` if ``device`` is older than what we and NVRTC support."""
    arch = _device_arch(device)
    version, archs = _nvrtc_archs()
    lowest = max([MIN_ARCH] + ([archs[0]] if archs else []))
    if arch >= lowest:
        return
    nv = f"NVRTC {version[0]}.{version[1]}"
    span = f"{nv} compiles for sm_{archs[0]} to sm_{archs[-1]}" if archs else f"{nv} is in use"
    if arch < MIN_ARCH:
        why = f"unified-tensor supports sm_{MIN_ARCH} (Volta) and newer ({span})"
    else:
        why = (f"{span}; sm_{arch} needs CUDA 12: install torch built for CUDA 12 and the "
               f"`cuda12` extra (cupy-cuda12x, nvidia-cuda-nvrtc-cu12)")
    raise KernelCompileError(source, names, f"CUDA device {device} is sm_{arch}, which is not "
                             f"supported: {why}. Set UNIFIED_TENSOR_DISABLE_CUDA=1 to use the CPU "
                             f"path instead.")


def compile_cubin(source: str, name_expressions: Sequence[str], arch: str = "sm_80") -> Tuple[bytes, Dict[str, str]]:
    """Compile ``source`` for ``arch`` with NVRTC directly (no GPU or driver needed).

    Compiled with the options CuPy's RawModule uses at run time (:data:`NVRTC_OPTIONS` plus
    :data:`CUPY_ADDED_OPTIONS`). Returns the cubin and the lowered (mangled) name of every
    instance. Raises :class:`KernelCompileError` carrying the NVRTC log on failure, or saying
    which package to install when NVRTC cannot be loaded.
    """
    _ensure_nvrtc()
    with _nvrtc_load_errors(source, name_expressions):
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()  # loads libnvrtc: a missing library fails here, not mid-compile

    code = load_source(source)
    prog = nvrtc.createProgram(code, source, (), ())
    try:
        for n in name_expressions:
            nvrtc.addNameExpression(prog, n)
        opts = list(NVRTC_OPTIONS) + list(CUPY_ADDED_OPTIONS) + [f"--gpu-architecture={arch}"]
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as exc:
            raise KernelCompileError(source, name_expressions,
                                     f"{exc}\n{nvrtc.getProgramLog(prog)}") from None
        lowered = {n: nvrtc.getLoweredName(prog, n) for n in name_expressions}
        return nvrtc.getCUBIN(prog), lowered
    finally:
        nvrtc.destroyProgram(prog)


def get_function(source: str, name: str, device: int):
    """The compiled kernel ``name`` (a registered instance of ``source``) for CUDA ``device``.

    Compiled with CuPy's RawModule on first use (all registered instances of the source at once)
    and cached per device. Raises :class:`KernelCompileError` when the source fails to compile,
    when NVRTC cannot be loaded (naming the package to install) or when the GPU's architecture is
    older than what the library and the NVRTC in use support.
    """
    key = (device, source, name)
    fn = _cache.get(key)
    if fn is not None:
        return fn
    _ensure_nvrtc()
    with _lock:
        fn = _cache.get(key)
        if fn is not None:
            return fn
        names = list(_registry.get(source, []))
        if name not in names:
            raise KeyError(f"kernel instance '{name}' of '{source}' is not registered")
        code = load_source(source)
        with _nvrtc_load_errors(source, names):
            import cupy
            from cupy.cuda import compiler

            _check_arch(source, names, device)
            with cupy.cuda.Device(device):
                try:
                    mod = cupy.RawModule(code=code, options=NVRTC_OPTIONS,
                                         name_expressions=names)
                    for n in names:
                        _cache[(device, source, n)] = mod.get_function(n)
                except compiler.CompileException as exc:
                    raise KernelCompileError(source, names, str(exc)) from None
        return _cache[key]


_ext_streams: Dict[Tuple[int, int], object] = {}


class _StreamHandle:
    """A raw ``cudaStream_t`` behind the CUDA stream protocol (``__cuda_stream__``)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __cuda_stream__(self) -> Tuple[int, int]:
        return (0, self._handle)


def _cupy_stream(torch_stream, device: int):
    """A CuPy stream over PyTorch's ``torch_stream`` (cached per stream handle and device).

    CuPy 14 deprecates ``cupy.cuda.ExternalStream``; ``Stream.from_external`` (the CUDA stream
    protocol) replaces it where it exists. The stream is passed to each launch explicitly.
    """
    key = (int(torch_stream.cuda_stream), device)
    s = _ext_streams.get(key)
    if s is None:
        import cupy

        from_external = getattr(cupy.cuda.Stream, "from_external", None)
        if from_external is not None:
            s = from_external(_StreamHandle(key[0]))
        else:
            s = cupy.cuda.ExternalStream(key[0], device)
        _ext_streams[key] = s
    return s


def launch(fn, grid: int, block: int, args: tuple, device: int, stream=None) -> None:
    """Launch ``fn`` on ``device`` in PyTorch's current stream (or ``stream``, a torch stream)."""
    import cupy
    import torch

    if stream is None:
        stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device):
        fn((int(grid),), (int(block),), args, stream=_cupy_stream(stream, device))
