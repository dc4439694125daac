"""Every registered kernel instance compiles with NVRTC (no GPU needed), for the GPUs we target;
a missing NVRTC or an unsupported GPU fails with a message that says what to do."""
import concurrent.futures
import ctypes
import os
import sys
import warnings
from pathlib import Path

import pytest

import unified_tensor._convert_cuda  # noqa: F401  (registers gather_convert.cu)
import unified_tensor._gather_cuda  # noqa: F401  (registers gather.cu)
from unified_tensor import _kernels

try:
    import samplers  # noqa: F401  (registers sample.cu)
except ImportError:  # pragma: no cover - samplers is part of this repo
    pass

try:
    from cupy_backends.cuda.libs import nvrtc  # noqa: F401
    HAVE_NVRTC = True
except Exception:  # pragma: no cover
    HAVE_NVRTC = False

pytestmark = pytest.mark.skipif(not HAVE_NVRTC, reason="CuPy's NVRTC bindings are not installed")


def _sources():
    return sorted(_kernels.registered().items())


def test_expected_sources_registered():
    names = dict(_sources())
    assert "gather.cu" in names and len(names["gather.cu"]) == 40   # 5 widths x aligned x idtype x batch 1|4
    # int8 -> f32 | bf16 | fp16 (3 + 4 + 4 widths) x per column|row, bf16|fp16 -> the same 11
    # widths, each x idtype
    assert "gather_convert.cu" in names and len(names["gather_convert.cu"]) == (22 + 11 + 11) * 2


ARCHS = ("sm_70", "sm_75", "sm_80", "sm_90")   # Volta (CUDA 12 only) .. Hopper


