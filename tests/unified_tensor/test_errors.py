"""Bad input gets a clear exception and leaves the process (and the CUDA context) healthy."""
import numpy as np
import pytest
import torch

import unified_tensor as ut


@pytest.fixture
def table():
    return ut.unified(torch.arange(40.0).view(10, 4))


def test_float_and_bool_indices_raise_type_error(table):
    with pytest.raises(TypeError, match="int32 or int64.*float32"):
        table[torch.tensor([1.0, 2.0])]
    with pytest.raises(TypeError, match="bool tensor.*nonzero"):
        table[torch.tensor([True, False] * 5)]
    with pytest.raises(TypeError, match="NumPy array of dtype float64"):
        ut.gather(table, np.array([0.5]))
    with pytest.raises(TypeError, match="uint8"):
        ut.gather(table, torch.tensor([1], dtype=torch.uint8))
    with pytest.raises(TypeError, match="got str"):
        ut.gather(table, "0")


@pytest.mark.parametrize("bad", [10, 11, 1000, -11, -1000])
def test_out_of_range_raises_index_error_with_value_and_size(table, bad):
    with pytest.raises(IndexError, match=rf"index {bad} is out of range for a table of 10 rows"):
        table[torch.tensor([0, bad, 1])]


def test_non_contiguous_tables_rejected_with_fix():
    x = torch.randn(8, 6)
    with pytest.raises(ValueError, match=r"not contiguous; call \.contiguous\(\)"):
        ut.unified(x.t())
    with pytest.raises(ValueError, match=r"not C-contiguous; pass np\.ascontiguousarray"):
        ut.unified(np.zeros((4, 4))[:, ::2])


def test_wrong_types_and_devices():
    with pytest.raises(TypeError, match="torch.Tensor or NumPy array, got list"):
        ut.unified([1, 2, 3])
    with pytest.raises(TypeError, match="dense"):
        ut.unified(torch.eye(3).to_sparse())
    with pytest.raises(ValueError, match="scalar"):
        ut.unified(torch.tensor(3.0))
    with pytest.raises(ValueError, match="detach"):
        ut.unified(torch.randn(3, 2, requires_grad=True))
    with pytest.raises(TypeError, match="UnifiedTensor"):
        ut.unpin(torch.randn(2))


