"""Issue 18, section 3 (hardening of the GPU code), the parts that run on the CPU: which rows a
write touched (the cache refreshes only those), the slots a refresh copies, relaxed capture mode
around event queries, the link path's device helpers and the one-sync memory bound. The GPU
branches themselves run under the fake-CUDA harness (group ``hardening`` of
tests/fake_cuda/scenarios.py) and, under `gpu`, on a GPU."""
from __future__ import annotations

import time
import warnings

import pytest
import torch

import unified_tensor as ut
from unified_tensor import _cache, _checks, _cudart
from unified_tensor._writes import rows_written


class RecordingCache:
    """Stands in for a GpuRowCache: records what each refresh was asked to copy."""

    def __init__(self, t):
        self.calls = []
        self.version = t._ut_plain._version

    def refresh(self, table, rows=None, version_before=None, wait_default=False, if_stale=False):
        self.calls.append((rows, version_before, self.version))
        self.version = table._ut_plain._version
        return 0


def _as_set(rows, n):
    out = set()
    for r in rows:
        out |= set(range(*r)) if isinstance(r, tuple) else set(r.tolist())
    assert all(0 <= v < n for v in out)
    return out


@pytest.mark.parametrize("name, write, want", [
    ("t[i] = v", lambda t: t.__setitem__(2, 1.0), {2}),
    ("t[-1] = v", lambda t: t.__setitem__(-1, 1.0), {9}),
    ("t[ids] = v", lambda t: t.__setitem__(torch.tensor([1, -1, 4]), 1.0), {1, 4, 9}),
    ("int32 ids", lambda t: t.__setitem__(torch.tensor([3, 5], dtype=torch.int32), 1.0), {3, 5}),
    ("a bool mask", lambda t: t.__setitem__(torch.arange(10) % 4 == 1, 1.0), {1, 5, 9}),
    ("a 2-D bool mask", lambda t: t.__setitem__(torch.eye(10, 3, dtype=torch.bool), 1.0), {0, 1, 2}),
    ("t[a:b].mul_", lambda t: t[3:6].mul_(2), {3, 4, 5}),
    ("t[a:b][ids] = v", lambda t: t[4:8].__setitem__(torch.tensor([0, 3]), 1.0), {4, 7}),
    ("index_copy_", lambda t: t.index_copy_(0, torch.tensor([6, 0]), torch.ones(2, 3)), {0, 6}),
    ("index_fill_", lambda t: t.index_fill_(0, torch.tensor([8]), 2.0), {8}),
    ("index_add_", lambda t: t.index_add_(0, torch.tensor([7, 7]), torch.ones(2, 3)), {7}),
    ("t[ids, cols] = v", lambda t: t.__setitem__((torch.tensor([2, 3]), torch.tensor([0, 1])), 1.0), {2, 3}),
    ("a column", lambda t: t[:, 1].zero_(), set(range(10))),
    ("t[::3] strided rows", lambda t: t[::3].fill_(1.0), set(range(10))),   # a span: conservative
    ("t.T[0]", lambda t: t.T[0].zero_(), set(range(10))),
    ("the whole table", lambda t: t.mul_(2), set(range(10))),
    ("init.constant_", lambda t: torch.nn.init.constant_(tensor=t[2:4], val=1.0), {2, 3}),
])
def test_a_write_refreshes_the_rows_it_touched(name, write, want):
    t = ut.unified(torch.zeros(10, 3))
    c = RecordingCache(t)
    t._ut_caches[0] = c
    v0 = t._ut_plain._version
    write(t)
    assert len(c.calls) == 1, c.calls
    rows, before, cache_version = c.calls[0]
    assert before == v0 == cache_version        # the cache was current: a partial refresh is safe
    assert want <= _as_set(rows, 10)
    if name not in ("t[::3] strided rows",):
        assert _as_set(rows, 10) == want, (name, rows)


def test_rows_written_of_a_one_dimensional_table_and_a_strided_view():
    plain = torch.zeros(12)
    idx = torch.tensor([1, 2])
    op = torch.ops.aten.index_put_.default
    assert rows_written(op, (plain, [idx], torch.tensor(1.0)), {}, plain, plain).tolist() == [1, 2]
    view = plain[2:10]
    assert rows_written(op, (view, [idx], torch.tensor(1.0)), {}, view, plain).tolist() == [3, 4]
    strided = plain[::2]   # rows 2 * i: not row-addressable by the index, the span is used
    assert rows_written(op, (strided, [idx], torch.tensor(1.0)), {}, strided, plain) == (0, 11)


