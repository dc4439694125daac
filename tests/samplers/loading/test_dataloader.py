"""samplers.DataLoader: epoch coverage, shuffling, drop_last, features/labels, argument checks,
producer-thread lifetime (break, exception, GC), PyG training on the blocks; GPU variants marked."""
from __future__ import annotations

import gc
import threading
import time
import traceback

import numpy as np
import pytest
import torch

from samplers import Block, CSCGraph, DataLoader, NeighborSampler

PRODUCER = "samplers-DataLoader-producer"


def producers() -> list:
    return [t for t in threading.enumerate() if t.name.startswith(PRODUCER) and t.is_alive()]


def wait_no_producers(timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while producers() and time.monotonic() < end:
        time.sleep(0.01)
    assert producers() == []


@pytest.fixture(autouse=True)
def _no_thread_left_behind():
    wait_no_producers()
    yield
    gc.collect()
    wait_no_producers()


class FakeSampler:
    """A DGL-interface sampler: one block whose sources are the seeds then their successors."""

    def __init__(self, num_nodes: int, fail_at: int = -1, delay: float = 0.0):
        self.num_nodes, self.fail_at, self.delay, self.calls = num_nodes, fail_at, delay, 0

    def sample(self, graph, seeds):
        self.calls += 1
        if self.calls == self.fail_at:
            raise ValueError(f"boom at batch {self.fail_at}")
        if self.delay:
            time.sleep(self.delay)
        nbr = (seeds.long() + 1) % self.num_nodes
        src = torch.cat([seeds.long(), nbr[~torch.isin(nbr, seeds.long())].unique()])
        e_dst = torch.arange(seeds.numel())
        e_src = torch.nonzero(src.unsqueeze(0) == nbr.unsqueeze(1))[:, 1]
        return src, seeds, [Block(src, seeds.long(), e_src, e_dst)]


N = 500


@pytest.fixture(scope="module")
def graph():
    g = torch.Generator().manual_seed(0)
    return CSCGraph.from_edge_index(torch.randint(0, N, (2, 5 * N), generator=g), N)


@pytest.fixture(scope="module")
def tables():
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, 8, generator=g), torch.randint(0, 4, (N,), generator=g)


def epoch_seeds(loader) -> torch.Tensor:
    return torch.cat([out.long() for _, out, _ in loader]) if len(loader) else torch.empty(0)


# ------------------------------------------------------------------------------ coverage
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n_seeds,bs", [(100, 32), (96, 32), (5, 32), (0, 4)])
def test_epoch_coverage_len_drop_last(graph, shuffle, drop_last, n_seeds, bs):
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(2))[:n_seeds]
    dl = DataLoader(graph, idx, FakeSampler(N), batch_size=bs, shuffle=shuffle,
                    drop_last=drop_last, seed=3)
    expect_len = n_seeds // bs if drop_last else -(-n_seeds // bs)
    assert len(dl) == expect_len
    batches = [out for _, out, _ in dl]
    assert len(batches) == expect_len
    assert all(b.numel() == bs for b in batches[:-1] if drop_last or b is not batches[-1])
    got = torch.cat(batches).long() if batches else torch.empty(0, dtype=torch.long)
    assert got.unique().numel() == got.numel()            # each seed at most once
    if drop_last:
        assert got.numel() == (n_seeds // bs) * bs
        assert torch.isin(got, idx.long()).all()
    else:
        assert torch.equal(got.sort().values, idx.long().sort().values)   # exactly once
    if not shuffle:
        assert torch.equal(got, idx.long()[:got.numel()])


def test_real_sampler_features_labels(graph, tables):
    x, y = tables
    dl = DataLoader(graph, torch.arange(0, N, 2), NeighborSampler([4, 3], seed=0), batch_size=64,
                    shuffle=True, seed=0, features=x, labels=y)
    seen = []
    for inp, out, blocks in dl:
        assert len(blocks) == 2
        assert torch.equal(blocks[0].srcdata["_ID"], inp)
        assert torch.equal(blocks[-1].dstdata["_ID"], out)
        torch.testing.assert_close(blocks[0].srcdata["feat"], x[inp.long()])
        assert torch.equal(blocks[-1].dstdata["label"], y[out.long()])
        assert blocks[0].srcdata["feat"].device.type == "cpu"
        seen.append(out.long())
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(0, N, 2))
    # features are used in place: no copy of the table
    assert dl._features["feat"].data_ptr() == x.data_ptr()