def test_out_mismatch(table):
    idx = torch.tensor([1, 2])
    with pytest.raises(TypeError, match="no implicit casts"):
        ut.gather(table, idx, out=torch.empty(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected \(2, 4\)"):
        ut.gather(table, idx, out=torch.empty(3, 4))
    with pytest.raises(ValueError, match="contiguous"):
        ut.gather(table, idx, out=torch.empty(4, 2).t())


def test_cuda_index_without_cuda_path(monkeypatch, table):
    """With the env switch set the CUDA path is off and says so (CPU indexing still works)."""
    monkeypatch.setenv("UNIFIED_TENSOR_DISABLE_CUDA", "1")
    t = ut.unified(torch.randn(5, 2))
    assert not t.is_registered
    assert t[torch.tensor([1])].shape == (1, 2)


def test_error_leaves_table_usable(table):
    with pytest.raises(IndexError):
        table[torch.tensor([99])]
    assert torch.equal(table[torch.tensor([9])], torch.arange(36.0, 40.0).view(1, 4))


# ---------------------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
def test_cuda_errors_leave_context_healthy():
    t = ut.unified(torch.arange(40.0).view(10, 4))
    for bad in (torch.tensor([10], device="cuda"), torch.tensor([-11], device="cuda")):
        with pytest.raises(IndexError, match="out of range for a table of 10 rows"):
            t[bad]               # checked without a sync: raised at the next synchronising point
            ut.synchronize()
        with pytest.raises(IndexError, match="out of range for a table of 10 rows"):
            ut.gather(t, bad, validate="sync")
    with pytest.raises(TypeError):
        t[torch.tensor([0.0], device="cuda")]
    with pytest.raises(ValueError, match="out is on"):
        ut.gather(t, torch.tensor([1], device="cuda"), out=torch.empty(1, 4))
    with pytest.raises(ValueError, match="not pinned; wrap it with ut.unified"):
        ut.gather(torch.randn(5, 2), torch.tensor([1], device="cuda"))
    torch.cuda.synchronize()  # the context is not poisoned
    assert torch.equal(t[torch.tensor([9], device="cuda")].cpu(), torch.arange(36.0, 40.0).view(1, 4))


@pytest.mark.gpu
def test_cuda_use_after_unpin():
    t = ut.unified(torch.randn(10, 4))
    ut.unpin(t)
    assert not t.is_registered
    with pytest.raises(RuntimeError, match="unpinned"):
        t[torch.tensor([1], device="cuda")]
    assert t[torch.tensor([1])].shape == (1, 4)  # the CPU path still reads the host memory
    ut.unpin(t)  # idempotent
    with ut.unified(torch.randn(4, 4)) as t2:
        assert t2.is_registered
    assert not t2.is_registered


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2 if torch.cuda.is_available() else True,
                    reason="needs two GPUs")
def test_cuda_index_on_another_gpu():
    t = ut.unified(torch.randn(10, 4))
    idx = torch.tensor([1, 2], device="cuda:1")
    res = t[idx]  # registrations are portable: any GPU reads them
    assert res.device == idx.device
    with pytest.raises(ValueError, match="out is on cuda:0"):
        ut.gather(t, idx, out=torch.empty(2, 4, device="cuda:0"))


@pytest.mark.gpu
def test_cuda_unregistrable_memory_raises_runtime_error_with_cuda_text():
    """Registering memory that is already pinned by a different allocation fails cleanly."""
    from unified_tensor import _pinning

    reg = _pinning.registry()
    with pytest.raises(RuntimeError, match="cudaHostRegister"):
        reg.runtime.host_register(0x1000, 4096, 0)  # an unmapped address
    torch.cuda.synchronize()
    t = ut.unified(torch.randn(10, 4))
    assert t[torch.tensor([1], device="cuda")].shape == (1, 4)


# ------------------------------------------------------------------- silent wrong data, crashes
def test_out_overlapping_the_table_raises_like_torch():
    x = torch.randn(50, 4)
    t = ut.unified(x)
    before = x.clone()
    idx = torch.tensor([3, 1, 4, 1])
    with pytest.raises(RuntimeError, match="single memory location"):
        ut.gather(t, idx, out=x[0:4])
    with pytest.raises(RuntimeError, match="single memory location"):
        torch.index_select(t, 0, idx, out=x[10:14])
    assert torch.equal(x, before)                       # the table is untouched
    with pytest.raises(RuntimeError):                   # plain torch agrees
        torch.index_select(x, 0, idx, out=x[0:4])


@pytest.mark.parametrize("bad", [[1.9, 0.2], [True, False], (1.5,), [np.float64(2.7)], [1, 2.0],
                                 [[1, 2], [0.5, 1]], [np.bool_(True)]])
def test_sequences_of_floats_or_bools_are_not_truncated(table, bad):
    with pytest.raises(TypeError, match="integers"):
        ut.gather(table, bad)
    if isinstance(bad, list) and any(isinstance(v, (float, np.floating)) for v in bad):
        with pytest.raises(TypeError, match="integers"):   # plain torch would truncate silently
            table[bad]


def test_sequences_of_ints_still_work(table):
    assert torch.equal(ut.gather(table, [1, -1, np.int64(2)]), table._ut_plain[[1, -1, 2]])
    assert ut.gather(table, [[0, 1], [2, 3]]).shape == (2, 2, 4)


def test_read_only_source_stays_read_only():
    src = (np.arange(40, dtype=np.float32)).tobytes()
    t = ut.unified(np.frombuffer(src, np.float32).reshape(10, 4))
    ops = {"setitem": lambda: t.__setitem__(0, 1.0), "add_": lambda: t.add_(1), "zero_": lambda: t.zero_(),
           "iadd": lambda: t.__iadd__(1), "copy_": lambda: t.copy_(torch.zeros(10, 4)),
           "out=": lambda: torch.add(torch.ones(10, 4), 1, out=t)}
    for name, op in ops.items():
        with pytest.raises(RuntimeError, match="read-only"):
            op()
    assert np.frombuffer(src, np.float32)[0] == 0.0 and t[torch.tensor([0])][0, 0] == 0.0
    # reading works as before
    assert torch.equal(t[torch.tensor([9])], torch.arange(36, 40, dtype=torch.float32).view(1, 4))


def test_out_into_a_read_only_table_raises(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(40, dtype=np.float32).reshape(10, 4))
    ro = ut.unified(np.load(tmp_path / "a.npy", mmap_mode="r"))
    other = ut.unified(torch.randn(10, 4))
    with pytest.raises(RuntimeError, match="read-only"):
        ut.gather(other, torch.tensor([1, 2]), out=ro[0:2])


def test_read_only_memmap_writes_raise_in_a_child_process(tmp_path):
    """np.load(mmap_mode='r') pages are PROT_READ: a write that got through would segfault, so
    this runs in a child process and must exit cleanly with every write refused."""
    import subprocess
    import sys
    import textwrap

    np.save(tmp_path / "a.npy", np.arange(40, dtype=np.float32).reshape(10, 4))
    code = textwrap.dedent(f"""
        import numpy as np, torch, unified_tensor as ut
        t = ut.unified(np.load({str(tmp_path / 'a.npy')!r}, mmap_mode="r"))
        n = 0
        for op in (lambda: t.__setitem__(0, 1.0), lambda: t.add_(1), lambda: t.zero_(),
                   lambda: ut.gather(t, torch.tensor([1, 2]), out=t[0:2]),
                   lambda: ut.gather(t, torch.tensor([5, 6]), out=t[0:2])):
            try:
                op()
            except RuntimeError:
                n += 1
        assert float(t[torch.tensor([0])][0, 0]) == 0.0
        print("refused", n)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "refused 5" in p.stdout


def test_out_requiring_grad_raises_like_torch(table):
    out = torch.empty(2, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="automatic differentiation"):
        ut.gather(table, torch.tensor([0, 1]), out=out)


def test_exotic_tensor_kinds_get_type_errors():
    q = torch.quantize_per_tensor(torch.randn(4, 3), 0.1, 0, torch.qint8)
    with pytest.raises(TypeError, match="quantized"):
        ut.unified(q)
    nested = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)])
    with pytest.raises(TypeError, match="nested"):
        ut.unified(nested)
    with pytest.raises(ValueError, match="meta tensor"):
        ut.unified(torch.empty(4, 3, device="meta"))
    with pytest.raises(TypeError, match="byte order"):
        ut.unified(np.zeros((4, 3), dtype=">f4"))


def test_strided_tables_gather_on_the_cpu():
    x = torch.randn(30, 8)
    for strided in (x[:, ::2], x.t().contiguous().t(), x[:, :1].expand(-1, 6)):
        idx = torch.tensor([0, 29, -1, 7])
        assert torch.equal(ut.gather(strided, idx), strided[idx])
        with pytest.raises(IndexError):
            ut.gather(strided, torch.tensor([30]))


def test_device_pointer_of_an_unregistered_table_says_why(monkeypatch):
    monkeypatch.setenv("UNIFIED_TENSOR_DISABLE_CUDA", "1")
    t = ut.unified(torch.randn(4, 2))
    with pytest.raises(RuntimeError, match="not registered with CUDA: the CUDA path was unavailable"):
        ut.device_pointer(t)


@pytest.mark.gpu
def test_cuda_index_errors_name_the_actual_problem(monkeypatch):
    from unified_tensor import _gather

    idx = torch.tensor([0], device="cuda")
    monkeypatch.setattr(_gather, "cuda_available", lambda: False)
    with pytest.raises(ValueError, match="wrap it with ut.unified"):
        ut.gather(torch.randn(4, 2), idx)                 # plain pageable table
    with pytest.raises(RuntimeError, match="CuPy does not import"):
        ut.gather(torch.randn(4, 2).pin_memory(), idx)    # pinned, but no CuPy
    monkeypatch.setenv("UNIFIED_TENSOR_DISABLE_CUDA", "1")
    with pytest.raises(RuntimeError, match="UNIFIED_TENSOR_DISABLE_CUDA"):
        ut.gather(torch.randn(4, 2).pin_memory(), idx)
