"""Tests for samplers.datasets.synthetic_mag: shapes, validity of every edge type (in range,
reverse types are reverses, no repeated edges), disjoint splits, determinism, planted communities
that the features and the neighbours reveal, speed, and use with the loaders."""
from __future__ import annotations

import time

import pytest
import torch

from samplers import (DataLoader, EdgePredictionSampler, HeteroCSCGraph, NeighborSampler,
                      UniformNegativeSampler)
from samplers.datasets import HeteroDataset, synthetic_mag

NTYPES = {"paper", "author", "institution", "field_of_study"}
FORWARD = {("author", "writes", "paper"): ("paper", "rev_writes", "author"),
           ("paper", "cites", "paper"): ("paper", "cited_by", "paper"),
           ("author", "affiliated_with", "institution"):
               ("institution", "rev_affiliated_with", "author"),
           ("paper", "has_topic", "field_of_study"): ("field_of_study", "rev_has_topic", "paper")}
WRITES = ("author", "writes", "paper")


@pytest.fixture(scope="module")
def ds() -> HeteroDataset:
    return synthetic_mag(3000, num_classes=6, feat_dim=12, seed=3)


def _endpoints(g) -> torch.Tensor:
    """``[2, E]`` (src, dst) of a CSCGraph indexed by edge id."""
    deg = (g.indptr[1:] - g.indptr[:-1]).long()
    dst = torch.repeat_interleave(torch.arange(deg.numel()), deg)
    out = torch.empty(2, g.num_edges, dtype=torch.int64)
    eid = g.edge_ids.long()
    out[0, eid], out[1, eid] = g.indices.long(), dst
    return out


def test_shapes_and_types(ds):
    assert set(ds.num_nodes) == NTYPES and set(ds.graph.ntypes) == NTYPES
    assert ds.num_nodes == {"paper": 3000, "author": 4500, "institution": 35, "field_of_study": 250}
    assert ds.graph.num_nodes_dict == ds.num_nodes
    etypes = set(FORWARD) | set(FORWARD.values())
    assert set(ds.edge_index) == etypes and set(ds.graph.canonical_etypes) == etypes
    assert isinstance(ds.graph, HeteroCSCGraph) and ds.graph.placement == "cpu"
    assert ds.target == "paper" and ds.feat_dim == 12 and ds.num_classes == 6
    assert set(ds.features) == {"paper"}                       # only papers have features
    x, y = ds.features["paper"], ds.labels["paper"]
    assert x.dtype == torch.float32 and x.shape == (3000, 12) and x.is_contiguous()
    assert y.dtype == torch.int64 and y.shape == (3000,)
    assert torch.bincount(y, minlength=6).min() == 3000 // 6     # balanced communities
    assert ds.link_etype == WRITES
    assert ds.reverse_etypes == {**FORWARD, **{r: f for f, r in FORWARD.items()}}
    assert "synthetic-mag-3000" in repr(ds) and "writes=" in repr(ds)
    assert ds.num_edges() == sum(ds.num_edges(et) for et in etypes)


def test_every_edge_type_is_valid(ds):
    for et, ei in ds.edge_index.items():
        s, _, d = et
        assert ei.dtype == torch.int64 and ei.dim() == 2 and ei.shape[0] == 2 and ei.shape[1] > 0
        assert 0 <= int(ei[0].min()) and int(ei[0].max()) < ds.num_nodes[s], et
        assert 0 <= int(ei[1].min()) and int(ei[1].max()) < ds.num_nodes[d], et
        key = ei[0] * ds.num_nodes[d] + ei[1]
        assert key.unique().numel() == key.numel(), f"{et} has repeated edges"
        # the graph holds exactly these edges, edge j with id j
        assert torch.equal(_endpoints(ds.graph[et]), ei), et
    for fwd, rev in FORWARD.items():
        assert torch.equal(ds.edge_index[rev], ds.edge_index[fwd].flip(0)), rev
    cites = ds.edge_index[("paper", "cites", "paper")]
    assert not bool((cites[0] == cites[1]).any())                        # no self citations
    papers = ds.num_nodes["paper"]
    for et in (WRITES, ("paper", "has_topic", "field_of_study")):     # >= 1 author, >= 1 field
        paper_row = 1 if et[2] == "paper" else 0
        assert torch.bincount(ds.edge_index[et][paper_row], minlength=papers).min() >= 1, et
    affil = ds.edge_index[("author", "affiliated_with", "institution")]
    assert torch.equal(affil[0], torch.arange(ds.num_nodes["author"]))   # one institution each
    writes = ds.edge_index[WRITES].shape[1]
    assert 2.5 * papers < writes < 3.5 * papers                           # ~3 authors per paper


