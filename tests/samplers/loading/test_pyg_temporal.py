"""Node-level temporal sampling (PyG's ``time_attr``, ``input_time``, ``edge_label_time``,
``temporal_strategy``): the CPU kernel against plain-Python references, and the PyG loaders'
temporal batches checked from the graph (every node of a tree no newer than its seed's time)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Data, HeteroData  # noqa: E402

from samplers.sampling._layer_cpu import sample_layer, sample_layer_temporal  # noqa: E402
from samplers.pyg import LinkNeighborLoader, NeighborLoader  # noqa: E402
from testing import ref_sample_layer  # noqa: E402


def random_csc(n=300, e=4000, seed=0):
    rng = np.random.default_rng(seed)
    dst = np.sort(rng.integers(0, n, e))
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, dst + 1, 1)
    return np.cumsum(indptr), rng.integers(0, n, e).astype(np.int64), rng.permutation(e).astype(np.int64)


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("fanout", [-1, 2, 5])
@pytest.mark.parametrize("float_times", [False, True])
def test_uniform_kernel_draws_among_eligible_in_edges(replace, fanout, float_times):
    """Uniform temporal sampling is the plain sampler over the in-edges no newer than the seed:
    exactly the draws of the exclusion reference with every newer in-edge excluded."""
    indptr, indices, eids = random_csc()
    rng = np.random.default_rng(1)
    node_time = rng.integers(0, 100, 300)
    seeds = np.unique(rng.integers(0, 300, 90)).astype(np.int64)
    seed_time = rng.integers(0, 100, seeds.size)
    if float_times:
        node_time, seed_time = node_time + 0.5, seed_time + 0.25
    src, dst, eid = sample_layer_temporal(indptr, indices, eids, seeds, seed_time, node_time,
                                          fanout, replace, False, 11)
    newer = np.array([p for i, v in enumerate(seeds) for p in range(indptr[v], indptr[v + 1])
                      if node_time[indices[p]] > seed_time[i]], np.int64)
    rs, rd, re_ = ref_sample_layer(indptr, indices, eids, seeds, fanout, replace, 11, newer)
    assert src.tolist() == rs and dst.tolist() == rd and eid.tolist() == re_
    assert (node_time[src] <= seed_time[dst]).all()


@pytest.mark.parametrize("fanout", [1, 3, 50])
def test_last_strategy_takes_the_most_recent(fanout):
    indptr, indices, eids = random_csc(seed=2)
    rng = np.random.default_rng(3)
    node_time = rng.integers(0, 20, 300)                      # many ties
    seeds = np.unique(rng.integers(0, 300, 60)).astype(np.int64)
    seed_time = rng.integers(0, 20, seeds.size)
    src, dst, eid = sample_layer_temporal(indptr, indices, None, seeds, seed_time, node_time,
                                          fanout, False, True, 5)
    for i, v in enumerate(seeds):
        elig = [p for p in range(indptr[v], indptr[v + 1]) if node_time[indices[p]] <= seed_time[i]]
        # most recent first by time, later CSC position first among equal times
        want = sorted(elig, key=lambda p: (node_time[indices[p]], p))[-fanout:]
        assert sorted(eid[dst == i].tolist()) == sorted(want)


def test_without_times_it_is_the_plain_sampler():
    indptr, indices, eids = random_csc(seed=4)
    seeds = np.arange(0, 300, 7, dtype=np.int64)
    a = sample_layer_temporal(indptr, indices, eids, seeds, np.zeros(seeds.size, np.int64), None,
                              3, False, False, 9)
    _, ei, eid, _ = sample_layer(indptr, indices, eids, seeds, 3, False, 9, None, relabel=False)
    assert np.array_equal(a[0], ei[0]) and np.array_equal(a[1], ei[1]) and np.array_equal(a[2], eid)


# ------------------------------------------------------------------------------ loaders
@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return Data(x=torch.randn(200, 4, generator=g),
                edge_index=torch.randint(0, 200, (2, 2000), generator=g),
                time=torch.randint(0, 1000, (200,), generator=g))


def _tree_times_ok(batch, seed_time):
    """Every node no newer than its tree's seed time (seeds excepted: they define it)."""
    t = batch.time[batch.batch_size:]
    return bool((t <= seed_time[batch.batch[batch.batch_size:]]).all())


@pytest.mark.parametrize("strategy", ["uniform", "last"])
def test_neighbor_loader_trees_respect_seed_times(data, strategy):
    loader = NeighborLoader(data, [4, 3], time_attr="time", temporal_strategy=strategy,
                            batch_size=32, shuffle=True, seed=0)
    seen = []
    for b in loader:
        assert b.batch is not None and torch.equal(b.batch[:b.batch_size], torch.arange(b.batch_size))
        assert "seed_time" not in b                           # PyG: only with input_time
        assert _tree_times_ok(b, data.time[b.n_id[:b.batch_size]])
        assert torch.equal(b.n_id[b.edge_index], data.edge_index[:, b.e_id])
        assert torch.equal(b.batch[b.edge_index[0]], b.batch[b.edge_index[1]])   # within a tree
        seen.append(b.n_id[:b.batch_size])
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(200))