def test_a_stale_cache_gets_a_full_refresh_and_a_failed_op_still_refreshes():
    t = ut.unified(torch.zeros(6, 2))
    c = RecordingCache(t)
    t._ut_caches[0] = c
    t._ut_plain[0] = 5.0          # through the wrapped tensor: counted, not watched
    t[1] = 1.0
    rows, before, cache_version = c.calls[-1]
    assert before != cache_version   # GpuRowCache.refresh sees this and copies every row
    with pytest.raises(RuntimeError):
        t.copy_(torch.zeros(5, 2))   # a size mismatch raises inside the op
    assert len(c.calls) == 2         # the watch refreshed what the op may have written anyway


def _bare_cache(ids):
    c = object.__new__(_cache.GpuRowCache)
    c.ids = ids
    c._sorted_ids, c._sorted_slots = torch.sort(ids)
    return c


def test_slots_of_the_rows_a_write_touched():
    ids = torch.tensor([40, 3, 17, 8, 25, 0])   # slot i holds row ids[i]
    c = _bare_cache(ids)
    assert c._slots_of([(0, 10)]).tolist() == [1, 3, 5]
    assert c._slots_of([(10, 20), torch.tensor([40, 41, 3])]).tolist() == [0, 1, 2]
    assert c._slots_of([(26, 40)]).tolist() == []
    assert c._slots_of([torch.tensor([], dtype=torch.int64)]).tolist() == []
    assert c._slots_of([(0, 100), (0, 100)]).tolist() == list(range(6))
    assert _bare_cache(torch.empty(0, dtype=torch.int64))._slots_of([torch.tensor([1])]).numel() == 0


class FakeRuntime:
    def __init__(self, mode=0):
        self.mode = mode
        self.calls = []

    def exchange_capture_mode(self, mode):
        self.calls.append(mode)
        old, self.mode = self.mode, mode
        return old


def test_relaxed_capture_mode_sets_and_restores_the_threads_mode(monkeypatch):
    rt = FakeRuntime(mode=_cudart.CAPTURE_MODE_GLOBAL)
    monkeypatch.setattr(_cudart, "_runtime", rt)
    with _checks.relaxed_capture_mode():
        assert rt.mode == _cudart.CAPTURE_MODE_RELAXED
        with _checks.relaxed_capture_mode():    # nested: already relaxed, nothing to restore
            pass
        assert rt.mode == _cudart.CAPTURE_MODE_RELAXED
    assert rt.mode == _cudart.CAPTURE_MODE_GLOBAL
    assert rt.calls == [2, 2, 0]
    with pytest.raises(KeyError):
        with _checks.relaxed_capture_mode():
            raise KeyError("restored on errors too")
    assert rt.mode == _cudart.CAPTURE_MODE_GLOBAL


def test_relaxed_capture_mode_without_the_runtime_call_is_a_no_op(monkeypatch):
    class CupyOnly:
        def exchange_capture_mode(self, mode):
            return None   # CuPy's bindings lack cudaThreadExchangeStreamCaptureMode

    monkeypatch.setattr(_cudart, "_runtime", CupyOnly())
    with _checks.relaxed_capture_mode():
        pass


def test_check_queue_queries_its_events_inside_the_guard():
    inside = []

    class Guard:
        depth = 0

        def __enter__(self):
            Guard.depth += 1

        def __exit__(self, *exc):
            Guard.depth -= 1

    class Event:
        def query(self):
            inside.append(Guard.depth > 0)
            return True

        def synchronize(self):
            inside.append(Guard.depth > 0)

    q = _checks.CheckQueue(torch.zeros(2, 2, dtype=torch.int64), torch.zeros(2, 2, dtype=torch.int64),
                           lambda reuse=None: Event(), guard=Guard)
    for _ in range(3):
        s = q.acquire()
        q.submit(s, 10)
    q.settle(block=False)
    q.settle(block=True)
    q.take_errors(block=True)
    assert inside and all(inside), inside


def test_runtime_exchange_checks_the_return_code():
    class Lib:
        def cudaThreadExchangeStreamCaptureMode(self, ptr):
            return 1   # cudaErrorInvalidValue

        def cudaGetErrorName(self, code):
            return b"cudaErrorInvalidValue"

        def cudaGetErrorString(self, code):
            return b"invalid argument"

        def cudaGetLastError(self):
            return 0

    rt = object.__new__(_cudart.HostRuntime)
    rt._lib = Lib()
    with pytest.raises(_cudart.CudaRuntimeError, match="cudaThreadExchangeStreamCaptureMode.*cudaErrorInvalidValue"):
        rt.exchange_capture_mode(_cudart.CAPTURE_MODE_RELAXED)
    rt._lib = None
    assert rt.exchange_capture_mode(_cudart.CAPTURE_MODE_RELAXED) is None