def test_splits_are_disjoint_and_sized(ds):
    parts = [ds.train_idx["paper"], ds.val_idx["paper"], ds.test_idx["paper"]]
    assert [p.numel() for p in parts] == [1800, 600, 600]
    for p in parts:
        assert p.dtype == torch.int64 and torch.equal(p, p.sort().values)
    everything = torch.cat(parts)
    assert everything.unique().numel() == everything.numel() == 3000
    links = [ds.link_split[k] for k in ("train", "val", "test")]
    m = ds.num_edges(WRITES)
    assert [p.numel() for p in links] == [round(0.8 * m), round(0.1 * m), round(0.1 * m)]
    allp = torch.cat(links)
    assert allp.unique().numel() == allp.numel() and int(allp.min()) >= 0 and int(allp.max()) < m


def test_deterministic_for_a_seed(ds):
    again = synthetic_mag(3000, num_classes=6, feat_dim=12, seed=3)
    other = synthetic_mag(3000, num_classes=6, feat_dim=12, seed=4)
    for et in ds.edge_index:
        assert torch.equal(ds.edge_index[et], again.edge_index[et])
    assert torch.equal(ds.features["paper"], again.features["paper"])
    assert torch.equal(ds.labels["paper"], again.labels["paper"])
    assert torch.equal(ds.train_idx["paper"], again.train_idx["paper"])
    assert torch.equal(ds.link_split["test"], again.link_split["test"])
    assert not torch.equal(ds.labels["paper"], other.labels["paper"])
    assert not torch.equal(ds.edge_index[WRITES][0], other.edge_index[WRITES][0])
    assert not torch.equal(ds.features["paper"], other.features["paper"])


def test_sizes_and_parameters():
    ds = synthetic_mag(500, num_authors=80, num_institutions=5, num_fields=9, num_classes=4,
                       feat_dim=3, authors_per_paper=1.0, topics_per_paper=1.0,
                       citations_per_paper=0.0, split=(0.5, 0.5, 0.0), link_split=(1.0, 0.0, 0.0))
    assert ds.num_nodes == {"paper": 500, "author": 80, "institution": 5, "field_of_study": 9}
    assert ds.num_edges(WRITES) == 500 and ds.num_edges("has_topic") == 500   # exactly one each
    assert ds.num_edges("cites") == 0 and ds.num_edges("cited_by") == 0
    assert ds.test_idx["paper"].numel() == 0 and ds.link_split["train"].numel() == 500
    small = synthetic_mag(40, num_classes=4)            # defaults are raised to num_classes
    assert small.num_nodes["institution"] == 4 and small.num_nodes["field_of_study"] == 4


def test_communities_are_planted(ds):
    """Every relation mostly stays inside a community (homophily 0.75 by default)."""
    y = ds.labels["paper"]
    cites = ds.edge_index[("paper", "cites", "paper")]
    same = (y[cites[0]] == y[cites[1]]).float().mean().item()
    assert same > 0.7, same
    # an author's papers and a field's papers share a community: its majority class dominates
    for et in (WRITES, ("field_of_study", "rev_has_topic", "paper")):
        ei = ds.edge_index[et]
        n = ds.num_nodes[et[0]]
        counts = torch.zeros(n, ds.num_classes).index_put_(
            (ei[0], y[ei[1]]), torch.ones(ei.shape[1]), accumulate=True)
        majority = counts.max(1).values.sum() / counts.sum()
        assert majority > 0.7, (et, float(majority))


def _logreg_accuracy(x: torch.Tensor, ds: HeteroDataset, epochs: int = 150) -> float:
    g = torch.Generator().manual_seed(0)
    tr, te, y = ds.train_idx["paper"], ds.test_idx["paper"], ds.labels["paper"]
    x = (x - x[tr].mean(0)) / x[tr].std(0).clamp(min=1e-6)
    w = (0.01 * torch.randn(x.shape[1], ds.num_classes, generator=g)).requires_grad_()
    b = torch.zeros(ds.num_classes, requires_grad=True)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(x[tr] @ w + b, y[tr]) + 1e-4 * (w * w).sum()
        gw, gb = torch.autograd.grad(loss, (w, b))
        with torch.no_grad():
            w -= 0.5 * gw
            b -= 0.5 * gb
    with torch.no_grad():
        return ((x[te] @ w + b).argmax(1) == y[te]).float().mean().item()