def test_feature_dicts_and_numpy(graph, tables):
    x, y = tables
    xn = x.numpy()
    dl = DataLoader(graph, np.arange(10), FakeSampler(N), batch_size=4,
                    features={"a": xn, "b": x[:, :2].contiguous()}, labels={"y": y})
    inp, out, blocks = next(iter(dl))
    torch.testing.assert_close(blocks[0].srcdata["a"], x[inp.long()])
    torch.testing.assert_close(blocks[0].srcdata["b"], x[inp.long(), :2])
    assert torch.equal(blocks[-1].dstdata["y"], y[out.long()])


def test_shuffle_reproducible(graph):
    def run(**kw):
        dl = DataLoader(graph, torch.arange(N), FakeSampler(N), batch_size=50, shuffle=True, **kw)
        return epoch_seeds(dl), epoch_seeds(dl)

    a1, a2 = run(seed=7)
    b1, b2 = run(seed=7)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2)                       # a new permutation every epoch
    c1, _ = run(generator=torch.Generator().manual_seed(7))
    assert torch.equal(a1, c1)
    d1, _ = run(seed=8)
    assert not torch.equal(a1, d1)


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_prefetch_depths(graph, tables, prefetch):
    x, _ = tables
    dl = DataLoader(graph, torch.arange(100), NeighborSampler([3]), batch_size=16,
                    prefetch=prefetch, features=x)
    got = []
    for inp, out, blocks in dl:
        if prefetch == 0:
            assert producers() == []
        torch.testing.assert_close(blocks[0].srcdata["feat"], x[inp.long()])
        got.append(out)
    assert torch.equal(torch.cat(got).sort().values, torch.arange(100))


def test_use_prefetch_thread_false_is_sync(graph):
    dl = DataLoader(graph, torch.arange(50), FakeSampler(N), batch_size=8,
                    use_prefetch_thread=False)
    it = iter(dl)
    next(it)
    assert producers() == []
    assert dl.prefetch == 0


def test_ddp_split(graph, monkeypatch):
    import samplers.loading._core as mod

    monkeypatch.setattr(mod, "_world_size", lambda: 3)
    parts = []
    for rank in range(3):
        monkeypatch.setattr(mod, "_rank", lambda r=rank: r)
        dl = DataLoader(graph, torch.arange(100), FakeSampler(N), batch_size=10, shuffle=True,
                        use_ddp=True, ddp_seed=5)
        assert len(dl) == 4                           # ceil(ceil(100 / 3) / 10)
        parts.append(epoch_seeds(dl))
    allp = torch.cat(parts)
    assert allp.numel() == 102                        # padded by wrap-around
    assert torch.equal(allp.unique(), torch.arange(100))


# ------------------------------------------------------------------------------ arguments
def test_dgl_keyword_arguments_accepted(graph):
    dl = DataLoader(graph, torch.arange(20), FakeSampler(N), None, False, 0, 8, False, False,
                    None, None, None, False, None, num_workers=4, persistent_workers=True,
                    pin_memory=False, timeout=0, worker_init_fn=None, prefetch_factor=2,
                    multiprocessing_context=None, pin_memory_device="", collate_fn=None)
    assert len(dl) == 3 and dl.prefetch == 2 and dl.device == torch.device("cpu")
    with dl.enable_cpu_affinity():
        assert epoch_seeds(dl).numel() == 20
    with pytest.warns(UserWarning, match="gpu_cache"):
        DataLoader(graph, torch.arange(4), FakeSampler(N), gpu_cache={"node": {"feat": 10}})


