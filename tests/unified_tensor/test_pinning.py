"""Registration lifecycle with the CUDA runtime faked on the CPU (and for real under `gpu`)."""
import gc

import numpy as np
import pytest
import torch

import unified_tensor as ut
from unified_tensor import _pinning, _tensor
from unified_tensor._cudart import CudaRuntimeError

PAGE = _pinning.PAGE_BYTES


class FakeRuntime:
    """Behaves like cudaHostRegister: page ranges, no overlap, unregister by exact start."""

    def __init__(self, dev_offset=0x7000_0000_0000, fail_on_call=None, scatter=False):
        self.ranges = {}  # start -> end
        self.calls = []
        self.dev_offset = dev_offset
        self.fail_on_call = fail_on_call
        self.scatter = scatter
        self.synced = []

    def host_register(self, ptr, size, flags):
        self.calls.append(("register", ptr, size, flags))
        if self.fail_on_call is not None and len([c for c in self.calls if c[0] == "register"]) == self.fail_on_call:
            raise CudaRuntimeError("cudaHostRegister failed: cudaErrorMemoryAllocation: out of memory")
        for s, e in self.ranges.items():
            if ptr < e and s < ptr + size:
                raise CudaRuntimeError("cudaHostRegister failed: cudaErrorHostMemoryAlreadyRegistered")
        self.ranges[ptr] = ptr + size

    def host_unregister(self, ptr):
        self.calls.append(("unregister", ptr))
        if ptr not in self.ranges:
            raise CudaRuntimeError("cudaHostUnregister failed: cudaErrorHostMemoryNotRegistered")
        del self.ranges[ptr]

    def device_pointer(self, ptr):
        extra = (len(self.ranges) * 0x10_0000_0000) if self.scatter else 0
        return ptr + self.dev_offset + extra

    def read_only_supported(self, device=None):
        return True

    def synchronize(self, devices):
        self.synced.append(sorted(devices))


@pytest.fixture
def fake(monkeypatch):
    rt = FakeRuntime()
    old = _pinning._registry
    _pinning.set_runtime(rt)
    monkeypatch.setattr(_tensor, "cuda_available", lambda: True)
    yield rt
    gc.collect()
    _pinning._registry = old


def registered_bytes(rt):
    return sum(e - s for s, e in rt.ranges.items())


def test_zero_copy_and_exact_cover(fake):
    x = torch.randn(1000, 16)
    t = ut.unified(x)
    assert t.data_ptr() == x.data_ptr()
    (start, end), = fake.ranges.items()
    # Exactly the table's bytes, never the rest of its pages: CUDA fails a copy of a neighbouring
    # buffer that starts inside a registration and runs past its end (cudaErrorInvalidValue).
    assert (start, end) == (x.data_ptr(), x.data_ptr() + x.numel() * 4)
    assert ut.device_pointer(t) == x.data_ptr() + fake.dev_offset


def test_neighbours_in_one_page_are_registered_separately(fake):
    buf = torch.empty(3 * 1000, dtype=torch.uint8)   # three tables in one page
    a, b = buf[0:1000], buf[2000:3000]
    ta, tb = ut.unified(a), ut.unified(b)
    assert sorted(fake.ranges.items()) == [(a.data_ptr(), a.data_ptr() + 1000),
                                           (b.data_ptr(), b.data_ptr() + 1000)]
    gap = buf[1000:2000]
    assert not _pinning.registry().overlaps(gap.data_ptr(), 1000)
    assert _pinning.registry().overlaps(buf.data_ptr(), 3000)
    del ta, tb


def test_same_memory_twice_is_refcounted(fake):
    x = torch.randn(2000, 8)
    a, b = ut.unified(x), ut.unified(x)
    assert len([c for c in fake.calls if c[0] == "register"]) == 1
    assert _pinning.registry().regions()[0][2] == 2
    ut.unpin(a)
    assert len(fake.ranges) == 1 and b.is_registered and not a.is_registered
    del b
    gc.collect()
    assert fake.ranges == {}


