"""The launcher of the fused compressed-row gather (unified_tensor/_convert_cuda.py).

On the CPU: launches are faked and their arguments checked against the kernel's signature as
NVRTC mangles it, the template instance chosen (kinds, index type, elements per lane) and the
launch configuration; every argument that could make the kernel read or write out of bounds is
refused with the argument named. On a GPU (marked `gpu`): the kernel against PyTorch.
"""
import functools

import pytest
import torch

import testing
from unified_tensor import _convert_cuda, _kernels

INT64_MAX, INT64_MIN = 2**63 - 1, -2**63
# (in_kind, out dtype, per_row): every combination the kernel is instantiated for.
KINDS = [(k, o, pr) for k in ("int8", "bf16", "fp16")
         for o in (torch.float32, torch.bfloat16, torch.float16)
         for pr in ((False, True) if k == "int8" else (False,))]
IN_BYTES = {"int8": 1, "bf16": 2, "fp16": 2}
OUT_ELEM = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}


class OnCuda(torch.Tensor):
    """A CPU tensor that reports ``cuda:0`` as its device: enough for the launcher, whose launches
    are faked here (nothing reads its memory on a GPU)."""

    @property
    def device(self):
        return torch.device("cuda", 0)


def on_cuda(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(OnCuda)


def _max_name(in_kind, out_dtype, idtype, per_row):
    e = _convert_cuda.max_elems_per_lane(IN_BYTES[in_kind], OUT_ELEM[out_dtype])
    return _convert_cuda._name(in_kind, out_dtype, idtype, per_row, e)



@functools.lru_cache(maxsize=None)
def _lowered() -> dict:
    """NVRTC's mangled names of the instances these tests launch (compiled once, for sm_80)."""
    names = sorted({_max_name(k, o, d, pr) for k, o, pr in KINDS for d in testing.IDTYPES})
    return _kernels.compile_cubin(_convert_cuda.SOURCE, names, arch="sm_80")[1]


@pytest.fixture
def launches(monkeypatch):
    """Fake get_function / launch: record ``(name, grid, block, args, device)`` per launch."""
    got = []
    monkeypatch.setattr(_kernels, "get_function", lambda source, name, device: (source, name))
    monkeypatch.setattr(_kernels, "launch", lambda fn, grid, block, args, device, stream=None:
                        got.append((fn[1], grid, block, args, device)))
    monkeypatch.setattr(_convert_cuda, "resident_threads", lambda fn, device: 132 * 2048)
    return got


def arg_dtypes(monkeypatch, name):
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    monkeypatch.setattr(testing, "_lowered_names", lambda source: _lowered())
    return testing.kernel_arg_dtypes(_convert_cuda.SOURCE, name)


def make_args(in_kind="bf16", out_dtype=torch.float32, idtype=torch.int64, m=5, num_cols=64,
              per_row=False):
    index = on_cuda(torch.tensor([3, -1, 7, 0, 2, 9, -10, 4][:m], dtype=idtype))
    out = on_cuda(torch.empty(m, num_cols, dtype=out_dtype))
    kw = {}
    if in_kind == "int8":
        kw = dict(scale_ptr=0x7F00_0000_5000, offset_ptr=0x7F00_0000_6000, per_row=per_row)
    return 0x7F00_0000_1000, 9, num_cols, in_kind, index, out, kw


@pytest.mark.parametrize("in_kind,out_dtype,per_row", KINDS,
                         ids=[f"{k}-{str(o)[6:]}{'-row' if pr else ''}" for k, o, pr in KINDS])
@pytest.mark.parametrize("idtype", testing.IDTYPES, ids=str)
@pytest.mark.parametrize("extras", [False, True], ids=["plain", "perm-bad-cache"])
def test_launch_arguments_match_kernel_signature(monkeypatch, launches, in_kind, out_dtype, per_row,
                                                 idtype, extras):
    """The launcher passes exactly the kernel's parameter types, in order (a wrong width would be
    read as garbage by the kernel), picks the instance of the kinds and index type given with the
    widest lane, and a launch configuration the kernel is written for."""
    values, n, cols, kind, index, out, kw = make_args(in_kind, out_dtype, idtype, num_cols=64,
                                                      per_row=per_row)
    perm = on_cuda(torch.argsort(index.as_subclass(torch.Tensor))) if extras else None
    bad, cache, slot = (0x7F00_0000_2000, 0x7F00_0000_3000, 0x7F00_0000_4000) if extras else (0, 0, 0)
    _convert_cuda.gather_convert_rows_cuda(values, n, cols, kind, index, out, perm=perm,
                                           bad_ptr=bad, cache_ptr=cache, slot_ptr=slot, **kw)
    (name, grid, block, args, device), = launches
    assert name == _max_name(in_kind, out_dtype, idtype, per_row) and device == 0
    e = _convert_cuda.max_elems_per_lane(IN_BYTES[in_kind], OUT_ELEM[out_dtype])
    group = _convert_cuda.group_size(cols // e)
    assert [type(a) for a in args] == arg_dtypes(monkeypatch, name)
    assert [int(a) for a in args] == [values, n, cols, index.data_ptr(),
                                      perm.data_ptr() if extras else 0, 5, out.data_ptr(), group,
                                      bad, cache, slot, kw.get("scale_ptr", 0),
                                      kw.get("offset_ptr", 0)]
    assert block % 32 == 0 and block % group == 0 and 1 <= grid <= 2**31 - 1
    rows_per_group = _convert_cuda.ROWS_IN_FLIGHT
    assert grid * block >= -(-5 // rows_per_group) * group


def test_cache_pointer_needs_slot_pointer(launches):
    """Without a slot map the cache pointer is neither passed nor used for the width."""
    values, n, cols, kind, index, out, _ = make_args("bf16", torch.bfloat16)
    _convert_cuda.gather_convert_rows_cuda(values, n, cols, kind, index, out, cache_ptr=0x7F00_0000_3002)
    (name, _, _, args, _), = launches
    assert name.endswith(", 8, 4>") and int(args[9]) == 0


@pytest.mark.parametrize("case,in_kind,out_dtype,cols,values_off,cache_off,out_off,elems", [
    ("aligned int8 -> f32", "int8", torch.float32, 128, 0, None, 0, 4),
    ("table at +2", "int8", torch.float32, 128, 2, None, 0, 2),
    ("table at +1", "int8", torch.float16, 128, 1, None, 0, 1),
    ("602 columns", "int8", torch.float32, 602, 0, None, 0, 2),
    ("cache at +4", "int8", torch.bfloat16, 128, 0, 4, 0, 4),
    ("out at +2 bytes", "bf16", torch.bfloat16, 128, 0, None, 1, 1),
    ("out at +8 bytes", "fp16", torch.bfloat16, 128, 0, None, 4, 4),
    ("257 columns", "bf16", torch.float32, 257, 0, None, 0, 1),
    ("100 bf16 -> bf16", "bf16", torch.bfloat16, 100, 0, None, 0, 4),
])
def test_elements_per_lane_follow_width_and_alignment(launches, case, in_kind, out_dtype, cols,
                                                      values_off, cache_off, out_off, elems):
    """Loads and stores stay naturally aligned: the lane width divides the columns and the table's,
    the cache's and the output's addresses."""
    values, n, _, kind, index, _, kw = make_args(in_kind, out_dtype)
    base = torch.empty(5 * cols + 8, dtype=out_dtype)
    out = on_cuda(base[out_off:out_off + 5 * cols].view(5, cols))
    cache = {} if cache_off is None else dict(cache_ptr=0x7F00_0000_3000 + cache_off,
                                              slot_ptr=0x7F00_0000_4000)
    _convert_cuda.gather_convert_rows_cuda(values + values_off, n, cols, kind, index, out, **kw, **cache)
    (name, _, _, args, _), = launches
    assert name == _convert_cuda._name(in_kind, out_dtype, torch.int64, False, elems), case
    assert int(args[7]) == _convert_cuda.group_size(cols // elems)


def test_elems_per_lane_host_twin():
    """The cases tests/cpp/test_convert_math.cpp checks for ut::elems_per_lane."""
    e = _convert_cuda.elems_per_lane
    assert e(128, 1, 4, 0x1000, 0x2000) == 4 and e(128, 2, 2, 0x1000, 0x2000) == 8
    assert e(602, 1, 4, 0x1000, 0x2000) == 2 and e(257, 2, 4, 0x1000, 0x2000) == 1
    assert e(128, 1, 4, 0x1002, 0x2000) == 2 and e(128, 2, 2, 0x1000, 0x2004) == 2
    for in_size, out_size in ((1, 4), (1, 2), (2, 4), (2, 2)):
        for cols in range(1, 70):
            for off in range(0, 32, in_size):
                k = e(cols, in_size, out_size, 0x10000 + off, 0x20000)
                assert cols % k == 0 and off % (k * in_size) == 0 and k * max(in_size, out_size) <= 16
                k2 = 2 * k
                assert (k2 * max(in_size, out_size) > 16 or cols % k2 or off % (k2 * in_size))


def test_max_threads_caps_the_grid(launches):
    index = on_cuda(torch.zeros(20_000, dtype=torch.int64))
    out = on_cuda(torch.empty(20_000, 128))
    _convert_cuda.gather_convert_rows_cuda(0x7F00_0000_1000, 9, 128, "fp16", index, out,
                                           max_threads=300)
    (_, grid, block, _, _), = launches
    assert grid * block <= 512 and grid * block >= 300
    launches.clear()
    _convert_cuda.gather_convert_rows_cuda(0x7F00_0000_1000, 9, 128, "fp16", index, out)
    (_, grid, block, _, _), = launches
    assert grid * block == -(-20_000 // 4) * 32   # every group one batch of rows: no striding


@pytest.mark.parametrize("m,cols", [(0, 16), (4, 0)])
def test_nothing_to_do_launches_nothing(launches, m, cols):
    values, n, _, kind, index, out, kw = make_args("int8", torch.float32, m=m, num_cols=cols)
    _convert_cuda.gather_convert_rows_cuda(values, n, cols, kind, index, out, **kw)
    assert launches == []


def _cpu(t):
    return t.as_subclass(torch.Tensor)


ERRORS = [
    # (what is wrong, changes, exception, words the message must contain)
    ("unknown in_kind", dict(in_kind="int4"), ValueError, "in_kind"),
    ("index on the CPU", dict(index=lambda a: _cpu(a["index"])), ValueError, "index"),
    ("index a list", dict(index=lambda a: [1, 2]), TypeError, "index"),
    ("2-D index", dict(index=lambda a: on_cuda(torch.zeros(2, 2, dtype=torch.int64))), ValueError,
     "1-D"),
    ("float index", dict(index=lambda a: on_cuda(torch.zeros(5))), TypeError, "index"),
    ("int16 index", dict(index=lambda a: on_cuda(torch.zeros(5, dtype=torch.int16))), TypeError,
     "index"),
    ("non-contiguous index", dict(index=lambda a: on_cuda(torch.zeros(10, dtype=torch.int64))[::2]),
     ValueError, "contiguous"),
    ("int8 out", dict(out=lambda a: on_cuda(torch.empty(5, 64, dtype=torch.int8))), TypeError, "out"),
    ("float64 out", dict(out=lambda a: on_cuda(torch.empty(5, 64, dtype=torch.float64))), TypeError,
     "out"),
    ("out too small", dict(out=lambda a: on_cuda(torch.empty(5, 63))), ValueError, "out"),
    ("out with fewer rows", dict(out=lambda a: on_cuda(torch.empty(4, 80))), ValueError, "out"),
    ("out on the CPU", dict(out=lambda a: torch.empty(5, 64)), ValueError, "out"),
    ("non-contiguous out", dict(out=lambda a: on_cuda(torch.empty(64, 5)).t()), ValueError,
     "contiguous"),
    ("int32 perm", dict(perm=lambda a: on_cuda(torch.zeros(5, dtype=torch.int32))), TypeError, "perm"),
    ("short perm", dict(perm=lambda a: on_cuda(torch.zeros(4, dtype=torch.int64))), ValueError, "perm"),
    ("perm on the CPU", dict(perm=lambda a: torch.zeros(5, dtype=torch.int64)), ValueError, "perm"),
    ("int8 without scale", dict(in_kind="int8", offset_ptr=0x7F00_0000_6000), ValueError, "scale_ptr"),
    ("int8 without offset", dict(in_kind="int8", scale_ptr=0x7F00_0000_5000), ValueError, "offset_ptr"),
    ("scale for bf16", dict(scale_ptr=0x7F00_0000_5000, offset_ptr=0x7F00_0000_6000), ValueError,
     "int8"),
    ("per_row for fp16", dict(in_kind="fp16", per_row=True), ValueError, "per_row"),
    ("per_row not a bool", dict(in_kind="int8", scale_ptr=0x7F00_0000_5000,
                                offset_ptr=0x7F00_0000_6000, per_row="row"), TypeError, "per_row"),
    ("odd bf16 table address", dict(values_dev_ptr=0x7F00_0000_1001), ValueError, "values_dev_ptr"),
    ("odd fp16 cache address", dict(in_kind="fp16", cache_ptr=0x7F00_0000_3001,
                                    slot_ptr=0x7F00_0000_4000), ValueError, "cache_ptr"),
    ("misaligned scale", dict(in_kind="int8", scale_ptr=0x7F00_0000_5002,
                              offset_ptr=0x7F00_0000_6000), ValueError, "scale_ptr"),
    ("misaligned bad record", dict(bad_ptr=0x7F00_0000_2004), ValueError, "bad_ptr"),
    ("slot map without cache", dict(slot_ptr=0x7F00_0000_4000), ValueError, "cache_ptr"),
    ("no table", dict(values_dev_ptr=0), ValueError, "values_dev_ptr"),
    ("negative num_rows", dict(num_rows=-1), ValueError, "num_rows"),
    ("float num_cols", dict(num_cols=64.0), TypeError, "num_cols"),
    ("pointer as a float", dict(values_dev_ptr=1.5e12), TypeError, "values_dev_ptr"),
    ("max_threads 0", dict(max_threads=0), ValueError, "max_threads"),
]


@pytest.mark.parametrize("what,changes,exc,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_arguments_are_refused_before_any_launch(launches, what, changes, exc, words):
    values, n, cols, kind, index, out, _ = make_args("bf16", torch.float32)
    a = dict(values_dev_ptr=values, num_rows=n, num_cols=cols, in_kind=kind, index=index, out=out)
    for k, v in changes.items():
        a[k] = v(a) if callable(v) else v
    pos = [a.pop(k) for k in ("values_dev_ptr", "num_rows", "num_cols", "in_kind", "index", "out")]
    with pytest.raises(exc, match=words):
        _convert_cuda.gather_convert_rows_cuda(*pos, **a)
    assert launches == []


def test_registered_instances():
    names = _kernels.registered()[_convert_cuda.SOURCE]
    assert names == _convert_cuda.INSTANCES and len(set(names)) == len(names) == 88
    for n in names:
        assert "ut::I8>" not in n.split(",")[1] and ", ut::I8," not in n   # never int8 output
        assert (", true," in n) <= n.startswith("ut::gather_convert_rows<ut::I8,")
    # the widest lane of every kind is there, with a store of at most 16 bytes
    for k, o, pr in KINDS:
        for d in testing.IDTYPES:
            assert _max_name(k, o, d, pr) in names


# ---------------------------------------------------------------------------------------- CUDA
gpu = pytest.mark.gpu


def _reference(codes, in_kind, scale, offset, per_row, rows, out_dtype):
    if in_kind == "int8":
        s = scale[rows].unsqueeze(1) if per_row else scale
        o = offset[rows].unsqueeze(1) if per_row else offset
        return (codes[rows].float() * s + o).to(out_dtype)
    if codes.dtype == out_dtype:
        return codes[rows]
    return codes[rows].float().to(out_dtype)


@gpu
@pytest.mark.parametrize("in_kind,out_dtype,per_row", KINDS,
                         ids=[f"{k}-{str(o)[6:]}{'-row' if pr else ''}" for k, o, pr in KINDS])
@pytest.mark.parametrize("cols", [1, 3, 64, 100, 257, 602])
def test_cuda_kernel_matches_torch(in_kind, out_dtype, per_row, cols):
    """Bit for bit against PyTorch on the CPU: pinned table, int32/int64 ids with negative and
    out-of-range ones, sorted reads, a capped grid, the row cache (its table rows poisoned)."""
    import unified_tensor as ut

    n, m = 301, 1000
    g = torch.Generator().manual_seed(cols)
    x = torch.randn(n, cols, generator=g) * 3
    if in_kind == "int8":
        codes = torch.randint(-128, 128, (n, cols), generator=g, dtype=torch.int8)
    else:
        codes = x.to(torch.bfloat16 if in_kind == "bf16" else torch.float16)
    k = n if per_row else cols
    scale, offset = torch.rand(k, generator=g) * 0.1, torch.randn(k, generator=g)
    table = codes.pin_memory()
    ptr = ut.device_pointer(table)
    s_dev, o_dev = scale.cuda(), offset.cuda()
    kw = dict(scale_ptr=s_dev.data_ptr(), offset_ptr=o_dev.data_ptr(), per_row=per_row) \
        if in_kind == "int8" else {}
    idx_cpu = torch.randint(-n - 5, n + 5, (m,), generator=g)
    valid = (idx_cpu >= -n) & (idx_cpu < n)
    rows = idx_cpu[valid] % n
    want = torch.zeros(m, cols, dtype=out_dtype)
    want[valid] = _reference(codes, in_kind, scale, offset, per_row, rows, out_dtype)
    cached = torch.arange(0, n, 3)
    slot_of = torch.full((n,), -1, dtype=torch.int32)
    slot_of[cached] = torch.arange(len(cached), dtype=torch.int32)
    cache_rows = codes[cached].cuda()
    for idtype in testing.IDTYPES:
        idx = idx_cpu.to(idtype).cuda()
        for variant in ("plain", "sorted", "capped", "cache"):
            bad = torch.tensor([INT64_MAX, INT64_MIN], dtype=torch.int64, device="cuda")
            out = torch.full((m, cols), 7, dtype=out_dtype, device="cuda")
            extra = {}
            if variant == "sorted":
                extra["perm"] = torch.argsort(idx)
            elif variant == "capped":
                extra["max_threads"] = 256
            elif variant == "cache":
                slot_dev = slot_of.cuda()
                extra = dict(cache_ptr=cache_rows.data_ptr(), slot_ptr=slot_dev.data_ptr())
                poisoned = codes.clone()
                poisoned[cached] = torch.full_like(codes[cached], 100)
                table.copy_(poisoned)
            _convert_cuda.gather_convert_rows_cuda(ptr, n, cols, in_kind, idx, out,
                                                   bad_ptr=bad.data_ptr(), **kw, **extra)
            torch.cuda.synchronize()
            if variant == "cache":
                table.copy_(codes)
            bits = torch.int32 if out_dtype == torch.float32 else torch.int16
            assert torch.equal(out.cpu().view(bits), want.view(bits)), \
                (in_kind, out_dtype, per_row, cols, idtype, variant)
            lo, hi = idx_cpu[~valid].min().item(), idx_cpu[~valid].max().item()
            assert bad.tolist() == [lo, hi], variant
