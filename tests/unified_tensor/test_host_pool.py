"""The recycled host buffers behind large CPU gathers: reuse only when nothing holds a buffer."""
import threading

import pytest
import torch

import unified_tensor as ut
from unified_tensor import _host_pool
from unified_tensor._host_pool import HostBufferPool
from testing import DTYPES, ROW_SHAPES, make_table


def test_released_buffer_is_reused():
    p = HostBufferPool(max_buffers=4, min_bytes=1024)
    a = p.empty((1000, 4), torch.float32)
    ptr = a.data_ptr()
    assert p.retained_bytes() == 0          # in use
    del a
    assert p.retained_bytes() >= 16000
    b = p.empty((990, 4), torch.float32)    # a little smaller: fits the same buffer
    assert b.data_ptr() == ptr and b.shape == (990, 4) and b.is_contiguous()
    assert b.untyped_storage().nbytes() == 990 * 4 * 4   # the tensor sees only its own bytes


@pytest.mark.parametrize("hold", ["tensor", "view", "numpy", "autograd", "unified"])
def test_held_buffer_is_never_handed_out(hold):
    p = HostBufferPool(max_buffers=4, min_bytes=1024)
    a = p.empty((1000, 4), torch.float32)
    a.fill_(7.0)
    ptr = a.data_ptr()
    if hold == "tensor":
        keep = a
    elif hold == "view":
        keep = a[10:20, 1]
    elif hold == "numpy":
        keep = a.numpy()
    elif hold == "autograd":
        w = torch.ones(4, requires_grad=True)
        keep = (a * w).sum()                 # saves `a` for the backward pass
    else:
        keep = ut.unified(a)
    del a
    b = p.empty((1000, 4), torch.float32)
    assert b.data_ptr() != ptr
    b.fill_(-1.0)
    if hold == "tensor":
        assert bool((keep == 7.0).all())
    elif hold == "view":
        assert bool((keep == 7.0).all())
    elif hold == "numpy":
        assert (keep == 7.0).all()
    elif hold == "autograd":
        keep.backward()
        assert torch.equal(w.grad, torch.full((4,), 7000.0))
    else:
        assert bool((keep[torch.tensor([0, 999])] == 7.0).all())
        ut.unpin(keep)


def test_small_requests_bypass_the_pool():
    p = HostBufferPool(max_buffers=4, min_bytes=1 << 20)
    t = p.empty((10, 3), torch.float64)
    assert t.shape == (10, 3) and len(p) == 0
    assert p.empty((0, 5), torch.float32).shape == (0, 5)


def test_pool_is_bounded():
    p = HostBufferPool(max_buffers=2, min_bytes=1024)
    held = [p.empty((2048,), torch.uint8) for _ in range(5)]   # all in use
    assert len(p) == 2
    assert len({t.data_ptr() for t in held}) == 5              # five distinct buffers
    held.clear()
    assert len(p) == 2 and p.retained_bytes() > 0
    p.clear()
    assert len(p) == 0 and p.retained_bytes() == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=str)
def test_gather_through_the_pool_matches_index(monkeypatch, dtype, row_shape):
    monkeypatch.setattr(_host_pool.host_pool, "min_bytes", 0)
    table = make_table(137, row_shape, dtype)
    idx = torch.randint(-137, 137, (300,), generator=torch.Generator().manual_seed(2))
    first = ut.gather(table, idx)
    expect = table[idx]
    assert first.dtype == dtype and first.shape == expect.shape and torch.equal(first, expect)
    ptr = first.data_ptr()
    del first
    again = ut.gather(table, idx.flip(0))    # reuses the buffer just released
    assert again.data_ptr() == ptr and torch.equal(again, table[idx.flip(0)])


def test_large_gathers_from_threads_never_share_a_buffer():
    table = make_table(5000, (64,), torch.float32)       # 256 B rows; 1.3 MB outputs
    errors = []

    def work(seed):
        g = torch.Generator().manual_seed(seed)
        kept = []
        for _ in range(20):
            idx = torch.randint(0, 5000, (5000,), generator=g)
            out = ut.gather(table, idx)
            kept.append((idx, out))
            if len(kept) > 3:                              # hold a few, release the rest
                i, o = kept.pop(0)
                if not torch.equal(o, table[i]):
                    errors.append(seed)
        for i, o in kept:
            if not torch.equal(o, table[i]):
                errors.append(seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_huge_requests_bypass_the_pool():
    p = HostBufferPool(max_buffers=4, min_bytes=1024, max_bytes=1 << 16)
    t = p.empty((1 << 17,), torch.uint8)
    assert t.numel() == 1 << 17 and len(p) == 0


def test_free_memory_held_by_the_pool_is_bounded():
    p = HostBufferPool(max_buffers=8, min_bytes=1024, max_free_bytes=5 << 20)   # buffers are 2 MiB+
    held = [p.empty((1 << 20,), torch.uint8) for _ in range(6)]                # 6 x 2 MiB in use
    assert len(p) == 6 and p.retained_bytes() == 0
    held.clear()                                                                # all free now
    small = p.empty((1 << 20,), torch.uint8)                                    # reuses one, trims
    assert p.retained_bytes() <= 5 << 20
    assert small.numel() == 1 << 20