@pytest.mark.parametrize("indices,exc,match", [
    (torch.tensor([0.0, 1.0]), TypeError, "integer"),
    (torch.zeros(N, dtype=torch.bool), TypeError, "boolean mask"),
    (np.zeros(N, dtype=bool), TypeError, "boolean mask"),
    (np.array([0.5]), TypeError, "integer"),
    ([0, 1.5], TypeError, "integer"),
    ("abc", TypeError, "indices"),
    ({"_N": torch.arange(3)}, TypeError, "heterogeneous"),
    (torch.arange(6).view(2, 3), ValueError, "1-D"),
    (torch.tensor([0, N]), IndexError, str(N)),
    (torch.tensor([-1, 3]), IndexError, "-1"),
])
def test_bad_indices(graph, indices, exc, match):
    with pytest.raises(exc, match=match):
        DataLoader(graph, indices, NeighborSampler([2]))


def test_bad_arguments(graph, tables):
    x, y = tables
    s = NeighborSampler([2])
    idx = torch.arange(10)
    with pytest.raises(ValueError, match=r"features has 499 rows but the graph has 500"):
        DataLoader(graph, idx, s, features=x[:-1])
    with pytest.raises(ValueError, match="labels has 501 rows"):
        DataLoader(graph, idx, s, labels=torch.zeros(N + 1))
    with pytest.raises(TypeError, match="features must be a torch.Tensor"):
        DataLoader(graph, idx, s, features=[[1.0]] * N)
    with pytest.raises(TypeError, match="unexpected keyword"):
        DataLoader(graph, idx, s, fanout=3)
    with pytest.raises(ValueError, match="collate_fn"):
        DataLoader(graph, idx, s, collate_fn=lambda b: b)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(graph, idx, s, batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        DataLoader(graph, idx, s, batch_size=2.0)
    with pytest.raises(TypeError, match="graph_sampler"):
        DataLoader(graph, idx, object())
    with pytest.raises(ValueError, match="seed or generator"):
        DataLoader(graph, idx, s, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="prefetch"):
        DataLoader(graph, idx, s, prefetch=-1)
    with pytest.raises(ValueError, match="use_prefetch_thread=True"):
        DataLoader(graph, idx, s, prefetch=0, use_prefetch_thread=True)
    with pytest.raises(ValueError, match="max_threads"):
        DataLoader(graph, idx, s, max_threads=0)
    with pytest.raises(ValueError, match="use_uva=True"):
        DataLoader(graph, idx, s, device="cpu", use_uva=True)
    with pytest.raises(ValueError, match="use_alternate_streams"):
        DataLoader(graph, idx, s, use_alternate_streams=True)
    with pytest.raises(ValueError, match="pin_prefetcher"):
        DataLoader(graph, idx, s, pin_prefetcher=True)
    with pytest.raises(ValueError, match="device"):
        DataLoader(graph, idx, s, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            DataLoader(graph, idx, s, device="cuda")


# ------------------------------------------------------------------------------ threads
def test_break_then_reiterate(graph):
    base = threading.active_count()
    dl = DataLoader(graph, torch.arange(200), FakeSampler(N, delay=0.002), batch_size=10,
                    prefetch=1)
    for i, _ in enumerate(dl):
        if i == 2:
            break
    wait_no_producers()
    assert threading.active_count() == base
    assert torch.equal(epoch_seeds(dl).sort().values, torch.arange(200))
    wait_no_producers()


def test_producer_blocked_on_full_queue_is_released(graph):
    dl = DataLoader(graph, torch.arange(200), FakeSampler(N), batch_size=1, prefetch=1)
    it = iter(dl)
    next(it)
    time.sleep(0.2)                       # the producer is now waiting on the full queue
    assert len(producers()) == 1
    t0 = time.monotonic()
    it.close()
    assert time.monotonic() - t0 < 2.0
    assert producers() == []
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_producer_exception_propagates(graph, prefetch):
    dl = DataLoader(graph, torch.arange(100), FakeSampler(N, fail_at=3), batch_size=10,
                    prefetch=prefetch)
    got = 0
    with pytest.raises(ValueError, match="boom at batch 3") as info:
        for _ in dl:
            got += 1
    assert got == 2
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "sample" in names                      # the producer's frames are kept
    wait_no_producers()
    # the loader is still usable (the sampler only fails on its 3rd call)
    assert epoch_seeds(dl).numel() == 100


@pytest.mark.parametrize("indices", [[1, 1, 2], [5, 3, 9, 3], np.array([7, 0, 7])])
def test_duplicate_indices_rejected_at_construction(graph, indices):
    """Decided once, at construction, whatever the shuffle: never mid-training."""
    with pytest.raises(ValueError, match=r"distinct.*node (1|3|7) at positions"):
        DataLoader(graph, indices, NeighborSampler([2]), batch_size=2, shuffle=True)


def test_sampler_error_surfaces_in_loop(graph):
    # duplicate seeds given to the sampler directly are its error (raised in the producer,
    # surfaced in the loop) when a custom sampler forwards them
    class Forward:
        def __init__(self):
            self.inner = NeighborSampler([2])

        def sample(self, g, seeds):
            return self.inner.sample(g, torch.cat([seeds, seeds[:1]]))
    dl = DataLoader(graph, torch.tensor([1, 2, 3]), Forward(), batch_size=3)
    with pytest.raises(ValueError, match="distinct"):
        next(iter(dl))


def test_gc_of_iterator_and_loader(graph):
    base = threading.active_count()
    dl = DataLoader(graph, torch.arange(300), FakeSampler(N), batch_size=1, prefetch=2)
    it = iter(dl)
    next(it)
    assert len(producers()) == 1
    del it
    gc.collect()
    wait_no_producers()
    it = iter(dl)
    next(it)
    del dl, it
    gc.collect()
    wait_no_producers()
    assert threading.active_count() == base


def test_iterators_are_independent(graph):
    dl = DataLoader(graph, torch.arange(40), FakeSampler(N), batch_size=10, shuffle=True, seed=0)
    a, b = iter(dl), iter(dl)
    ga = torch.cat([out for _, out, _ in a])
    gb = torch.cat([out for _, out, _ in b])
    assert torch.equal(ga.sort().values, gb.sort().values)


# ------------------------------------------------------------------------------ PyG
def test_pyg_sage_trains_on_blocks():
    pyg_nn = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(0)
    n, c, per = 400, 4, 100
    label = torch.arange(n) // per
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, n, (8 * n,), generator=gen)
    same = (torch.rand(8 * n, generator=gen) < 0.9)
    dst = torch.where(same, (src // per) * per + torch.randint(0, per, (8 * n,), generator=gen),
                      torch.randint(0, n, (8 * n,), generator=gen))
    g = CSCGraph.from_edge_index(torch.stack([src, dst]), n)
    x = torch.nn.functional.one_hot(label, c).float() * 0.5 + torch.randn(n, c, generator=gen)

    class SAGE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = torch.nn.ModuleList([pyg_nn.SAGEConv(c, 16), pyg_nn.SAGEConv(16, c)])

        def forward(self, blocks, h):
            for i, (conv, b) in enumerate(zip(self.convs, blocks)):
                h = conv((h, h[:b.num_dst_nodes()]), b.edge_index,
                         size=(b.num_src_nodes(), b.num_dst_nodes()))
                if i == 0:
                    h = torch.relu(h)
            return h

    model = SAGE()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    dl = DataLoader(g, torch.arange(n), NeighborSampler([5, 5], seed=0), batch_size=64,
                    shuffle=True, seed=0, features=x, labels=label)
    losses = []
    for _ in range(4):
        total = 0.0
        for _, out, blocks in dl:
            logits = model(blocks, blocks[0].srcdata["feat"])
            assert logits.shape == (out.numel(), c)
            loss = torch.nn.functional.cross_entropy(logits, blocks[-1].dstdata["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / len(dl))
    assert losses[-1] < 0.7 * losses[0], losses


# ------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("placement", ["pinned", "cuda", "cpu"])
def test_gpu_loader(graph, tables, placement):
    x, y = tables
    g = graph.to_placement(placement)
    dl = DataLoader(g, torch.arange(N), NeighborSampler([5, 3], seed=0), batch_size=64,
                    shuffle=True, seed=0, device="cuda", features=x.clone(), labels=y)
    expect = "cpu" if placement == "cpu" else "cuda"
    assert dl._sample_device.type == expect
    seen = []
    for inp, out, blocks in dl:
        assert inp.is_cuda and out.is_cuda and blocks[0].edge_index.is_cuda
        f = blocks[0].srcdata["feat"]
        assert f.is_cuda
        torch.testing.assert_close(f.cpu(), x[inp.long().cpu()])
        assert torch.equal(blocks[-1].dstdata["label"].cpu(), y[out.long().cpu()])
        seen.append(out.long().cpu())
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(N))


@pytest.mark.gpu
@pytest.mark.parametrize("alt", [None, False])
def test_gpu_stream_hand_over_under_load(alt):
    """The consumer's stream is kept busy while batches arrive: each batch must hold exactly its
    own rows when read there (no early read, no reuse of memory by the producer)."""
    n = 20000
    gen = torch.Generator().manual_seed(0)
    g = CSCGraph.from_edge_index(torch.randint(0, n, (2, 10 * n), generator=gen), n).pin()
    x = torch.randn(n, 64, generator=gen)
    dl = DataLoader(g, torch.arange(n), NeighborSampler([10, 5], seed=1), batch_size=512,
                    shuffle=True, seed=0, device="cuda", features=x.clone(), prefetch=2,
                    use_alternate_streams=alt)
    x_gpu = x.cuda()
    a = torch.randn(2048, 2048, device="cuda")
    worst = torch.zeros((), device="cuda")
    count = 0
    for inp, out, blocks in dl:
        for _ in range(4):
            a = torch.tanh(a @ a)                # keep the current stream busy
        f = blocks[0].srcdata["feat"]            # read on the current stream, memory recycled
        worst = torch.maximum(worst, (f - x_gpu[inp.long()]).abs().max())
        count += out.numel()
    assert count == n
    assert float(worst) == 0.0


@pytest.mark.gpu
def test_gpu_side_stream_shared_and_threads_cleaned(graph):
    from unified_tensor._streams import side_stream
    assert side_stream("cuda") is side_stream(torch.cuda.current_device())
    dl = DataLoader(graph.pin(), torch.arange(N), NeighborSampler([3]), batch_size=8,
                    device="cuda")
    for i, _ in enumerate(dl):
        if i == 3:
            break
    wait_no_producers()
    with pytest.raises(ValueError, match="use_uva=True reads the graph"):
        DataLoader(graph.to("cuda"), torch.arange(N), NeighborSampler([3]), use_uva=True)
    dl = DataLoader(graph, torch.arange(N), NeighborSampler([3]), batch_size=64, use_uva=True)
    assert dl.device.type == "cuda" and dl._sample_device.type == "cuda"
    assert epoch_seeds(dl).numel() == N


def _epoch_edges(dl, limit=None):
    out = []
    for i, (inp, outp, blocks) in enumerate(dl):
        if limit is not None and i >= limit:
            break
        out.append([inp.clone()] + [b.edge_index.clone() for b in blocks])
    return out


def test_neighbourhoods_do_not_depend_on_prefetch_or_a_break(graph):
    """Batch draws are keyed by (seed, epoch, batch index): a break in epoch 0 and any prefetch
    depth give the same epoch-1 neighbourhoods."""
    runs = []
    for prefetch in (0, 1, 3):
        dl = DataLoader(graph, torch.arange(200), NeighborSampler([3, 2], seed=5), batch_size=16,
                        shuffle=True, seed=1, prefetch=prefetch)
        _epoch_edges(dl, limit=2)          # break early in epoch 0
        runs.append(_epoch_edges(dl))      # epoch 1
        wait_no_producers()
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(runs[0], other):
            assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_uint64_indices_beyond_int64_are_reported_as_given(graph):
    with pytest.raises(IndexError, match=str(2**64 - 1)):
        DataLoader(graph, np.array([2**64 - 1], np.uint64), NeighborSampler([2]), batch_size=1)


@pytest.mark.parametrize("bad, kind", [
    (lambda t: t.numpy().astype(">f4"), TypeError),                  # big-endian
    (lambda t: t.clone().requires_grad_(), ValueError),             # requires grad
])
def test_feature_errors_name_the_argument(graph, tables, bad, kind):
    feats = bad(tables[0])
    with pytest.raises(kind, match="features"):
        DataLoader(graph, torch.arange(10), NeighborSampler([2]), batch_size=4, features=feats)


@pytest.mark.parametrize("make", [
    lambda t: t.t().contiguous().t(),          # transposed storage
    lambda t: torch.cat([t, t], 1)[:, ::2],    # strided columns
    lambda t: t[:, :1].expand(-1, 5),          # expanded
])
def test_non_contiguous_features_gathered_from_a_copy_with_a_warning(graph, tables, make):
    feats = make(tables[0])
    with pytest.warns(UserWarning, match="not contiguous.*MiB more host memory"):
        dl = DataLoader(graph, torch.arange(40), NeighborSampler([2]), batch_size=8, features=feats)
    for inp, _, blocks in dl:
        assert torch.equal(blocks[0].srcdata["feat"], feats[inp.long()])


@pytest.mark.gpu
def test_gpu_loader_host_syncs_per_batch(graph, tables):
    """Host syncs per batch of the GPU producer (run in this thread: prefetch=0), counted by
    torch.cuda.set_sync_debug_mode: at most 2 per layer (the sampled-edge count and
    torch.unique's output size); seeds, features and labels are checked once at construction,
    not per batch."""
    import warnings

    import unified_tensor as ut

    feats, labels = ut.unified(tables[0]), tables[1]
    g = graph.pin()
    dl = DataLoader(g, torch.arange(400), NeighborSampler([4, 3]), batch_size=64, device="cuda",
                    features=feats, labels=labels, prefetch=0, shuffle=True, seed=0)
    it = iter(dl)
    next(it)                                    # kernels compiled, tables registered
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(4):
                next(it)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum(1 for x in w if "synchroniz" in str(x.message).lower())
    assert syncs <= 4 * 2 * 2, f"{syncs} host syncs in 4 batches of a 2-layer sampler"


def test_subclass_overriding_sample_distinct_without_the_new_keyword_still_works():
    """A NeighborSampler subclass whose sample_distinct predates seeds_checked keeps working: the
    loader passes the keyword only where the method takes it."""
    from samplers import CSCGraph, DataLoader, NeighborSampler

    class Old(NeighborSampler):
        calls = 0

        def sample_distinct(self, graph, seeds, batch=None):
            Old.calls += 1
            return super().sample_distinct(graph, seeds, batch=batch)

    g = CSCGraph.from_edge_index(torch.randint(0, 30, (2, 120), generator=torch.Generator().manual_seed(0)), 30)
    batches = list(DataLoader(g, torch.arange(30), Old([2]), batch_size=10))
    assert len(batches) == 3 and Old.calls == 3
