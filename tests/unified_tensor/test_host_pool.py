"""The recycled host buffers behind large CPU gathers: reuse only when nothing holds a buffer."""
import gc
import io
import pickle
import queue
import sys
import threading

import pytest
import torch
import torch.utils.dlpack

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
    assert b._base is None and b.storage_offset() == 0       # not a view of a pool-owned tensor
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


# --- Reuse is decided by who holds the storage, not by CPython reference counts (issue 11). ---

def _hold(kind: str, a: torch.Tensor):
    """Something that keeps ``a``'s memory reachable after the name ``a`` is gone."""
    if kind == "tensor":
        return a
    if kind == "view":
        return a[10:20, 1]
    if kind == "numpy":
        return a.numpy()[5:]
    if kind == "list":
        return [a.view(-1)]
    if kind == "autograd":
        w = torch.ones(4, requires_grad=True)
        return (a * w).sum(), w                # the graph saves `a` for the backward pass
    if kind == "storage":
        return a.untyped_storage()
    if kind == "dlpack":
        return torch.utils.dlpack.to_dlpack(a)
    raise ValueError(kind)


# Every holder gives the buffer back once it is gone. (A storage object too: the result's
# storage is its own, which holds the buffer only while the storage lives.)
RELEASABLE = ["tensor", "view", "numpy", "list", "autograd", "dlpack", "storage"]


@pytest.mark.parametrize("hold", RELEASABLE)
def test_buffer_is_reused_only_after_every_holder_is_gone(hold):
    p = HostBufferPool(max_buffers=4, min_bytes=1024)
    a = p.empty((1000, 4), torch.float32)
    a.fill_(7.0)
    ptr = a.data_ptr()
    keep = _hold(hold, a)
    del a
    b = p.empty((1000, 4), torch.float32)
    assert b.data_ptr() != ptr
    b.fill_(-1.0)
    if hold == "storage":
        assert bool((torch.empty(0).set_(keep, 0, (4000,)) == 7.0).all())
    elif hold == "autograd":
        keep[0].backward()
        assert torch.equal(keep[1].grad, torch.full((4,), 7000.0))
    elif hold == "numpy":
        assert (keep == 7.0).all()
    elif hold in ("tensor", "view"):
        assert bool((keep == 7.0).all())
    del keep, b
    assert p.empty((1000, 4), torch.float32).data_ptr() == ptr


class _Cycle:
    def __init__(self, item):
        self.item = item
        self.me = self


def test_buffer_held_by_a_reference_cycle_waits_for_the_collector():
    p = HostBufferPool(max_buffers=4, min_bytes=1024)
    a = p.empty((1000, 4), torch.float32)
    ptr = a.data_ptr()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        _Cycle(a)
        del a
        assert p.empty((1000, 4), torch.float32).data_ptr() != ptr
        gc.collect()
        assert p.empty((1000, 4), torch.float32).data_ptr() == ptr
    finally:
        if was_enabled:
            gc.enable()


def test_reuse_does_not_read_python_reference_counts(monkeypatch):
    # A CPython that reports fewer references than there are (counts are an implementation detail).
    monkeypatch.setattr(sys, "getrefcount", lambda obj: 2)
    p = HostBufferPool(max_buffers=4, min_bytes=1024)
    a = p.empty((1000, 4), torch.float32)
    a.fill_(7.0)
    b = p.empty((1000, 4), torch.float32)
    assert b.data_ptr() != a.data_ptr()
    b.fill_(-1.0)
    assert bool((a == 7.0).all())


def test_buffer_held_by_another_thread_is_not_reused():
    p = HostBufferPool(max_buffers=4, min_bytes=1024)
    handoff, release, done = queue.Queue(), threading.Event(), threading.Event()

    def worker():
        held = handoff.get()                    # the only holders now live in this thread
        view = held.numpy()[::2]
        del held
        release.wait()
        assert (view == 3.0).all()
        del view
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    a = p.empty((1000, 4), torch.float32)
    a.fill_(3.0)
    ptr = a.data_ptr()
    handoff.put(a)
    del a
    for _ in range(3):                          # held in the thread: never handed out here
        b = p.empty((1000, 4), torch.float32)
        assert b.data_ptr() != ptr
        b.fill_(-1.0)
        del b
    release.set()
    t.join()
    assert done.is_set()
    assert p.empty((1000, 4), torch.float32).data_ptr() == ptr


def test_pool_is_off_when_torch_counts_are_unavailable(monkeypatch):
    monkeypatch.setattr(_host_pool, "_COUNTS_OK", False)
    p = HostBufferPool(max_buffers=4, min_bytes=1024)
    t = p.empty((1000, 4), torch.float32)
    assert t.shape == (1000, 4) and len(p) == 0


# --- Pooled results are ordinary tensors (issue 10). ---

def _pooled_and_plain(shape=(1000, 4), dtype=torch.float32):
    p = HostBufferPool(max_buffers=4, min_bytes=1024)
    x = p.empty(shape, dtype)
    y = torch.empty(shape, dtype=dtype)
    for t in (x, y):
        t.copy_(torch.arange(t.numel()).view(shape).to(dtype))
    return p, x, y


