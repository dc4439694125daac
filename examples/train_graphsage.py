"""GraphSAGE node classification in plain PyTorch, fed by unified-tensor (the main job).

The two-line change that makes a host-resident feature table readable from GPU kernels::

    import unified_tensor as ut          # 1
    feats = ut.unified(feats)            # 2: pins the table in place (no copy)

after which ``feats[input_nodes]`` with CUDA ``input_nodes`` is a zero-copy gather over PCIe, and
``samplers.DataLoader(..., features=feats)`` gathers the next batch on a side stream while the
current one trains.

``--loader`` picks how each minibatch reaches the model:

* ``baseline``: what users do today: CPU sampling, ``feats[input_nodes]`` on the CPU in the training
  loop, then a copy to the device;
* ``unified`` (default): ``ut.unified(feats)``; sampling on the GPU over UVA (graph pinned in
  place) when a GPU is there, on the CPU (Numba) otherwise; features gathered by the loader's
  producer, overlapped with training (``--no-overlap``: in the training thread, no prefetch);
* ``gpu``: graph and features copied into GPU memory (the upper bound; needs them to fit).

Runs anywhere: without a GPU every path runs on the CPU. Prints per-epoch time, throughput
(seeds/s), loss and accuracy, and the test accuracy at the end::

    python examples/train_graphsage.py                          # built-in synthetic graph
    python examples/train_graphsage.py --loader baseline        # the usual CPU gather + copy
    python examples/train_graphsage.py --dataset ogbn-products --ogb-root /data/ogb
"""
from __future__ import annotations

import argparse
from typing import List, Optional, Sequence

from _cli import add_data_args, add_train_args, fail


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p, nodes=200_000)
    t = add_train_args(p, epochs=4)
    t.add_argument("--loader", choices=("baseline", "unified", "gpu"), default="unified",
                   help="how minibatches reach the model: 'baseline': CPU sampling, "
                        "feats[input_nodes] on the CPU in the training loop, then a copy (what "
                        "users do today); 'unified': ut.unified(feats), sampling on the GPU over "
                        "UVA (Numba on the CPU), features gathered zero-copy by the loader while "
                        "the previous batch trains; 'gpu': graph and features copied into GPU "
                        "memory (the upper bound; needs them to fit)")
    t.add_argument("--no-overlap", action="store_true",
                   help="unified/gpu: produce each batch in the training thread (no prefetch)")
    t.add_argument("--cache-fraction", type=float, default=0.0,
                   help="unified on a GPU: share of the nodes whose feature rows are kept in a GPU "
                        "hot-row cache (ut.cache, highest out-degree first); 0: none")
    t.add_argument("--storage", choices=("fp32", "bf16", "fp16", "int8"), default="fp32",
                   help="how the feature table is stored: fp32 as it is, or compressed with "
                        "ut.compress (bf16 / fp16: 2 bytes per value; int8: 1 byte with "
                        "per-column scales) and gathered as float32 rows (written next to the "
                        "dataset cache once)")
    t.add_argument("--max-threads", type=int, default=None,
                   help="cap on the resident GPU threads of the feature gather; if not given, "
                        "the gather picks its own")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _util import (History, fit, load_dataset, parse_fanouts, pick_device,  # noqa: E402
                   stored_table, unified_table)

import unified_tensor as ut  # noqa: E402
from samplers import CSCGraph, DataLoader, NeighborSampler  # noqa: E402


