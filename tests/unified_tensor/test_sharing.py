"""One host copy across processes (DDP ranks, torch.multiprocessing): a UnifiedTensor in shared
memory or over a file-backed np.memmap reaches another process as the same memory, anything else
as a copy (warned about when large); share_memory_() never moves pinned data."""
import copy
import io
import os
import pickle
import warnings
from multiprocessing.reduction import ForkingPickler

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
        u = pickle.loads(ForkingPickler.dumps(t))   # what torch.multiprocessing sends
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


# ------------------------------------------------------------------ checkpoints hold values (19.4)
def _memmap_table(tmp_path, mode, rows=slice(None)):
    path = tmp_path / f"feats_{mode}.npy"
    np.save(path, np.arange(400, dtype=np.float32).reshape(200, 2))
    return path, ut.unified(np.load(path, mmap_mode=mode)[rows])


def _replace_file(path):
    """Another file of the same shape under the same name (a new inode), old one deleted."""
    tmp = path.with_name("new.npy")
    np.save(tmp, np.full((200, 2), -1.0, dtype=np.float32))
    os.replace(tmp, path)


@pytest.mark.parametrize("mode, rows", [("r", slice(None)), ("r+", slice(None)), ("r", slice(40, 60)),
                                        ("r+", slice(7, 9))], ids=["r", "r+", "r-slice", "r+-slice"])
@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_checkpoint_of_a_memmap_table_holds_the_values(tmp_path, mode, rows, how):
    path, t = _memmap_table(tmp_path, mode, rows)
    want = t._ut_plain.clone()
    buf = io.BytesIO()
    if how == "torch.save":
        torch.save({"feats": t}, buf)
    else:
        pickle.dump({"feats": t}, buf)
    assert buf.tell() >= want.numel() * 4   # the bytes are in the checkpoint
    del t
    _replace_file(path)                      # the file changes after the checkpoint was written
    buf.seek(0)
    got = (torch.load(buf, weights_only=False) if how == "torch.save" else pickle.load(buf))["feats"]
    assert ut.is_unified(got) and torch.equal(got._ut_plain, want)
    assert got._ut_readonly == (mode == "r")


@pytest.mark.skipif(not hasattr(torch.serialization, "add_safe_globals"),
                    reason="torch.load(weights_only=True) allow-lists arrived in torch 2.4")
def test_checkpoint_loads_with_weights_only(tmp_path):
    _, t = _memmap_table(tmp_path, "r")
    buf = io.BytesIO()
    torch.save({"feats": t, "w": torch.ones(2)}, buf)
    buf.seek(0)
    got = torch.load(buf, weights_only=True)
    assert ut.is_unified(got["feats"]) and torch.equal(got["feats"]._ut_plain, t._ut_plain)


def test_deepcopy_of_a_memmap_table_is_a_copy(tmp_path):
    path, t = _memmap_table(tmp_path, "r+")
    c = copy.deepcopy(t)
    c[0] = 123.0
    assert np.load(path)[0].tolist() == [0.0, 1.0] and t._ut_plain[0].tolist() == [0.0, 1.0]
    assert c.data_ptr() != t.data_ptr()


def test_ipc_still_sends_the_file_and_the_receiver_maps_the_same_pages(tmp_path):
    path, t = _memmap_table(tmp_path, "r+", slice(10, 20))
    data = ForkingPickler.dumps(t)
    assert len(data) < 1000                  # a reference, not 80 bytes x rows
    u = pickle.loads(data)
    u[0] = 5.0
    assert np.load(path)[10].tolist() == [5.0, 5.0]


@pytest.mark.parametrize("change", ["replaced", "truncated", "deleted"])
def test_ipc_receiver_refuses_a_replaced_or_truncated_file(tmp_path, change):
    path, t = _memmap_table(tmp_path, "r", slice(100, 200))
    data = ForkingPickler.dumps(t)
    del t
    if change == "replaced":
        _replace_file(path)
    elif change == "truncated":
        with open(path, "r+b") as f:
            f.truncate(512)
    else:
        os.remove(path)
    with pytest.raises(RuntimeError, match=r"replaced or truncated|cannot be opened"):
        pickle.loads(data)
