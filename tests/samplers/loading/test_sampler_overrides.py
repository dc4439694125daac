"""A sampler subclass's ``sample`` / ``sample_blocks`` is what the DataLoader runs (issue 19,
item 3), as DGL's DataLoader calls ``graph_sampler.sample``; ``NeighborSampler.sample`` takes
DGL's ``exclude_eids``; an EdgePredictionSampler wrapping an overridden sampler calls the override
with the excluded edge ids."""
from __future__ import annotations

import pytest
import torch

from samplers import (CSCGraph, DataLoader, EdgePredictionSampler, HeteroCSCGraph, NeighborSampler)

N = 60


@pytest.fixture(scope="module")
def graph():
    g0 = torch.Generator().manual_seed(3)
    ei = torch.stack([torch.randint(0, N, (400,), generator=g0), torch.randint(0, N, (400,), generator=g0)])
    return ei, CSCGraph.from_edge_index(ei, N)


class CountingSampler(NeighborSampler):
    """Overrides sample: counts calls and marks the blocks."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def sample(self, g, seeds, exclude_eids=None):
        self.calls += 1
        input_nodes, output_nodes, blocks = super().sample(g, seeds, exclude_eids=exclude_eids)
        blocks[-1].dstdata["mark"] = torch.full((blocks[-1].num_dst_nodes(),), 7)
        return input_nodes, output_nodes, blocks


class BlocksSampler(NeighborSampler):
    """DGL style: overrides sample_blocks only, and keeps just one layer of the parent's."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def sample_blocks(self, g, seed_nodes, exclude_eids=None):
        self.calls += 1
        input_nodes, output_nodes, blocks = super().sample_blocks(g, seed_nodes, exclude_eids)
        return blocks[-1].srcdata["_ID"], output_nodes, blocks[-1:]


def test_overridden_sample_runs_for_every_batch(graph):
    _, g = graph
    s = CountingSampler([3, 3], seed=0)
    feats = torch.randn(N, 4)
    loader = DataLoader(g, torch.arange(N), s, batch_size=16, features=feats, prefetch=0)
    seen = []
    for input_nodes, output_nodes, blocks in loader:
        assert torch.equal(blocks[-1].dstdata["mark"], torch.full((output_nodes.numel(),), 7))
        assert torch.equal(blocks[0].srcdata["feat"], feats[input_nodes.long()])
        seen.append(output_nodes)
    assert s.calls == len(loader) == 4
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.arange(N, dtype=seen[0].dtype))


def test_overridden_sample_runs_in_the_producer_thread_too(graph):
    _, g = graph
    s = CountingSampler([2], seed=0)
    n = sum(1 for _ in DataLoader(g, torch.arange(N), s, batch_size=7, shuffle=True))
    assert s.calls == n == 9


def test_overridden_sample_blocks_runs(graph):
    _, g = graph
    s = BlocksSampler([4, 2, 3], seed=1)
    loader = DataLoader(g, torch.arange(N), s, batch_size=20)
    for _, _, blocks in loader:
        assert len(blocks) == 1   # what the override returns, not the parent's three layers
    assert s.calls == 3


def test_plain_sampler_and_a_sample_distinct_override_keep_the_fast_path(graph):
    _, g = graph

    class Distinct(NeighborSampler):
        calls = 0

        def sample_distinct(self, *a, **k):
            type(self).calls += 1
            return super().sample_distinct(*a, **k)

    s = Distinct([2], seed=0)
    assert sum(1 for _ in DataLoader(g, torch.arange(N), s, batch_size=30)) == 2
    assert Distinct.calls == 2
    plain = NeighborSampler([2], seed=5)
    a = [b[2][0].edges() for b in DataLoader(g, torch.arange(N), plain, batch_size=30)]
    b = [b[2][0].edges() for b in DataLoader(g, torch.arange(N), plain, batch_size=30)]
    for (u1, v1), (u2, v2) in zip(a, b):   # batch-keyed draws: two passes agree
        assert torch.equal(u1, u2) and torch.equal(v1, v2)


def test_sample_exclude_eids(graph):
    ei, g = graph
    seeds = torch.arange(0, N, 3)
    # every in-edge of the seeds (fanout -1), minus the excluded ones
    into = torch.nonzero(torch.isin(ei[1], seeds)).squeeze(1)
    excluded = into[::2]
    _, _, blocks = NeighborSampler([-1]).sample(g, seeds, exclude_eids=excluded)
    got = torch.sort(blocks[0].edata["_ID"].long()).values
    want = torch.sort(into[~torch.isin(into, excluded)]).values
    assert torch.equal(got, want)
    with pytest.raises(IndexError, match="excluded edge id"):
        NeighborSampler([-1]).sample(g, seeds, exclude_eids=torch.tensor([400]))
    with pytest.raises(TypeError, match="exclude_eids"):
        NeighborSampler([-1]).sample(g, seeds, exclude_eids=torch.tensor([0.5]))
    with pytest.raises(TypeError, match="exclude_eids"):
        NeighborSampler([-1]).sample(g, seeds, exclude_eids={("a", "b", "c"): torch.tensor([0])})


def test_sample_exclude_eids_heterogeneous():
    W, C = ("author", "writes", "paper"), ("paper", "cites", "paper")
    g0 = torch.Generator().manual_seed(4)
    e = {W: torch.stack([torch.randint(0, 20, (100,), generator=g0), torch.randint(0, 30, (100,), generator=g0)]),
         C: torch.randint(0, 30, (2, 120), generator=g0)}
    g = HeteroCSCGraph.from_edge_index_dict(e, {"author": 20, "paper": 30})
    seeds = {"paper": torch.arange(30)}
    _, _, blocks = NeighborSampler([-1]).sample(g, seeds, exclude_eids={"cites": torch.arange(60)})
    cites = blocks[0].edata["_ID"][C].long()
    assert torch.equal(torch.sort(cites).values, torch.arange(60, 120))
    assert blocks[0].edata["_ID"][W].numel() == 100


def test_edge_prediction_calls_the_override_with_excluded_ids(graph):
    ei, g = graph
    inner = CountingSampler([-1], seed=0)
    eps = EdgePredictionSampler(inner, exclude="self")
    loader = DataLoader(g, torch.arange(400), eps, batch_size=100)
    for input_nodes, pair, blocks in loader:
        seeds = pair.edata["_ID"]
        assert not torch.isin(blocks[0].edata["_ID"].long(), seeds.long()).any()
        assert "mark" in blocks[-1].dstdata
    assert inner.calls == 4


def test_edge_prediction_override_without_exclude_eids_is_a_clear_error(graph):
    _, g = graph

    class Old(NeighborSampler):
        def sample(self, g, seeds):
            return super().sample(g, seeds)

    with pytest.raises(TypeError, match="exclude_eids"):
        next(iter(DataLoader(g, torch.arange(400), EdgePredictionSampler(Old([2]), exclude="self"),
                             batch_size=50, prefetch=0)))
    # without exclusion the old signature is fine
    batch = next(iter(DataLoader(g, torch.arange(400), EdgePredictionSampler(Old([2])), batch_size=50)))
    assert batch[1].num_edges() == 50
