"""Every registered kernel instance compiles with NVRTC (no GPU needed), for the GPUs we target."""
import pytest

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


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source,instances", _sources(), ids=[s for s, _ in _sources()])
def test_every_instance_compiles(source, instances, arch):
    cubin, lowered = _kernels.compile_cubin(source, instances, arch=arch)
    assert cubin[:4] == b"\x7fELF"
    assert set(lowered) == set(instances)
    assert all(name.startswith("_Z") for name in lowered.values())


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
