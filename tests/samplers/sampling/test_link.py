"""Native link prediction: EdgePredictionSampler (edge seeds, negatives, DGL's exclusion modes),
PairGraph, and the DataLoader over edge ids (CPU; the node sampling inside runs on the GPU too)."""
from __future__ import annotations

import pytest
import torch

from samplers import (CSCGraph, DataLoader, EdgePredictionSampler, HeteroCSCGraph, NeighborSampler,
                      UniformNegativeSampler)

W, C, R = ("author", "writes", "paper"), ("paper", "cites", "paper"), ("paper", "rev_writes", "author")


@pytest.fixture(scope="module")
def homog():
    g0 = torch.Generator().manual_seed(0)
    src, dst = torch.randint(0, 50, (200,), generator=g0), torch.randint(0, 50, (200,), generator=g0)
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)   # e and e + 200 reverse
    rev = torch.cat([torch.arange(200, 400), torch.arange(0, 200)])
    return ei, CSCGraph.from_edge_index(ei, 50), rev


@pytest.fixture(scope="module")
def hetero():
    g0 = torch.Generator().manual_seed(1)
    w = torch.stack([torch.randint(0, 40, (300,), generator=g0), torch.randint(0, 60, (300,), generator=g0)])
    e = {W: w, C: torch.randint(0, 60, (2, 400), generator=g0), R: w.flip(0)}
    return e, HeteroCSCGraph.from_edge_index_dict(e, {"author": 40, "paper": 60})


def _all_eids(blocks, et=None):
    return torch.cat([b.edata["_ID"] if et is None else b.edata["_ID"].get(et, torch.empty(0, dtype=torch.long))
                      for b in blocks])


@pytest.mark.parametrize("exclude", [None, "self", "reverse_id", "callable"])
def test_homogeneous_batches(homog, exclude):
    ei, g, rev = homog
    kw = {"reverse_eids": rev} if exclude == "reverse_id" else {}
    ex = (lambda e: e + 0) if exclude == "callable" else exclude
    s = EdgePredictionSampler(NeighborSampler([3, 3], seed=0), exclude=ex, negative_sampler=2, **kw)
    feats = torch.randn(50, 4)
    dl = DataLoader(g, torch.arange(400), s, batch_size=64, shuffle=True, seed=0, features=feats)
    seen = []
    for inp, pair, neg, blocks in dl:
        u, v = pair.edges()
        ids, eids = pair.ndata["_ID"], pair.edata["_ID"]
        assert torch.equal(ids[u].long(), ei[0, eids]) and torch.equal(ids[v].long(), ei[1, eids])
        nu, nv = neg.edges()
        assert neg.num_edges() == 2 * pair.num_edges()
        assert torch.equal(ids[nu], ids[u].repeat_interleave(2))          # same sources
        assert ids.unique().numel() == ids.numel()
        assert torch.equal(blocks[-1].dstdata["_ID"], ids)                 # pair nodes are seeds
        assert torch.equal(blocks[0].srcdata["feat"], feats[inp.long()])
        sampled = _all_eids(blocks)
        if exclude is None:
            pass
        elif exclude == "reverse_id":
            assert not torch.isin(sampled, torch.cat([eids, rev[eids]])).any()
        else:
            assert not torch.isin(sampled, eids).any()
        seen.append(eids)
    assert sorted(torch.cat(seen).tolist()) == list(range(400))           # every seed edge once


def test_exclusion_really_removes_edges_that_would_be_sampled(homog):
    ei, g, rev = homog
    seeds = torch.arange(0, 400, 7)
    full = EdgePredictionSampler(NeighborSampler([-1], seed=0)).sample(g, seeds)
    kept = EdgePredictionSampler(NeighborSampler([-1], seed=0), exclude="self").sample(g, seeds)
    a, b = set(full[-1][0].edata["_ID"].tolist()), set(kept[-1][0].edata["_ID"].tolist())
    assert a - b == set(seeds.tolist()) and b <= a                         # exactly the seeds go
    assert len(full) == 3                                                   # no negatives: 3-tuple


def test_heterogeneous_reverse_types(hetero):
    e, g = hetero
    s = EdgePredictionSampler(NeighborSampler([2, 2], seed=1), exclude="reverse_types",
                              reverse_etypes={"writes": "rev_writes", "rev_writes": "writes"},
                              negative_sampler=UniformNegativeSampler(1))
    seen = []
    for inp, pair, neg, blocks in DataLoader(g, {"writes": torch.arange(300)}, s, batch_size=50):
        eids = pair.edata["_ID"][W]
        u, v = pair.edges(etype="writes")
        assert torch.equal(pair.ndata["_ID"]["author"][u].long(), e[W][0, eids])
        assert torch.equal(pair.ndata["_ID"]["paper"][v].long(), e[W][1, eids])
        assert neg.num_edges(W) == eids.numel()
        for et in (W, R):
            assert not torch.isin(_all_eids(blocks, et), eids).any()
        for nt, ids in pair.ndata["_ID"].items():
            assert torch.equal(blocks[-1].dstdata["_ID"][nt], ids)
        seen.append(eids)
    assert sorted(torch.cat(seen).tolist()) == list(range(300))


def test_deterministic_and_independent_of_prefetch(homog):
    ei, g, rev = homog

    def run(prefetch):
        s = EdgePredictionSampler(NeighborSampler([2], seed=5), exclude="self", negative_sampler=3)
        out = []
        for inp, pair, neg, blocks in DataLoader(g, torch.arange(400), s, batch_size=50, shuffle=True,
                                                 seed=2, prefetch=prefetch):
            out.append((neg.edges()[1].clone(), blocks[0].edata["_ID"].clone()))
        return out
    a, b = run(0), run(2)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_errors(homog, hetero):
    ei, g, rev = homog
    with pytest.raises(ValueError, match="reverse_eids"):
        EdgePredictionSampler(NeighborSampler([2]), exclude="reverse_id")
    with pytest.raises(ValueError, match="exclude must be"):
        EdgePredictionSampler(NeighborSampler([2]), exclude="everything")
    with pytest.raises(IndexError, match=r"edge ids in \[0, 400\), got 400"):
        DataLoader(g, torch.tensor([400]), EdgePredictionSampler(NeighborSampler([2])), batch_size=2)
    with pytest.raises(ValueError, match="labels= apply to node seeds"):
        next(iter(DataLoader(g, torch.arange(4), EdgePredictionSampler(NeighborSampler([2])),
                             batch_size=2, labels=torch.zeros(50))))
    e, hg = hetero
    with pytest.raises(ValueError, match="reverse_types' is for heterogeneous"):
        EdgePredictionSampler(NeighborSampler([2]), exclude="reverse_types",
                              reverse_etypes={}).sample(g, torch.arange(3))
    with pytest.raises(TypeError, match="dict"):
        EdgePredictionSampler(NeighborSampler([2])).sample(hg, torch.arange(3))


@pytest.mark.gpu
def test_gpu_pinned_graph_matches_pair_graph(homog):
    ei, g, rev = homog
    s = EdgePredictionSampler(NeighborSampler([3], seed=0), exclude="self", negative_sampler=1)
    for inp, pair, neg, blocks in DataLoader(g.pin(), torch.arange(400), s, batch_size=100, device="cuda"):
        u, v = pair.edges()
        eids = pair.edata["_ID"].cpu()
        assert torch.equal(pair.ndata["_ID"][u].cpu().long(), ei[0, eids])
        assert not torch.isin(blocks[0].edata["_ID"].cpu(), eids).any()
