"""GraphSAGE node classification in DGL: DGL's usual minibatch script, one import swapped.

This is DGL's standard neighbour-sampling GraphSAGE example (``dgl.nn.SAGEConv``,
``dgl.dataloading.NeighborSampler`` with ``prefetch_node_feats``/``prefetch_labels``, features in
``g.ndata``). The one change that makes it read the features zero-copy from pinned host memory is
the import of the loader::

    # from dgl.dataloading import DataLoader      # DGL's loader
    from samplers import DataLoader                # unified-tensor: the one-line swap

``samplers.DataLoader`` takes the same arguments and yields the same ``(input_nodes,
output_nodes, blocks)`` with real DGL blocks; it runs DGL's sampler, then fills the prefetched
columns (``blocks[0].srcdata["feat"]``, ``blocks[-1].dstdata["label"]``) with its own gather (on a
GPU: zero-copy from ``g.ndata`` pinned in place, on a side stream, one batch ahead).

``--loader dgl`` runs the very same code with DGL's own DataLoader, for comparison. On a GPU the
script uses DGL's "mixed" mode (graph in pinned host memory, ``use_uva=True``), which needs a CUDA
build of DGL; with a CPU-only DGL ``--device auto`` picks the CPU. Prints per-epoch time,
throughput (seeds/s), loss and accuracy, and the test accuracy at the end::

    python examples/train_dgl.py                    # samplers.DataLoader
    python examples/train_dgl.py --loader dgl       # dgl.dataloading.DataLoader
"""
from __future__ import annotations

import argparse
import time

from _cli import add_data_args, add_train_args, fail, require_framework


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p, nodes=100_000)
    t = add_train_args(p, epochs=3)
    t.add_argument("--loader", choices=("unified", "dgl"), default="unified",
                   help="'unified': samplers.DataLoader (the one-line import swap: features "
                        "gathered zero-copy, one batch ahead); 'dgl': dgl.dataloading.DataLoader, "
                        "the same script with DGL's own loader, for comparison")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _util import (History, evaluate, load_dataset, parse_fanouts, pick_device, sync,  # noqa: E402
                   train_epoch)

try:  # a failed import is reported by main(), so that --help works without DGL
    import dgl
    import dgl.dataloading
    import dgl.nn as dglnn
    from dgl.dataloading import NeighborSampler
except (ImportError, OSError) as exc:   # not installed, or built for another torch
    dgl, DGL_ERROR = None, exc
else:
    DGL_ERROR = None

# from dgl.dataloading import DataLoader      # DGL's loader
from samplers import DataLoader                # unified-tensor: the one-line swap


def loader_class(name: str) -> type:
    """``--loader`` picks the class; everything else in the script is the same for both."""
    return {"unified": DataLoader, "dgl": dgl.dataloading.DataLoader}[name]


# ------------------------------------------------------------------------------------ model
class SAGE(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(dglnn.SAGEConv(a, b, "mean")
                                    for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, blocks, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (layer, block) in enumerate(zip(self.layers, blocks)):
            h = layer(block, h)
            if i < len(self.layers) - 1:
                h = self.dropout(F.relu(h))
        return h


# ------------------------------------------------------------------------------------ set-up
def dgl_has_cuda() -> bool:
    """Whether this DGL build can put a graph on the GPU (the PyPI wheels are CPU-only)."""
    if not torch.cuda.is_available():
        return False
    try:
        dgl.graph(([0], [0])).to("cuda")
    except dgl.DGLError:
        return False
    return True


def pick_dgl_device(name: str) -> torch.device:
    device = pick_device(name)
    if device.type == "cuda" and not dgl_has_cuda():
        if name != "auto":
            fail(f"--device {name}: this DGL build has no CUDA support "
                 f"(DGL {dgl.__version__}); use --device cpu")
        print(f"DGL {dgl.__version__} has no CUDA support: running on the CPU", flush=True)
        device = torch.device("cpu")
    return device


def build_graph(ds) -> dgl.DGLGraph:
    """The dataset as a DGLGraph on the CPU with ``ndata["feat"]`` and ``ndata["label"]``."""
    src, dst = ds.edge_index()
    g = dgl.graph((src, dst), num_nodes=ds.num_nodes)
    g.ndata["feat"] = ds.features
    g.ndata["label"] = ds.labels
    return g


def main(argv=None) -> History:
    args = parse_args(argv)
    require_framework("DGL", DGL_ERROR,
                      "pip install dgl (CUDA builds: https://www.dgl.ai/pages/start.html)")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)            # DGL's loader shuffles with NumPy
    dgl.seed(args.seed)                  # DGL's sampler
    device = pick_dgl_device(args.device)
    fanouts = parse_fanouts(args, device)
    ds = load_dataset(args)
    g = build_graph(ds)
    use_uva = device.type == "cuda"      # DGL's "mixed" mode: graph and features pinned in place
    Loader = loader_class(args.loader)
    print(f"device {device} | loader {args.loader} ({Loader.__module__}) | "
          f"fanouts {fanouts} | batch {args.batch_size} | hidden {args.hidden} | "
          f"DGL {dgl.__version__}", flush=True)

    sampler = NeighborSampler(fanouts, prefetch_node_feats=["feat"], prefetch_labels=["label"])
    train_loader = Loader(g, ds.train_idx, sampler, device=device, batch_size=args.batch_size,
                          shuffle=True, drop_last=False, num_workers=0, use_uva=use_uva)
    val_loader = Loader(g, ds.val_idx, sampler, device=device, batch_size=args.batch_size,
                        shuffle=False, drop_last=False, num_workers=0, use_uva=use_uva)
    test_loader = Loader(g, ds.test_idx, sampler, device=device, batch_size=args.batch_size,
                         shuffle=False, drop_last=False, num_workers=0, use_uva=use_uva)

    model = SAGE(ds.feat_dim, args.hidden, ds.num_classes, len(fanouts), args.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    hist = History("train_dgl", dict(vars(args), device=str(device), dataset_name=ds.name,
                                     num_nodes=ds.num_nodes, num_edges=ds.num_edges,
                                     dgl_version=dgl.__version__))
    for epoch in range(args.epochs):
        sync(device)
        t0 = time.perf_counter()
        loss, train_acc, n = train_epoch(model, opt, train_loader, device, epoch,
                                         args.max_batches, not args.no_progress)
        sync(device)
        dt = time.perf_counter() - t0
        val_acc = evaluate(model, val_loader, device, args.eval_batches)
        hist.epoch(epoch=epoch, time_s=dt, seeds_per_s=n / dt, loss=loss,
                   train_acc=train_acc, val_acc=val_acc)
    test_acc = evaluate(model, test_loader, device, args.eval_batches)
    hist.finish(test_acc, ds.num_classes, args.json)
    return hist


if __name__ == "__main__":
    main()