def test_views_and_overlapping_ranges(fake):
    x = torch.randn(10000, 4)  # 160 kB: many pages
    head = ut.unified(x[:6000])
    tail = ut.unified(x[4000:])  # overlaps head: only the uncovered pages are registered
    assert registered_bytes(fake) >= x.numel() * 4
    inner = ut.unified(x[100:200])  # inside head: no new registration
    n_reg = len([c for c in fake.calls if c[0] == "register"])
    assert n_reg == 2
    whole = ut.unified(x)  # spans both regions: reuses them, contiguous device range
    assert ut.device_pointer(whole) == x.data_ptr() + fake.dev_offset
    assert ut.device_pointer(tail) == x[4000:].data_ptr() + fake.dev_offset
    for t in (head, inner, whole):
        ut.unpin(t)
    assert fake.ranges  # tail still holds its pages (and the ones it shares with head)
    ut.unpin(tail)
    assert fake.ranges == {}


def test_chunked_registration_of_large_tables(fake):
    _pinning.set_runtime(fake, chunk_bytes=4 * PAGE)
    x = torch.empty(20 * PAGE, dtype=torch.uint8)
    t = ut.unified(x)
    regs = [c for c in fake.calls if c[0] == "register"]
    assert len(regs) >= 5 and all(c[2] <= 4 * PAGE for c in regs)
    assert ut.device_pointer(t) == x.data_ptr() + fake.dev_offset
    ut.unpin(t)
    assert fake.ranges == {}


def test_failed_registration_rolls_back_and_raises(fake):
    _pinning.set_runtime(fake, chunk_bytes=2 * PAGE)
    fake.fail_on_call = 3
    x = torch.empty(10 * PAGE, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="cudaErrorMemoryAllocation"):
        ut.unified(x)
    assert fake.ranges == {} and _pinning.registry().regions() == []
    fake.fail_on_call = None
    assert ut.unified(x).is_registered  # and the next attempt works


class RefusesWritableFileMappings(FakeRuntime):
    """Linux >= 6.5 on a shared file mapping: writable pinning refused, read-only allowed."""

    def __init__(self, ro_supported=True):
        super().__init__()
        self.ro_supported = ro_supported

    def host_register(self, ptr, size, flags):
        if not flags & 0x08:
            self.calls.append(("register", ptr, size, flags))
            raise CudaRuntimeError(f"cudaHostRegister(ptr=0x{ptr:x}, size={size}, flags={flags}) failed: "
                                   f"cudaErrorInvalidValue: invalid argument")
        super().host_register(ptr, size, flags)

    def read_only_supported(self, device=None):
        return self.ro_supported


def test_refused_writable_registration_falls_back_to_read_only(fake):
    rt = RefusesWritableFileMappings()
    _pinning.set_runtime(rt)
    x = torch.randn(300, 7)
    t = ut.unified(x)
    assert t.is_registered
    flags = [c[3] for c in rt.calls if c[0] == "register"]
    assert flags == [0x03, 0x0B]        # writable refused, then read-only
    assert torch.equal(t[torch.tensor([5, 1])], x[[5, 1]])


def test_refused_registration_without_read_only_support_says_what_to_do(fake):
    _pinning.set_runtime(RefusesWritableFileMappings(ro_supported=False))
    with pytest.raises(RuntimeError, match=r"cudaErrorInvalidValue.*copy it into RAM"):
        ut.unified(torch.randn(300, 7))
    assert _pinning.registry().regions() == []


def test_non_contiguous_device_mapping_is_refused_and_cleaned(fake):
    fake.scatter = True
    x = torch.empty(8 * PAGE, dtype=torch.uint8)
    a = ut.unified(x[: 2 * PAGE])
    with pytest.raises(RuntimeError, match="not contiguous"):
        ut.unified(x)
    assert len(fake.ranges) == 1  # only `a`'s pages remain
    del a


def test_registration_released_on_gc_and_keeps_memory_alive(fake):
    t = ut.unified(torch.randn(5000, 3))  # the only reference to the tensor is t
    ptr = t.data_ptr()
    assert fake.ranges
    _pinning.note_device_use(0)
    del t
    gc.collect()
    assert fake.ranges == {}
    assert fake.synced == [[0]]  # devices synchronised before unregistering
    assert ptr  # (the memory was alive until the unregister above)


