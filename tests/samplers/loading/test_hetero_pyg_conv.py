"""PyG's HeteroConv on the native HeteroBlocks of samplers.DataLoader: the blocks' per-type
``srcdata`` and ``edge_index`` dict are PyG's ``x_dict`` / ``edge_index_dict`` layout, so a
HeteroConv stack runs on them unchanged and trains (CPU; the GPU variant under `gpu`)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pyg_nn = pytest.importorskip("torch_geometric.nn")

from samplers import DataLoader, HeteroBlock, NeighborSampler  # noqa: E402
from samplers.datasets._synthetic_hetero import synthetic_mag  # noqa: E402


@pytest.fixture(scope="module")
def mag():
    return synthetic_mag(600, num_classes=4, feat_dim=16, seed=3)


class RGraphSAGE(torch.nn.Module):
    """Two HeteroConv(SAGEConv) layers over HeteroBlocks; featureless types get embeddings."""

    def __init__(self, ds, hidden: int = 32):
        super().__init__()
        etypes = list(ds.edge_index)
        self.emb = torch.nn.ModuleDict({
            nt: torch.nn.Embedding(n, hidden) for nt, n in ds.num_nodes.items()
            if nt not in ds.features})
        self.convs = torch.nn.ModuleList([
            pyg_nn.HeteroConv({et: pyg_nn.SAGEConv((-1, -1), hidden) for et in etypes}, aggr="sum"),
            pyg_nn.HeteroConv({et: pyg_nn.SAGEConv((-1, -1), ds.num_classes) for et in etypes},
                              aggr="sum"),
        ])

    def forward(self, blocks):
        b0 = blocks[0]
        x = dict(b0.srcdata["feat"])
        for nt, emb in self.emb.items():
            if nt in b0.srcdata["_ID"]:
                x[nt] = emb(b0.srcdata["_ID"][nt].long())
        for i, (conv, block) in enumerate(zip(self.convs, blocks)):
            # Destination nodes are the first num_dst_nodes(t) source nodes of each type, so the
            # source features serve as x_dict and the output is cut to the destinations.
            edges = {et: ei for et, ei in block.edge_index.items() if ei.numel()}
            out = conv(x, edges)
            x = {nt: out[nt][:block.num_dst_nodes(nt)] for nt in out}
            if i + 1 < len(self.convs):
                x = {nt: F.relu(v) for nt, v in x.items()}
        return x


def _loader(ds, device="cpu"):
    return DataLoader(ds.graph, {"paper": ds.train_idx["paper"]}, NeighborSampler([5, 5], seed=0),
                      batch_size=64, shuffle=True, seed=0, device=device,
                      features={"paper": ds.features["paper"]},
                      labels={"paper": ds.labels["paper"]})


def test_heteroconv_runs_on_hetero_blocks_and_trains(mag):
    torch.manual_seed(0)
    model = RGraphSAGE(mag)
    loader = _loader(mag)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses, correct, total = [], 0, 0
    for epoch in range(4):
        for _, output_nodes, blocks in loader:
            assert all(isinstance(b, HeteroBlock) for b in blocks)
            out = model(blocks)["paper"]
            y = blocks[-1].dstdata["label"]["paper"]
            assert out.shape == (output_nodes["paper"].numel(), mag.num_classes)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
            if epoch == 3:
                correct += int((out.argmax(1) == y).sum())
                total += y.numel()
    per_epoch = len(losses) // 4
    first = sum(losses[:per_epoch]) / per_epoch
    last = sum(losses[-per_epoch:]) / per_epoch
    assert last < 0.8 * first, (first, last)
    assert correct / total > 1.5 / mag.num_classes      # clearly above chance (0.25)


def test_heteroconv_gets_gradients_for_every_used_relation(mag):
    model = RGraphSAGE(mag)
    _, _, blocks = next(iter(_loader(mag)))
    model(blocks)["paper"].sum().backward()
    used = {et for et, ei in blocks[-1].edge_index.items() if ei.numel() and et[2] == "paper"}
    assert used
    for et in used:
        conv = model.convs[-1].convs[et]
        grad = conv.lin_l.weight.grad
        assert grad is not None and grad.abs().sum() > 0, et


@pytest.mark.gpu
def test_heteroconv_on_gpu_blocks_matches_cpu(mag):
    torch.manual_seed(0)
    model = RGraphSAGE(mag)
    _, _, cpu_blocks = next(iter(_loader(mag)))
    _, _, gpu_blocks = next(iter(_loader(mag, device="cuda")))
    ref = model(cpu_blocks)["paper"]
    got = model.cuda()(gpu_blocks)["paper"].cpu()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
