"""One host copy across processes (DDP ranks, torch.multiprocessing): a UnifiedTensor in shared
memory or over a file-backed np.memmap reaches another process as the same memory, anything else
as a copy (warned about when large); share_memory_() never moves pinned data."""
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import unified_tensor as ut
from unified_tensor import _tensor


def _child_write(t, value, q):
    """In another process: report what arrived, then write through it."""
    try:
        info = (ut.is_unified(t), t.shape, float(t._ut_plain[3, 1]), t._ut_readonly)
        if not t._ut_readonly:
            t[3] = value
        q.put(info)
    except BaseException as exc:   # reported to the parent, not lost in the child
        q.put(repr(exc))


def _run_child(t, value):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_write, args=(t, value, q))
    p.start()
    info = q.get(timeout=120)
    p.join(60)
    assert p.exitcode == 0, info
    assert not isinstance(info, str), info
    return info


def test_shared_memory_table_is_shared_with_a_spawned_process():
    x = torch.arange(20.0).view(10, 2).share_memory_()
    t = ut.unified(x)
    assert _run_child(t, -5.0) == (True, (10, 2), 7.0, False)
    assert x[3].tolist() == [-5.0, -5.0]          # the child wrote into our memory


@pytest.mark.parametrize("mode", ["r+", "r"])
def test_memmap_table_reaches_another_process_as_the_same_file(tmp_path, mode):
    path = tmp_path / "feats.npy"
    np.save(path, np.arange(200, dtype=np.float32).reshape(100, 2))
    m = np.load(path, mmap_mode=mode)
    t = ut.unified(m[40:60])                       # a slice: the offset into the file is kept
    info = _run_child(t, 9.0)
    assert info == (True, (20, 2), 87.0, mode == "r")
    after = np.load(path)
    assert after[43].tolist() == ([9.0, 9.0] if mode == "r+" else [86.0, 87.0])


def test_private_table_is_copied_and_large_ones_warn(monkeypatch):
    x = torch.arange(20.0).view(10, 2)
    t = ut.unified(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # small: no warning
        assert _run_child(t, -1.0)[0]
    assert x[3].tolist() == [6.0, 7.0]             # the child had its own copy
    monkeypatch.setattr(_tensor, "COPY_WARN_BYTES", 16)
    with pytest.warns(UserWarning, match=r"its own copy.*share_memory_\(\) before ut.unified"):
        u = pickle.loads(pickle.dumps(t))
    assert ut.is_unified(u) and torch.equal(u._ut_plain, x)


def test_plain_pickle_round_trips_every_kind(tmp_path):
    shared = ut.unified(torch.arange(6.0).view(3, 2).share_memory_())
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.int16).reshape(3, 2))
    ro = ut.unified(np.load(tmp_path / "a.npy", mmap_mode="r"))
    for t in (shared, ro, ut.unified(torch.arange(4))):
        u = pickle.loads(pickle.dumps(t))
        assert ut.is_unified(u) and torch.equal(u._ut_plain, t._ut_plain)
        assert u._ut_readonly == t._ut_readonly
    with pytest.raises(RuntimeError, match="read-only"):
        pickle.loads(pickle.dumps(ro)).add_(1)


def test_copy_on_write_memmap_is_sent_by_value(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((4, 2), dtype=np.float32))
    m = np.load(tmp_path / "c.npy", mmap_mode="c")
    m[1] = 3.0                                     # private pages: not in the file
    u = pickle.loads(pickle.dumps(ut.unified(m)))
    assert u._ut_plain[1].tolist() == [3.0, 3.0]


def test_share_memory_never_moves_a_pinned_table():
    t = ut.unified(torch.zeros(4, 2))
    ptr = t.data_ptr()
    with pytest.raises(RuntimeError, match=r"share_memory_\(\) before ut.unified"):
        t.share_memory_()
    assert t.data_ptr() == ptr and not t._ut_plain.is_shared()
    s = ut.unified(torch.zeros(4, 2).share_memory_())
    assert s.share_memory_() is s


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.bool, torch.complex64, torch.float16,
                                   torch.int8, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(3, 4), (0, 5), (2, 3, 2)], ids=str)
def test_by_value_pickle_keeps_dtype_and_shape(dtype, shape):
    x = (torch.arange(int(np.prod(shape))).view(shape) % 3).to(dtype)
    u = pickle.loads(pickle.dumps(ut.unified(x)))
    assert ut.is_unified(u) and u.dtype == dtype and u.shape == shape
    assert torch.equal(u._ut_plain, x) and u.data_ptr() != x.data_ptr() or x.numel() == 0
