"""Deferred range checks of CUDA gathers (unified_tensor/_checks.py): the bookkeeping on the CPU
with fake events, the same message as the immediate check, and, under `gpu`, the whole path: no
host sync per gather, zeros for bad rows, the IndexError at the next gather / ut.synchronize() /
the end of a DataLoader epoch, and a report at exit."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import unified_tensor as ut
from unified_tensor import _checks
from unified_tensor._gather import _check_mode, _check_range


class FakeEvent:
    def __init__(self):
        self.done = False
        self.waited = 0

    def query(self):
        return self.done

    def synchronize(self):
        self.waited += 1
        self.done = True


def make_queue(slots=4):
    events = []

    def record(reuse=None):          # a new fake event each time (the queue may pass its old one)
        events.append(FakeEvent())
        return events[-1]

    q = _checks.CheckQueue(torch.zeros(slots, 2, dtype=torch.int64),
                           torch.zeros(slots, 2, dtype=torch.int64), record)
    assert len(events) == 1 and events[0].waited == 1   # the sentinels landed before first use
    events.clear()
    return q, events


def kernel_hits(q, slot, values):
    """What the gather kernel does for out-of-range values: fold them into the record."""
    for v in values:
        q.device_buf[slot, 0] = min(int(q.device_buf[slot, 0]), v)
        q.device_buf[slot, 1] = max(int(q.device_buf[slot, 1]), v)


def test_new_queue_holds_sentinels():
    q, _ = make_queue()
    assert q.device_buf.tolist() == [[_checks.INT64_MAX, _checks.INT64_MIN]] * 4
    assert q.host_buf.tolist() == q.device_buf.tolist()
    assert q.address(1) == q.device_buf.data_ptr() + 16
    with pytest.raises(ValueError, match="shape"):
        _checks.CheckQueue(torch.zeros(3, 2, dtype=torch.int64), torch.zeros(4, 2, dtype=torch.int64),
                           FakeEvent)


@pytest.mark.parametrize("bad_values, n, reported", [
    ([10], 10, 10), ([-11], 10, -11), ([12, 10, 99], 10, 99), ([-11, 50], 10, -11),
    ([-1000, -11], 10, -1000), ([0], 0, 0), ([2**62], 5, 2**62),
])
def test_bad_record_raises_the_immediate_message_once_the_copy_landed(bad_values, n, reported):
    q, events = make_queue()
    slot = q.acquire()
    kernel_hits(q, slot, bad_values)
    q.submit(slot, n)
    q.settle()                       # event not done: nothing is known yet, nothing raised
    assert q.in_flight == 1
    events[0].done = True
    with pytest.raises(IndexError) as info:
        q.settle()
    with pytest.raises(IndexError) as immediate:
        _check_range(torch.tensor(bad_values + [0] * (n > 0)), n)
    assert str(info.value) == str(immediate.value)
    assert str(info.value) == (f"index {reported} is out of range for a table of {n} rows "
                               f"(valid: -{n} <= index < {n})")
    assert any("deferred" in note for note in getattr(info.value, "__notes__", [])) \
        or sys.version_info < (3, 11)
    # raised once; the slot is clean and free again
    q.settle()
    assert q.in_flight == 0
    assert q.device_buf[slot].tolist() == [_checks.INT64_MAX, _checks.INT64_MIN]


def test_clean_records_are_reused_without_a_reset(monkeypatch):
    q, events = make_queue(slots=2)
    resets = []
    monkeypatch.setattr(q, "reset_slots", lambda slots: resets.append(list(slots)))
    for _ in range(10):
        slot = q.acquire()
        q.submit(slot, 5)
        events[-1].done = True
    q.settle()
    assert resets == [] and q.in_flight == 0


def test_all_slots_in_flight_waits_for_the_oldest_only():
    q, events = make_queue(slots=2)
    for _ in range(2):
        q.submit(q.acquire(), 5)
    slot = q.acquire()               # both in flight: waits for the first event, not the second
    assert events[0].waited == 1 and events[1].waited == 0
    q.release(slot)
    assert q.in_flight == 1


def test_events_complete_out_of_order():
    q, events = make_queue()
    a, b = q.acquire(), q.acquire()
    kernel_hits(q, a, [7])
    q.submit(a, 5)
    q.submit(b, 5)
    events[1].done = True
    q.settle()                       # a (older) still in flight: settled in order, b waits
    assert q.in_flight == 2
    events[0].done = True
    with pytest.raises(IndexError, match="index 7 is out of range for a table of 5 rows"):
        q.settle()
    assert q.in_flight == 0
    q.settle(block=True)


def test_several_errors_raise_the_oldest_and_count_the_rest():
    q, events = make_queue()
    for v in (5, 6, 7):
        s = q.acquire()
        kernel_hits(q, s, [v])
        q.submit(s, 5)
    for e in events:
        e.done = True
    with pytest.raises(IndexError, match="index 5 ") as info:
        q.settle()
    if sys.version_info >= (3, 11):
        assert any("2 more" in note for note in info.value.__notes__)
    q.settle()                       # nothing left


def test_acquire_raises_a_settled_error_before_handing_a_slot():
    q, events = make_queue()
    s = q.acquire()
    kernel_hits(q, s, [-9])
    q.submit(s, 3)
    events[0].done = True
    with pytest.raises(IndexError, match="index -9 is out of range for a table of 3 rows"):
        q.acquire()
    assert q.in_flight == 0
    q.release(q.acquire())


def test_blocking_settle_waits_for_every_event():
    q, events = make_queue()
    for _ in range(3):
        q.submit(q.acquire(), 4)
    q.settle(block=True)
    assert [e.waited for e in events] == [1, 1, 1] and q.in_flight == 0


def test_take_errors_and_exit_report(monkeypatch, capsys):
    q, events = make_queue()
    s = q.acquire()
    kernel_hits(q, s, [40])
    q.submit(s, 8)
    monkeypatch.setitem(_checks._queues, 7, q)
    _checks._report_at_exit()
    err = capsys.readouterr().err
    assert "cuda:7" in err and "index 40 is out of range for a table of 8 rows" in err
    assert events[0].waited == 1
    _checks._report_at_exit()        # reported once
    assert capsys.readouterr().err == ""


def test_threads_share_a_queue_without_losing_records():
    q, events = make_queue(slots=8)
    lock = threading.Lock()
    raised = []

    def worker(k):
        for i in range(200):
            try:
                s = q.acquire()
            except IndexError as exc:
                raised.append(exc)
                continue
            if i == 100 and k == 0:
                kernel_hits(q, s, [1000])
            q.submit(s, 10)
            with lock:
                for e in events:
                    e.done = True
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        q.settle(block=True)
    except IndexError as exc:
        raised.append(exc)
    assert len(raised) == 1 and "index 1000 " in str(raised[0])
    assert q.in_flight == 0 and len(q._free) == 8


def test_first_bad_agrees_with_the_immediate_rule():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(0, 20))
        vals = rng.integers(-40, 40, size=int(rng.integers(1, 6)))
        bad = [int(v) for v in vals if not -n <= v < n]
        try:
            _check_range(torch.from_numpy(vals), n)
            expected = None
        except IndexError as exc:
            expected = int(str(exc).split()[1])
        # the gather kernel records only the bad values; the device-table path all of them
        only_bad = _checks.first_bad(min(bad), max(bad), n) if bad else None
        all_vals = _checks.first_bad(int(vals.min()), int(vals.max()), n)
        assert only_bad == expected == all_vals


def test_validate_values(monkeypatch):
    monkeypatch.delenv("UNIFIED_TENSOR_SYNC_CHECKS", raising=False)
    assert _check_mode(True) == "deferred" and _check_mode(False) == "off"
    assert _check_mode("sync") == "sync"
    for v in ("0", "false", ""):
        monkeypatch.setenv("UNIFIED_TENSOR_SYNC_CHECKS", v)
        assert _check_mode(True) == "deferred"
    monkeypatch.setenv("UNIFIED_TENSOR_SYNC_CHECKS", "1")
    assert _check_mode(True) == "sync" and _check_mode(False) == "off"
    t = ut.unified(torch.arange(6.0).view(3, 2))
    for bad in ("deferred", "yes", 1, None):
        with pytest.raises(ValueError, match="validate must be True, False or 'sync'"):
            ut.gather(t, torch.tensor([0]), validate=bad)
    # the CPU path checks at once whatever validate says
    with pytest.raises(IndexError, match="index 3 is out of range for a table of 3 rows"):
        ut.gather(t, torch.tensor([3]), validate=False)


def test_synchronize_without_cuda_work_is_a_no_op():
    ut.synchronize()
    with pytest.raises(ValueError, match="CUDA device"):
        ut.synchronize("cpu")


# ---------------------------------------------------------------------------------------- CUDA
gpu = pytest.mark.gpu


def _tables():
    host = ut.unified(torch.arange(40.0).view(10, 4))
    return {"host": host, "device": torch.arange(40.0).view(10, 4).cuda()}


@gpu
@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("bad", [10, -11, 1000])
def test_cuda_bad_index_is_zeros_then_raises_at_synchronize(where, bad):
    t = _tables()[where]
    idx = torch.tensor([1, bad, 9], device="cuda")
    res = ut.gather(t, idx)          # no raise here, no sync
    with pytest.raises(IndexError, match=rf"^index {bad} is out of range for a table of 10 rows"):
        ut.synchronize()
    assert res[1].eq(0).all()
    assert torch.equal(res[[0, 2]].cpu(), torch.arange(40.0).view(10, 4)[[1, 9]])
    ut.synchronize()                 # raised once
    assert torch.equal(ut.gather(t, torch.tensor([9], device="cuda")).cpu(),
                       torch.arange(36.0, 40.0).view(1, 4))


@gpu
def test_cuda_bad_index_raises_at_the_next_gather_of_any_table():
    t = _tables()["host"]
    other = ut.unified(torch.zeros(5, 3))
    t[torch.tensor([10], device="cuda")]
    torch.cuda.synchronize()
    with pytest.raises(IndexError, match="index 10 is out of range for a table of 10 rows"):
        other[torch.tensor([0], device="cuda")]
    assert other[torch.tensor([0], device="cuda")].shape == (1, 3)


@gpu
def test_cuda_sync_mode_raises_at_the_call(monkeypatch):
    t = _tables()["host"]
    with pytest.raises(IndexError, match="index 10 is out of range"):
        ut.gather(t, torch.tensor([10], device="cuda"), validate="sync")
    monkeypatch.setenv("UNIFIED_TENSOR_SYNC_CHECKS", "1")
    with pytest.raises(IndexError, match="index -11 is out of range"):
        t[torch.tensor([-11], device="cuda")]
    ut.synchronize()


@gpu
@pytest.mark.parametrize("where", ["host", "device"])
@pytest.mark.parametrize("idtype", [torch.int32, torch.int64], ids=str)
def test_cuda_gather_with_validation_does_not_sync(where, idtype):
    t = _tables()[where]
    idx = torch.randint(-10, 10, (5000,), device="cuda", dtype=idtype)
    ut.gather(t, idx)                # warm-up: kernels compiled, check records allocated
    ut.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            ut.gather(t, idx)
            ut.gather(t, idx, sorted_order=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ut.synchronize()


@gpu
def test_cuda_zero_width_rows_and_empty_table_are_checked():
    thin = ut.unified(torch.empty(5, 0))
    assert ut.gather(thin, torch.tensor([1, 5], device="cuda")).shape == (2, 0)
    with pytest.raises(IndexError, match="index 5 is out of range for a table of 5 rows"):
        ut.synchronize()
    empty = ut.unified(torch.empty(0, 4))
    ut.gather(empty, torch.tensor([0], device="cuda"))
    with pytest.raises(IndexError, match="0 rows"):
        ut.synchronize()
    with pytest.raises(IndexError, match="0 rows"):   # device table: checked at the call
        ut.gather(torch.empty(0, 4, device="cuda"), torch.tensor([0], device="cuda"))


@gpu
def test_cuda_many_gathers_in_flight_recycle_records():
    t = _tables()["host"]
    idx = torch.tensor([0, 9], device="cuda")
    for _ in range(3 * _checks.SLOTS):
        t[idx]
    ut.synchronize()
    assert all(q.in_flight == 0 for q in _checks._queues.values())


@gpu
def test_cuda_dataloader_epoch_end_raises_a_deferred_error_of_the_loop():
    from samplers import CSCGraph, DataLoader, NeighborSampler

    n = 200
    src = torch.arange(n).repeat(3)
    dst = torch.randint(0, n, (3 * n,), generator=torch.Generator().manual_seed(0))
    graph = CSCGraph.from_edge_index(torch.stack([src, dst]), n).pin()
    feats = ut.unified(torch.randn(n, 8))
    loader = DataLoader(graph, torch.arange(n), NeighborSampler([3]), batch_size=50,
                        device="cuda")
    seen = 0
    with pytest.raises(IndexError, match=f"index {n} is out of range for a table of {n} rows"):
        for i, (input_nodes, _, _) in enumerate(loader):
            ids = input_nodes.clone()
            if i == len(loader) - 1:   # the last batch: no later gather would raise it
                ids[0] = n
            feats[ids]
            seen += 1
    assert seen == len(loader)


@gpu
def test_cuda_unraised_error_is_reported_at_exit():
    code = ("import torch, unified_tensor as ut\n"
            "t = ut.unified(torch.zeros(10, 4))\n"
            "t[torch.tensor([12], device='cuda')]\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "index 12 is out of range for a table of 10 rows" in res.stderr


# ------------------------------------------------------------- review findings, on the CPU
@pytest.fixture
def cpu_queue(monkeypatch):
    """The library's deferred-check calls routed to a CPU queue with fake events."""
    q, events = make_queue(slots=2)
    monkeypatch.setattr(_checks, "queue_for", lambda device: q)
    return q, events


