"""GraphSAGE node classification in PyG: PyG's usual minibatch script, one import swapped.

This is PyG's standard neighbour-sampling GraphSAGE example (a ``torch_geometric.data.Data`` with
``x``, ``y`` and train/val/test masks, ``torch_geometric.nn.GraphSAGE`` on ``batch.x`` /
``batch.edge_index``, the loss on the first ``batch.batch_size`` rows, which are the seeds). The one
change is where ``NeighborLoader`` comes from::

    # from torch_geometric.loader import NeighborLoader     # PyG's loader (pyg-lib / torch-sparse)
    from samplers.pyg import NeighborLoader                  # unified-tensor: the one-line swap

    loader = NeighborLoader(data, num_neighbors=[15, 10, 5], input_nodes=data.train_mask,
                            batch_size=1024, shuffle=True, device="cuda")

``samplers.pyg.NeighborLoader`` takes PyG's arguments and yields PyG's batches, sampled by this
library's kernels (no pyg-lib or torch-sparse needed). With ``device="cuda"`` it samples on the GPU
over UVA and gathers ``batch.x``, ``batch.y`` and the masks zero-copy from ``data``'s host tensors,
pinned in place (never copied), one batch ahead on a side stream; on the CPU it samples with Numba.
Its extra keyword arguments (``device``, ``seed``) are the only other difference, and
``batch.to(device)`` stays in the loop as in PyG's script (a no-op for our batches).

``--loader pyg`` runs the very same code with PyG's own ``NeighborLoader``, which needs pyg-lib or
torch-sparse. ``--trim`` passes ``num_sampled_nodes_per_hop`` / ``num_sampled_edges_per_hop`` to
``GraphSAGE`` (PyG's ``trim_to_layer``: each layer skips the nodes and edges the later layers no
longer need; same outputs for the seeds, less work). Prints per-epoch time, throughput (seeds/s),
loss and accuracy, and the test accuracy at the end::

    python examples/train_pyg.py                      # samplers.pyg.NeighborLoader, about 1 min
    python examples/train_pyg.py --trim               # layer-wise trimming
    python examples/train_pyg.py --loader pyg         # torch_geometric.loader.NeighborLoader
    python examples/train_pyg.py --dataset ogbn-products --ogb-root /data/ogb
"""
from __future__ import annotations

import argparse
import contextlib
import time
from typing import Callable, Dict, Iterator, Optional, Tuple

from _cli import add_data_args, add_pyg_args, add_train_args, fail, require_framework, set_option


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p, nodes=100_000)
    t = add_train_args(p, epochs=3)
    set_option(p, "hidden", hidden=128)
    add_pyg_args(t)
    t.add_argument("--storage", choices=("fp32", "bf16", "fp16", "int8"), default="fp32",
                   help="how data.x is stored: fp32 as it is, or compressed with ut.compress "
                        "(gathered as float32 rows by the loader)")
    t.add_argument("--trim", action="store_true",
                   help="layer-wise trimming (PyG's trim_to_layer): pass batch.num_sampled_nodes "
                        "and batch.num_sampled_edges to GraphSAGE, so each layer computes only "
                        "what the next one reads")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _util import (History, load_dataset, parse_fanouts, pick_device, progress,  # noqa: E402
                   stored_table, sync)

import unified_tensor as ut  # noqa: E402

try:  # a failed import is reported by main(), so that --help works without PyG
    import torch_geometric.loader
    from torch_geometric.data import Data
    from torch_geometric.nn import GraphSAGE

    # from torch_geometric.loader import LinkNeighborLoader, NeighborLoader   # PyG's loaders
    from samplers.pyg import LinkNeighborLoader, NeighborLoader   # unified-tensor: the swap
except (ImportError, OSError) as exc:   # not installed, or built for another torch
    PYG_ERROR: Optional[BaseException] = exc
else:
    PYG_ERROR = None

PYG_INSTALL = "pip install torch_geometric"

# (logits of the seeds, their labels) of one batch: where a script's model meets PyG's batch.
SeedLogits = Callable[[torch.nn.Module, object], Tuple[torch.Tensor, torch.Tensor]]


# ------------------------------------------------------------------------------------ loaders
def loader_class(name: str, link: bool = False) -> type:
    """``--loader`` picks the class (``NeighborLoader``, or ``LinkNeighborLoader`` with
    ``link``); everything else in the scripts is the same for both."""
    if name == "ours":
        return LinkNeighborLoader if link else NeighborLoader
    pyg = torch_geometric.loader
    return pyg.LinkNeighborLoader if link else pyg.NeighborLoader


def loader_kwargs(name: str, device: torch.device, seed: int) -> Dict[str, object]:
    """The keyword arguments ours adds to PyG's: where batches land (sampled on the GPU over UVA
    and gathered zero-copy when it is a CUDA device) and the seed of the shuffle and the draws.
    PyG's loader gets none (its batches are moved by ``batch.to(device)`` in the loop)."""
    return dict(device=device, seed=seed) if name == "ours" else {}


@contextlib.contextmanager
def pyg_backend_required(name: str) -> Iterator[None]:
    """PyG's own loaders sample with pyg-lib or torch-sparse and raise ``ImportError`` at the first
    batch when neither is installed: exit with one line saying what to install instead."""
    try:
        yield
    except ImportError as exc:
        text = str(exc)
        if name != "pyg" or not any(s in text for s in ("pyg-lib", "torch-sparse")):
            raise
        version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
        build = "cpu" if torch.version.cuda is None else "cu" + torch.version.cuda.replace(".", "")
        fail(f"--loader pyg: PyG's loader cannot sample here ({' '.join(text.split())}); "
             f"install pyg-lib (`pip install pyg-lib -f https://data.pyg.org/whl/"
             f"torch-{version}.0+{build}.html`) or torch-sparse, or use --loader ours (needs "
             f"neither)")


