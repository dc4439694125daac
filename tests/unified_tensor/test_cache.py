"""GPU hot-row cache (ut.cache): row choice and argument checks on the CPU; under `gpu`, gathers
through a cache equal gathers without one, in-place changes reach the cached copy, no host sync.
The kernel's cache branch is run on the host in tests/cpp/test_kernels_host.cpp."""
import numpy as np
import pytest
import torch

import unified_tensor as ut
from unified_tensor import _cache

N = 1000


def test_select_by_ids_checks_them():
    sel = lambda ids: _cache._select(N, 16, ids, None, None, None)   # noqa: E731
    assert sel([5, 1, 999]).tolist() == [5, 1, 999]
    assert sel(np.array([3], dtype=np.int32)).dtype == torch.int64
    assert sel(torch.empty(0, dtype=torch.int64)).numel() == 0
    with pytest.raises(IndexError, match=r"row ids in \[0, 1000\), got 1000"):
        sel([0, 1000])
    with pytest.raises(IndexError, match="got -1"):
        sel([-1])
    with pytest.raises(ValueError, match="distinct"):
        sel([4, 4])
    with pytest.raises(ValueError, match="1-D"):
        sel(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="int32 or int64"):
        sel(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="bool"):
        sel(torch.tensor([True]))


def test_select_by_hotness_takes_the_hottest_within_the_budget():
    hot = torch.zeros(N)
    hot[[7, 3, 500]] = torch.tensor([5.0, 9.0, 5.0])
    sel = lambda **kw: _cache._select(N, 16, None, hot, kw.get("max_rows"), kw.get("max_bytes"))  # noqa: E731
    assert sel(max_rows=3).tolist() == [3, 7, 500]          # ties: lower id first
    assert sel(max_rows=2000).numel() == N
    assert sel(max_bytes=4 * N + 16 * 2 + 15).tolist() == [3, 7]   # slot map counted first
    assert sel(max_rows=1, max_bytes=1 << 30).tolist() == [3]
    assert sel(max_bytes=4 * N).numel() == 0
    with pytest.raises(ValueError, match="slot map"):
        sel(max_bytes=4 * N - 1)
    ints = torch.arange(N)                                   # integer scores work too
    assert _cache._select(N, 16, None, ints, 2, None).tolist() == [999, 998]


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(), TypeError, "either ids= .* or hotness="),
    (dict(ids=[1], hotness=torch.zeros(N)), TypeError, "not both"),
    (dict(ids=[1], max_rows=3), TypeError, "with ids= the ids are the cache"),
    (dict(hotness=torch.zeros(N)), TypeError, "max_rows= and/or max_bytes="),
    (dict(hotness=torch.zeros(N - 1), max_rows=1), ValueError, r"shape \(1000,\)"),
    (dict(hotness=[0.0] * N, max_rows=1), TypeError, "tensor of one score per row"),
    (dict(hotness=torch.zeros(N, dtype=torch.bool), max_rows=1), TypeError, "real scores"),
    (dict(hotness=torch.full((N,), float("nan")), max_rows=1), ValueError, "NaN"),
    (dict(hotness=torch.zeros(N), max_rows=-1), ValueError, "max_rows must be a non-negative int"),
    (dict(hotness=torch.zeros(N), max_bytes=1.5), ValueError, "max_bytes"),
    (dict(hotness=torch.zeros(N), max_rows=True), ValueError, "max_rows"),
])
def test_bad_arguments_raise_before_any_gpu_work(kwargs, exc, msg):
    t = ut.unified(torch.zeros(N, 4))
    with pytest.raises(exc, match=msg):
        ut.cache(t, **kwargs)