@pytest.mark.parametrize("idtype", [torch.int32, torch.int64], ids=str)
def test_range_record_holds_only_out_of_range_ids(cpu_queue, idtype):
    """A clean record stays at its sentinels (valid ids are not recorded), so a reused slot never
    carries an earlier call's range into a gather against a smaller table."""
    from unified_tensor._gather import _defer_range_check

    q, events = cpu_queue
    _defer_range_check(torch.device("cpu"), torch.tensor([-1000, 999, 5], dtype=idtype), 1000)
    assert q.device_buf.tolist() == [[_checks.INT64_MAX, _checks.INT64_MIN]] * 2
    events[-1].done = True
    q.settle()
    _defer_range_check(torch.device("cpu"), torch.tensor([3, 12, -20, 40, 0], dtype=idtype), 10)
    events[-1].done = True
    with pytest.raises(_checks.DeferredIndexError, match="index -20 is out of range"):
        q.settle()
    for _ in range(4):               # both slots clean again: in-range gathers never raise
        _defer_range_check(torch.device("cpu"), torch.tensor([0, 9], dtype=idtype), 10)
        events[-1].done = True
        q.settle()


def test_a_written_in_range_record_is_reset_before_reuse(cpu_queue):
    q, events = cpu_queue
    s = q.acquire()
    q.device_buf[s] = torch.tensor([-5, 5])   # a record written with in-range values
    q.submit(s, 100)
    events[-1].done = True
    q.settle()
    assert q.device_buf[s].tolist() == [_checks.INT64_MAX, _checks.INT64_MIN]