def test_input_time_overrides_and_is_reported(data):
    input_time = torch.full((200,), 300)
    b = next(iter(NeighborLoader(data, [-1, -1], time_attr="time", input_time=input_time,
                                 batch_size=16, seed=0)))
    assert torch.equal(b.seed_time, input_time[b.input_id])
    assert _tree_times_ok(b, b.seed_time)
    # all in-neighbours at time <= 300 of each seed are there (fanout -1)
    for i in range(b.batch_size):
        v = int(b.n_id[i])
        nbrs = data.edge_index[0][(data.edge_index[1] == v) & (data.time[data.edge_index[0]] <= 300)]
        got = b.n_id[b.edge_index[0][(b.edge_index[1] == i)]]
        assert sorted(got.tolist()) == sorted(nbrs.tolist())


def test_same_seed_same_temporal_batches(data):
    kw = dict(time_attr="time", batch_size=40, shuffle=True, seed=7)
    a = [b.n_id for b in NeighborLoader(data, [3, 2], **kw)]
    b = [b.n_id for b in NeighborLoader(data, [3, 2], **kw)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_hetero_types_without_times_are_always_eligible():
    h = HeteroData()
    h["u"].x = torch.arange(20)
    h["i"].x = torch.arange(30)
    h["i"].time = torch.arange(30)
    g = torch.Generator().manual_seed(1)
    ui = torch.stack([torch.randint(0, 20, (200,), generator=g), torch.randint(0, 30, (200,), generator=g)])
    h["u", "buys", "i"].edge_index = ui
    h["i", "rev", "u"].edge_index = ui.flip(0)
    loader = NeighborLoader(h, [-1, -1], input_nodes="u", time_attr="time",
                            input_time=torch.full((20,), 10), batch_size=5)
    for b in loader:
        assert bool((b["i"].time <= 10).all())
        assert b["u"].batch.numel() == b["u"].n_id.numel()


def test_link_loader_negatives_and_trees_respect_pair_times(data):
    g = torch.Generator().manual_seed(2)
    t = torch.randint(500, 1000, (2000,), generator=g)
    for ns in ("binary", dict(mode="triplet", amount=2)):
        loader = LinkNeighborLoader(data, [3, 2], time_attr="time", edge_label_time=t,
                                    neg_sampling=ns, batch_size=50, seed=0)
        b = next(iter(loader))
        pair_time = b.edge_label_time if isinstance(ns, str) else b.seed_time
        assert torch.equal(pair_time[:50], t[b.input_id])
        # batch = tree % 50 names the positive pair; its time bounds every sampled (non-seed) node
        k = b.num_sampled_nodes[0]
        assert bool((b.time[k:] <= t[b.input_id][b.batch[k:]]).all())
        if isinstance(ns, str):   # negatives drawn no newer than their pair (PyG's neg_sample)
            neg = b.edge_label_index[:, 50:]
            assert bool((b.time[neg] <= b.edge_label_time[50:].unsqueeze(0)).all())


def test_temporal_errors(data):
    with pytest.raises(ValueError, match="did not find any temporal data"):
        NeighborLoader(data, [2], time_attr="nope")
    with pytest.raises(ValueError, match="input_time is set but time_attr is not"):
        NeighborLoader(data, [2], input_time=torch.zeros(200))
    with pytest.raises(ValueError, match="one entry per seed"):
        NeighborLoader(data, [2], time_attr="time", input_time=torch.zeros(3))
    with pytest.raises(TypeError, match="integers"):
        NeighborLoader(data, [2], time_attr="time", input_time=torch.zeros(200) + 0.5)
    with pytest.raises(ValueError, match="induced"):
        NeighborLoader(data, [2], time_attr="time", subgraph_type="induced")
    with pytest.raises(ValueError, match="use_uva=True"):
        NeighborLoader(data, [2], time_attr="time", use_uva=True)
    data.edge_time = torch.arange(2000)
    with pytest.raises(ValueError, match="needs input_time"):   # edge-level: seed times needed
        NeighborLoader(Data(edge_index=data.edge_index, edge_time=data.edge_time, num_nodes=200),
                       [2], time_attr="edge_time")
    with pytest.raises(ValueError, match="'edge_label_time' is not set"):
        LinkNeighborLoader(data, [2], time_attr="time")


@pytest.mark.gpu
def test_temporal_batches_on_the_gpu_equal_the_cpu(data):
    kw = dict(time_attr="time", batch_size=32, seed=3)
    for c, g in zip(NeighborLoader(data, [3, 2], **kw), NeighborLoader(data, [3, 2], device="cuda", **kw)):
        assert g.x.is_cuda and torch.equal(c.n_id, g.n_id.cpu())
        assert torch.equal(c.edge_index, g.edge_index.cpu()) and torch.equal(c.x, g.x.cpu())
    with pytest.raises(NotImplementedError, match="CPU sampler"):
        NeighborLoader(data.cuda(), [2], time_attr="time")