def test_cache_needs_a_unified_tensor_and_a_cuda_device():
    with pytest.raises(TypeError, match="UnifiedTensor"):
        ut.cache(torch.zeros(4, 2), ids=[0])
    with pytest.raises(TypeError, match="UnifiedTensor"):
        ut.uncache(torch.zeros(4, 2))
    t = ut.unified(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="device must be CUDA"):
        ut.cache(t, ids=[0], device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            ut.cache(t, ids=[0])
    assert ut.cache_info(t) == {}
    ut.uncache(t)   # nothing cached: a no-op


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda"), torch.device("cuda", 0), 0, 1])
def test_explicit_cuda_device_without_cuda_is_the_documented_runtime_error(device):
    """Issue 19.5: not torch's AssertionError ("not compiled with CUDA") nor its generic
    accelerator error for device=0; uncache of a table with no cache is a no-op."""
    t = ut.unified(torch.zeros(4, 2))
    with pytest.raises(RuntimeError, match="needs a CUDA device, and torch sees none") as info:
        ut.cache(t, ids=[1], device=device)
    assert type(info.value) is RuntimeError
    ut.uncache(t, device=device)   # nothing cached: a no-op
    assert ut.cache_info(t) == {}


@pytest.mark.parametrize("device, exc, msg", [
    ("cpu", ValueError, "device must be CUDA"), (torch.device("cpu"), ValueError, "device must be CUDA"),
    (-1, ValueError, ">= 0"), ("nonsense", ValueError, "not a device"), (True, TypeError, "device must be"),
    (1.5, TypeError, "device must be"),
])
def test_bad_cache_devices(device, exc, msg):
    t = ut.unified(torch.zeros(4, 2))
    with pytest.raises(exc, match=msg):
        ut.cache(t, ids=[1], device=device)


def test_uncache_with_a_bad_device_type_raises_even_without_a_cache():
    t = ut.unified(torch.zeros(4, 2))
    with pytest.raises(TypeError, match="device must be"):
        ut.uncache(t, device=1.5)


def test_in_place_changes_through_the_table_refresh_its_caches():
    class FakeCache:
        refreshed = 0

        def refresh(self, table, rows=None, version_before=None, wait_default=False,
                    if_stale=False):
            FakeCache.refreshed += 1
            assert table is t

    t = ut.unified(torch.zeros(6, 2))
    t._ut_caches[0] = FakeCache()
    t[0] = 1.0
    t.mul_(2)
    t += 1
    assert FakeCache.refreshed == 3
    _ = t + 1, t.sum(), t[torch.tensor([1, 2])]
    assert FakeCache.refreshed == 3
    assert ut.is_unified(t) and t._ut_plain[0].tolist() == [3.0, 3.0]   # t += 1 keeps the type


def test_out_degrees_counts_in_edge_lists():
    from samplers import CSCGraph

    src = torch.tensor([0, 0, 1, 3, 3, 3])
    dst = torch.tensor([1, 2, 2, 0, 1, 2])
    g = CSCGraph.from_edge_index(torch.stack([src, dst]), 5)
    assert g.out_degrees().tolist() == [2, 1, 0, 3, 0]
    assert g.out_degrees().dtype == torch.int64
    assert int(g.out_degrees().sum()) == g.num_edges


# ---------------------------------------------------------------------------------------- CUDA
gpu = pytest.mark.gpu


def _table(dtype=torch.float32, row_shape=(12,)):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn((N,) + row_shape, generator=g) * 100).to(dtype)
    return x, ut.unified(x.clone())


@gpu
@pytest.mark.parametrize("dtype, row_shape", [(torch.float32, (12,)), (torch.float16, (3,)),
                                              (torch.uint8, (5, 3)), (torch.int64, ()),
                                              (torch.float32, (256,))], ids=str)