def test_failed_wait_keeps_unsettled_checks_pending():
    q, events = make_queue()
    a, b = q.acquire(), q.acquire()
    q.submit(a, 5)
    q.submit(b, 5)

    def broken():
        raise RuntimeError("CUDA error")
    events[1].synchronize = broken
    with pytest.raises(RuntimeError, match="CUDA error"):
        q.settle(block=True)
    assert q.in_flight == 1          # a settled and free, b still pending, never both
    assert sorted(q._free).count(a) == 1 and b not in q._free


def test_deferred_error_is_an_index_error_subclass():
    assert ut.DeferredIndexError is _checks.DeferredIndexError
    err = _checks.range_error(7, 5, deferred=True)
    assert isinstance(err, IndexError) and isinstance(err, _checks.DeferredIndexError)
    assert type(_checks.range_error(7, 5)) is IndexError


def test_forked_child_keeps_the_parents_queues_alive(monkeypatch):
    q, _ = make_queue()
    monkeypatch.setitem(_checks._queues, 0, q)
    monkeypatch.setattr(_checks, "_orphans", [])
    _checks._forget_in_child()
    assert _checks._queues == {} and _checks._orphans[0][0] is q


def test_capturing_is_false_without_cuda():
    if not torch.cuda.is_available():
        assert _checks.capturing() is False


