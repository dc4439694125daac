"""Tests for samplers.reorder: the renumbered graph is isomorphic (edges and edge ids), node tables
and id lists follow the permutation, full-neighbourhood sampling of mapped seeds gives the mapped
neighbourhoods, the locality order groups communities, and bad inputs raise clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import samplers
from samplers import CSCGraph, NeighborSampler, Reordering, reorder
from samplers.datasets import papers_like, papers_like_communities


def _edges(g: CSCGraph):
    """{(src, dst, eid)} of a graph."""
    ip = g.indptr.long()
    dst = torch.repeat_interleave(torch.arange(g.num_nodes), ip[1:] - ip[:-1])
    eid = torch.arange(g.num_edges) if g.edge_ids is None else g.edge_ids.long()
    return set(zip(g.indices.long().tolist(), dst.tolist(), eid.tolist()))


def _random_graph(n=300, e=2000, idtype=torch.int64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=gen).to(idtype)
    return CSCGraph.from_edge_index(ei, num_nodes=n)


@pytest.fixture(scope="module")
def papers():
    ds = papers_like(6000, feat_dim=8)
    return ds, CSCGraph.from_csc(ds.indptr, ds.indices)


def test_exports():
    assert samplers.reorder is reorder and samplers.graph.reorder is reorder
    assert "reorder" in samplers.__all__ and "Reordering" in samplers.graph.__all__


@pytest.mark.parametrize("order", ["community", "degree", "perm"])
@pytest.mark.parametrize("idtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("with_eids", [False, True])
def test_isomorphic_with_edge_ids(order, idtype, with_eids):
    g = _random_graph(idtype=idtype)
    if not with_eids:   # CSC position as edge id
        g = CSCGraph(g.indptr, g.indices)
    if order == "perm":
        order = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(1))
    r = reorder(g, order=order)
    assert isinstance(r, Reordering) and r.graph.idtype == idtype
    assert r.graph.indptr.dtype == g.indptr.dtype and r.graph.edge_ids.dtype == idtype
    new = r.new_of_old
    assert torch.equal(torch.sort(new).values, torch.arange(g.num_nodes))
    assert torch.equal(new[r.old_of_new], torch.arange(g.num_nodes))
    mapped = {(int(new[u]), int(new[v]), e) for u, v, e in _edges(g)}
    assert mapped == _edges(r.graph)
    # in-neighbour lists keep their order
    v = int(torch.argmax(g.in_degrees()))
    a, b = int(g.indptr[v]), int(g.indptr[v + 1])
    nv = int(new[v])
    c, d = int(r.graph.indptr[nv]), int(r.graph.indptr[nv + 1])
    assert torch.equal(new[g.indices[a:b].long()], r.graph.indices[c:d].long())


def test_tables_and_ids_follow():
    g = _random_graph()
    n = g.num_nodes
    feats = torch.randn(n, 5, dtype=torch.float16)
    labels = torch.randint(0, 7, (n,))
    mask = torch.rand(n) < 0.3
    np_tab = np.arange(n * 3, dtype=np.int16).reshape(n, 3)
    seeds = torch.tensor([3, 1, 4, 1, 5], dtype=torch.int32)
    r = reorder(g, feats, labels, mask, np_tab, order="degree",
                ids={"train": seeds, "val": np.array([0, 9])})
    f2, l2, m2, t2 = r.tables
    new = r.new_of_old
    assert f2.dtype == torch.float16 and m2.dtype == torch.bool and isinstance(t2, np.ndarray)
    assert torch.equal(f2[new], feats) and torch.equal(l2[new], labels)
    assert torch.equal(m2[new], mask) and np.array_equal(t2[new.numpy()], np_tab)
    assert r.ids["train"].dtype == torch.int32 and torch.equal(r.ids["train"].long(), new[seeds.long()])
    assert np.array_equal(r.ids["val"], new.numpy()[[0, 9]])
    assert torch.equal(r.to_old(r.to_new(seeds)), seeds)
    assert torch.equal(r.permute_rows(labels), l2)
    # degree order: hotness (out-degree) non-increasing in the new ids
    assert bool((r.graph.out_degrees()[1:] <= r.graph.out_degrees()[:-1]).all())


@pytest.mark.parametrize("order", ["community", "degree"])
def test_full_neighbourhood_sampling_maps_back(papers, order):
    ds, g = papers
    r = reorder(g, ds.features, order=order)
    seeds = ds.train_idx[:40]
    sampler = NeighborSampler([-1, -1])
    inp, out, blocks = sampler.sample(g, seeds)
    inp2, out2, blocks2 = sampler.sample(r.graph, r.to_new(seeds))
    assert torch.equal(r.to_old(out2).long(), out.long())
    assert set(r.to_old(inp2).tolist()) == set(inp.tolist())
    # every block's edge set, mapped back, is the original's (edge ids preserved)
    for b, b2 in zip(blocks, blocks2):
        def edges(blk, to_old=None):
            src = blk.srcdata["_ID"][blk.edge_index[0]].long()
            dst = blk.dstdata["_ID"][blk.edge_index[1]].long()
            if to_old is not None:
                src, dst = to_old(src), to_old(dst)
            return set(zip(src.tolist(), dst.tolist(), blk.edata["_ID"].long().tolist()))
        assert edges(b2, r.to_old) == edges(b)
    # features gathered with new ids are the user's rows
    assert torch.equal(r.tables[0][inp2.long()], ds.features[r.to_old(inp2).long()])


def test_community_order_groups_communities(papers):
    ds, g = papers
    comm = papers_like_communities(ds.num_nodes)["community"]
    r = reorder(g, order="community", hot_fraction=0.0)
    c_new = comm[r.old_of_new.numpy()]
    # neighbouring new ids mostly share a community (random ids: ~0.5 %)
    assert np.mean(c_new[1:] == c_new[:-1]) > 0.3
    # deterministic
    assert torch.equal(reorder(g, order="community", hot_fraction=0.0).old_of_new, r.old_of_new)


def test_hot_prefix(papers):
    ds, g = papers
    hot = torch.zeros(ds.num_nodes)
    hot[[5, 17, 4000]] = torch.tensor([3.0, 2.0, 1.0])
    r = reorder(g, order="community", hotness=hot, hot_fraction=3 / ds.num_nodes)
    assert r.old_of_new[:3].tolist() == [5, 17, 4000]


def test_empty_and_tiny_graphs():
    g = CSCGraph(torch.zeros(1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    for order in ("community", "degree"):
        r = reorder(g, torch.zeros(0, 3), order=order)
        assert r.graph.num_nodes == 0 and r.tables[0].shape == (0, 3)
    g = CSCGraph.from_edge_index(torch.tensor([[0], [1]]), num_nodes=3)
    r = reorder(g, order="community")
    assert _edges(r.graph) == {(int(r.new_of_old[0]), int(r.new_of_old[1]), 0)}


def test_bad_inputs():
    g = _random_graph(n=10, e=20)
    with pytest.raises(TypeError, match="graph must be a samplers.CSCGraph"):
        reorder(torch.zeros(3))
    with pytest.raises(ValueError, match=r"tables\[1\] must have one row per node \(10\)"):
        reorder(g, torch.zeros(10), torch.zeros(9, 2))
    with pytest.raises(TypeError, match=r"tables\[0\]"):
        reorder(g, [0] * 10)
    with pytest.raises(ValueError, match="order must be one of"):
        reorder(g, order="metis")
    with pytest.raises(ValueError, match="permutation"):
        reorder(g, order=torch.zeros(10, dtype=torch.int64))
    with pytest.raises(ValueError, match="permutation"):
        reorder(g, order=torch.arange(9))
    with pytest.raises(TypeError, match="order must be"):
        reorder(g, order=3)
    with pytest.raises(ValueError, match="hotness must have shape"):
        reorder(g, hotness=torch.ones(3))
    with pytest.raises(ValueError, match="hot_fraction"):
        reorder(g, hot_fraction=1.5)
    with pytest.raises(ValueError, match="cluster_size"):
        reorder(g, cluster_size=0)
    with pytest.raises(IndexError, match=r"ids\[0\] must hold node ids in \[0, 10\)"):
        reorder(g, ids=[torch.tensor([10])])
    with pytest.raises(TypeError, match="integer node ids"):
        reorder(g, ids=torch.tensor([1.0]))
    r = reorder(g, order="degree")
    with pytest.raises(IndexError, match="ids must hold node ids"):
        r.to_old(torch.tensor([-1]))
    with pytest.raises(ValueError, match="one row per node"):
        r.permute_rows(torch.zeros(3))


def test_compressed_table_is_refused_with_the_way_out():
    """A compressed table's rows cannot be moved: the error says to reorder first, then compress."""
    import unified_tensor as ut

    g = CSCGraph.from_edge_index(torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]]))
    x = torch.randn(4, 8)
    packed = ut.compress(x, "bf16")
    with pytest.raises(TypeError, match=r"tables\[1\] is a compressed table \(bf16\).*reorder the "
                                        r"float table first"):
        reorder(g, x, packed, order="degree")
    r = reorder(g, x, order="degree")   # the way out the message gives
    again = ut.compress(r.tables[0], "bf16")
    torch.testing.assert_close(again[torch.arange(4)], x[r.old_of_new].bfloat16().float())