@pytest.mark.parametrize("idtype", [torch.int32, torch.int64], ids=str)
def test_cuda_cached_gather_equals_uncached(dtype, row_shape, idtype):
    ref, t = _table(dtype, row_shape)
    hot = torch.arange(N).flip(0)            # cache the highest ids
    ut.cache(t, hotness=hot, max_rows=N // 4)
    assert ut.cache_info(t) == {f"cuda:{torch.cuda.current_device()}": {
        "rows": N // 4, "bytes": N // 4 * ref[0].numel() * ref.element_size() + 4 * N}}
    g = torch.Generator().manual_seed(1)
    for idx in (torch.randint(-N, N, (5000,), generator=g), torch.arange(N), torch.tensor([N - 1, 0]),
                torch.randint(0, N, (7, 9), generator=g)):
        want = ref[idx]
        idx = idx.to("cuda", idtype)
        for kw in (dict(), dict(sorted_order=False), dict(sorted_order=True), dict(aligned=False),
                   dict(max_threads=256)):
            assert torch.equal(ut.gather(t, idx, **kw).cpu(), want), kw
    c = t._ut_caches[torch.cuda.current_device()]
    assert abs(c.hit_rate(torch.arange(N, device="cuda")) - 0.25) < 1e-6
    ut.uncache(t)
    assert ut.cache_info(t) == {}
    assert torch.equal(t[torch.arange(N, device="cuda")].cpu(), ref)


@gpu
def test_cuda_cached_gather_bad_ids_and_no_sync():
    ref, t = _table()
    ut.cache(t, ids=torch.arange(0, N, 2))
    idx = torch.randint(0, N, (4096,), device="cuda")
    t[idx]
    ut.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        res = t[idx]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(res.cpu(), ref[idx.cpu()])
    res = t[torch.tensor([2, N, 3], device="cuda")]
    with pytest.raises(IndexError, match=f"index {N} is out of range for a table of {N} rows"):
        ut.synchronize()
    assert res[1].eq(0).all() and torch.equal(res[[0, 2]].cpu(), ref[[2, 3]])


@gpu
def test_cuda_in_place_change_reaches_the_cached_rows():
    ref, t = _table()
    ut.cache(t, ids=[1, 2, 3])
    t[2] = 7.0
    ref[2] = 7.0
    t.add_(1)
    ref.add_(1)
    idx = torch.tensor([1, 2, 3, 4], device="cuda")
    assert torch.equal(t[idx].cpu(), ref[[1, 2, 3, 4]])


@gpu
def test_cuda_recache_replaces_and_empty_cache_is_none():
    ref, t = _table()
    ut.cache(t, ids=[1, 2])
    ut.cache(t, ids=[5])
    assert list(ut.cache_info(t).values())[0]["rows"] == 1
    ut.cache(t, ids=[])
    assert ut.cache_info(t) == {}
    assert torch.equal(t[torch.tensor([5], device="cuda")].cpu(), ref[[5]])


@gpu
def test_cuda_dataloader_reads_through_the_cache():
    from samplers import CSCGraph, DataLoader, NeighborSampler

    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, N, (8 * N,), generator=g)
    dst = torch.randint(0, N, (8 * N,), generator=g)
    graph = CSCGraph.from_edge_index(torch.stack([src, dst]), N)
    ref, feats = _table()
    ut.cache(feats, hotness=graph.out_degrees(), max_rows=N // 10)
    loader = DataLoader(graph.pin(), torch.arange(N), NeighborSampler([5, 5]), batch_size=128,
                        device="cuda", features=feats)
    for input_nodes, _, blocks in loader:
        assert torch.equal(blocks[0].srcdata["feat"].cpu(), ref[input_nodes.cpu().long()])


def test_unpin_drops_the_caches(monkeypatch):
    """Unpinning ends CUDA gathers from the table, so its GPU caches go too (their memory freed)."""
    dropped = []
    monkeypatch.setattr(_cache, "uncache", lambda t, device=None: dropped.append(t))
    t = ut.unified(torch.zeros(4, 2))
    ut.unpin(t)
    assert dropped == []                    # nothing cached: nothing to drop
    t = ut.unified(torch.zeros(4, 2))
    t._ut_caches[0] = object()
    with ut.unified(t) as same:
        assert same is t
    assert dropped == [t]


@gpu
def test_cuda_unpin_frees_the_cache():
    ref, t = _table()
    ut.cache(t, ids=[1, 2])
    ut.unpin(t)
    assert ut.cache_info(t) == {}
    with pytest.raises(RuntimeError, match="unpinned"):
        t[torch.tensor([1], device="cuda")]


def test_loaders_gather_from_the_users_unified_table_so_its_cache_is_used():
    """The DataLoader and PyG's NeighborLoader read a UnifiedTensor the user made (and cached) as
    that very object, never a re-wrapped one that would lose its caches."""
    from samplers import CSCGraph, DataLoader, NeighborSampler

    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 50, (2, 300), generator=g)
    feats = ut.unified(torch.randn(50, 4, generator=g))
    loader = DataLoader(CSCGraph.from_edge_index(edge_index, 50), torch.arange(50),
                        NeighborSampler([3]), batch_size=10, features=feats)
    assert loader._features["feat"] is feats
    input_nodes, _, blocks = next(iter(loader))
    assert torch.equal(blocks[0].srcdata["feat"], feats._ut_plain[input_nodes])

    pyg_data = pytest.importorskip("torch_geometric.data")
    from samplers.pyg import NeighborLoader

    data = pyg_data.Data(x=feats, edge_index=edge_index, num_nodes=50)
    pyg_loader = NeighborLoader(data, [3], batch_size=10, seed=0)
    batch = next(iter(pyg_loader))
    assert torch.equal(batch.x, feats._ut_plain[batch.n_id])
    x_tables = [t for key, (_, t) in pyg_loader._tables.items() if "x" in key]
    assert x_tables and all(t is feats for t in x_tables)


def test_out_argument_writing_into_the_table_refreshes_its_caches():
    class FakeCache:
        refreshed = 0

        def refresh(self, table, rows=None, version_before=None, wait_default=False,
                    if_stale=False):
            FakeCache.refreshed += 1

    t = ut.unified(torch.zeros(3))
    t._ut_caches[0] = FakeCache()
    r = torch.add(torch.ones(3), 1, out=t)
    assert FakeCache.refreshed == 1 and r is t and t._ut_plain.tolist() == [2.0, 2.0, 2.0]
    torch.add(t, 1)                  # reading it: no refresh
    assert FakeCache.refreshed == 1


@gpu
def test_cuda_hit_rate_ignores_out_of_range_ids_and_gather_under_graph_capture():
    ref, t = _table()
    ut.cache(t, ids=torch.arange(10))
    c = t._ut_caches[torch.cuda.current_device()]
    assert c.hit_rate(torch.tensor([0, 5, N, -N - 1, 20], device="cuda")) == pytest.approx(0.4)
    torch.cuda.synchronize()         # the context is healthy after the out-of-range ids
    idx = torch.arange(0, N, 7, device="cuda")
    out = torch.empty(idx.numel(), 12, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        ut.gather(t, idx, out=out)   # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):    # default validation under capture: no record, no query
        ut.gather(t, idx, out=out, sorted_order=False)
    out.zero_()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out.cpu(), ref[idx.cpu()])


@gpu
def test_cuda_requires_grad_gpu_table_through_the_dataloader_gather():
    from samplers.loading._core import _gather

    table = torch.randn(20, 3, device="cuda", requires_grad=True)
    res = _gather(table, torch.tensor([1, 2], device="cuda"), None, validate=True)
    res.sum().backward()
    assert table.grad[1].tolist() == [1.0, 1.0, 1.0]
    ut.synchronize()


def test_gathering_into_a_cached_table_refreshes_its_caches():
    """ut.gather(src, i, out=t) and torch.index_select(src, 0, i, out=t) write t's rows: t's
    caches follow (found by the fake-CUDA harness)."""
    class FakeCache:
        refreshed = 0

        def refresh(self, table, rows=None, version_before=None, wait_default=False,
                    if_stale=False):
            FakeCache.refreshed += 1

    src = ut.unified(torch.arange(12.0).view(6, 2))
    t = ut.unified(torch.zeros(3, 2))
    t._ut_caches[0] = FakeCache()
    ut.gather(src, torch.tensor([5, 0, 1]), out=t)
    torch.index_select(src, 0, torch.tensor([1, 1, 1]), out=t)
    assert FakeCache.refreshed == 2 and t._ut_plain.tolist() == [[2.0, 3.0]] * 3