def test_device_table_path_on_cpu_tensors(cpu_queue):
    """The GPU-resident path's logic, run on CPU tensors: zeros for bad ids, autograd kept
    without out=, out= filled, int32 ids against a table longer than 2**31 rows compared in
    int64."""
    from unified_tensor._gather import _gather_device_table

    q, events = cpu_queue
    table = torch.arange(12.0).view(6, 2).requires_grad_()
    idx = torch.tensor([1, 9, -1, -7])
    res = _gather_device_table(table, idx, 6, (4, 2), (2,), None, "deferred", torch.device("cpu"))
    assert res.tolist() == [[2.0, 3.0], [0.0, 0.0], [10.0, 11.0], [0.0, 0.0]]
    res.sum().backward()             # a table that requires grad keeps its gradient path
    assert table.grad.tolist() == [[0, 0], [1, 1], [0, 0], [0, 0], [0, 0], [1, 1]]
    events[-1].done = True
    with pytest.raises(IndexError, match="index -7 is out of range for a table of 6 rows"):
        q.settle()
    out = torch.full((4, 2), 7.0)
    _gather_device_table(table.detach(), idx, 6, (4, 2), (2,), out, "off", torch.device("cpu"))
    assert out.tolist() == res.tolist()
    big = _gather_device_table(table.detach(), torch.tensor([0, 5], dtype=torch.int32), 2**33,
                               (2, 2), (2,), None, "off", torch.device("cpu"))
    assert big.tolist() == [[0.0, 1.0], [10.0, 11.0]]