def _mean(ds: HeteroDataset, et, x: torch.Tensor) -> torch.Tensor:
    ei = ds.edge_index[et]
    n = ds.num_nodes[et[2]]
    agg = torch.zeros(n, x.shape[1]).index_add_(0, ei[1], x[ei[0]])
    return agg / torch.bincount(ei[1], minlength=n).clamp(min=1).unsqueeze(1)


def test_features_weak_neighbours_strong():
    """Papers' own features beat chance; the means over cited papers and over the papers of a
    paper's fields (what a 2-layer R-GCN computes) are far better."""
    ds = synthetic_mag(4000, num_classes=8, feat_dim=32, seed=1)
    x = ds.features["paper"]
    chance = 1.0 / ds.num_classes
    acc_feat = _logreg_accuracy(x, ds)
    cited = _mean(ds, ("paper", "cites", "paper"), x)
    fields = _mean(ds, ("field_of_study", "rev_has_topic", "paper"),
                   _mean(ds, ("paper", "has_topic", "field_of_study"), x))
    acc_graph = _logreg_accuracy(torch.cat([x, cited, fields], 1), ds)
    assert acc_feat > 1.5 * chance, acc_feat
    assert acc_graph > 0.8 and acc_graph > acc_feat + 0.3, (acc_feat, acc_graph)


def test_fast_at_100k_papers():
    t0 = time.perf_counter()
    ds = synthetic_mag(100_000, feat_dim=64)
    dt = time.perf_counter() - t0
    assert ds.num_edges() > 2_000_000
    assert dt < 20.0, f"100k papers took {dt:.1f} s"       # about 0.5 s on 2 cores


def test_node_loader_and_link_loader(ds):
    """The dataset plugs into the loaders as it is: paper seeds with per-type tables, and
    writes-edge seeds with their reverses excluded."""
    dl = DataLoader(ds.graph, ds.train_idx, NeighborSampler([3, 3], seed=0), batch_size=256,
                    features=ds.features, labels=ds.labels)
    inp, out, blocks = next(iter(dl))
    assert torch.equal(blocks[0].srcdata["feat"]["paper"], ds.features["paper"][inp["paper"]])
    assert torch.equal(blocks[-1].dstdata["label"]["paper"], ds.labels["paper"][out["paper"]])
    assert set(inp) > {"paper"}                                     # other types reached
    s = EdgePredictionSampler(NeighborSampler([3, 3], seed=0), exclude="reverse_types",
                              reverse_etypes=ds.reverse_etypes,
                              negative_sampler=UniformNegativeSampler(2))
    link = DataLoader(ds.graph, {WRITES: ds.link_split["train"]}, s, batch_size=128,
                      features=ds.features)
    inp, pair, neg, blocks = next(iter(link))
    eids = pair.edata["_ID"][WRITES]
    assert neg.num_edges(WRITES) == 2 * eids.numel()
    for b in blocks:
        for et in (WRITES, ("paper", "rev_writes", "author")):
            assert not torch.isin(b.edata["_ID"][et], eids).any()


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(num_papers=1.5), TypeError, "num_papers"),
    (dict(num_papers=0), ValueError, "num_papers"),
    (dict(num_papers=3, num_classes=4), ValueError, "num_papers"),
    (dict(num_papers=100, num_classes=1), ValueError, "num_classes"),
    (dict(num_papers=100, num_authors=3, num_classes=4), ValueError, "num_authors"),
    (dict(num_papers=100, num_institutions=0), ValueError, "num_institutions"),
    (dict(num_papers=100, num_fields=2.0), TypeError, "num_fields"),
    (dict(num_papers=100, feat_dim=0), ValueError, "feat_dim"),
    (dict(num_papers=100, authors_per_paper=0.5), ValueError, "authors_per_paper"),
    (dict(num_papers=100, citations_per_paper=-1.0), ValueError, "citations_per_paper"),
    (dict(num_papers=100, homophily=1.5), ValueError, "homophily"),
    (dict(num_papers=100, noise="x"), TypeError, "noise"),
    (dict(num_papers=100, degree_exponent=2.0), ValueError, "degree_exponent"),
    (dict(num_papers=100, split=(0.8, 0.3, 0.1)), ValueError, "split"),
    (dict(num_papers=100, link_split=0.5), TypeError, "link_split"),
    (dict(num_papers=100, seed=-1), ValueError, "seed"),
])
def test_bad_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        synthetic_mag(**kwargs)
