"""Seeds normalised once (samplers/loading/_seeds.py): validated against what they index, batched by the
core without branching on homogeneous or typed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samplers import CSCGraph, DataLoader, NeighborSampler
from samplers.loading._seeds import SeedSet, seed_kind


@pytest.fixture(scope="module")
def graph():
    # 10 nodes, 40 edges: edge ids go well past node ids
    g = torch.Generator().manual_seed(0)
    return CSCGraph.from_edge_index(torch.randint(0, 10, (2, 40), generator=g), 10)


class EdgeSeedSampler:
    """A custom sampler whose seeds are edge ids (declares it)."""
    seed_kind = "edge"

    def sample(self, g, seeds):
        return seeds


def test_node_seeds_checked_against_nodes(graph):
    with pytest.raises(IndexError, match=r"node ids in \[0, 10\), got 10"):
        SeedSet(torch.tensor([1, 10]), graph, "node")
    s = SeedSet(np.array([3, 1, 2], dtype=np.int16), graph, "node")
    assert s.ids.dtype == graph.idtype and s.ids.tolist() == [3, 1, 2] and s.keys is None


def test_edge_seeds_checked_against_edges_not_nodes(graph):
    assert seed_kind(EdgeSeedSampler()) == "edge" and seed_kind(NeighborSampler([2])) == "node"
    dl = DataLoader(graph, torch.arange(40), EdgeSeedSampler(), batch_size=16, shuffle=True, seed=3)
    got = torch.cat(list(dl))
    assert sorted(got.tolist()) == list(range(40))          # every edge seed once per epoch
    with pytest.raises(IndexError, match=r"edge ids in \[0, 40\), got 40"):
        DataLoader(graph, torch.tensor([0, 40]), EdgeSeedSampler(), batch_size=4)
    with pytest.raises(ValueError, match="distinct edge ids.*edge 7"):
        DataLoader(graph, torch.tensor([7, 1, 7]), EdgeSeedSampler(), batch_size=4)


def test_typed_seeds_need_a_heterogeneous_graph(graph):
    with pytest.raises(TypeError, match="heterogeneous graph"):
        DataLoader(graph, {"paper": torch.arange(3)}, NeighborSampler([2]), batch_size=2)
    with pytest.raises(ValueError, match="empty dict"):
        DataLoader(graph, {}, NeighborSampler([2]), batch_size=2)


def test_batch_of_typed_seeds_is_a_dict_of_present_types_in_key_order():
    s = SeedSet.__new__(SeedSet)
    s.keys = ["a", "b", "c"]
    ids = torch.tensor([5, 6, 7, 8, 9])
    s.type_ids = torch.tensor([2, 0, 2, 0, 2])   # the set's CPU type ids; the batch = the set
    out = s.batch(ids, torch.arange(5))
    assert list(out) == ["a", "c"]                           # "b" absent from this batch
    assert out["a"].tolist() == [6, 8] and out["c"].tolist() == [5, 7, 9]
    assert s.count(out) == 5


@pytest.mark.dgl
def test_dict_seeds_validated_per_type():
    dgl = pytest.importorskip("dgl")
    g = dgl.heterograph({("user", "buys", "item"): (torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1])),
                         ("item", "rev", "user"): (torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]))})
    sampler = dgl.dataloading.NeighborSampler([2])
    with pytest.raises(KeyError, match="node type 'paper'.*user"):
        DataLoader(g, {"paper": torch.arange(2)}, sampler, batch_size=2)
    with pytest.raises(IndexError, match=r"indices\['item'\] must be node ids in \[0, 2\), got 2"):
        DataLoader(g, {"user": torch.arange(3), "item": torch.tensor([0, 2])}, sampler, batch_size=2)
    with pytest.raises(TypeError, match="several node types"):
        DataLoader(g, torch.arange(2), sampler, batch_size=2)
    edge = dgl.dataloading.as_edge_prediction_sampler(sampler)
    dl = DataLoader(g, {("user", "buys", "item"): torch.arange(3)}, edge, batch_size=2)
    assert sum(pair.num_edges() for _, pair, _ in dl) == 3
    with pytest.raises(IndexError, match="edge ids in \\[0, 3\\), got 3"):
        DataLoader(g, {"buys": torch.tensor([3])}, edge, batch_size=2)