def test_in_place_detection_is_exact():
    from unified_tensor._tensor import _is_inplace

    for f in (torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.__invert__,
              torch.Tensor.__iter__, torch.Tensor.add, torch.Tensor.share_memory_):
        assert not _is_inplace(f), f
    for f in (torch.Tensor.__iadd__, torch.Tensor.__setitem__, torch.Tensor.add_,
              torch.Tensor.__ior__):
        assert _is_inplace(f), f
    a = np.arange(4, dtype=np.int64)
    a.flags.writeable = False
    ro = ut.unified(a)               # read-only: reading it as an int or inverting is not a write
    assert int(ro[torch.tensor([3])][0]) == 3 and (~ro).tolist() == [-1, -2, -3, -4]


def test_each_slot_records_its_own_event_again_instead_of_a_new_one():
    """No event is created per gather: a slot hands its previous (settled) event back."""
    passed = []

    def record(reuse=None):
        passed.append(reuse)
        ev = reuse or FakeEvent()
        ev.done = True
        return ev

    q = _checks.CheckQueue(torch.zeros(1, 2, dtype=torch.int64), torch.zeros(1, 2, dtype=torch.int64),
                           record)
    passed.clear()                   # the reset at creation
    for _ in range(3):
        q.submit(q.acquire(), 4)
    assert passed[0] is None and passed[1] is passed[2] is not None
