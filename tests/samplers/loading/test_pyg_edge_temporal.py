"""Edge-level temporal sampling (PyG's ``time_attr`` naming an EDGE attribute): the CPU kernel
against plain-Python references, PyG's own two edge-level loader tests (ported from
``test/loader/test_neighbor_loader.py`` of pyg-team/pytorch_geometric, import swapped to
``samplers.pyg``), and the loaders' batches against a brute-force oracle built from the graph.

PyG's (pyg-lib's) semantics: an in-edge is eligible when its time is at most its tree's seed
time (``input_time`` / ``edge_label_time``; required, node times do not exist here); sampling is
disjoint; ``temporal_strategy="last"`` takes the most recent eligible in-edges (ties: the later
edge); edge types without the attribute are sampled without a time limit.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Data, HeteroData  # noqa: E402

from samplers.pyg import LinkNeighborLoader, NeighborLoader  # noqa: E402
from samplers.sampling._layer_cpu import draw_py, sample_layer_temporal  # noqa: E402
from testing import ref_sample_layer  # noqa: E402


def random_csc(n=300, e=4000, seed=0):
    rng = np.random.default_rng(seed)
    dst = np.sort(rng.integers(0, n, e))
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, dst + 1, 1)
    return np.cumsum(indptr), rng.integers(0, n, e).astype(np.int64), rng.permutation(e).astype(np.int64)


# ------------------------------------------------------------------------------ kernel
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("fanout", [-1, 2, 5])
@pytest.mark.parametrize("float_times", [False, True])
def test_uniform_kernel_draws_among_edges_no_newer_than_the_seed(replace, fanout, float_times):
    """Uniform edge-level sampling is the plain sampler over the in-edges whose own time is at
    most the seed's: exactly the draws of the exclusion reference with every newer in-edge
    excluded."""
    indptr, indices, eids = random_csc()
    rng = np.random.default_rng(1)
    edge_time = rng.integers(0, 100, indices.size)            # one per CSC position
    seeds = np.unique(rng.integers(0, 300, 90)).astype(np.int64)
    seed_time = rng.integers(0, 100, seeds.size)
    if float_times:
        edge_time, seed_time = edge_time + 0.5, seed_time + 0.25
    src, dst, eid = sample_layer_temporal(indptr, indices, eids, seeds, seed_time, None, fanout,
                                          replace, False, 11, edge_time=edge_time)
    newer = np.array([p for i, v in enumerate(seeds) for p in range(indptr[v], indptr[v + 1])
                      if edge_time[p] > seed_time[i]], np.int64)
    rs, rd, re_ = ref_sample_layer(indptr, indices, eids, seeds, fanout, replace, 11, newer)
    assert src.tolist() == rs and dst.tolist() == rd and eid.tolist() == re_
    pos = np.argsort(eids)[eid]                                # edge id -> CSC position
    assert (edge_time[pos] <= seed_time[dst]).all()
    assert len(rs) > 0


@pytest.mark.parametrize("fanout", [1, 3, 50])
def test_last_strategy_takes_the_most_recent_edges(fanout):
    indptr, indices, _ = random_csc(seed=2)
    rng = np.random.default_rng(3)
    edge_time = rng.integers(0, 20, indices.size)             # many ties
    seeds = np.unique(rng.integers(0, 300, 60)).astype(np.int64)
    seed_time = rng.integers(0, 20, seeds.size)
    src, dst, eid = sample_layer_temporal(indptr, indices, None, seeds, seed_time, None, fanout,
                                          False, True, 5, edge_time=edge_time)
    assert np.array_equal(src, indices[eid])
    for i, v in enumerate(seeds):
        elig = [p for p in range(indptr[v], indptr[v + 1]) if edge_time[p] <= seed_time[i]]
        # most recent by time, the later CSC position first among equal times
        want = sorted(elig, key=lambda p: (edge_time[p], p))[-fanout:]
        assert sorted(eid[dst == i].tolist()) == sorted(want)


@pytest.mark.parametrize("by_edge", [False, True])
def test_last_with_replacement_draws_from_the_most_recent_window(by_edge):
    """pyg-lib's ``last`` with ``replace``: ``fanout`` draws with replacement from the window of
    the ``fanout`` most recent eligible in-edges (node-level and edge-level alike)."""
    indptr, indices, _ = random_csc(seed=5)
    rng = np.random.default_rng(6)
    fanout = 4
    seeds = np.unique(rng.integers(0, 300, 80)).astype(np.int64)
    seed_time = rng.integers(0, 50, seeds.size)
    if by_edge:
        edge_time = rng.integers(0, 50, indices.size)
        node_time = None
        time_of = edge_time
    else:
        node_time = rng.integers(0, 50, 300)
        edge_time = None
        time_of = node_time[indices]
    src, dst, eid = sample_layer_temporal(indptr, indices, None, seeds, seed_time, node_time,
                                          fanout, True, True, 21, edge_time=edge_time)
    repeated = False
    for i, v in enumerate(seeds):
        elig = [p for p in range(indptr[v], indptr[v + 1]) if time_of[p] <= seed_time[i]]
        window = sorted(elig, key=lambda p: (time_of[p], p))[-fanout:]
        got = eid[dst == i].tolist()
        want = [window[draw_py(21, int(v), t) % len(window)] for t in range(fanout)] if elig else []
        assert got == want
        repeated |= len(set(got)) < len(got)
    assert repeated   # with replacement, some window is drawn twice somewhere


def test_kernel_bad_inputs():
    indptr, indices, _ = random_csc(n=20, e=100)
    seeds = np.arange(5, dtype=np.int64)
    st = np.zeros(5, np.int64)
    with pytest.raises(ValueError, match="not both"):
        sample_layer_temporal(indptr, indices, None, seeds, st, np.zeros(20, np.int64), 2, False,
                              False, 0, edge_time=np.zeros(100, np.int64))
    with pytest.raises(ValueError, match="one entry per edge"):
        sample_layer_temporal(indptr, indices, None, seeds, st, None, 2, False, False, 0,
                              edge_time=np.zeros(99, np.int64))


# PyG's own two edge-time loader tests run in test_pyg_port_neighbor.py (import swapped).


# ------------------------------------------------------------------------------ loaders vs oracle
def in_edges(edge_index, num_nodes):
    """``{node: [edge ids into it]}`` in edge-id order."""
    out = defaultdict(list)
    for e, v in enumerate(edge_index[1].tolist()):
        out[v].append(e)
    return out


def oracle_tree(edge_index, edge_time, into, seed, limit, hops, fanout=-1, last=False):
    """PyG's disjoint tree of ``seed`` with every fanout -1 (or ``last`` with ``fanout``): the
    edge ids and nodes it holds, hop by hop from the nodes the previous hop added."""
    nodes, frontier, edges = {seed}, [seed], []
    src = edge_index[0].tolist()
    for _ in range(hops):
        new = []
        for v in frontier:
            elig = [e for e in into[v] if edge_time[e] <= limit]
            if last and fanout >= 0:
                elig = sorted(elig, key=lambda e: (edge_time[e], e))[-fanout:]
            for e in elig:
                edges.append(e)
                if src[e] not in nodes:
                    nodes.add(src[e])
                    new.append(src[e])
        frontier = new
    return sorted(edges), nodes


@pytest.fixture
def graph():
    g = torch.Generator().manual_seed(0)
    n, e = 120, 900
    return Data(x=torch.randn(n, 3, generator=g),
                edge_index=torch.randint(0, n, (2, e), generator=g),
                t=torch.randint(0, 50, (e,), generator=g), num_nodes=n)


def trees(batch):
    """``{tree: sorted global edge ids}`` of a disjoint batch (an edge is its destination's)."""
    out = defaultdict(list)
    for tree, e in zip(batch.batch[batch.edge_index[1]].tolist(), batch.e_id.tolist()):
        out[tree].append(e)
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("strategy", ["uniform", "last"])
def test_all_neighbours_are_exactly_the_oracle(graph, strategy):
    into = in_edges(graph.edge_index, graph.num_nodes)
    g = torch.Generator().manual_seed(1)
    input_time = torch.randint(0, 50, (graph.num_nodes,), generator=g)
    loader = NeighborLoader(graph, [-1, -1], time_attr="t", input_time=input_time,
                            temporal_strategy=strategy, batch_size=16, seed=0)
    t = graph.t.tolist()
    seen = 0
    for b in loader:
        assert torch.equal(b.seed_time, input_time[b.input_id])
        assert torch.equal(b.t, graph.t[b.e_id])                      # edge attributes sliced
        assert torch.equal(b.n_id[b.edge_index], graph.edge_index[:, b.e_id])
        assert torch.equal(b.batch[b.edge_index[0]], b.batch[b.edge_index[1]])
        got = trees(b)
        for i in range(b.batch_size):
            seed, limit = int(b.n_id[i]), int(b.seed_time[i])
            want_e, want_n = oracle_tree(graph.edge_index, t, into, seed, limit, 2)
            assert got.get(i, []) == want_e
            assert set(b.n_id[b.batch == i].tolist()) == want_n
            seen += 1
    assert seen == graph.num_nodes


def test_last_strategy_is_the_oracle(graph):
    into = in_edges(graph.edge_index, graph.num_nodes)
    input_time = torch.full((graph.num_nodes,), 30)
    loader = NeighborLoader(graph, [2, 2], time_attr="t", input_time=input_time,
                            temporal_strategy="last", batch_size=20, seed=3)
    t = graph.t.tolist()
    for b in loader:
        got = trees(b)
        for i in range(b.batch_size):
            want_e, _ = oracle_tree(graph.edge_index, t, into, int(b.n_id[i]), 30, 2, 2, True)
            assert got.get(i, []) == want_e


@pytest.mark.parametrize("replace", [False, True])
def test_uniform_fanout_draws_only_eligible_edges(graph, replace):
    into = in_edges(graph.edge_index, graph.num_nodes)
    g = torch.Generator().manual_seed(2)
    input_time = torch.randint(10, 50, (graph.num_nodes,), generator=g)
    loader = NeighborLoader(graph, [3, 2], time_attr="t", input_time=input_time, replace=replace,
                            batch_size=32, shuffle=True, seed=5)
    fan = [3, 2]
    for b in loader:
        limit = b.seed_time[b.batch[b.edge_index[1]]]
        assert bool((b.t <= limit).all())
        # each (tree, node) draws min(fanout, eligible) in-edges (fanout with replacement) at the
        # hop it was added, all eligible
        hop_of = torch.repeat_interleave(torch.arange(3), torch.tensor(b.num_sampled_nodes))
        dst_local, counts = torch.unique(b.edge_index[1], return_counts=True)
        per = dict(zip(dst_local.tolist(), counts.tolist()))
        for j in range(b.n_id.numel()):
            hop = int(hop_of[j])
            if hop >= 2:
                continue
            v, tree = int(b.n_id[j]), int(b.batch[j])
            elig = [e for e in into[v] if graph.t[e] <= b.seed_time[tree]]
            want = (fan[hop] if elig else 0) if replace else min(fan[hop], len(elig))
            assert per.get(j, 0) == want
            mine = b.e_id[b.edge_index[1] == j].tolist()
            assert set(mine) <= set(elig)
            if not replace:
                assert len(set(mine)) == len(mine)


def test_same_seed_same_batches(graph):
    kw = dict(time_attr="t", input_time=torch.full((graph.num_nodes,), 25), batch_size=30,
              shuffle=True, seed=9)
    a = [(b.n_id, b.e_id) for b in NeighborLoader(graph, [3, 2], **kw)]
    b = [(b.n_id, b.e_id) for b in NeighborLoader(graph, [3, 2], **kw)]
    assert len(a) == 4
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_float_edge_times():
    ei = torch.tensor([[1, 2, 3], [0, 0, 0]])
    data = Data(edge_index=ei, t=torch.tensor([0.5, 1.5, 2.5]), num_nodes=4)
    b = next(iter(NeighborLoader(data, [-1], time_attr="t", input_nodes=torch.tensor([0]),
                                 input_time=torch.tensor([1.5]))))
    assert sorted(b.e_id.tolist()) == [0, 1]
    # integer seed times against float edge times are fine (converted exactly)
    b = next(iter(NeighborLoader(data, [-1], time_attr="t", input_nodes=torch.tensor([0]),
                                 input_time=torch.tensor([2]))))
    assert sorted(b.e_id.tolist()) == [0, 1]


def test_hetero_types_without_edge_times_are_unlimited():
    h = HeteroData()
    h["u"].x = torch.arange(20)
    h["i"].x = torch.arange(30)
    g = torch.Generator().manual_seed(4)
    ui = torch.stack([torch.randint(0, 20, (200,), generator=g),
                      torch.randint(0, 30, (200,), generator=g)])
    h["u", "buys", "i"].edge_index = ui
    h["u", "buys", "i"].t = torch.randint(0, 20, (200,), generator=g)
    h["i", "rev", "u"].edge_index = ui.flip(0)                      # no times: always eligible
    loader = NeighborLoader(h, [-1, -1], input_nodes="i", time_attr="t",
                            input_time=torch.full((30,), 10), batch_size=6)
    rev_in = in_edges(ui.flip(0), 20)
    buys_in = in_edges(ui, 30)
    for b in loader:
        bu = b["u", "buys", "i"]
        assert bool((bu.t <= 10).all())
        assert "t" not in b["i", "rev", "u"]
        # hop 1 (the only hop with buys edges: no item is added at hop 1): every eligible buys
        # in-edge of each seed item, exactly
        seeds = b["i"].n_id[:b["i"].batch_size].tolist()
        want = sorted(e for s in seeds for e in buys_in[s] if h["u", "buys", "i"].t[e] <= 10)
        assert sorted(bu.e_id.tolist()) == want
        # hop 2: each user added at hop 1 brings all its rev in-edges (no time limit)
        users = b["u"].n_id.tolist()
        want_rev = sorted(e for u in users for e in rev_in[u])
        assert sorted(b["i", "rev", "u"].e_id.tolist()) == want_rev


def test_link_loader_trees_respect_pair_times(graph):
    g = torch.Generator().manual_seed(6)
    label_time = torch.randint(0, 50, (graph.num_edges,), generator=g)
    for ns in (None, "binary", dict(mode="triplet", amount=2)):
        loader = LinkNeighborLoader(graph, [-1, 2], time_attr="t", edge_label_time=label_time,
                                    neg_sampling=ns, batch_size=40, shuffle=True, seed=1)
        n = 0
        for b in loader:
            pair_time = label_time[b.input_id]
            k = b.input_id.numel()
            if ns is None or isinstance(ns, str):
                assert torch.equal(b.edge_label_time[:k], pair_time)
            else:
                assert torch.equal(b.seed_time, pair_time)
            # batch = tree % num_pos names the positive pair; its time bounds every edge
            limit = pair_time[b.batch[b.edge_index[1]]]
            assert bool((b.t <= limit).all())
            assert torch.equal(b.n_id[b.edge_index], graph.edge_index[:, b.e_id])
            n += k
        assert n == graph.num_edges


def test_link_loader_hetero_edge_times():
    h = HeteroData()
    h["a"].num_nodes = 40
    h["b"].num_nodes = 30
    g = torch.Generator().manual_seed(8)
    ab = torch.stack([torch.randint(0, 40, (300,), generator=g),
                      torch.randint(0, 30, (300,), generator=g)])
    h["a", "to", "b"].edge_index = ab
    h["a", "to", "b"].t = torch.randint(0, 100, (300,), generator=g)
    h["b", "rev", "a"].edge_index = ab.flip(0)
    h["b", "rev", "a"].t = h["a", "to", "b"].t.clone()
    label_time = torch.randint(0, 100, (300,), generator=g)
    loader = LinkNeighborLoader(h, [-1, -1], edge_label_index=("a", "to", "b"),
                                edge_label_time=label_time, time_attr="t",
                                neg_sampling="binary", batch_size=25, seed=2)
    for b in loader:
        num_pos = b["a", "to", "b"].input_id.numel()
        pair_time = label_time[b["a", "to", "b"].input_id]
        for et, d in ((("a", "to", "b"), "b"), (("b", "rev", "a"), "a")):
            st = b[et]
            limit = pair_time[b[d].batch[st.edge_index[1]] % num_pos]
            assert bool((st.t <= limit).all())
            assert torch.equal(st.t, h[et].t[st.e_id])


# ------------------------------------------------------------------------------ errors
def test_edge_time_errors(graph):
    with pytest.raises(ValueError, match="needs input_time"):
        NeighborLoader(graph, [2], time_attr="t")
    with pytest.raises(ValueError, match="did not find any temporal data"):
        NeighborLoader(graph, [2], time_attr="nope", input_time=torch.zeros(120))
    with pytest.raises(TypeError, match="integers"):
        NeighborLoader(graph, [2], time_attr="t", input_time=torch.zeros(120) + 0.5)
    with pytest.raises(ValueError, match="one entry per seed"):
        NeighborLoader(graph, [2], time_attr="t", input_time=torch.zeros(7))
    with pytest.raises(ValueError, match="induced"):
        NeighborLoader(graph, [2], time_attr="t", input_time=torch.zeros(120),
                       subgraph_type="induced")
    with pytest.raises(ValueError, match="use_uva=True"):
        NeighborLoader(graph, [2], time_attr="t", input_time=torch.zeros(120), use_uva=True)
    w = Data(edge_index=graph.edge_index, t=graph.t, w=torch.ones(graph.num_edges),
             num_nodes=graph.num_nodes)
    with pytest.raises(NotImplementedError, match="weighted temporal"):
        NeighborLoader(w, [2], time_attr="t", weight_attr="w", input_time=torch.zeros(120))
    with pytest.raises(ValueError, match="'edge_label_time' is not set"):
        LinkNeighborLoader(graph, [2], time_attr="t")

    h = HeteroData()
    h["a"].num_nodes = 5
    h["a"].t = torch.arange(5)
    h["a", "to", "a"].edge_index = torch.tensor([[0, 1], [1, 2]])
    h["a", "to", "a"].t = torch.arange(2)
    with pytest.raises(ValueError, match="both node-level and edge-level"):
        NeighborLoader(h, [2], input_nodes="a", time_attr="t", input_time=torch.zeros(5))
    del h["a"].t
    h["a", "to", "a"].t = torch.arange(3)
    with pytest.raises(ValueError, match="one time per edge"):
        NeighborLoader(h, [2], input_nodes="a", time_attr="t", input_time=torch.zeros(5))
    h["a", "to", "a"].t = torch.tensor([True, False])
    with pytest.raises(TypeError, match="numbers"):
        NeighborLoader(h, [2], input_nodes="a", time_attr="t", input_time=torch.zeros(5))


@pytest.mark.gpu
def test_edge_temporal_batches_on_the_gpu_equal_the_cpu(graph):
    kw = dict(time_attr="t", input_time=torch.full((graph.num_nodes,), 20), batch_size=32, seed=3)
    for c, g in zip(NeighborLoader(graph, [3, 2], **kw),
                    NeighborLoader(graph, [3, 2], device="cuda", **kw)):
        assert g.x.is_cuda and torch.equal(c.n_id, g.n_id.cpu())
        assert torch.equal(c.edge_index, g.edge_index.cpu()) and torch.equal(c.t, g.t.cpu())
    with pytest.raises(NotImplementedError, match="CPU sampler"):
        NeighborLoader(graph.cuda(), [2], **kw)
