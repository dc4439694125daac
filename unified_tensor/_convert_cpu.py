"""Fused CPU gather of compressed rows: read bfloat16 / float16 / int8 rows, write float rows.

``out[i] = convert(values[index[i]])`` in one pass: the table is read in its compressed form
(2 or 1 bytes a value instead of 4) and each value is decoded and encoded in registers, so the
bytes read from a table far larger than the CPU caches are what is saved.

=============  ==================================================================================
decode         bfloat16: ``float32(v)`` (the bits shifted up 16); float16: ``float32(v)`` (exact,
               subnormals, Inf and NaN included); int8: ``float32(q) * scale + offset`` with a
               float32 scale and offset per column or per row (two roundings, no fused
               multiply-add, as torch computes ``q.float() * scale + offset``)
encode         float32: the value; bfloat16 / float16: rounded to nearest even in integer
               arithmetic, exactly as torch's ``.to()`` (NaN stays NaN, overflow gives Inf);
               bfloat16 -> bfloat16 and float16 -> float16 are bit copies
=============  ==================================================================================

One Numba kernel per (source kind, output dtype, per-row scales) is compiled on first use
through :class:`~unified_tensor._numba_guard.ParallelKernel`: ``prange`` over output rows, the
inner loop over columns branch-free so that LLVM vectorises it, the rows ``PREFETCH_ROWS`` ahead
prefetched (uniform random rows of a big table are cache and TLB misses, and a conversion loop
overlaps fewer of them than a copy does), some conversions staged (see :func:`_staged`). Without
Numba the same results come from torch operators.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from ._deps import has_numba
from ._numba_guard import ParallelKernel

__all__ = ["gather_convert_rows_cpu", "KINDS", "OUT_DTYPES"]

#: Source kinds and the dtype their table is stored as.
KINDS: Dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
#: Output dtypes of the gather.
OUT_DTYPES: Tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16)
_KIND_OF = {dt: kind for kind, dt in KINDS.items()}
_OUT_NAME = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "fp16"}
_INDEX_DTYPES = (torch.int32, torch.int64)


# Rows whose cache lines a kernel prefetches ahead of the row it converts. A uniform random row of
# a table far larger than the caches is a DRAM (and TLB) miss; without prefetching, only the
# misses of the rows inside the core's out-of-order window overlap.
PREFETCH_ROWS = 16

# Output bytes of the rows one prange iteration handles (so that a staged block is still in L1/L2
# when its second pass converts it).
BLOCK_BYTES = 32 << 10

# Conversions run in two passes ("staged") over each block of rows: the raw values are first
# stored, widened, into the output rows (a loop as short as a copy, so that many rows' cache misses
# overlap), then converted there, from L1/L2. Converting in the loop that waits for the misses
# (one pass) makes each row's iteration longer, and fewer rows' misses overlap, even with
# prefetching; the staging pass costs a second trip through L1 instead. Which wins was measured per
# pair (2-core AMD EPYC, 4 GiB float32 table, uniform ids, 100k-row batches, 2 threads, fresh ids
# every call; rows/s relative to the float32 gather, one pass -> two passes; runs vary by ~10%):
#   staged:   fp16 -> f32 1.04 -> 1.24, fp16 -> bf16 0.63 -> 1.21, bf16 -> fp16 1.03 -> 1.25,
#             int8 -> bf16 1.5 -> 2.5
#   one pass: bf16 -> f32 1.6-1.7 -> 1.3-1.4, int8 -> fp16 2.8 -> 2.2; int8 -> f32 2.1-2.6 either
#             way (kept in one pass).
# bench/compress.py times the other choice for each source kind (*_one_pass / *_two_pass).
_STAGED = frozenset({("fp16", "f32"), ("fp16", "bf16"), ("bf16", "fp16"), ("int8", "bf16")})


def _staged(kind: str, out_name: str) -> bool:
    """Whether the (source kind, output) conversion runs in two passes (see ``_STAGED``)."""
    return (kind, out_name) in _STAGED


# The prefetch intrinsic, made on first kernel build (it needs Numba). A module global rather than
# a closure variable: Numba keys its on-disk cache by closure values, and an intrinsic's key is a
# fresh uuid in every process.
_prefetch: Any = None


def _make_prefetch() -> Any:
    """``_prefetch(array, byte_offset)``: ``llvm.prefetch`` (read, keep in all cache levels) of the
    byte at ``byte_offset`` from the array's start; never faults, a no-op where unsupported."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, arr, offset):
        if not isinstance(arr, types.Array) or not isinstance(offset, types.Integer):
            return None
        sig = types.void(arr, offset)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            i8p = ir.IntType(8).as_pointer()
            offset = context.cast(builder, args[1], signature.args[1], types.intp)
            ptr = builder.gep(builder.bitcast(ary.data, i8p), [offset])
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
            # rw=0 (read), locality=3 (all levels), cache type=1 (data)
            builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return sig, codegen

    return prefetch