# ------------------------------------------------------------------------------------ model
class SAGEConv(nn.Module):
    """GraphSAGE layer with mean aggregation on one block (dst nodes = the first src nodes).

    Uses only ``block.edges()`` and ``block.num_dst_nodes()``, so it runs on this library's
    blocks and on DGL's alike.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.lin_self = nn.Linear(in_dim, out_dim)
        self.lin_neigh = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, block, x: torch.Tensor) -> torch.Tensor:
        src, dst = block.edges()               # local ids, on x's device
        n_dst = block.num_dst_nodes()
        # The mean is linear: project before aggregating when that narrows the rows, after
        # aggregating (over n_dst rows only) otherwise.
        project_first = self.lin_neigh.out_features < self.lin_neigh.in_features
        h = self.lin_neigh(x) if project_first else x
        agg = torch.zeros(n_dst, h.shape[1], dtype=h.dtype, device=h.device)
        agg.index_add_(0, dst, h.index_select(0, src))
        deg = torch.bincount(dst, minlength=n_dst).clamp_(min=1).unsqueeze(1).to(h.dtype)
        agg = agg / deg
        return self.lin_self(x[:n_dst]) + (agg if project_first else self.lin_neigh(agg))


class GraphSAGE(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(SAGEConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, blocks: Sequence, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (layer, block) in enumerate(zip(self.layers, blocks)):
            h = layer(block, h)
            if i < len(self.layers) - 1:
                h = self.dropout(F.relu(h))
        return h


# ------------------------------------------------------------------------------------ data path
class Pipeline:
    """One way of turning seed ids into ``(blocks, x, y)`` on the training device."""

    def __init__(self, mode: str, ds, device: torch.device, fanouts: List[int], batch_size: int,
                 overlap: bool, seed: int, max_threads: Optional[int] = None,
                 one_sync: bool = False, cache_fraction: float = 0.0,
                 storage: str = "fp32") -> None:
        if mode not in ("baseline", "unified", "gpu"):
            raise ValueError(f"mode must be 'baseline', 'unified' or 'gpu', got {mode!r}")
        self.mode, self.device, self.batch_size = mode, device, batch_size
        # one_sync: GPU sampling with one host sync per batch (bench/e2e.py's unified_one_sync)
        self.sampler = NeighborSampler(fanouts, seed=seed,
                                       one_sync=one_sync and device.type == "cuda")
        self.prefetch = None if overlap else 0
        self.max_threads = max_threads
        graph = CSCGraph.from_csc(ds.indptr, ds.indices)
        self.labels = ds.labels
        if mode == "gpu" and storage != "fp32":
            fail("--storage applies to --loader unified and baseline (a compressed table is "
                 "gathered as float rows; --loader gpu copies the float table to the GPU)")
        feats = stored_table(ds, storage)   # --storage: fp32, or ut.compress(...)
        if mode == "baseline":
            # CPU sampling; the training loop gathers feats[input_nodes] on the CPU and copies.
            self.graph, self.feats = graph, feats
        elif mode == "unified":
            # The two-line change: ut.unified(feats) pins the host table in place (the helper falls
            # back to a pinned copy where a driver refuses to pin memmap pages, and says so).
            self.feats = unified_table(feats, "features")
            self.labels = unified_table(ds.labels, "labels")  # pinned once, not by every epoch's loader
            self.graph = graph.pin() if device.type == "cuda" else graph
            if cache_fraction > 0:
                # GPU hot-row cache: the rows of the most-drawn nodes (highest out-degree) in GPU
                # memory; gathers read them there and the rest over PCIe (bench/e2e.py's
                # unified_cached).
                if device.type != "cuda":
                    fail("a GPU row cache needs a CUDA device")
                ut.cache(self.feats, hotness=graph.out_degrees(),
                         max_rows=int(cache_fraction * graph.num_nodes), device=device)
        else:
            if device.type != "cuda":
                fail("--loader gpu needs a CUDA device")
            self.graph = graph.to_placement("cuda", device)
            self.feats = ds.features.to(device)
            self.labels = ds.labels.to(device)

    def loader(self, seeds: torch.Tensor, shuffle: bool, seed: Optional[int] = None) -> DataLoader:
        if self.mode == "baseline":
            return DataLoader(self.graph, seeds, self.sampler, device="cpu",
                              batch_size=self.batch_size, shuffle=shuffle, seed=seed,
                              prefetch=self.prefetch)
        return DataLoader(self.graph, seeds, self.sampler, device=self.device,
                          batch_size=self.batch_size, shuffle=shuffle, seed=seed,
                          prefetch=self.prefetch, features=self.feats, labels=self.labels,
                          max_threads=self.max_threads)

    def unpack(self, batch):
        input_nodes, output_nodes, blocks = batch
        if self.mode == "baseline":
            dev = self.device
            x = self.feats[input_nodes].to(dev, non_blocking=True)      # CPU gather + copy
            y = self.labels[output_nodes].to(dev, non_blocking=True)
            blocks = [b.to(dev, non_blocking=True) for b in blocks]
        else:
            x, y = blocks[0].srcdata["feat"], blocks[-1].dstdata["label"]
        return blocks, x, y

    def close(self) -> None:
        if self.mode == "unified":
            ut.unpin(self.feats)
            ut.unpin(self.labels)


def main(argv=None) -> History:
    return run(parse_args(argv))


def run(args: argparse.Namespace, ds=None) -> History:
    """Train and test with ``args`` (``parse_args``) on ``ds`` (default: ``--dataset``)."""
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    fanouts = parse_fanouts(args, device)
    if ds is None:
        ds = load_dataset(args)
    print(f"device {device} | loader {args.loader}{' (no overlap)' if args.no_overlap else ''} | "
          f"fanouts {fanouts} | batch {args.batch_size} | hidden {args.hidden} | "
          f"CUDA path {'on' if ut.cuda_available() else 'off'}", flush=True)

    if not 0.0 <= args.cache_fraction <= 1.0:
        fail(f"--cache-fraction must be in [0, 1], got {args.cache_fraction}")
    if args.cache_fraction and (args.loader != "unified" or device.type != "cuda"):
        fail("--cache-fraction needs --loader unified on a CUDA device (the cache is GPU memory)")
    pipe = Pipeline(args.loader, ds, device, fanouts, args.batch_size, not args.no_overlap,
                    args.seed, args.max_threads, cache_fraction=args.cache_fraction,
                    storage=args.storage)
    model = GraphSAGE(ds.feat_dim, args.hidden, ds.num_classes, len(fanouts),
                      args.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    hist = History("train_graphsage", dict(vars(args), device=str(device),
                                           dataset_name=ds.name, num_nodes=ds.num_nodes,
                                           num_edges=ds.num_edges))
    test_acc = fit(model, opt, pipe, ds, args, device, hist)
    hist.finish(test_acc, ds.num_classes, args.json)
    return hist


if __name__ == "__main__":
    main()