# ------------------------------------------------------------------------------------ data
def to_data(ds, x=None) -> "Data":
    """The dataset as PyG's ``Data``: ``x``, ``edge_index``, ``y`` and boolean train/val/test
    masks, all on the CPU (``x`` is the dataset's table itself, e.g. a memmap: not copied, or the
    table given, e.g. a compressed one)."""
    def mask(idx: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(ds.num_nodes, dtype=torch.bool)
        m[idx] = True
        return m

    return Data(x=ds.features if x is None else x, edge_index=ds.edge_index(), y=ds.labels,
                train_mask=mask(ds.train_idx), val_mask=mask(ds.val_idx),
                test_mask=mask(ds.test_idx), num_nodes=ds.num_nodes)


# ------------------------------------------------------------------------------------ train / test
def train(model, loader, optimizer, seed_logits: SeedLogits, device: torch.device, epoch: int,
          max_batches: Optional[int], show: bool) -> Tuple[float, float, int]:
    """One epoch (at most ``max_batches`` steps) of cross-entropy on the seeds; ``(mean loss,
    train accuracy, seeds seen)``. The sums stay on the device (no host sync per batch)."""
    model.train()
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = steps = 0
    for batch in progress(loader, total, f"epoch {epoch}", show):
        batch = batch.to(device)
        optimizer.zero_grad()
        out, y = seed_logits(model, batch)
        loss = F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * y.numel()
        correct += (out.detach().argmax(-1) == y).sum()
        seen += y.numel()
        steps += 1
        if steps == total:
            break
    return float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1), seen


@torch.no_grad()
def test(model, loader, seed_logits: SeedLogits, device: torch.device,
         max_batches: Optional[int]) -> float:
    """Accuracy on the seeds of ``loader`` (at most ``max_batches`` batches)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for step, batch in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        batch = batch.to(device)
        out, y = seed_logits(model, batch)
        correct += (out.argmax(-1) == y).sum()
        seen += y.numel()
    return int(correct) / max(seen, 1)


def run(model, optimizer, loaders: Dict[str, object], seed_logits: SeedLogits,
        args: argparse.Namespace, device: torch.device, hist: History) -> float:
    """``args.epochs`` epochs of :func:`train` (per-epoch time, seeds/s, loss, train and val
    accuracy into ``hist``); returns the test accuracy."""
    with pyg_backend_required(args.loader):
        for epoch in range(args.epochs):
            sync(device)
            t0 = time.perf_counter()
            loss, train_acc, n = train(model, loaders["train"], optimizer, seed_logits, device,
                                       epoch, args.max_batches, not args.no_progress)
            sync(device)
            dt = time.perf_counter() - t0
            val_acc = test(model, loaders["val"], seed_logits, device, args.eval_batches)
            hist.epoch(epoch=epoch, time_s=dt, seeds_per_s=n / dt, loss=loss,
                       train_acc=train_acc, val_acc=val_acc)
        return test(model, loaders["test"], seed_logits, device, args.eval_batches)


# ------------------------------------------------------------------------------------ script
def main(argv=None) -> History:
    args = parse_args(argv)
    require_framework("PyG", PYG_ERROR, PYG_INSTALL)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    fanouts = parse_fanouts(args, device)
    ds = load_dataset(args)
    data = to_data(ds, stored_table(ds, args.storage))
    Loader = loader_class(args.loader)
    print(f"device {device} | loader {args.loader} ({Loader.__module__}.{Loader.__name__}) | "
          f"fanouts {fanouts} | batch {args.batch_size} | hidden {args.hidden} | "
          f"trim {'on' if args.trim else 'off'} | "
          f"CUDA path {'on' if ut.cuda_available() else 'off'}", flush=True)

    # PyG's script from here on; loader_kwargs is {} for PyG's loader.
    kw = dict(num_neighbors=fanouts, batch_size=args.batch_size,
              **loader_kwargs(args.loader, device, args.seed))
    loaders = {"train": Loader(data, input_nodes=data.train_mask, shuffle=True, **kw),
               "val": Loader(data, input_nodes=data.val_mask, **kw),
               "test": Loader(data, input_nodes=data.test_mask, **kw)}
    model = GraphSAGE(data.num_features, args.hidden, num_layers=len(fanouts),
                      out_channels=ds.num_classes, dropout=args.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    def seed_logits(model, batch) -> Tuple[torch.Tensor, torch.Tensor]:
        if args.trim:
            out = model(batch.x, batch.edge_index,
                        num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                        num_sampled_edges_per_hop=batch.num_sampled_edges)
        else:
            out = model(batch.x, batch.edge_index)
        return out[:batch.batch_size], batch.y[:batch.batch_size]

    hist = History("train_pyg", dict(vars(args), device=str(device), dataset_name=ds.name,
                                     num_nodes=ds.num_nodes, num_edges=ds.num_edges))
    test_acc = run(model, optimizer, loaders, seed_logits, args, device, hist)
    hist.finish(test_acc, ds.num_classes, args.json)
    return hist


if __name__ == "__main__":
    main()
