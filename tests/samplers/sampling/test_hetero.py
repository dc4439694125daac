"""Native heterogeneous graphs: HeteroCSCGraph, per-edge-type sampling, HeteroBlock, the loader
with {node_type: ids} seeds and per-type features (CPU here; GPU variants under `gpu`)."""
from __future__ import annotations

import pytest
import torch

from samplers import DataLoader, HeteroBlock, HeteroCSCGraph, NeighborSampler

WRITES, CITES, REV = ("author", "writes", "paper"), ("paper", "cites", "paper"), ("paper", "rev_writes", "author")
NUM = {"author": 40, "paper": 60, "venue": 3}


def edge_dict(seed=0, idtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    w = torch.stack([torch.randint(0, 40, (300,), generator=g), torch.randint(0, 60, (300,), generator=g)])
    c = torch.randint(0, 60, (2, 400), generator=g)
    return {WRITES: w.to(idtype), CITES: c.to(idtype), REV: w.flip(0).to(idtype)}


@pytest.fixture(params=[torch.int32, torch.int64], ids=["int32", "int64"])
def graph(request):
    return edge_dict(idtype=request.param), HeteroCSCGraph.from_edge_index_dict(
        edge_dict(idtype=request.param), NUM)


def check_blocks(edges, seeds, inp, blocks, fanouts, replace=False):
    """Every block against the dense edge lists: dst nodes first per type, every edge real and
    its id right, per-type fanouts respected, the chain of blocks consistent."""
    dst = seeds
    for layer, b in enumerate(reversed(blocks)):
        fan = fanouts[len(fanouts) - 1 - layer]
        assert isinstance(b, HeteroBlock)
        for nt, ids in dst.items():
            assert torch.equal(b.dstdata["_ID"][nt].long(), ids.long())
            assert torch.equal(b.srcdata["_ID"][nt][: ids.numel()].long(), ids.long())
        for nt, ids in b.srcdata["_ID"].items():
            assert ids.unique().numel() == ids.numel()
        for et, ei in b.edge_index.items():
            s, _, d = et
            f = (fan[et] if et in fan else fan[et[1]]) if isinstance(fan, dict) else fan
            src = b.srcdata["_ID"][s][ei[0]].long()
            dd = b.dstdata["_ID"][d][ei[1]].long()
            eid = b.edata["_ID"][et].long()
            full = edges[et].long()
            assert torch.equal(full[0, eid], src) and torch.equal(full[1, eid], dd)
            if not replace:
                assert eid.unique().numel() == eid.numel()
            deg = torch.bincount(full[1], minlength=NUM[d])
            got = torch.bincount(ei[1], minlength=b.num_dst_nodes(d))
            want = deg[b.dstdata["_ID"][d].long()]
            if f == -1:
                assert torch.equal(got, want)
            elif f == 0:
                assert got.sum() == 0
            else:
                assert torch.equal(got, torch.clamp(want, max=f)) if not replace else \
                    torch.equal(got, torch.where(want > 0, torch.full_like(want, f), want))
        dst = b.srcdata["_ID"]
    assert {k: v.tolist() for k, v in dst.items()} == {k: v.tolist() for k, v in inp.items()}


@pytest.mark.parametrize("fanouts", [[2, 3], [{"writes": 3, "cites": 0, "rev_writes": 2}, -1],
                                     [{WRITES: 1, CITES: 2, REV: 1}]])
@pytest.mark.parametrize("replace", [False, True])
def test_sampling_matches_the_dense_graph(graph, fanouts, replace):
    edges, g = graph
    seeds = {"paper": torch.tensor([0, 5, 7, 59], dtype=g.idtype), "author": torch.tensor([3], dtype=g.idtype)}
    inp, out, blocks = NeighborSampler(fanouts, replace=replace, seed=3).sample(g, seeds)
    assert len(blocks) == len(fanouts)
    check_blocks(edges, seeds, inp, blocks, fanouts, replace)
    again = NeighborSampler(fanouts, replace=replace, seed=3).sample(g, seeds)
    for b1, b2 in zip(blocks, again[2]):                       # deterministic
        assert all(torch.equal(b1.edge_index[et], b2.edge_index[et]) for et in b1.edge_index)


def test_graph_construction_and_errors():
    g = HeteroCSCGraph.from_edge_index_dict(edge_dict(), NUM)
    assert g.num_nodes("paper") == 60 and g.num_edges(WRITES) == 300 and g.num_edges("cites") == 400
    assert g.to_canonical_etype("writes") == WRITES and set(g.ntypes) == set(NUM)
    with pytest.raises(ValueError, match="lacks a node type"):
        HeteroCSCGraph.from_edge_index_dict({("x", "r", "paper"): torch.zeros(2, 1, dtype=torch.long)}, NUM)
    with pytest.raises(ValueError, match="source ids beyond"):
        HeteroCSCGraph.from_edge_index_dict({WRITES: torch.tensor([[40], [0]])}, NUM)
    with pytest.raises(TypeError, match="canonical"):
        HeteroCSCGraph.from_edge_index_dict({"writes": torch.zeros(2, 1, dtype=torch.long)}, NUM)
    with pytest.raises(KeyError, match="names 0 canonical"):
        g.to_canonical_etype("nope")
    with pytest.raises(TypeError, match="several node types"):
        g.num_nodes()


def test_sampler_input_errors():
    g = HeteroCSCGraph.from_edge_index_dict(edge_dict(), NUM)
    s = NeighborSampler([2])
    with pytest.raises(TypeError, match="dict"):
        s.sample(g, torch.tensor([1]))
    with pytest.raises(KeyError, match="node type 'venue2'"):
        s.sample(g, {"venue2": torch.tensor([0])})
    with pytest.raises(IndexError, match=r"seeds\['paper'\] must be node ids in \[0, 60\), got 60"):
        s.sample(g, {"paper": torch.tensor([60])})
    with pytest.raises(ValueError, match="distinct"):
        s.sample(g, {"paper": torch.tensor([1, 1])})
    with pytest.raises(ValueError, match="no fanout for edge types"):
        NeighborSampler([{"writes": 2}]).sample(g, {"paper": torch.tensor([1])})
    with pytest.raises(ValueError, match="need a heterogeneous graph"):
        from samplers import CSCGraph
        NeighborSampler([{"writes": 2}]).sample(CSCGraph.from_edge_index(torch.tensor([[0], [1]]), 2),
                                               torch.tensor([1]))


def test_a_node_type_without_in_edges_is_a_valid_seed_type():
    g = HeteroCSCGraph.from_edge_index_dict(edge_dict(), NUM)
    inp, out, blocks = NeighborSampler([2, 2], seed=0).sample(g, {"venue": torch.tensor([0, 2])})
    assert blocks[-1].num_edges() == 0 and torch.equal(inp["venue"], torch.tensor([0, 2]))


def test_loader_every_seed_once_with_per_type_features_and_labels(graph):
    edges, g = graph
    feats = {"paper": torch.randn(60, 5), "author": torch.randn(40, 5)}
    labels = {"paper": torch.randint(0, 3, (60,))}
    seeds = {"paper": torch.arange(30), "author": torch.arange(10)}
    dl = DataLoader(g, seeds, NeighborSampler([2, 2], seed=0), batch_size=8, shuffle=True, seed=1,
                    features=feats, labels=labels)
    seen = {"paper": [], "author": []}
    for inp, out, blocks in dl:
        check_blocks(edges, out, inp, blocks, [2, 2])
        x, y = blocks[0].srcdata["feat"], blocks[-1].dstdata["label"]
        for nt in inp:
            assert torch.equal(x[nt], feats[nt][inp[nt].long()])
        for nt in y:
            assert torch.equal(y[nt], labels[nt][out[nt].long()])
        for nt, v in out.items():
            seen[nt].append(v)
    assert sorted(torch.cat(seen["paper"]).tolist()) == list(range(30))
    assert sorted(torch.cat(seen["author"]).tolist()) == list(range(10))
    first = [[b.edge_index[et].clone() for b in blocks for et in b.edge_index] for *_, blocks in
             DataLoader(g, seeds, NeighborSampler([2, 2], seed=0), batch_size=8, shuffle=True, seed=1)]
    second = [[b.edge_index[et].clone() for b in blocks for et in b.edge_index] for *_, blocks in
              DataLoader(g, seeds, NeighborSampler([2, 2], seed=0), batch_size=8, shuffle=True, seed=1,
                         prefetch=0)]
    assert all(all(torch.equal(a, b) for a, b in zip(x, y)) for x, y in zip(first, second))


def test_loader_table_and_seed_errors():
    g = HeteroCSCGraph.from_edge_index_dict(edge_dict(), NUM)
    s = NeighborSampler([2])
    with pytest.raises(ValueError, match=r"features\['paper'\] has 59 rows but the graph has 60"):
        DataLoader(g, {"paper": torch.arange(3)}, s, batch_size=2, features={"paper": torch.randn(59, 2)})
    with pytest.raises(KeyError, match="node type 'x'"):
        DataLoader(g, {"paper": torch.arange(3)}, s, batch_size=2, features={"x": torch.randn(59, 2)})
    with pytest.raises(IndexError, match=r"indices\['author'\] must be node ids in \[0, 40\), got 40"):
        DataLoader(g, {"author": torch.tensor([40])}, s, batch_size=2)
    with pytest.raises(TypeError, match="several node types"):
        DataLoader(g, torch.arange(3), s, batch_size=2)


@pytest.mark.dgl
def test_from_dgl_matches_dgl_edges():
    dgl = pytest.importorskip("dgl")
    e = edge_dict()
    dg = dgl.heterograph({et: (v[0], v[1]) for et, v in e.items()},
                         num_nodes_dict={k: v for k, v in NUM.items()})
    g = HeteroCSCGraph.from_dgl(dg)
    seeds = {"paper": torch.tensor([1, 2, 3])}
    inp, out, blocks = NeighborSampler([-1]).sample(g, seeds)
    check_blocks(e, seeds, inp, blocks, [-1])


@pytest.mark.gpu
@pytest.mark.parametrize("placement", ["pinned", "cuda"])
def test_gpu_matches_cpu(placement):
    g = HeteroCSCGraph.from_edge_index_dict(edge_dict(), NUM)
    gg = g.pin() if placement == "pinned" else g.to("cuda")
    seeds = {"paper": torch.tensor([0, 5, 7, 59]), "author": torch.tensor([3, 9])}
    cpu = NeighborSampler([3, {"writes": 2, "cites": 1, "rev_writes": 2}], seed=4).sample(g, seeds)
    gpu = NeighborSampler([3, {"writes": 2, "cites": 1, "rev_writes": 2}], seed=4).sample(
        gg, {k: v.cuda() for k, v in seeds.items()})
    for bc, bg in zip(cpu[2], gpu[2]):
        for et in bc.edge_index:
            assert torch.equal(bc.edata["_ID"][et].sort().values, bg.edata["_ID"][et].cpu().sort().values)
        for nt in bc.srcdata["_ID"]:
            assert torch.equal(bc.srcdata["_ID"][nt].sort().values.long(),
                               bg.srcdata["_ID"][nt].cpu().sort().values.long())


@pytest.mark.gpu
def test_gpu_unchecked_int64_seeds_that_an_int32_graph_would_wrap_raise():
    """int64 CUDA seeds for an int32 graph: an id that the cast would wrap into range (2**32 + 3
    -> 3) is refused, not sampled as another node."""
    g = HeteroCSCGraph.from_edge_index_dict(edge_dict(idtype=torch.int32), NUM).pin()
    bad = {"paper": torch.tensor([1, 2**32 + 3], device="cuda")}
    with pytest.raises(IndexError, match=r"seeds\['paper'\] must be node ids in \[0, 60\)"):
        NeighborSampler([2]).sample_distinct(g, bad)


@pytest.mark.gpu
def test_gpu_unchecked_seed_past_its_types_count_raises():
    """A CSC is padded to max(num_src, num_dst) nodes, so the count kernel alone would accept an
    author id in [40, 60): the per-type range is read for unchecked CUDA seeds."""
    g = HeteroCSCGraph.from_edge_index_dict(edge_dict(), NUM).pin()
    with pytest.raises(IndexError, match=r"seeds\['author'\] must be node ids in \[0, 40\), got 50"):
        NeighborSampler([2]).sample_distinct(g, {"author": torch.tensor([1, 50], device="cuda")})
    with pytest.raises(IndexError, match=r"seeds\['venue'\] must be node ids in \[0, 3\), got 7"):
        NeighborSampler([2]).sample_distinct(g, {"venue": torch.tensor([7], device="cuda")})
