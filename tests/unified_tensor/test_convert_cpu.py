"""Differential tests of the fused compressed-row CPU gather (``_convert_cpu``) against torch.

The reference is ``values.float()[idx] * scale + offset`` (int8) or ``values.float()[idx]``, then
``.to(out_dtype)``; bfloat16 -> bfloat16 and float16 -> float16 are ``values[idx]``. Results must
agree bit for bit, except that any NaN matches any NaN (torch itself writes different NaN bits on
its scalar and vectorised paths). Every test runs on the Numba kernels and on the torch fallback.
"""
import struct

import pytest
import torch

from unified_tensor import _convert_cpu
from unified_tensor._convert_cpu import gather_convert_rows_cpu
from unified_tensor._deps import has_numba
from testing import IDTYPES

KINDS = {"bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
OUT_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
WIDTHS = [1, 3, 100, 257]
# (kind, per_row): every source kind, int8 with per-column and per-row scales
SOURCES = [("bf16", False), ("fp16", False), ("int8", False), ("int8", True)]
N = 137


@pytest.fixture(params=["numba", "torch"])
def backend(request, monkeypatch):
    """Run the test on the Numba kernels, then again on the torch fallback."""
    if request.param == "numba":
        if not has_numba():
            pytest.skip("Numba is not installed")
    else:
        monkeypatch.setattr(_convert_cpu, "has_numba", lambda: False)
    return request.param


# -- helpers -------------------------------------------------------------------------------------
def f32_from_bits(bits) -> torch.Tensor:
    """float32 tensor with the given uint32 bit patterns."""
    return torch.tensor([b - (1 << 32) if b >= 1 << 31 else b for b in bits],
                        dtype=torch.int32).view(torch.float32)


def bits16(v: int) -> int:
    return v - (1 << 16) if v >= 1 << 15 else v


SPECIAL_16 = {  # bit patterns: NaNs (quiet, signalling, negative), +-Inf, +-0, subnormals, extremes
    torch.bfloat16: [0x7FC0, 0xFFC0, 0x7F81, 0x7F80, 0xFF80, 0x0000, 0x8000, 0x0001, 0x8005,
                     0x007F, 0x7F7F, 0xFF7F, 0x3380, 0x3300, 0x4780, 0x477F, 0x387F],
    torch.float16: [0x7E00, 0xFE00, 0x7C01, 0x7D23, 0x7C00, 0xFC00, 0x0000, 0x8000, 0x0001,
                    0x8003, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00, 0x0200],
}


def make_values(kind: str, n: int, f: int, seed: int = 0) -> torch.Tensor:
    """A contiguous [n, f] table; float kinds get NaN/Inf/subnormal/extreme values sprinkled in."""
    g = torch.Generator().manual_seed(seed)
    if kind == "int8":
        return torch.randint(-128, 128, (n, f), generator=g, dtype=torch.int8)
    dtype = KINDS[kind]
    values = (torch.randn(n, f, generator=g) * 4).to(dtype)
    special = torch.tensor([bits16(b) for b in SPECIAL_16[dtype]], dtype=torch.int16).view(dtype)
    flat = values.view(-1)
    if flat.numel() == 0:
        return values
    pos = torch.randint(0, flat.numel(), (min(flat.numel(), 3 * special.numel()),), generator=g)
    flat[pos] = special.repeat(3)[:pos.numel()]
    return values


def make_scales(n: int, f: int, per_row: bool, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    length = n if per_row else f
    scale = torch.rand(length, generator=g) * 0.2 - 0.05      # some negative, some tiny
    offset = torch.randn(length, generator=g) * 3
    return scale, offset


def reference(values, index, out_dtype, scale=None, offset=None, per_row=False) -> torch.Tensor:
    idx = index.long()
    if values.dtype == out_dtype:
        return values[idx]
    x = values.float()[idx]
    if scale is not None:
        if per_row:
            x = x * scale[idx].unsqueeze(1) + offset[idx].unsqueeze(1)
        else:
            x = x * scale + offset
    return x.to(out_dtype)


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bit for bit, except that NaN matches NaN (any payload)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    a_nan, b_nan = torch.isnan(a.float()), torch.isnan(b.float())
    assert torch.equal(a_nan, b_nan), "NaN positions differ"
    word = {1: torch.int8, 2: torch.int16, 4: torch.int32}[a.element_size()]
    a_bits, b_bits = a.contiguous().view(word), b.contiguous().view(word)
    diff = (a_bits != b_bits) & ~a_nan
    if diff.any():
        i = diff.nonzero()[0].tolist()
        raise AssertionError(f"{int(diff.sum())} values differ, first at {i}: "
                             f"{a[tuple(i)].item()!r} ({int(a_bits[tuple(i)])}) != "
                             f"{b[tuple(i)].item()!r} ({int(b_bits[tuple(i)])})")


def run(values, index, out_dtype, scale=None, offset=None, per_row=False):
    out = torch.full((index.shape[0], values.shape[1]), -7.0, dtype=out_dtype)
    bad = gather_convert_rows_cpu(values, index, out, scale=scale, offset=offset, per_row=per_row)
    return bad, out


def index_for(n: int, m: int, idtype, seed: int = 2) -> torch.Tensor:
    """Random ids with negatives (wrapping), duplicates and both ends of the table."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(-n, n, (m,), generator=g)
    idx[:4] = torch.tensor([0, n - 1, -1, -n])
    return idx.to(idtype)


# -- every (source kind, output dtype) -------------------------------------------------------------
@pytest.mark.parametrize("kind,per_row", SOURCES, ids=lambda v: str(v))
@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=str)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("idtype", IDTYPES, ids=str)
def test_matches_torch(backend, kind, per_row, out_dtype, width, idtype):
    values = make_values(kind, N, width)
    scale, offset = make_scales(N, width, per_row) if kind == "int8" else (None, None)
    index = index_for(N, 300, idtype)
    bad, out = run(values, index, out_dtype, scale, offset, per_row)
    assert bad == 0
    assert_same(out, reference(values, index, out_dtype, scale, offset, per_row))


@pytest.mark.parametrize("kind,per_row", SOURCES, ids=lambda v: str(v))
@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=str)
def test_empty_index(backend, kind, per_row, out_dtype):
    values = make_values(kind, N, 5)
    scale, offset = make_scales(N, 5, per_row) if kind == "int8" else (None, None)
    for idtype in IDTYPES:
        bad, out = run(values, torch.empty(0, dtype=idtype), out_dtype, scale, offset, per_row)
        assert bad == 0 and out.shape == (0, 5)


@pytest.mark.parametrize("kind,per_row", SOURCES, ids=lambda v: str(v))
@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=str)
def test_out_of_range_ids_are_counted_and_skipped(backend, kind, per_row, out_dtype):
    values = make_values(kind, N, 33)
    scale, offset = make_scales(N, 33, per_row) if kind == "int8" else (None, None)
    index = index_for(N, 200, torch.int64)
    bad_pos = torch.tensor([0, 5, 50, 180, 195, 199])   # some within prefetch distance of the end
    index[bad_pos] = torch.tensor([N, -N - 1, 10**12, -(10**12), N + 1, 2**62])
    bad, out = run(values, index, out_dtype, scale, offset, per_row)
    assert bad == bad_pos.numel()
    good = torch.ones(200, dtype=torch.bool)
    good[bad_pos] = False
    assert (out[bad_pos] == -7.0).all(), "rows of out-of-range ids must be left untouched"
    assert_same(out[good], reference(values, index[good], out_dtype, scale, offset, per_row))
    # int32 ids out of range too
    index32 = torch.tensor([1, N, -N - 1, 2**31 - 1, -(2**31), 3], dtype=torch.int32)
    bad, out = run(values, index32, out_dtype, scale, offset, per_row)
    assert bad == 4
    assert_same(out[[0, 5]], reference(values, index32[[0, 5]], out_dtype, scale, offset, per_row))


@pytest.mark.parametrize("kind,per_row", SOURCES, ids=lambda v: str(v))
def test_zero_row_table_and_zero_width_rows(backend, kind, per_row):
    empty = make_values(kind, 0, 4)
    scale, offset = make_scales(0, 4, per_row) if kind == "int8" else (None, None)
    bad, out = run(empty, torch.tensor([0, -1, 3]), torch.float32, scale, offset, per_row)
    assert bad == 3 and (out == -7.0).all()
    thin = make_values(kind, 6, 0)
    scale, offset = make_scales(6, 0, per_row) if kind == "int8" else (None, None)
    bad, out = run(thin, torch.tensor([1, 5, 6]), torch.float16, scale, offset, per_row)
    assert bad == 1 and out.shape == (3, 0)


def test_offset_table_views_and_noncontiguous_index(backend):
    """A table that starts inside a bigger buffer (not 64-byte aligned) and a strided index."""
    big = make_values("fp16", 300, 19)
    values = big[7:]                        # contiguous, starts 7 * 38 bytes into the buffer
    assert values.is_contiguous()
    index = index_for(values.shape[0], 400, torch.int64)[::2]
    bad, out = run(values, index, torch.float32)
    assert bad == 0
    assert_same(out, reference(values, index, torch.float32))


@pytest.mark.parametrize("kind,per_row", SOURCES, ids=lambda v: str(v))
@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=str)
def test_kernel_variants(kind, per_row, out_dtype):
    """The benchmark's ablation builds (one pass, no prefetch) and rows so wide that a block holds
    one row give the same results."""
    pytest.importorskip("numba")
    for width, m in ((100, 300), (9000, 7)):
        values = make_values(kind, N, width)
        scale, offset = make_scales(N, width, per_row) if kind == "int8" else (None, None)
        index = index_for(N, m, torch.int64)
        index[m // 2] = N
        good = torch.arange(m) != m // 2
        ref = reference(values, index[good], out_dtype, scale, offset, per_row)
        for prefetch_rows, staged in ((0, None), (_convert_cpu.PREFETCH_ROWS, False), (3, True)):
            out = torch.full((m, width), -7.0, dtype=out_dtype)
            bad = _convert_cpu._numba_path(values, index, out, scale, offset, per_row,
                                           prefetch_rows=prefetch_rows, staged=staged)
            assert bad == 1 and (out[m // 2] == -7.0).all()
            assert_same(out[good], ref)


def test_scales_that_require_grad(backend):
    """Scales kept as parameters (requires_grad) are read, not tracked."""
    values = make_values("int8", N, 6)
    scale, offset = make_scales(N, 6, False)
    index = index_for(N, 50, torch.int64)
    ref = reference(values, index, torch.float32, scale, offset)
    bad, out = run(values, index, torch.float32, scale.requires_grad_(), offset.requires_grad_())
    assert bad == 0 and not out.requires_grad
    assert_same(out, ref.detach())


# -- conversions exhaustively / at their edges --------------------------------------------------
def all_16bit(dtype) -> torch.Tensor:
    """Every 16-bit pattern of ``dtype``, as a [4096, 16] table."""
    bits = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16)
    return bits.view(dtype).view(4096, 16)


@pytest.mark.parametrize("kind", ["bf16", "fp16"])
@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=str)
def test_every_16bit_pattern(backend, kind, out_dtype):
    """All 65536 bfloat16 / float16 values (NaN, Inf, subnormals, ties when narrowing)."""
    values = all_16bit(KINDS[kind])
    index = torch.arange(values.shape[0])
    bad, out = run(values, index, out_dtype)
    assert bad == 0
    assert_same(out, reference(values, index, out_dtype))
    if values.dtype == out_dtype:           # same kind: a bit copy, NaN payloads included
        assert torch.equal(out.view(torch.int16), values.view(torch.int16))


def _ties_and_edges():
    """float32 bit patterns at the rounding edges of bfloat16 and float16 (both signs)."""
    pos = [
        # bfloat16: ties to even (down, up), just off a tie, overflow to Inf, f32 subnormal ties
        0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x7F7F8000, 0x7F7F7FFF, 0x7F7FFFFF,
        0x00008000, 0x00018000, 0x00000001, 0x007FFFFF, 0x00800000,
        # float16 normal: ties (down, up), off-tie; largest finite, the Inf threshold (65520)
        0x3F801000, 0x3F803000, 0x3F801001, 0x3F800FFF, 0x477FE000, 0x477FEFFF, 0x477FF000,
        0x477FF001, 0x47800000, 0x4F000000,
        # float16 subnormal range: 2**-14 and around, 2**-24, the 2**-25 tie to 0, 1.5 and 2.5
        # units (ties to 2), just over / under
        0x38800000, 0x387FFFFF, 0x387FF000, 0x387FE000, 0x33800000, 0x33000000, 0x33000001,
        0x32FFFFFF, 0x33C00000, 0x34200000, 0x34200001, 0x35000000,
        # zero, Inf, NaNs (quiet, signalling, payload)
        0x00000000, 0x7F800000, 0x7FC00000, 0x7F800001, 0x7FA12345, 0x7FFFFFFF,
    ]
    return pos + [b | 0x80000000 for b in pos]


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16], ids=str)
def test_float32_rounding_edges_and_random_bits(backend, out_dtype):
    """Arbitrary float32 values reach the encoder through int8 rows of ones with per-row scales:
    ``float32(1) * s + (-0.0)`` is exactly ``s`` (NaN, -0.0 and subnormals included)."""
    g = torch.Generator().manual_seed(3)
    rand = torch.randint(-(1 << 31), 1 << 31, (1 << 16,), generator=g, dtype=torch.int64)
    # random low bits under every exponent, so every rounding case is hit many times
    scale = torch.cat([f32_from_bits(_ties_and_edges()),
                       rand.to(torch.int32).view(torch.float32)])
    n = scale.numel()
    values = torch.ones(n, 1, dtype=torch.int8)
    offset = torch.full((n,), -0.0)
    index = torch.arange(n)
    bad, out = run(values, index, out_dtype, scale, offset, per_row=True)
    assert bad == 0
    assert_same(out, reference(values, index, out_dtype, scale, offset, per_row=True))
    assert_same(out, scale.to(out_dtype).view(n, 1))


def test_int8_decode_is_two_roundings_not_fma(backend):
    """``q * s + o`` rounds the product before adding, as torch does (no fused multiply-add)."""
    q = torch.tensor([[3, 127, -128, 1]], dtype=torch.int8)
    scale = f32_from_bits([0x3EAAAAAB, 0x3C23D70A, 0x3A83126F, 0x3F7FFFFF])
    offset = -(q.float()[0] * scale)       # an FMA would leave the rounding error, not 0
    bad, out = run(q, torch.tensor([0]), torch.float32, scale, offset)
    assert bad == 0
    assert_same(out, reference(q, torch.tensor([0]), torch.float32, scale, offset))
    assert struct.pack("<4f", *out[0].tolist()) == struct.pack("<4f", 0.0, 0.0, 0.0, 0.0)


# -- backends and threads ----------------------------------------------------------------------
@pytest.mark.parametrize("kind,per_row", SOURCES, ids=lambda v: str(v))
@pytest.mark.parametrize("out_dtype", OUT_DTYPES, ids=str)
def test_fallback_matches_numba(monkeypatch, kind, per_row, out_dtype):
    """The torch path gives the Numba kernels' results (NaN-for-NaN), out-of-range ids included."""
    pytest.importorskip("numba")
    values = make_values(kind, N, 100)
    scale, offset = make_scales(N, 100, per_row) if kind == "int8" else (None, None)
    index = index_for(N, 500, torch.int32)
    index[[3, 77]] = torch.tensor([N, -N - 5], dtype=torch.int32)
    bad_numba, out_numba = run(values, index, out_dtype, scale, offset, per_row)
    monkeypatch.setattr(_convert_cpu, "has_numba", lambda: False)
    bad_torch, out_torch = run(values, index, out_dtype, scale, offset, per_row)
    assert bad_numba == bad_torch == 2
    assert_same(out_numba, out_torch)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind,per_row", SOURCES, ids=lambda v: str(v))
def test_numba_threads(kind, per_row, threads):
    numba = pytest.importorskip("numba")
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"Numba has {numba.config.NUMBA_NUM_THREADS} threads")
    values = make_values(kind, 5000, 64)
    scale, offset = make_scales(5000, 64, per_row) if kind == "int8" else (None, None)
    index = index_for(5000, 20000, torch.int64)
    index[-3] = 5000                                     # one bad id
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        for out_dtype in OUT_DTYPES:
            bad, out = run(values, index, out_dtype, scale, offset, per_row)
            assert bad == 1
            keep = torch.arange(index.numel()) != index.numel() - 3
            ref = reference(values, index[keep], out_dtype, scale, offset, per_row)
            assert_same(out[keep], ref)
    finally:
        numba.set_num_threads(before)


# -- argument checks ---------------------------------------------------------------------------
def test_argument_errors_name_the_argument():
    v = make_values("int8", 10, 4)
    s, o = make_scales(10, 4, False)
    idx = torch.tensor([1, 2])
    out = torch.empty(2, 4)
    ok = dict(scale=s, offset=o)
    cases = [
        (TypeError, "values", (v.numpy(), idx, out), ok),
        (TypeError, "values", (v.float(), idx, out), {}),
        (ValueError, "values", (v.view(-1), idx, torch.empty(2, 40)), ok),
        (ValueError, "values", (make_values("bf16", 4, 10).t(), idx, out), {}),
        (TypeError, "index", (v, idx.float(), out), ok),
        (ValueError, "index", (v, idx.view(1, 2), out), ok),
        (TypeError, "index", (v, [1, 2], out), ok),
        (TypeError, "out", (v, idx, torch.empty(2, 4, dtype=torch.float64)), ok),
        (ValueError, "out", (v, idx, torch.empty(3, 4)), ok),
        (ValueError, "out", (v, idx, torch.empty(4, 2).t()), ok),
        (ValueError, "scale", (v, idx, out), dict(offset=o)),
        (ValueError, "offset", (v, idx, out), dict(scale=s)),
        (TypeError, "scale", (v, idx, out), dict(scale=s.double(), offset=o)),
        (ValueError, "offset", (v, idx, out), dict(scale=s, offset=torch.zeros(5))),
        (ValueError, "scale", (v, idx, out), dict(scale=s, offset=o, per_row=True)),
        (ValueError, "scale", (v, idx, out), dict(scale=torch.zeros(8)[::2], offset=o)),
        (TypeError, "per_row", (v, idx, out), dict(scale=s, offset=o, per_row=1)),
        (ValueError, "scale", (make_values("bf16", 10, 4), idx, out), ok),
        (ValueError, "per_row", (make_values("fp16", 10, 4), idx, out), dict(per_row=True)),
    ]
    for exc, name, args, kwargs in cases:
        with pytest.raises(exc, match=name):
            gather_convert_rows_cpu(*args, **kwargs)
