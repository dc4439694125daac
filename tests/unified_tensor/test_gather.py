"""Differential tests of the gather against ``x[idx]``: CPU path always, CUDA path under `gpu`."""
import os
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unified_tensor as ut
from unified_tensor import _gather_cpu
from testing import DTYPES, IDTYPES, ROW_SHAPES, make_table

N = 137


def bits(t: torch.Tensor) -> torch.Tensor:
    """Bytes of a tensor, so comparisons are bit for bit for every dtype (NaN, -0.0, bool)."""
    return t.contiguous().view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)


def assert_same(a: torch.Tensor, b: torch.Tensor):
    assert type(a) is torch.Tensor, f"result leaked subclass {type(a)}"
    assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
    assert torch.equal(bits(a.cpu()), bits(b.cpu()))


def index_patterns(n, idtype, device="cpu"):
    g = torch.Generator().manual_seed(1)
    pats = {
        "random": torch.randint(0, n, (257,), generator=g),
        "dups": torch.tensor([3, 3, 3, 0, n - 1, 0]),
        "negative": torch.tensor([-1, -n, 5, -7]),
        "empty": torch.empty(0, dtype=torch.int64),
        "2d": torch.randint(-n, n, (4, 9), generator=g),
        "sorted": torch.arange(n),
    }
    return {k: v.to(idtype).to(device) for k, v in pats.items()}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("idtype", IDTYPES, ids=str)
def test_cpu_matches_indexing(dtype, row_shape, idtype):
    table = make_table(N, row_shape, dtype)
    t = ut.unified(table)
    for name, idx in index_patterns(N, idtype).items():
        ref = table[idx.long()]
        assert_same(t[idx], ref)
        assert_same(ut.gather(t, idx), ref)
        if idx.dim() == 1:
            assert_same(torch.index_select(t, 0, idx), ref)
            assert_same(t.index_select(0, idx), ref)
        if len(row_shape) == 1 and dtype.is_floating_point:
            assert_same(F.embedding(idx, t), F.embedding(idx.long() % N, table))


def test_cpu_out_argument_and_plain_tables():
    table = make_table(50, (5,), torch.float32)
    idx = torch.tensor([4, 1, 49])
    out = torch.empty(3, 5)
    res = ut.gather(table, idx, out=out)  # plain CPU tables work on the CPU path
    assert res.data_ptr() == out.data_ptr()
    assert_same(res, table[idx])
    res2 = torch.index_select(ut.unified(table), 0, idx, out=torch.empty(3, 5))
    assert_same(res2, table[idx])


def test_index_list_and_numpy():
    table = make_table(20, (3,), torch.int64)
    t = ut.unified(table)
    assert_same(t[[1, 2, -1]], table[[1, 2, -1]])
    assert_same(t[np.array([0, 19])], table[torch.tensor([0, 19])])
    assert_same(ut.gather(t, np.array([5], dtype=np.int16)), table[[5]])


def test_other_ops_return_plain_tensors_and_views_share_memory():
    table = torch.arange(30.0).view(10, 3)
    t = ut.unified(table)
    for res in (t + 1, t[2:5], t[3], t.sum(0), t.float(), t * t):
        assert type(res) is torch.Tensor
    assert t[2:5].data_ptr() == table[2:5].data_ptr()
    t[0, 0] = 100.0  # writes go to the shared host memory
    assert table[0, 0].item() == 100.0
    assert t.shape == (10, 3) and t.dtype == torch.float32 and t.device.type == "cpu"


def test_torch_fallback_matches(monkeypatch):
    """Without Numba the CPU path is torch.index_select; it must agree bit for bit."""
    monkeypatch.setattr(_gather_cpu, "has_numba", lambda: False)
    for dtype in (torch.float16, torch.bool, torch.int8):
        table = make_table(N, (13, 3), dtype)
        t = ut.unified(table)
        for idx in index_patterns(N, torch.int64).values():
            assert_same(t[idx], table[idx])
    with pytest.raises(IndexError, match="out of range"):
        t[torch.tensor([N])]


def test_zero_row_table_and_zero_width_rows():
    empty = ut.unified(torch.empty(0, 4))
    assert ut.gather(empty, torch.empty(0, dtype=torch.int64)).shape == (0, 4)
    with pytest.raises(IndexError, match="0 rows"):
        empty[torch.tensor([0])]
    thin = ut.unified(torch.empty(5, 0))
    assert ut.gather(thin, torch.tensor([1, 4])).shape == (2, 0)
    with pytest.raises(IndexError):
        thin[torch.tensor([5])]