def test_pooled_result_shrinks_but_does_not_grow_its_storage():
    # Its storage is exactly its size inside a larger buffer, so it cannot grow in place (like a
    # torch.from_numpy result); shrinking and growing back within it work as for torch.empty.
    p, x, y = _pooled_and_plain()
    before = x.clone()
    for t in (x, y):
        t.resize_(500, 4)
        t.resize_(1000, 4)
    assert torch.equal(x, before) and torch.equal(x, y) and x._base is None
    with pytest.raises(RuntimeError, match="not resizable"):
        x.resize_(2000, 4)
    assert x.untyped_storage().nbytes() == 1000 * 4 * 4   # (torch leaves the new shape set)
    assert torch.equal(x.resize_(1000, 4), before)
    ptr = x.data_ptr()
    del x                                        # the failed resize left the buffer the pool's
    assert p.empty((1000, 4), torch.float32).data_ptr() == ptr


def test_pooled_result_pickles_and_shares_like_torch_empty():
    p, x, y = _pooled_and_plain()
    for t in (x, y):
        u = pickle.loads(pickle.dumps(t))
        assert u.dtype == t.dtype and torch.equal(u, t)
        t.numpy()[0, 0] = 42.0                   # .numpy() shares memory
        assert t[0, 0].item() == 42.0
        t.share_memory_()
        assert t.is_shared() and t[0, 0].item() == 42.0 and torch.equal(t[1:], y[1:])
    assert x.untyped_storage().nbytes() == 1000 * 4 * 4   # only the result went to shared memory
    assert p.retained_bytes() > 0                # ... and the buffer came back to the pool
    del x
    z = p.empty((1000, 4), torch.float32)        # shared memory never comes back as a result
    assert p.retained_bytes() == 0 and not z.is_shared()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pin_memory needs CUDA")
def test_pooled_result_pins_like_torch_empty():
    _, x, y = _pooled_and_plain()
    px, py = x.pin_memory(), y.pin_memory()
    assert px.is_pinned() and py.is_pinned() and torch.equal(px, py)
    assert px.data_ptr() != x.data_ptr()


# --- A result's storage is exactly its size, as torch.empty's (issue 19). ---

def _exact(x: torch.Tensor) -> bool:
    return x.untyped_storage().nbytes() == x.numel() * x.element_size() and x.storage_offset() == 0


def _saved_bytes(x: torch.Tensor) -> int:
    buf = io.BytesIO()
    torch.save(x, buf)
    return len(buf.getvalue())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("row_shape", ROW_SHAPES, ids=str)
def test_gather_results_have_exact_storage(monkeypatch, dtype, row_shape):
    monkeypatch.setattr(_host_pool.host_pool, "min_bytes", 0)    # every size through the pool
    t = ut.unified(make_table(137, row_shape, dtype))
    g = torch.Generator().manual_seed(3)
    big = t[torch.randint(0, 137, (2000,), generator=g)]         # leaves a large free buffer
    del big
    for m in (300, 1, 0, (7, 5)):                                # reuse that buffer, smaller
        idx = torch.randint(-137, 137, m if isinstance(m, tuple) else (m,), generator=g)
        x = t[idx]
        assert _exact(x), (m, x.untyped_storage().nbytes(), x.numel() * x.element_size())
        assert x.dtype == dtype and torch.equal(x, t._ut_plain[idx])
        del x


@pytest.mark.parametrize("rows", [3000, 20000, 60000])           # 0.77 MB (no pool) .. 15 MB
def test_issue_example_saves_and_pickles_only_its_bytes(rows):
    t = ut.unified(torch.randn(100000, 64))
    earlier = t[torch.randint(0, 100000, (80000,))]              # a bigger batch, released
    del earlier
    idx = torch.randint(0, 100000, (rows,))
    x = t[idx]
    nbytes = x.numel() * x.element_size()
    assert x.untyped_storage().nbytes() == nbytes
    assert torch.equal(x, t._ut_plain[idx])
    saved = _saved_bytes(x)
    assert nbytes <= saved <= nbytes + 4096 and saved == _saved_bytes(x.clone())
    pickled = pickle.dumps(x)
    assert len(pickled) <= nbytes + 4096
    y = pickle.loads(pickled)
    assert y.dtype == x.dtype and torch.equal(y, x) and _exact(y)
    buf = io.BytesIO()
    torch.save(x, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf), x)


def test_smaller_request_reuses_a_larger_buffer_with_exact_storage():
    p = HostBufferPool(max_buffers=4, min_bytes=1)
    a = p.empty((1 << 20,), torch.uint8)
    ptr = a.data_ptr()
    del a
    for shape, dtype in [((1000, 3), torch.float64), ((17,), torch.int16), ((), torch.bfloat16),
                         ((5, 0, 2), torch.float32)]:
        b = p.empty(shape, dtype)
        assert b.shape == shape and b.dtype == dtype and b.is_contiguous() and _exact(b)
        if b.numel():                                             # empty ones bypass the pool
            assert b.data_ptr() == ptr
        del b
