"""Link prediction's excluded edges are removed before the neighbour draws (DGL's
``sample_neighbors(exclude_edges=...)``): a node draws its fanout from the in-edges it keeps.
The CPU kernel against a plain-Python reference; EdgePredictionSampler end to end (homogeneous
``"self"`` / ``"reverse_id"``, heterogeneous ``"reverse_types"``, callables); the GPU kernel under
`gpu` (same draws as the CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samplers import CSCGraph, EdgePredictionSampler, HeteroCSCGraph, NeighborSampler
from samplers.sampling._layer_cpu import sample_layer
from testing import ref_sample_layer


def random_csc(n, e, seed, idtype):
    g = np.random.default_rng(seed)
    dst = np.sort(g.integers(0, n, e))
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, dst + 1, 1)
    indptr = np.cumsum(indptr).astype(idtype)
    indices = g.integers(0, n, e).astype(idtype)
    eids = g.permutation(e).astype(idtype)
    return indptr, indices, eids


@pytest.mark.parametrize("idtype", [np.int32, np.int64])
@pytest.mark.parametrize("fanout", [-1, 1, 3, 8])
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("with_eids", [False, True])
@pytest.mark.parametrize("relabel", [False, True])
def test_cpu_kernel_matches_reference(idtype, fanout, replace, with_eids, relabel):
    indptr, indices, eids = random_csc(300, 3000, 1, idtype)
    eids = eids if with_eids else None
    rng = np.random.default_rng(2)
    excl = np.unique(rng.integers(0, 3000, 900)).astype(np.int64)       # ~30% of the edges
    hub = int(np.argmax(np.diff(indptr)))
    excl = np.union1d(excl, np.arange(indptr[hub], indptr[hub + 1]))     # all of one node's
    seeds = np.unique(rng.integers(0, 300, 120)).astype(idtype)
    seeds = np.concatenate([seeds[seeds != hub], np.array([hub], idtype)])
    key = 0xABCDEF12345
    scratch = np.full(300, -1, np.int32) if relabel else None
    nodes, ei, got_eid, dup = sample_layer(indptr, indices, eids, seeds, fanout, replace, key,
                                           scratch, relabel=relabel, excl=excl)
    src, dst, eid = ref_sample_layer(indptr, indices, eids, seeds, fanout, replace, key, excl)
    assert dup == -1
    assert ei[1].tolist() == dst and got_eid.tolist() == eid
    got_src = nodes[ei[0]].tolist() if relabel else ei[0].tolist()
    assert got_src == src
    pos = set(excl.tolist())
    if with_eids:   # no excluded edge drawn (positions: eid -> position)
        inv = np.empty(3000, np.int64)
        inv[eids.astype(np.int64)] = np.arange(3000)
        assert not pos & set(inv[got_eid].tolist())
    else:
        assert not pos & set(got_eid.tolist())
    assert hub not in {int(seeds[i]) for i in ei[1].tolist()}


def test_empty_exclusion_is_the_plain_sampler():
    indptr, indices, eids = random_csc(100, 800, 3, np.int64)
    seeds = np.arange(0, 100, 3, dtype=np.int64)
    a = sample_layer(indptr, indices, eids, seeds, 4, False, 7, None, relabel=False)
    b = sample_layer(indptr, indices, eids, seeds, 4, False, 7, None, relabel=False,
                     excl=np.empty(0, np.int64))
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


# ------------------------------------------------------------------ EdgePredictionSampler
def _star_graph():
    # Node 0's in-edges come from 1..6 (eids 0..5); their reverses 0->k are eids 6..11.
    src = torch.tensor([1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0])
    dst = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6])
    rev = torch.tensor([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5])
    return CSCGraph.from_edge_index(torch.stack([src, dst]), 7), rev


@pytest.mark.parametrize("exclude", ["self", "reverse_id", "callable"])
def test_node_draws_full_fanout_from_kept_edges(exclude):
    g, rev = _star_graph()
    ex = (lambda e: torch.cat([e, rev[e]])) if exclude == "callable" else exclude
    s = EdgePredictionSampler(NeighborSampler([5], seed=0), exclude=ex,
                              reverse_eids=rev if exclude == "reverse_id" else None)
    seeds = torch.tensor([0, 1])   # 1->0 and 2->0
    gone = {0, 1} | ({6, 7} if exclude != "self" else set())
    for b in range(30):
        _, _, blocks = s.sample_distinct(g, seeds, batch=b)
        blk = blocks[-1]
        eid = blk.edata["_ID"]
        dst = blk.dstdata["_ID"][blk.edge_index[1]]
        assert not gone & set(eid.tolist())
        # node 0 keeps 4 in-edges (6 - 2 seed edges) and draws all 4 (fanout 5 >= 4); after-draw
        # removal would have left it with fewer in some batches.
        assert sorted(eid[dst == 0].tolist()) == [2, 3, 4, 5]
        if exclude != "self":   # node 1's only in-edge (0->1, eid 6) is the reverse of a seed
            assert int((dst == 1).sum()) == 0


def test_fanout_below_kept_degree_draws_exactly_fanout():
    g, rev = _star_graph()
    s = EdgePredictionSampler(NeighborSampler([3], seed=1), exclude="self")
    seen = set()
    for b in range(40):
        _, _, blocks = s.sample_distinct(g, torch.tensor([0]), batch=b)
        blk = blocks[-1]
        dst = blk.dstdata["_ID"][blk.edge_index[1]]
        e0 = blk.edata["_ID"][dst == 0].tolist()
        assert len(e0) == 3 and 0 not in e0 and len(set(e0)) == 3
        seen.update(e0)
    assert seen == {1, 2, 3, 4, 5}   # every kept edge can be drawn


def test_hetero_reverse_types_excluded_before_draws():
    W, R = ("author", "writes", "paper"), ("paper", "rev_writes", "author")
    w = torch.tensor([[0, 1, 2, 3, 0, 1], [0, 0, 0, 0, 1, 1]])
    g = HeteroCSCGraph.from_edge_index_dict({W: w, R: w.flip(0)}, {"author": 4, "paper": 2})
    s = EdgePredictionSampler(NeighborSampler([{W: 2, R: 2}], seed=0), exclude="reverse_types",
                              reverse_etypes={W: R, R: W})
    for b in range(20):
        _, _, blocks = s.sample_distinct(g, {W: torch.tensor([0, 1])}, batch=b)
        blk = blocks[-1]
        assert not {0, 1} & set(blk.edata["_ID"][W].tolist())
        assert not {0, 1} & set(blk.edata["_ID"][R].tolist())
        dst = blk.dstdata["_ID"]["paper"][blk.edge_index[W][1]]
        # paper 0's writes edges are eids 0..3; the seeds 0 and 1 go, so fanout 2 takes exactly
        # the kept 2 and 3 in every batch (after-draw removal would often leave fewer).
        assert sorted(blk.edata["_ID"][W][dst == 0].tolist()) == [2, 3]


def test_excluded_ids_out_of_range_raise():
    g, _ = _star_graph()
    s = EdgePredictionSampler(NeighborSampler([2], seed=0), exclude=lambda e: e + 100)
    with pytest.raises(IndexError, match="excluded edge id"):
        s.sample(g, torch.tensor([0]))


@pytest.mark.gpu
@pytest.mark.parametrize("replace", [False, True])
def test_gpu_exclusion_matches_cpu(replace):
    g, rev = _star_graph()
    big = CSCGraph.from_edge_index(torch.randint(0, 500, (2, 6000), generator=torch.Generator().manual_seed(0)), 500)
    for graph in (g, big):
        s = EdgePredictionSampler(NeighborSampler([4, 3], replace=replace, seed=3), exclude="self")
        seeds = torch.arange(0, min(graph.num_edges, 200), 2)
        _, _, cpu_blocks = s.sample_distinct(graph, seeds, batch=5)
        _, _, gpu_blocks = s.sample_distinct(graph.pin(), seeds.cuda(), batch=5)
        for a, b in zip(cpu_blocks, gpu_blocks):
            assert torch.equal(a.edge_index, b.edge_index.cpu())
            assert torch.equal(a.edata["_ID"].long(), b.edata["_ID"].long().cpu())


# ------------------------------------------------------------------ unhappy paths
def test_callable_exclusions_must_be_integer_edge_ids():
    g, _ = _star_graph()
    for bad, err, match in ((lambda e: e.float(), TypeError, "integer edge ids, got dtype torch.float32"),
                            (lambda e: "x", TypeError, "must return edge ids"),
                            (lambda e: e > 0, TypeError, "torch.bool")):
        s = EdgePredictionSampler(NeighborSampler([2], seed=0), exclude=bad)
        with pytest.raises(err, match=match):
            s.sample(g, torch.tensor([0, 1]))


def test_reverse_eids_must_cover_every_edge():
    g, rev = _star_graph()
    s = EdgePredictionSampler(NeighborSampler([2], seed=0), exclude="reverse_id",
                              reverse_eids=rev[:5])
    with pytest.raises(ValueError, match="reverse_eids has 5 entries but the graph has 12 edges"):
        s.sample(g, torch.tensor([0]))


@pytest.mark.parametrize("neg, err, match", [
    (lambda src, n, key: (src, src + 100), IndexError, "returned destination node 10[0-9], outside"),
    (lambda src, n, key: (src - 5, src), IndexError, "returned source node -[0-9], outside"),
    (lambda src, n, key: (src, src.float()), TypeError, "destination ids of dtype torch.float32"),
    (lambda src, n, key: [src, src], TypeError, "tuple \\(src, dst\\)"),
    (lambda src, n, key: (src, src[:1]), ValueError, "sources and"),
])
def test_custom_negative_samplers_are_checked(neg, err, match):
    g, _ = _star_graph()
    s = EdgePredictionSampler(NeighborSampler([2], seed=0), negative_sampler=neg)
    with pytest.raises(err, match=match):
        s.sample(g, torch.tensor([0, 1]))


def test_hetero_num_nodes_checked_first():
    W = ("author", "writes", "paper")
    with pytest.raises(ValueError, match=r"num_nodes\['author'\] must be an int >= 0, got -1"):
        HeteroCSCGraph.from_edge_index_dict({W: torch.tensor([[0], [0]])}, {"author": -1, "paper": 1})
    with pytest.raises(TypeError, match="num_nodes must be a dict"):
        HeteroCSCGraph.from_edge_index_dict({W: torch.tensor([[0], [0]])}, [1, 1])
