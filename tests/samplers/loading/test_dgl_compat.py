"""samplers.DataLoader as a drop-in for dgl.dataloading.DataLoader (run in the dgl environment).

The same GraphSAGE script runs with DGL's loader and with ours (only the loader class changes):
blocks have the same shapes and semantics and training reaches the same accuracy band."""
from __future__ import annotations

import inspect

import pytest
import torch

pytestmark = pytest.mark.dgl

dgl = pytest.importorskip("dgl")
import dgl.nn as dglnn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import samplers  # noqa: E402
from samplers import CSCGraph, DataLoader, NeighborSampler  # noqa: E402

N, C, PER = 600, 3, 200


@pytest.fixture(scope="module")
def graph():
    """A learnable graph: 3 communities, 90% of edges inside one, weak features."""
    gen = torch.Generator().manual_seed(0)
    label = torch.arange(N) // PER
    src = torch.randint(0, N, (6 * N,), generator=gen)
    same = torch.rand(6 * N, generator=gen) < 0.9
    dst = torch.where(same, (src // PER) * PER + torch.randint(0, PER, (6 * N,), generator=gen),
                      torch.randint(0, N, (6 * N,), generator=gen))
    g = dgl.graph((src, dst), num_nodes=N)
    g.ndata["feat"] = F.one_hot(label, C).float() * 0.6 + torch.randn(N, C, generator=gen)
    g.ndata["label"] = label
    g.edata["w"] = torch.rand(g.num_edges(), generator=gen)
    return g


def split():
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    return perm[:300], perm[300:]


def test_every_dgl_keyword_is_accepted():
    from dgl.dataloading import DataLoader as DGLLoader

    ours = inspect.signature(DataLoader.__init__).parameters
    for name, p in inspect.signature(DGLLoader.__init__).parameters.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        assert name in ours, name
    pos_dgl = [n for n, p in inspect.signature(DGLLoader.__init__).parameters.items()
               if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    pos_ours = [n for n, p in ours.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert pos_ours[:len(pos_dgl)] == pos_dgl
    # what DGL forwards to torch.utils.data.DataLoader is accepted too
    torch_kw = set(inspect.signature(torch.utils.data.DataLoader.__init__).parameters) - {"self"}
    from samplers.loading._dataloader import _TORCH_LOADER_KWARGS
    assert torch_kw - {"batch_size", "shuffle", "drop_last"} <= _TORCH_LOADER_KWARGS | set(ours)


def check_blocks(g, inp, out, blocks, batch):
    assert blocks[-1].num_dst_nodes() == batch.numel() == out.numel()
    assert torch.equal(blocks[0].srcdata[dgl.NID], inp)
    assert torch.equal(blocks[-1].dstdata[dgl.NID], out)
    for i, b in enumerate(blocks):
        assert isinstance(b, dgl.DGLGraph) and b.is_block
        src_ids, dst_ids = b.srcdata[dgl.NID], b.dstdata[dgl.NID]
        assert torch.equal(src_ids[:b.num_dst_nodes()], dst_ids)           # dst first among src
        if i + 1 < len(blocks):
            assert torch.equal(dst_ids, blocks[i + 1].srcdata[dgl.NID])
        u, v = b.edges()
        gu, gv = g.find_edges(b.edata[dgl.EID])                             # real edges
        assert torch.equal(src_ids[u.long()], gu) and torch.equal(dst_ids[v.long()], gv)
    torch.testing.assert_close(blocks[0].srcdata["feat"], g.ndata["feat"][inp])
    assert torch.equal(blocks[-1].dstdata["label"], g.ndata["label"][out])


@pytest.mark.parametrize("fanouts", [[-1, -1], [4, 3]])
def test_same_blocks_as_dgl(graph, fanouts):
    seeds = torch.arange(0, N, 3)
    sampler = dgl.dataloading.NeighborSampler(fanouts, prefetch_node_feats=["feat"],
                                              prefetch_labels=["label"])
    kw = dict(batch_size=50, shuffle=False, drop_last=False, num_workers=0)
    theirs = list(dgl.dataloading.DataLoader(graph, seeds, sampler, **kw))
    ours = list(DataLoader(graph, seeds, sampler, **kw))
    assert len(ours) == len(theirs) == len(DataLoader(graph, seeds, sampler, **kw))
    for (ti, to, tb), (oi, oo, ob) in zip(theirs, ours):
        assert torch.equal(to, oo)
        check_blocks(graph, oi, oo, ob, oo)
        check_blocks(graph, ti, to, tb, to)
        assert len(tb) == len(ob)
        if fanouts == [-1, -1]:   # deterministic: identical shapes
            for a, b in zip(tb, ob):
                assert (a.num_src_nodes(), a.num_dst_nodes(), a.num_edges()) == \
                       (b.num_src_nodes(), b.num_dst_nodes(), b.num_edges())
                assert torch.equal(a.srcdata[dgl.NID].sort().values,
                                   b.srcdata[dgl.NID].sort().values)


def test_our_sampler_matches_dgl_full_neighbourhood(graph):
    seeds = torch.arange(0, N, 7)
    g = CSCGraph.from_dgl(graph)
    full_d = dgl.dataloading.NeighborSampler([-1, -1])
    theirs = list(dgl.dataloading.DataLoader(graph, seeds, full_d, batch_size=32))
    ours = list(DataLoader(g, seeds, NeighborSampler([-1, -1]), batch_size=32,
                           features=graph.ndata["feat"].clone(), labels=graph.ndata["label"]))
    for (ti, to, tb), (oi, oo, ob) in zip(theirs, ours):
        assert torch.equal(to.long(), oo.long())
        assert torch.equal(ti.sort().values, oi.long().sort().values)
        for a, b in zip(tb, ob):
            assert (a.num_src_nodes(), a.num_dst_nodes(), a.num_edges()) == \
                   (b.num_src_nodes(), b.num_dst_nodes(), b.num_edges())
        blocks = [b.to_dgl() for b in ob]
        check_blocks(graph, oi.long(), oo.long(), blocks, oo)


def test_custom_dgl_sampler_called_once_per_batch(graph):
    class Custom(dgl.dataloading.Sampler):
        calls = 0

        def sample(self, g, seeds):
            Custom.calls += 1
            sg = dgl.in_subgraph(g, seeds)
            block = dgl.to_block(sg, seeds)
            dgl.dataloading.set_src_lazy_features(block, ["feat"])
            dgl.dataloading.set_edge_lazy_features(block, ["w"])
            return block.srcdata[dgl.NID], seeds, [block]

    dl = DataLoader(graph, torch.arange(100), Custom(), batch_size=30)
    for inp, out, (b,) in dl:
        torch.testing.assert_close(b.srcdata["feat"], graph.ndata["feat"][inp])
        torch.testing.assert_close(b.edata["w"], graph.edata["w"][b.edata[dgl.EID]])
    assert Custom.calls == len(dl) == 4


def test_prefetch_of_missing_column_is_a_clear_error(graph):
    sampler = dgl.dataloading.NeighborSampler([2], prefetch_node_feats=["nope"])
    with pytest.raises(KeyError, match="nope"):
        next(iter(DataLoader(graph, torch.arange(10), sampler, batch_size=5)))


class SAGE(torch.nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.layers = torch.nn.ModuleList([dglnn.SAGEConv(C, hidden, "mean"),
                                           dglnn.SAGEConv(hidden, C, "mean")])

    def forward(self, blocks, h):
        for i, (layer, b) in enumerate(zip(self.layers, blocks)):
            h = layer(b, h)
            if i == 0:
                h = F.relu(h)
        return h


def train_and_eval(graph, loader_cls, seed=0):
    """The standard DGL GraphSAGE script; only `loader_cls` changes."""
    torch.manual_seed(seed)
    dgl.seed(seed)
    train_ids, val_ids = split()
    sampler = dgl.dataloading.NeighborSampler([5, 5], prefetch_node_feats=["feat"],
                                              prefetch_labels=["label"])
    train_loader = loader_cls(graph, train_ids, sampler, device="cpu", batch_size=32,
                              shuffle=True, drop_last=False, num_workers=0)
    val_loader = loader_cls(graph, val_ids, sampler, device="cpu", batch_size=100)
    model = SAGE()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(6):
        model.train()
        for _, _, blocks in train_loader:
            loss = F.cross_entropy(model(blocks, blocks[0].srcdata["feat"]),
                                   blocks[-1].dstdata["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for _, out, blocks in val_loader:
            pred = model(blocks, blocks[0].srcdata["feat"]).argmax(1)
            correct += int((pred == blocks[-1].dstdata["label"]).sum())
            total += out.numel()
    return correct / total


def test_graphsage_same_accuracy_band(graph):
    acc_dgl = train_and_eval(graph, dgl.dataloading.DataLoader)
    acc_ours = train_and_eval(graph, samplers.DataLoader)
    # features alone give ~60%; the graph lifts a working GraphSAGE well above that
    assert acc_dgl > 0.8 and acc_ours > 0.8, (acc_dgl, acc_ours)
    assert abs(acc_dgl - acc_ours) < 0.08, (acc_dgl, acc_ours)


def test_unified_ndata_column_is_gathered_as_that_object():
    """g.ndata['feat'] = ut.unified(feat) (and ut.cache(...) on it): DGL keeps the object, and the
    loader's lazy-feature path gathers from it as it is, so a GPU row cache on it is used."""
    import unified_tensor as ut

    g = dgl.rand_graph(100, 600)
    feat = ut.unified(torch.randn(100, 4))
    g.ndata["feat"] = feat
    sampler = dgl.dataloading.NeighborSampler([3], prefetch_node_feats=["feat"])
    loader = DataLoader(g, torch.arange(100), sampler, batch_size=20)
    assert loader._parent_table("node", "feat", None) is feat
    input_nodes, _, blocks = next(iter(loader))
    assert torch.equal(blocks[0].srcdata["feat"], feat._ut_plain[input_nodes])