def _kernel_source(kind: str, out_name: str, per_row: bool, prefetch_rows: int, staged: bool
                   ) -> Callable[..., Any]:
    """The Python source of one gather-convert kernel. The arguments are compile-time constants
    (closure variables: Numba prunes the branches on them, and its on-disk cache keys each variant
    by their values); ``prefetch_rows=0`` builds it without prefetching, ``staged`` makes it
    convert in a second pass (see :func:`_staged`)."""
    global _prefetch
    from numba import prange

    if _prefetch is None:
        _prefetch = _make_prefetch()
    copy = kind == out_name                    # bf16 -> bf16, fp16 -> fp16: bit copies
    in_bf16, in_int8 = kind == "bf16", kind == "int8"
    out_f32, out_bf16 = out_name == "f32", out_name == "bf16"
    ahead = prefetch_rows
    u32 = np.uint32
    f16_unit = np.float32(2.0 ** -24)          # value of the float16 subnormal unit
    half = np.float32(0.5)                     # x + 0.5 rounds x to float16 subnormal units

    def gather_convert(values, idx, out, scale, offset):  # pragma: no cover - compiled
        """values [N, F] (uint16 bits or int8), idx [m], out [m, F] (float32 bits as uint32, or
        float32 for int8 sources; bfloat16/float16 bits as uint16), scale/offset float32.
        Returns the number of out-of-range ids (their rows are not written).

        One pass: each prange iteration converts one row (prefetching the row ``ahead`` on).
        ``staged``: each prange iteration owns a block of rows, first stores their raw values
        widened into the output rows, then converts those in place, from the cache.
        All integer steps are wrapped in uint32 so that LLVM vectorises 16 lanes to a register
        (Numba widens integer arithmetic to 64 bits); the branches become selects."""
        n = values.shape[0]
        f = values.shape[1]
        m = idx.shape[0]
        row_bytes = f * values.itemsize
        base = values.ctypes.data

        def source_row(i):
            """The table row of ``idx[i]`` (negative ids wrap), or -1 when out of range."""
            r = idx[i]
            if r < 0:
                r += n
            return r if r >= 0 and r < n else -1

        def prefetch_ahead(i):
            if ahead > 0 and i + ahead < m:
                p = source_row(i + ahead)
                if p >= 0:
                    start = p * row_bytes
                    for b in range(-((base + start) & 63), row_bytes, 64):
                        _prefetch(values, start + b)

        def convert_row(i, r):
            """out[i] = convert(values[r]), or of out[i] itself when ``staged``."""
            s = np.float32(1.0)
            o = np.float32(0.0)
            if per_row:
                s = scale[r]
                o = offset[r]
            for j in range(f):
                v = out[i, j] if staged else values[r, j]
                if copy:
                    out[i, j] = v
                else:
                    # -- decode: the float32 value x (int8) or its bits (bf16, fp16)
                    if in_int8:
                        if not per_row:
                            s = scale[j]
                            o = offset[j]
                        if staged and out_f32:   # the first pass stored float32(q)
                            q = np.float32(v)
                        else:                    # q, or its bits widened to uint16
                            q = np.float32(np.int8(v))
                        x = np.float32(q * s) + o
                        bits = u32(0) if out_f32 else u32(np.float32(x).view(u32))
                    elif in_bf16:
                        x = np.float32(0.0)
                        bits = u32(u32(v) << u32(16))
                    else:
                        x = np.float32(0.0)
                        h = u32(u32(v) & u32(0xFFFF))
                        em = u32(h & u32(0x7FFF))
                        # normal: rebias the exponent by 127 - 15; Inf/NaN: exponent
                        # to 255, NaN made quiet (as F16C's vcvtph2ps does)
                        big = u32(u32(em << u32(13)) + u32(0x38000000))
                        big = u32(big + u32(0x38000000)) if em >= u32(0x7C00) else big
                        big = u32(big | u32(0x400000)) if em > u32(0x7C00) else big
                        # subnormal: em units of 2**-24 (exact, no subnormal float)
                        sub = u32(np.float32(np.float32(em) * f16_unit).view(u32))
                        bits = sub if em < u32(0x400) else big
                        bits = u32(bits | u32(u32(h & u32(0x8000)) << u32(16)))
                    # -- encode
                    if out_f32:
                        if in_int8:
                            out[i, j] = x
                        else:
                            out[i, j] = bits
                    elif out_bf16:
                        a = u32(bits & u32(0x7FFFFFFF))
                        odd = u32(u32(bits >> u32(16)) & u32(1))
                        rne = u32(u32(u32(bits + u32(0x7FFF)) + odd) >> u32(16))
                        nan = u32(u32(bits >> u32(16)) | u32(0x40))
                        out[i, j] = nan if a > u32(0x7F800000) else rne
                    else:
                        a = u32(bits & u32(0x7FFFFFFF))
                        # normal: round the mantissa to 10 bits, rebias; overflow
                        # gives Inf
                        odd = u32(u32(a >> u32(13)) & u32(1))
                        norm = u32(u32(u32(u32(a - u32(0x38000000)) + u32(0xFFF))
                                       + odd) >> u32(13))
                        # below 2**-14: adding 0.5 rounds to 2**-24 units (ties to
                        # even) and leaves them in the low mantissa bits
                        fa = np.float32(np.uint32(a).view(np.float32))
                        sub = u32(u32(np.float32(fa + half).view(u32)) - u32(0x3F000000))
                        hh = sub if a < u32(0x38800000) else norm
                        hh = u32(0x7C00) if a >= u32(0x47800000) else hh
                        nan = u32(u32(0x7E00) | u32(u32(a >> u32(13)) & u32(0x3FF)))
                        hh = nan if a > u32(0x7F800000) else hh
                        out[i, j] = u32(hh | u32(u32(bits >> u32(16)) & u32(0x8000)))

        if not staged:
            bad = 0
            for i in prange(m):
                prefetch_ahead(i)
                r = source_row(i)
                if r < 0:
                    bad += 1
                else:
                    convert_row(i, r)
            return bad
        block = max(1, min(128, BLOCK_BYTES // max(1, f * out.itemsize)))
        blocks = (m + block - 1) // block
        bad_in = np.zeros(blocks, np.int64)      # out-of-range ids per block
        for c in prange(blocks):
            lo = c * block
            hi = min(lo + block, m)
            for i in range(lo, hi):
                prefetch_ahead(i)
                r = source_row(i)
                if r < 0:
                    bad_in[c] += 1
                else:
                    for j in range(f):
                        out[i, j] = values[r, j]
            for i in range(lo, hi):
                r = source_row(i)
                if r >= 0:
                    convert_row(i, r)
        return bad_in.sum()

    return gather_convert


def _make_kernel(kind: str, out_name: str, per_row: bool, prefetch_rows: int, staged: bool
                 ) -> ParallelKernel:
    def source() -> Callable[..., Any]:
        return _kernel_source(kind, out_name, per_row, prefetch_rows, staged)

    source.__name__ = (f"gather_convert_{kind}_to_{out_name}" + ("_per_row" if per_row else "")
                       + ("_staged" if staged else "") + f"_prefetch{prefetch_rows}")
    source.__doc__ = f"Gather {kind} rows as {out_name} rows (see _kernel_source)."
    return ParallelKernel(source)


# (kind, out name, per_row, prefetch rows, staged) -> kernel; made on first use, compiled on
# first call.
_KERNELS: Dict[Tuple[str, str, bool, int, bool], ParallelKernel] = {}


def _kernel(kind: str, out_name: str, per_row: bool, prefetch_rows: int, staged: bool
            ) -> ParallelKernel:
    key = (kind, out_name, per_row, prefetch_rows, staged)
    kernel = _KERNELS.get(key)
    if kernel is None:   # racing threads may both make one; setdefault keeps the first
        kernel = _KERNELS.setdefault(key, _make_kernel(*key))
    return kernel


# -- argument checks -----------------------------------------------------------------------------
def _check_tensor(name: str, t: Any) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got one on {t.device}")
    return t


def _check_scales(values: torch.Tensor, scale: Any, offset: Any, per_row: bool
                  ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    kind = _KIND_OF[values.dtype]
    if kind != "int8":
        for name, t in (("scale", scale), ("offset", offset)):
            if t is not None:
                raise ValueError(f"{name} is only used with int8 values; got one for {kind} values "
                                 f"({values.dtype})")
        if per_row:
            raise ValueError(f"per_row=True needs int8 values with per-row scales; values are "
                             f"{values.dtype}")
        return None, None
    n, f = values.shape
    want = n if per_row else f
    what = "rows" if per_row else "columns"
    for name, t in (("scale", scale), ("offset", offset)):
        if t is None:
            raise ValueError(f"int8 values need a float32 {name} (one per {what[:-1]}), got None")
        _check_tensor(name, t)
        if t.dtype != torch.float32:
            raise TypeError(f"{name} must be float32, got {t.dtype}")
        if t.dim() != 1 or t.shape[0] != want:
            raise ValueError(f"{name} must have shape ({want},) (one value per {what[:-1]} of "
                             f"values {tuple(values.shape)}, per_row={per_row}), got "
                             f"{tuple(t.shape)}")
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
    return scale, offset


def _check_args(values: Any, index: Any, out: Any, scale: Any, offset: Any, per_row: Any
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    _check_tensor("values", values)
    if values.dtype not in _KIND_OF:
        raise TypeError(f"values must be bfloat16, float16 or int8 (a compressed table), got "
                        f"{values.dtype}")
    if values.dim() != 2:
        raise ValueError(f"values must be 2-D [N, F], got shape {tuple(values.shape)}")
    if not values.is_contiguous():
        raise ValueError(f"values must be contiguous, got strides {values.stride()}")
    _check_tensor("index", index)
    if index.dtype not in _INDEX_DTYPES:
        raise TypeError(f"index must be int32 or int64, got {index.dtype}")
    if index.dim() != 1:
        raise ValueError(f"index must be 1-D, got shape {tuple(index.shape)}")
    _check_tensor("out", out)
    if out.dtype not in OUT_DTYPES:
        raise TypeError(f"out must be float32, bfloat16 or float16, got {out.dtype}")
    want = (index.shape[0], values.shape[1])
    if tuple(out.shape) != want:
        raise ValueError(f"out must have shape {want} (len(index), values' columns), got "
                         f"{tuple(out.shape)}")
    if not out.is_contiguous():
        raise ValueError(f"out must be contiguous, got strides {out.stride()}")
    if not isinstance(per_row, bool):
        raise TypeError(f"per_row must be a bool, got {type(per_row).__name__}")
    scale, offset = _check_scales(values, scale, offset, per_row)
    return index.contiguous(), scale, offset


# -- the two paths -------------------------------------------------------------------------------
def _bits(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a 16-bit tensor's bits (NumPy has no bfloat16)."""
    return t.view(torch.int16).numpy().view(np.uint16)


_NO_SCALE = np.ones(1, dtype=np.float32)


def _numba_path(values: torch.Tensor, index: torch.Tensor, out: torch.Tensor,
                scale: Optional[torch.Tensor], offset: Optional[torch.Tensor], per_row: bool,
                prefetch_rows: int = PREFETCH_ROWS, staged: Optional[bool] = None) -> int:
    """The Numba kernel on checked arguments (``prefetch_rows``, ``staged``: for benchmarks'
    ablations; ``staged=None`` is :func:`_staged`)."""
    kind, out_name = _KIND_OF[values.dtype], _OUT_NAME[out.dtype]
    values, out = values.detach(), out.detach()      # same memory; .numpy() refuses grad tensors
    src = values.numpy() if kind == "int8" else _bits(values)
    if out_name == "f32":
        # int8 writes the float; the others write float32 bits.
        dst = out.numpy() if kind == "int8" else out.view(torch.int32).numpy().view(np.uint32)
    else:
        dst = _bits(out)
    s = _NO_SCALE if scale is None else scale.detach().numpy()
    o = _NO_SCALE if offset is None else offset.detach().numpy()
    if staged is None:
        staged = _staged(kind, out_name)
    kernel = _kernel(kind, out_name, per_row, prefetch_rows, staged)
    return int(kernel(src, index.numpy(), dst, s, o))


def _torch_path(values: torch.Tensor, index: torch.Tensor, out: torch.Tensor,
                scale: Optional[torch.Tensor], offset: Optional[torch.Tensor], per_row: bool
                ) -> int:
    n, m = values.shape[0], index.shape[0]
    if scale is not None and offset is not None:
        scale, offset = scale.detach(), offset.detach()
    ids = index.long()
    ids = torch.where(ids < 0, ids + n, ids)
    good = (ids >= 0) & (ids < n)
    bad = m - int(good.sum().item())
    rows = None
    if bad:
        rows = good.nonzero().squeeze(1)
        ids = ids[rows]
    picked = values.index_select(0, ids)
    if picked.dtype != out.dtype:
        x = picked.float()
        if scale is not None and offset is not None:
            if per_row:
                x.mul_(scale[ids].unsqueeze(1)).add_(offset[ids].unsqueeze(1))
            else:
                x.mul_(scale).add_(offset)
        picked = x.to(out.dtype)
    if rows is None:
        out.copy_(picked)
    else:
        out.index_copy_(0, rows, picked)
    return bad


def gather_convert_rows_cpu(values: torch.Tensor, index: torch.Tensor, out: torch.Tensor, *,
                            scale: Optional[torch.Tensor] = None,
                            offset: Optional[torch.Tensor] = None, per_row: bool = False) -> int:
    """Write ``convert(values[index[i]])`` into ``out[i]`` for every i: one fused CPU gather that
    reads the compressed rows and writes converted ones (no float32 copy of the rows in between).

    Parameters
    ----------
    values : torch.Tensor
        The compressed table: a contiguous 2-D ``[N, F]`` CPU tensor of bfloat16, float16 or int8.
    index : torch.Tensor
        1-D int32/int64 CPU tensor of row ids; negative ids wrap (``-1`` is the last row).
    out : torch.Tensor
        Contiguous ``[len(index), F]`` CPU tensor of float32, bfloat16 or float16, written in
        place. float32 -> bfloat16/float16 rounds to nearest even as ``Tensor.to`` does;
        bfloat16 -> bfloat16 and float16 -> float16 copy the bits.
    scale, offset : torch.Tensor, optional
        int8 values only (and then both required): contiguous float32 CPU tensors of length ``F``
        (per column) or ``N`` (``per_row=True``); a value decodes as
        ``float32(q) * scale + offset``.
    per_row : bool
        Whether ``scale``/``offset`` are per row rather than per column.

    Returns
    -------
    int
        The number of out-of-range ids. Their rows of ``out`` are left untouched (the others are
        written); the caller turns a non-zero count into an ``IndexError``.

    Raises
    ------
    TypeError, ValueError
        For a wrong dtype, shape, device or layout of an argument (the message names it).

    Examples
    --------
    >>> values = torch.randn(10, 4).to(torch.bfloat16)
    >>> out = torch.empty(2, 4)
    >>> gather_convert_rows_cpu(values, torch.tensor([3, -1]), out)
    0
    >>> torch.equal(out, values[[3, -1]].float())
    True
    """
    index, scale, offset = _check_args(values, index, out, scale, offset, per_row)
    if index.shape[0] == 0:
        return 0
    if has_numba():
        return _numba_path(values, index, out, scale, offset, per_row)
    return _torch_path(values, index, out, scale, offset, per_row)
