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
            t[bad]
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
