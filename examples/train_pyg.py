"""GraphSAGE node classification with PyG's ``SAGEConv`` layers, fed by unified-tensor's DataLoader.

PyG's own ``NeighborLoader`` needs pyg-lib or torch-sparse for sampling; here the sampling, the
feature gather and the prefetching come from ``samplers.DataLoader`` and PyG only supplies the
layers. Each sampled block is a bipartite graph whose first ``num_dst_nodes()`` source nodes are its
destination nodes, so a PyG layer runs on it as::

    conv((x, x[:block.num_dst_nodes()]), block.edge_index,
         size=(block.num_src_nodes(), block.num_dst_nodes()))

The unified-tensor part is the same two lines as in ``train_graphsage.py``::

    import unified_tensor as ut
    feats = ut.unified(feats)            # pins the host table in place (no copy)

then ``DataLoader(..., features=feats, labels=labels, device=device)`` gathers the rows of every
batch zero-copy on the GPU (on the CPU without one) while the previous batch trains, and puts them
in ``blocks[0].srcdata["feat"]`` / ``blocks[-1].dstdata["label"]``. With a GPU the graph is pinned
in place too (``graph.pin()``) and sampled on the GPU over UVA.

    python examples/train_pyg.py                                # built-in synthetic graph
    python examples/train_pyg.py --dataset ogbn-products --ogb-root /data/ogb
"""
from __future__ import annotations

import argparse
import time
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from _util import (History, add_data_args, add_train_args, load_dataset, parse_fanouts,
                   evaluate, pick_device, require_framework, sync, train_epoch, unified_table)

try:  # PyG supplies the layers; a failed import is reported by main(), so that --help works
    from torch_geometric.nn import SAGEConv
except (ImportError, OSError) as exc:   # not installed, or built for another torch
    SAGEConv, PYG_ERROR = None, exc
else:
    PYG_ERROR = None

import unified_tensor as ut
from samplers import DataLoader, NeighborSampler


# ------------------------------------------------------------------------------------ model
class GraphSAGE(nn.Module):
    """PyG ``SAGEConv`` (mean aggregation) stacked over the blocks of a minibatch."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.convs = nn.ModuleList(SAGEConv(a, b, aggr="mean") for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, blocks: Sequence, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (conv, block) in enumerate(zip(self.convs, blocks)):
            n_src, n_dst = block.num_src_nodes(), block.num_dst_nodes()
            # Bipartite message passing: sources = all nodes of the block, targets = its first
            # n_dst nodes (the next layer's nodes).
            h = conv((h, h[:n_dst]), block.edge_index, size=(n_src, n_dst))
            if i < len(self.convs) - 1:
                h = self.dropout(F.relu(h))
        return h


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p, nodes=100_000)
    add_train_args(p, epochs=3)
    return p.parse_args(argv)


def main(argv=None) -> History:
    args = parse_args(argv)
    require_framework("PyG", PYG_ERROR, "pip install torch_geometric")
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    fanouts = parse_fanouts(args, device)
    ds = load_dataset(args)
    print(f"device {device} | PyG SAGEConv + samplers.DataLoader | fanouts {fanouts} | "
          f"batch {args.batch_size} | hidden {args.hidden} | "
          f"CUDA path {'on' if ut.cuda_available() else 'off'}", flush=True)

    graph = ds.graph()
    if device.type == "cuda":
        graph = graph.pin()                  # sample on the GPU, reading the CSC arrays over UVA
    feats = unified_table(ds.features, "features")  # the two-line change: pinned in place, no copy
    labels = unified_table(ds.labels, "labels")    # pinned once, not by every epoch's loader
    sampler = NeighborSampler(fanouts, seed=args.seed)

    def loader(seeds: torch.Tensor, shuffle: bool, seed: Optional[int] = None) -> DataLoader:
        return DataLoader(graph, seeds, sampler, device=device, batch_size=args.batch_size,
                          shuffle=shuffle, seed=seed, features=feats, labels=labels)

    model = GraphSAGE(ds.feat_dim, args.hidden, ds.num_classes, len(fanouts),
                      args.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    hist = History("train_pyg", dict(vars(args), device=str(device), dataset_name=ds.name,
                                     num_nodes=ds.num_nodes, num_edges=ds.num_edges))
    try:
        for epoch in range(args.epochs):
            train_loader = loader(ds.train_idx, shuffle=True, seed=args.seed + epoch)
            sync(device)
            t0 = time.perf_counter()
            loss, train_acc, n = train_epoch(model, opt, train_loader, device, epoch,
                                             args.max_batches, not args.no_progress)
            sync(device)
            dt = time.perf_counter() - t0
            val_acc = evaluate(model, loader(ds.val_idx, shuffle=False), device, args.eval_batches)
            hist.epoch(epoch=epoch, time_s=dt, seeds_per_s=n / dt, loss=loss,
                       train_acc=train_acc, val_acc=val_acc)
        test_acc = evaluate(model, loader(ds.test_idx, shuffle=False), device, args.eval_batches)
    finally:
        ut.unpin(feats)
        ut.unpin(labels)
    hist.finish(test_acc, ds.num_classes, args.json)
    return hist


if __name__ == "__main__":
    main()