def test_numpy_inputs_share_memory(fake, tmp_path):
    arr = np.arange(4096, dtype=np.float64).reshape(512, 8)
    t = ut.unified(arr)
    assert t.data_ptr() == arr.ctypes.data
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.int16, shape=(100, 3))
    tm = ut.unified(mm)
    assert tm.data_ptr() == mm.ctypes.data
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    tro = ut.unified(ro)
    flags = [c[3] for c in fake.calls if c[0] == "register"][-1]
    assert flags & 0x08  # cudaHostRegisterReadOnly
    assert tro[[0]].shape == (1, 3)


def test_read_only_unsupported_gives_clear_error(fake):
    fake.read_only_supported = lambda device=None: False
    arr = np.zeros((100, 4))
    arr.flags.writeable = False
    with pytest.raises(RuntimeError, match="read-only host memory"):
        ut.unified(arr)
    assert fake.ranges == {}


def test_context_manager_and_unpin_idempotent(fake):
    with ut.unified(torch.randn(100, 4)) as t:
        assert t.is_registered
    assert not t.is_registered and fake.ranges == {}
    t.unpin()
    assert fake.ranges == {}


def test_already_unified_returned_as_is(fake):
    t = ut.unified(torch.randn(10, 2))
    assert ut.unified(t) is t
    assert len(fake.ranges) == 1


def test_unregister_failure_is_logged_not_raised(fake, caplog):
    t = ut.unified(torch.randn(100, 4))
    fake.ranges.clear()  # the next unregister fails
    ut.unpin(t)
    assert "cudaErrorHostMemoryNotRegistered" in caplog.text


@pytest.mark.gpu
def test_real_registration_lifecycle():
    reg = _pinning.registry()
    before = len(reg.regions())
    x = torch.randn(100_000, 16)
    a = ut.unified(x)
    b = ut.unified(x[10:20])
    assert len(reg.regions()) == before + 1
    assert torch.equal(b[torch.tensor([0], device="cuda")].cpu(), x[10:11])
    del a
    gc.collect()
    assert b.is_registered and torch.equal(b[torch.tensor([9], device="cuda")].cpu(), x[19:20])
    ut.unpin(b)
    assert len(reg.regions()) == before


@pytest.mark.gpu
def test_real_neighbours_of_a_registered_table_still_copy():
    """Small tables share pages with other heap objects: registering one must not break copies of
    its neighbours (a page-rounded registration did, with cudaErrorInvalidValue)."""
    keep = []
    for size in (13, 100, 1000, 5000, 40_000):
        for _ in range(5):
            t = ut.unified(torch.randn(size))
            nb = torch.randn(size)            # very likely in the same page as t's head or tail
            assert torch.equal(nb.cuda().cpu(), nb)
            got = t[torch.tensor([0, size - 1], device="cuda")]
            assert torch.equal(got.cpu(), t[torch.tensor([0, size - 1])])
            keep.append(t)
    torch.cuda.synchronize()


@pytest.mark.gpu
def test_real_whole_table_copies_after_registration():
    x = torch.randn(3_000_000, 8)       # 96 MB: one registration, so a copy stays inside it
    t = ut.unified(x)
    assert torch.equal(t.cuda().cpu(), x)
    assert torch.equal(x[1000:2_000_000].to("cuda", non_blocking=True).cpu(), x[1000:2_000_000])
    del t


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["r+", "r"])
def test_real_file_backed_memmap(tmp_path, mode):
    """np.load(mmap_mode=...) tables register (read-only where the kernel refuses writable pins)."""
    path = tmp_path / "feats.npy"
    ref = np.random.default_rng(0).standard_normal((5000, 33)).astype(np.float32)
    np.save(path, ref)
    mm = np.load(path, mmap_mode=mode)
    t = ut.unified(mm)
    assert t.is_registered
    idx = torch.randint(-5000, 5000, (777,))
    assert torch.equal(t[idx.cuda()].cpu(), torch.from_numpy(ref)[idx])
    del t, mm