@pytest.mark.parametrize("source,instances", _sources(), ids=[s for s, _ in _sources()])
def test_every_instance_compiles(source, instances):
    """Every instance of ``source`` for every targeted GPU. The architectures compile in threads
    (NVRTC releases the GIL: about 1.9x on 2 cores), each one a separate NVRTC program."""
    _, known = _kernels._nvrtc_archs()
    archs = [a for a in ARCHS if not known or int(a[3:]) in known]
    assert archs, f"this NVRTC compiles for none of {ARCHS} (it knows {sorted(known)})"

    def one(arch):
        cubin, lowered = _kernels.compile_cubin(source, instances, arch=arch)
        assert cubin[:4] == b"\x7fELF", arch
        assert set(lowered) == set(instances), arch
        assert all(name.startswith("_Z") for name in lowered.values()), arch
        return arch

    workers = max(1, min(len(archs), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(one, archs))   # re-raises the first failure, naming its arch
    assert done == archs
    skipped = sorted(set(ARCHS) - set(archs))
    if skipped:   # visible in -ra output, as the per-arch skips were
        warnings.warn(f"{source}: this NVRTC does not compile for {skipped}")


def test_cupy_still_adds_the_options_compile_cubin_mirrors():
    """compile_cubin compiles with the options CuPy's RawModule adds at run time; if a CuPy
    release stops adding one, CUPY_ADDED_OPTIONS must follow."""
    import inspect

    compiler = pytest.importorskip("cupy.cuda.compiler")
    src = inspect.getsource(compiler)
    for opt in _kernels.CUPY_ADDED_OPTIONS:
        assert f"'{opt}'" in src, opt


def test_compile_error_names_kernel_and_carries_log(tmp_path, monkeypatch):
    (tmp_path / "gather.cu").write_text("__global__ void broken() { this is not C++; }\n")
    monkeypatch.setenv(_kernels.ENV_KERNEL_DIR, str(tmp_path))
    _kernels.load_source.cache_clear()
    try:
        with pytest.raises(_kernels.KernelCompileError) as info:
            _kernels.compile_cubin("gather.cu", ["broken"])
        assert "gather.cu" in str(info.value)
        assert "error" in info.value.log.lower()
    finally:
        _kernels.load_source.cache_clear()


def test_headers_are_inlined():
    src = _kernels.load_source("gather.cu")
    assert '#include "' not in src and "lane_unit" in src and "pragma once" not in src
    src = _kernels.load_source("gather_convert.cu")
    assert '#include "' not in src and "pragma once" not in src
    assert "float_to_bf16" in src and "lane_unit" in src and src.count("struct VecT<16>") == 1


def test_launch_stream_uses_the_cuda_stream_protocol_without_deprecation_warnings():
    """CuPy 14 deprecates ExternalStream: where Stream.from_external exists it is used, and the
    wrapper hands CuPy the raw handle of PyTorch's stream (cached per handle and device)."""
    import warnings

    cupy = pytest.importorskip("cupy")
    if not hasattr(cupy.cuda.Stream, "from_external"):
        pytest.skip("this CuPy has no Stream.from_external")

    class TorchStreamLike:
        cuda_stream = 0x1234

    _kernels._ext_streams.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = _kernels._cupy_stream(TorchStreamLike(), 0)
    assert int(s.ptr) == 0x1234
    assert _kernels._cupy_stream(TorchStreamLike(), 0) is s
    _kernels._ext_streams.clear()


# ---- NVRTC discovery, a missing NVRTC, unsupported GPUs (faked: no GPU needed) ----------------

def test_nvrtc_reports_version_and_supported_archs():
    version, archs = _kernels._nvrtc_archs()
    assert version[0] in (12, 13)
    assert {80, 90} <= set(archs) and list(archs) == sorted(archs)
    assert (70 in archs) == (version[0] == 12)   # CUDA 13's NVRTC dropped Volta


# File names as NVIDIA's wheels ship them: nvidia-cuda-nvrtc-cu12 12.9.86 (nvidia/cuda_nvrtc/lib),
# nvidia-cuda-nvrtc 13.0.48 and 13.5.37 (nvidia/cu13/lib, 13.0 with ".alt." variants).
_WHEEL_LIBS = {
    ("cuda_nvrtc", "lib"): ["libnvrtc.so.12", "libnvrtc-builtins.so.12.9", "libnvrtc.alt.so.12",
                            "libnvrtc-builtins.alt.so.12.9"],
    ("cu13", "lib"): ["libnvrtc.so.13", "libnvrtc-builtins.so.13.0", "libnvrtc.alt.so.13",
                      "libnvrtc-builtins.alt.so.13.0"],
}


@pytest.mark.parametrize("major,expected", [
    (12, ["cuda_nvrtc/lib/libnvrtc-builtins.so.12.9", "cuda_nvrtc/lib/libnvrtc.so.12"]),
    (13, ["cu13/lib/libnvrtc-builtins.so.13.0", "cu13/lib/libnvrtc.so.13"]),
])
def test_preload_finds_the_wheel_of_cupys_cuda_major(tmp_path, monkeypatch, major, expected):
    """With both wheels installed, only the CUDA major CuPy was built for is loaded, builtins first,
    never the ".alt." variants."""
    for sub, names in _WHEEL_LIBS.items():
        d = tmp_path.joinpath("nvidia", *sub)
        d.mkdir(parents=True)
        for n in names:
            (d / n).write_bytes(b"")
    loaded = []
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.setattr(_kernels, "_cupy_cuda_major", lambda: major)
    monkeypatch.setattr(ctypes, "CDLL", lambda path, mode=0: loaded.append(path))
    _kernels._preload_nvrtc()
    assert [Path(p).relative_to(tmp_path / "nvidia").as_posix() for p in loaded] == expected


def _not_found_errors():
    """What CuPy raises when libnvrtc is missing: cuda-pathfinder's DynamicLibNotFoundError (CuPy
    14), a RuntimeError (CuPy 13), ctypes' OSError."""
    try:
        from cuda.pathfinder import DynamicLibNotFoundError
    except ImportError:  # CuPy 13 has no cuda-pathfinder
        class DynamicLibNotFoundError(RuntimeError):
            pass
    return [
        DynamicLibNotFoundError('Failure finding "libnvrtc.so.13 or libnvrtc.so.12": No such file'),
        RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open "
                     "shared object file: No such file or directory"),
        OSError("libnvrtc.so.13: cannot open shared object file: No such file or directory"),
    ]


def _break_nvrtc(monkeypatch, exc):
    from cupy_backends.cuda.libs import nvrtc as mod

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(mod, "getVersion", fail)
    monkeypatch.setattr(mod, "createProgram", fail)


_PACKAGES = [(12, "nvidia-cuda-nvrtc-cu12", "cuda12"), (13, "nvidia-cuda-nvrtc", "cuda13")]


