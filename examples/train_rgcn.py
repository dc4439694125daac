"""Heterogeneous node classification (R-GCN) in plain PyTorch on the library's HeteroBlocks.

The graph is the built-in synthetic ogbn-mag look-alike (``samplers.datasets.synthetic_mag``):
papers, authors, institutions and fields of study, four relations and their reverses; the task is
to predict each paper's class. Only papers have features (as in ogbn-mag); authors, institutions
and fields start from one learned vector per node type, so what the model knows about them comes
from their paper neighbours.

The model is an R-GCN with GraphSAGE-style updates (a "HeteroSAGE"): in every layer, for every
edge type, the mean of the sampled in-neighbours' states through a per-edge-type linear map, summed
over the edge types that reach a node type, plus a per-node-type linear map of the node's own
state. It reads only ``block.edge_index`` (PyG's ``edge_index_dict``) and ``num_dst_nodes(ntype)``.

``--loader`` picks how each minibatch reaches the model:

* ``baseline``: CPU sampling, ``feats[input_nodes["paper"]]`` gathered on the CPU in the training
  loop, then copied to the device (what users do today);
* ``unified`` (default): the paper table made unified (``ut.unified``: pinned in place, no copy)
  and handed to the loader per node type (``DataLoader(..., features={"paper": feats},
  labels={"paper": labels})``), which gathers the next batch's rows while this one trains (zero-copy
  on a GPU, where the graph is pinned too and sampled over UVA).

Runs anywhere: without a GPU everything runs on the CPU. Prints per-epoch time, throughput
(seeds/s), loss and accuracy, and the test accuracy at the end::

    python examples/train_rgcn.py                       # about a minute on a 2-core CPU
    python examples/train_rgcn.py --loader baseline     # the usual CPU gather + copy
    python examples/train_rgcn.py --papers 1000000 --device cuda
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence

from _cli import add_mag_args, add_train_args, set_option


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_mag_args(p, papers=200_000)
    t = add_train_args(p, epochs=3)
    set_option(p, "fanouts", help="comma-separated neighbours per edge type per layer (input "
                                  "layer first); if not given, 15,10,5 on a GPU and 10,5 on the "
                                  "CPU")
    set_option(p, "hidden", help="hidden width of the R-GCN layers", hidden=64)
    set_option(p, "batch_size", help="seed papers per minibatch", batch_size=512)
    set_option(p, "lr", lr=5e-3)
    t.add_argument("--loader", choices=("baseline", "unified"), default="unified",
                   help="how minibatches reach the model: 'baseline': CPU sampling, paper "
                        "features gathered on the CPU in the training loop, then copied (what "
                        "users do today); 'unified': ut.unified(paper features) handed to the "
                        "loader per node type, gathered (zero-copy on a GPU, where the graph is "
                        "sampled over UVA) while the previous batch trains")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _util import History, fit, load_mag, parse_fanouts, pick_device, unified_table  # noqa: E402

import unified_tensor as ut  # noqa: E402
from samplers import DataLoader, NeighborSampler  # noqa: E402

EdgeType = tuple


def _key(et: EdgeType) -> str:
    return "__".join(et)


# ------------------------------------------------------------------------------------ model
class HeteroSAGEConv(nn.Module):
    """One R-GCN layer on a :class:`~samplers.HeteroBlock`: per edge type, the mean over the
    sampled in-neighbours through ``lin_rel[etype]``; summed over edge types; plus
    ``lin_self[ntype]`` of the destination node's own state."""

    def __init__(self, ntypes: Sequence[str], etypes: Sequence[EdgeType], in_dim: int,
                 out_dim: int) -> None:
        super().__init__()
        self.lin_self = nn.ModuleDict({nt: nn.Linear(in_dim, out_dim) for nt in ntypes})
        self.lin_rel = nn.ModuleDict({_key(et): nn.Linear(in_dim, out_dim, bias=False)
                                      for et in etypes})
        # The mean is linear: project before aggregating when that narrows the rows.
        self.project_first = out_dim < in_dim

    def forward(self, block, h: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        out = {nt: self.lin_self[nt](h[nt][:block.num_dst_nodes(nt)]) for nt in block.dsttypes}
        for et, ei in block.edge_index.items():
            if ei.shape[1] == 0:
                continue
            s, _, d = et
            src, dst = ei[0], ei[1]
            n_dst = block.num_dst_nodes(d)
            lin = self.lin_rel[_key(et)]
            x = lin(h[s]) if self.project_first else h[s]
            agg = torch.zeros(n_dst, x.shape[1], dtype=x.dtype, device=x.device)
            agg.index_add_(0, dst, x.index_select(0, src))
            deg = torch.bincount(dst, minlength=n_dst).clamp_(min=1).unsqueeze(1).to(x.dtype)
            agg = agg / deg
            out[d] = out[d] + (agg if self.project_first else lin(agg))
        return out


class RGCN(nn.Module):
    """Input encoders (a linear map of the features for featured types, one learned vector for
    featureless ones), then ``num_layers`` :class:`HeteroSAGEConv` layers; returns the logits of
    the ``target`` destination nodes of the last block."""

    def __init__(self, ntypes: Sequence[str], etypes: Sequence[EdgeType], feat_dims: Dict[str, int],
                 hidden: int, num_classes: int, num_layers: int, target: str,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.target = target
        self.encode = nn.ModuleDict({nt: nn.Linear(f, hidden) for nt, f in feat_dims.items()})
        self.embed = nn.ParameterDict({nt: nn.Parameter(0.1 * torch.randn(hidden))
                                       for nt in ntypes if nt not in feat_dims})
        dims = [hidden] * num_layers + [num_classes]
        self.convs = nn.ModuleList(HeteroSAGEConv(ntypes, etypes, a, b)
                                   for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, blocks: Sequence, x: torch.Tensor) -> torch.Tensor:
        """``x``: features of ``blocks[0]``'s source nodes of the target type."""
        first = blocks[0]
        h = {}
        for nt in first.srctypes:
            if nt == self.target:
                h[nt] = self.encode[nt](x)
            else:
                h[nt] = self.embed[nt].expand(first.num_src_nodes(nt), -1)
        for i, (conv, block) in enumerate(zip(self.convs, blocks)):
            h = conv(block, h)
            if i < len(self.convs) - 1:
                h = {nt: self.dropout(F.relu(v)) for nt, v in h.items()}
        return h[self.target]


# ------------------------------------------------------------------------------------ data path
class Pipeline:
    """One way of turning seed papers into ``(blocks, x, y)`` on the training device."""

    def __init__(self, mode: str, ds, device: torch.device, fanouts: List[int], batch_size: int,
                 seed: int) -> None:
        if mode not in ("baseline", "unified"):
            raise ValueError(f"mode must be 'baseline' or 'unified', got {mode!r}")
        self.mode, self.device, self.batch_size = mode, device, batch_size
        self.target = t = ds.target
        self.sampler = NeighborSampler(fanouts, seed=seed)   # an int per layer: every edge type
        if mode == "baseline":
            # CPU sampling; the training loop gathers feats[input_nodes] on the CPU and copies.
            self.graph, self.feats, self.labels = ds.graph, ds.features[t], ds.labels[t]
        else:
            # ut.unified pins the host tables in place; the loader gathers from them per node type.
            self.feats = unified_table(ds.features[t], "features")
            self.labels = unified_table(ds.labels[t], "labels")
            self.graph = ds.graph.pin() if device.type == "cuda" else ds.graph

    def loader(self, seeds: Dict[str, torch.Tensor], shuffle: bool,
               seed: Optional[int] = None) -> DataLoader:
        if self.mode == "baseline":
            return DataLoader(self.graph, seeds, self.sampler, device="cpu",
                              batch_size=self.batch_size, shuffle=shuffle, seed=seed)
        return DataLoader(self.graph, seeds, self.sampler, device=self.device,
                          batch_size=self.batch_size, shuffle=shuffle, seed=seed,
                          features={self.target: self.feats}, labels={self.target: self.labels})

    def unpack(self, batch):
        input_nodes, output_nodes, blocks = batch
        t = self.target
        if self.mode == "baseline":
            dev = self.device
            x = self.feats[input_nodes[t]].to(dev, non_blocking=True)     # CPU gather + copy
            y = self.labels[output_nodes[t]].to(dev, non_blocking=True)
            blocks = [b.to(dev, non_blocking=True) for b in blocks]
        else:
            x, y = blocks[0].srcdata["feat"][t], blocks[-1].dstdata["label"][t]
        return blocks, x, y

    def close(self) -> None:
        if self.mode == "unified":
            ut.unpin(self.feats)
            ut.unpin(self.labels)


def main(argv=None) -> History:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    fanouts = parse_fanouts(args, device)
    ds = load_mag(args)
    t = ds.target
    print(f"device {device} | loader {args.loader} | fanouts {fanouts} per edge type | "
          f"batch {args.batch_size} | hidden {args.hidden} | "
          f"CUDA path {'on' if ut.cuda_available() else 'off'}", flush=True)

    pipe = Pipeline(args.loader, ds, device, fanouts, args.batch_size, args.seed)
    model = RGCN(ds.graph.ntypes, ds.graph.canonical_etypes, {t: ds.feat_dim}, args.hidden,
                 ds.num_classes, len(fanouts), t, args.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    hist = History("train_rgcn", dict(vars(args), device=str(device), dataset_name=ds.name,
                                      num_nodes=ds.num_nodes, num_edges=ds.num_edges()))
    test_acc = fit(model, opt, pipe, ds, args, device, hist)
    hist.finish(test_acc, ds.num_classes, args.json)
    return hist


if __name__ == "__main__":
    main()