def test_sorted_distinct_positions_for_the_sampling_kernels():
    from samplers.sampling._link import _sorted_distinct

    p = torch.tensor([9, 3, 3, 7, 9, 9, 0])
    out = _sorted_distinct(p)
    assert out.numel() == p.numel()
    assert bool((out[1:] > out[:-1]).all())                        # strictly ascending
    real = out[out < 1 << 62]
    assert real.tolist() == [0, 3, 7, 9]                           # the distinct positions
    assert _sorted_distinct(torch.tensor([5])).tolist() == [5]
    assert _sorted_distinct(torch.empty(0, dtype=torch.int64)).numel() == 0


def test_flagged_range_errors_name_the_value_as_the_cpu_checks_do():
    from samplers.sampling._link import _raise_range

    with pytest.raises(IndexError, match=r"seed edges must be edge ids in \[0, 10\), got -3"):
        _raise_range("seed edges must be edge ids in [0, {n}), got {bad}", torch.tensor([1, 12, -3]), 10)
    with pytest.raises(IndexError, match=r"got 12"):
        _raise_range("seed edges must be edge ids in [0, {n}), got {bad}", torch.tensor([1, 12, 11]), 10)


def test_one_sync_memory_bound_warns_once(monkeypatch):
    from samplers.sampling import _one_sync

    dev = torch.device("cuda", 0)
    monkeypatch.setattr(_one_sync, "_warned_memory", False)
    need = _one_sync.padded_working_bytes(1024, [15, 10, 5], 10**8)
    assert need > 0
    assert need < _one_sync.padded_working_bytes(2048, [15, 10, 5], 10**8)
    # small graphs cap the node arrays
    assert _one_sync.padded_working_bytes(1024, [15, 10, 5], 500) < need
    monkeypatch.setattr(_one_sync, "available_bytes", lambda d: 4 * need)
    assert _one_sync.one_sync_fits(1024, [15, 10, 5], 10**8, dev)
    monkeypatch.setattr(_one_sync, "available_bytes", lambda d: need)   # half of it is not enough
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not _one_sync.one_sync_fits(1024, [15, 10, 5], 10**8, dev)
        assert not _one_sync.one_sync_fits(1024, [15, 10, 5], 10**8, dev)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "per-layer path" in msgs[0] and "MiB" in msgs[0], msgs
    assert _one_sync.one_sync_fits(1024, [15, 10, 5], 10**8, None)     # no device: entries only
    assert not _one_sync.one_sync_fits(1024, [-1, 5], 10**8, None)


# --------------------------------------------------------------------------------------- GPU
gpu = pytest.mark.gpu


@gpu
def test_cuda_partial_refresh_without_a_sync():
    """A one-row write to a cached table refreshes that row on the GPU with no host sync (torch's
    sync debug mode raises on one), and gathers on another stream see it."""
    t = ut.unified(torch.randn(4096, 32))
    ids = torch.arange(0, 4096, 2)
    ut.cache(t, ids=ids)
    idx = torch.randperm(4096, device="cuda")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        t[idx]
    torch.cuda.synchronize()
    ut.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        t[10] = 3.0
        t[100:120].mul_(2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with torch.cuda.stream(side):
        got = t[idx]
    torch.cuda.synchronize()
    assert torch.equal(got.cpu(), t._ut_plain[idx.cpu()])
    c = t._ut_caches[torch.cuda.current_device()]
    assert torch.equal(c.rows.cpu(), t._ut_plain[ids])


@gpu
def test_cuda_producer_polls_during_a_global_mode_capture():
    """A thread gathering with deferred checks (and from a PyTorch-pinned table) while the main
    thread captures a CUDA graph in global mode (torch.cuda.graph's default) leaves the capture
    valid; the graph replays correctly."""
    import threading

    t = ut.unified(torch.randn(1000, 16))
    pinned = torch.randn(1000, 16).pin_memory()
    idx = torch.randperm(1000, device="cuda")
    side = torch.cuda.Stream()
    for _ in range(3):   # warm-up: kernels compiled, the allocator's blocks cached on both streams
        with torch.cuda.stream(side):
            t[idx], ut.gather(pinned, idx)
    torch.cuda.synchronize()
    x = torch.randn(1000, device="cuda")
    out = torch.empty_like(x)
    start, stop, errors = threading.Event(), threading.Event(), []

    def producer():
        try:
            start.wait(30)
            with torch.cuda.stream(side):
                while not stop.is_set():
                    t[idx], ut.gather(pinned, idx)
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    th = threading.Thread(target=producer)
    th.start()
    graph = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out.copy_(x * 2)   # warm-up of the captured op
    torch.cuda.current_stream().wait_stream(s)
    try:
        with torch.cuda.graph(graph):
            start.set()
            time.sleep(0.2)          # the producer polls meanwhile
            out.copy_(x * 2)
    finally:
        stop.set()
        th.join()
    assert not errors, errors
    out.zero_()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, x * 2)
    ut.synchronize()