@pytest.mark.parametrize("major,package,extra", _PACKAGES)
@pytest.mark.parametrize("exc", _not_found_errors(), ids=lambda e: type(e).__name__)
def test_missing_nvrtc_in_compile_cubin_names_the_package(monkeypatch, exc, major, package, extra):
    _break_nvrtc(monkeypatch, exc)
    monkeypatch.setattr(_kernels, "_cupy_cuda_major", lambda: major)
    with pytest.raises(_kernels.KernelCompileError) as info:
        _kernels.compile_cubin("gather.cu", ["x"])
    msg = str(info.value)
    assert "gather.cu" in msg and "NVRTC" in msg and f"pip install '{package}'" in msg
    assert f"CUDA {major}" in msg and extra in msg
    assert info.value.__cause__ is exc


def test_missing_cupy_bindings_in_compile_cubin_names_both_extras(monkeypatch):
    import cupy_backends.cuda.libs as libs

    monkeypatch.delattr(libs, "nvrtc")
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs.nvrtc", None)
    monkeypatch.setattr(_kernels, "_cupy_cuda_major", lambda: 0)
    with pytest.raises(_kernels.KernelCompileError) as info:
        _kernels.compile_cubin("gather.cu", ["x"])
    msg = str(info.value)
    assert "cuda12" in msg and "cuda13" in msg and "nvidia-cuda-nvrtc-cu12" in msg
    assert isinstance(info.value.__cause__, ImportError)


def test_nvrtc_errors_after_loading_are_not_reported_as_missing(monkeypatch):
    """Only "could not load" is translated; other failures keep their type."""
    _break_nvrtc(monkeypatch, RuntimeError("cudaErrorInsufficientDriver"))
    with pytest.raises(RuntimeError, match="InsufficientDriver") as info:
        _kernels.compile_cubin("gather.cu", ["x"])
    assert not isinstance(info.value, _kernels.KernelCompileError)


def _first_instance():
    source = "gather.cu"
    return source, _kernels.registered()[source][0]


@pytest.mark.parametrize("major,package,extra", _PACKAGES)
def test_missing_nvrtc_in_get_function_names_the_package(monkeypatch, major, package, extra):
    _break_nvrtc(monkeypatch, _not_found_errors()[0])
    monkeypatch.setattr(_kernels, "_cupy_cuda_major", lambda: major)
    monkeypatch.setattr(_kernels, "_device_arch", lambda device: 90)
    source, name = _first_instance()
    with pytest.raises(_kernels.KernelCompileError, match=f"pip install '{package}'") as info:
        _kernels.get_function(source, name, 0)
    assert extra in str(info.value) and (0, source, name) not in _kernels._cache


# NVRTC 12.9 and 13.0 as nvrtcGetSupportedArchs() reports them (13.5 adds sm_107).
_ARCHS_12 = ((12, 9), (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 103, 120, 121))
_ARCHS_13 = ((13, 0), (75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121))


@pytest.mark.parametrize("arch,nvrtc_info,expected", [
    (70, _ARCHS_13, ["sm_70", "NVRTC 13.0", "sm_75 to sm_121", "cuda12", "UNIFIED_TENSOR_DISABLE_CUDA"]),
    (72, _ARCHS_13, ["sm_72", "sm_75 to sm_121", "cuda12"]),
    (61, _ARCHS_12, ["sm_61", "sm_70 (Volta) and newer", "NVRTC 12.9"]),
    (61, _ARCHS_13, ["sm_61", "sm_70 (Volta) and newer", "NVRTC 13.0"]),
])
def test_unsupported_gpu_fails_before_compiling_and_names_sm_and_range(monkeypatch, arch, nvrtc_info,
                                                                       expected):
    import cupy

    monkeypatch.setattr(_kernels, "_device_arch", lambda device: arch)
    monkeypatch.setattr(_kernels, "_nvrtc_archs", lambda: nvrtc_info)

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled for an unsupported GPU")

    monkeypatch.setattr(cupy, "RawModule", no_compile)
    source, name = _first_instance()
    with pytest.raises(_kernels.KernelCompileError) as info:
        _kernels.get_function(source, name, 0)
    for part in expected:
        assert part in str(info.value), (part, str(info.value))


@pytest.mark.parametrize("arch,nvrtc_info", [(70, _ARCHS_12), (75, _ARCHS_13), (90, _ARCHS_13),
                                             (121, _ARCHS_12)])
def test_supported_gpus_pass_the_arch_check(monkeypatch, arch, nvrtc_info):
    monkeypatch.setattr(_kernels, "_device_arch", lambda device: arch)
    monkeypatch.setattr(_kernels, "_nvrtc_archs", lambda: nvrtc_info)
    assert _kernels._check_arch("gather.cu", ["x"], 0) is None