def test_cpu_gather_unaligned_views():
    """Tables and outputs at odd addresses pick a narrower word and stay exact."""
    base = make_table(1000, (), torch.uint8)
    for off in (1, 2, 3, 5, 8):
        view = base[off:off + 7 * 100].view(100, 7)
        t = ut.unified(view)
        idx = torch.randint(0, 100, (64,))
        assert_same(t[idx], view[idx])
        out_base = torch.empty(64 * 7 + 3, dtype=torch.uint8)
        out = out_base[3:].view(64, 7)
        ut.gather(t, idx, out=out)
        assert torch.equal(out, view[idx])


@pytest.mark.parametrize("idtype", IDTYPES, ids=str)
@pytest.mark.parametrize("sorted_order", [False, True])
def test_cuda_launch_arguments_match_kernel_signature(monkeypatch, idtype, sorted_order):
    """The launcher passes exactly the kernel's parameter types, in order (a wrong width would be
    read as garbage by the kernel), and a launch configuration the kernel is written for. Runs on
    the CPU: the launch is faked, the signature is NVRTC's mangled name."""
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    from unified_tensor import _gather_cuda, _kernels
    from testing import kernel_arg_dtypes

    launches = []
    monkeypatch.setattr(_kernels, "get_function", lambda source, name, device: (source, name))
    monkeypatch.setattr(_kernels, "launch", lambda fn, grid, block, args, device, stream=None:
                        launches.append((fn, grid, block, args, device)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(_gather_cuda, "resident_threads", lambda fn, device: 132 * 2048)
    index = torch.tensor([3, -1, 7, 0, 2], dtype=idtype)
    perm = torch.argsort(index) if sorted_order else None
    out = torch.empty(5, 12)
    table_ptr = 0x7F00_0000_1000
    bad_ptr = 0x7F00_0000_2000 if sorted_order else 0
    cache_ptr, slot_ptr = (0x7F00_0000_3008, 0x7F00_0000_4000) if sorted_order else (0, 0)
    _gather_cuda.gather_rows_cuda(table_ptr, 9, 48, index, out, perm=perm, max_threads=300,
                                  bad_ptr=bad_ptr, cache_ptr=cache_ptr, slot_ptr=slot_ptr)
    ((source, name), grid, block, args, device), = launches
    # the vector width divides the cache's base address too (0x...3008: 8 bytes)
    assert name == _gather_cuda._name(8 if sorted_order else 16, True, idtype) and device == 0
    group = 8 if sorted_order else 4   # 48-byte rows: 6 units of 8 bytes, or 3 of 16
    assert [type(a) for a in args] == kernel_arg_dtypes(source, name)
    assert [int(a) for a in args] == [table_ptr, 9, 48, index.data_ptr(),
                                      perm.data_ptr() if sorted_order else 0, 5, out.data_ptr(), group,
                                      bad_ptr, cache_ptr, slot_ptr]
    rows_per_group = _gather_cuda.ROWS_IN_FLIGHT
    assert block % 32 == 0 and 1 <= grid <= 2**31 - 1
    assert grid * block >= -(-5 // rows_per_group) * group   # lanes a row, ROWS_IN_FLIGHT rows a group


# ---------------------------------------------------------------------------------------- CUDA
gpu = pytest.mark.gpu


@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("idtype", IDTYPES, ids=str)
def test_cuda_matches_indexing(dtype, row_shape, idtype):
    table = make_table(N, row_shape, dtype)
    t = ut.unified(table)
    assert t.is_registered
    for name, idx in index_patterns(N, idtype, "cuda").items():
        ref = table[idx.long().cpu()].cuda()
        assert_same(t[idx], ref)
        assert_same(ut.gather(t, idx, aligned=False), ref)
        assert_same(ut.gather(t, idx, sorted_order=True), ref)
        assert_same(ut.gather(t, idx, max_threads=256), ref)
        assert_same(ut.gather(t, idx, validate=False), ref)
        if idx.dim() == 1:
            assert_same(torch.index_select(t, 0, idx), ref)


@gpu
@pytest.mark.parametrize("row_bytes", [1, 2, 3, 4, 6, 8, 12, 16, 24, 100, 128, 400, 512, 1028, 4096])
@pytest.mark.parametrize("offset", [0, 1, 4, 8, 36, 100])
def test_cuda_every_vector_width_and_alignment(row_bytes, offset):
    """Views at every byte offset into one registered buffer exercise each (VEC, shift) case."""
    n = 301
    base = make_table(n * row_bytes + 128, (), torch.uint8)
    holder = ut.unified(base)
    view = base[offset:offset + n * row_bytes].view(n, row_bytes)
    t = ut.unified(view)  # reuses the registration of `holder`'s pages
    idx = torch.randint(-n, n, (1000,), device="cuda")
    ref = view[idx.cpu()].cuda()
    for aligned in (True, False):
        assert_same(ut.gather(t, idx, aligned=aligned), ref)
    del holder


@gpu
def test_cuda_out_argument_and_gpu_resident_table():
    table = make_table(500, (64,), torch.float16)
    t = ut.unified(table)
    idx = torch.randint(0, 500, (100,), device="cuda")
    out = torch.empty(100, 64, dtype=torch.float16, device="cuda")
    assert ut.gather(t, idx, out=out).data_ptr() == out.data_ptr()
    assert_same(out, table[idx.cpu()].cuda())
    on_gpu = table.cuda()
    assert_same(ut.gather(on_gpu, idx), on_gpu[idx])
    pinned = table.pin_memory()  # a tensor PyTorch pinned is read zero-copy as it is
    assert_same(ut.gather(pinned, idx), on_gpu[idx])
    assert ut.unified(pinned).data_ptr() == pinned.data_ptr()


@gpu
@pytest.mark.parametrize("rows", [0, 1, 3000, 20000])
def test_cuda_results_have_exact_storage(rows):
    # As torch.empty's: a saved or shipped result carries only its own bytes (issue 19).
    table = make_table(100000, (64,), torch.float32)
    idx = torch.randint(0, 100000, (rows,), device="cuda")
    for src in (ut.unified(table), table.cuda()):
        x = ut.gather(src, idx)
        assert x.untyped_storage().nbytes() == x.numel() * x.element_size()
        assert_same(x, table[idx.cpu()].cuda())


@gpu
def test_cuda_numpy_memmap_and_shared_memory(tmp_path):
    arr = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=(300, 33))
    arr[:] = np.random.default_rng(0).standard_normal((300, 33))
    t = ut.unified(arr)
    assert t.data_ptr() == arr.ctypes.data
    idx = torch.randint(0, 300, (77,), device="cuda")
    assert_same(t[idx], torch.from_numpy(np.asarray(arr))[idx.cpu()].cuda())
    shared = torch.randn(100, 8).share_memory_()
    ts = ut.unified(shared)
    assert ts.data_ptr() == shared.data_ptr()
    i2 = torch.tensor([1, 99], device="cuda")
    assert_same(ts[i2], shared[i2.cpu()].cuda())


@gpu
def test_cuda_runs_on_current_stream():
    table = make_table(10000, (128,), torch.float32)
    t = ut.unified(table)
    s = torch.cuda.Stream()
    idx = torch.randint(0, 10000, (4096,), device="cuda")
    with torch.cuda.stream(s):
        res = t[idx]
    s.synchronize()
    assert_same(res, table[idx.cpu()].cuda())


@gpu
def test_cuda_torch_pinned_table_kept_alive_until_the_kernel_is_done():
    """A table pinned by PyTorch holds no registration of ours: the gather keeps it alive until the
    kernel has run, so dropping the last reference right after the call is safe."""
    from unified_tensor import _gather

    table = make_table(200_000, (64,), torch.float32).pin_memory()
    ref = table.clone()
    t = ut.unified(table)
    assert not t.is_registered          # used as PyTorch pinned it
    idx = torch.randint(0, 200_000, (100_000,), device="cuda")
    res = t[idx]
    assert any(obj is t._ut_plain for _, obj in _gather._inflight)
    del t, table
    torch.cuda.synchronize()
    assert_same(res, ref[idx.cpu()].cuda())


@gpu
@pytest.mark.parametrize("row_bytes", [4, 64, 512, 1028, 4096])
def test_cuda_sorted_and_index_order_agree(row_bytes):
    """sorted_order=None (auto), True and False give the same rows in the caller's order."""
    n = 5000
    table = make_table(n, (row_bytes,), torch.uint8)
    t = ut.unified(table)
    idx = torch.randint(-n, n, (3000,), device="cuda")
    ref = table[idx.cpu()].cuda()
    for so in (None, True, False):
        assert_same(ut.gather(t, idx, sorted_order=so), ref)


def test_index_select_is_recognised_when_pyg_was_imported_first():
    """PyG rebinds torch.index_select to a Python wrapper around the builtin; a UnifiedTensor
    must still take the gather path (negative ids wrap) whatever the import order."""
    pytest.importorskip("torch_geometric")
    code = ("import torch, torch_geometric\n"
            "import unified_tensor as ut\n"
            "t = ut.unified(torch.arange(10.).view(5, 2))\n"
            "r = torch.index_select(t, 0, torch.tensor([-1, 2]))\n"
            "assert r.tolist() == [[8.0, 9.0], [4.0, 5.0]], r\n")
    from testing import REPO_ROOT
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
