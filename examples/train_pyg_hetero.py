"""Heterogeneous node classification in PyG: ``HeteroData``, ``to_hetero`` and NeighborLoader.

The graph is the built-in synthetic ogbn-mag look-alike (``samplers.datasets.synthetic_mag``):
papers, authors, institutions and fields of study, four relations and their reverses; the task is
to predict each paper's class. It is held as PyG's ``HeteroData`` and trained the way PyG's
heterogeneous examples do::

    # from torch_geometric.loader import NeighborLoader    # PyG's loader (pyg-lib / torch-sparse)
    from samplers.pyg import NeighborLoader                 # unified-tensor: the one-line swap

    loader = NeighborLoader(data, num_neighbors=[10, 5], batch_size=512, shuffle=True,
                            input_nodes=("paper", data["paper"].train_mask), device="cuda")
    model = HeteroSAGE(data.metadata(), ...)   # to_hetero(SAGE(...), data.metadata(), aggr="sum")
    for batch in loader:
        out = model(batch.x_dict, batch.edge_index_dict, batch.num_nodes_dict)["paper"]
        loss = F.cross_entropy(out[:batch["paper"].batch_size],
                               batch["paper"].y[:batch["paper"].batch_size])

``SAGE`` is a plain homogeneous GraphSAGE (lazy ``SAGEConv((-1, -1), hidden)`` layers plus a
``Linear(-1, hidden)`` of each node's own state), which ``to_hetero`` turns into one ``SAGEConv``
per edge type, summed per destination type, and one ``Linear`` per node type. Only papers have
features (as in ogbn-mag); ``HeteroSAGE`` gives authors, institutions and fields one learned
vector per node type, so what the model knows about them comes from their paper neighbours (two
layers: a paper hears from the papers of its authors and fields).

``--loader pyg`` runs the same code with PyG's own ``NeighborLoader`` (needs pyg-lib or
torch-sparse). Prints per-epoch time, throughput (seeds/s), loss and accuracy, and the test
accuracy at the end::

    python examples/train_pyg_hetero.py                  # about a minute on a 2-core CPU
    python examples/train_pyg_hetero.py --loader pyg
    python examples/train_pyg_hetero.py --papers 1000000 --device cuda
"""
from __future__ import annotations

import argparse
from typing import Dict, Tuple

from _cli import add_mag_args, add_pyg_args, add_train_args, require_framework, set_option


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_mag_args(p, papers=50_000)
    t = add_train_args(p, epochs=3)
    set_option(p, "fanouts", help="comma-separated neighbours per edge type per hop (hop 1, "
                                  "around the seeds, first); if not given, 15,10,5 on a GPU and "
                                  "10,5 on the CPU")
    set_option(p, "hidden", help="hidden width of the SAGEConv layers", hidden=64)
    set_option(p, "batch_size", help="seed papers per minibatch", batch_size=512)
    set_option(p, "lr", lr=5e-3)
    add_pyg_args(t)
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _util import History, load_mag, parse_fanouts, pick_device  # noqa: E402
from train_pyg import (PYG_ERROR, PYG_INSTALL, loader_class, loader_kwargs,  # noqa: E402
                       pyg_backend_required, run)

import unified_tensor as ut  # noqa: E402

if PYG_ERROR is None:   # else main() says what is missing (so that --help works without PyG)
    from torch_geometric.data import HeteroData
    from torch_geometric.nn import Linear, SAGEConv, to_hetero


# ------------------------------------------------------------------------------------ data
def to_hetero_data(ds) -> "HeteroData":
    """The dataset as PyG's ``HeteroData``: ``x``, ``y`` and boolean train/val/test masks on the
    target type, ``num_nodes`` on the featureless ones, ``edge_index`` per edge type (CPU)."""
    data = HeteroData()
    t = ds.target
    for nt, n in ds.num_nodes.items():
        data[nt].num_nodes = n
    data[t].x = ds.features[t]
    data[t].y = ds.labels[t]
    for split, idx in (("train", ds.train_idx), ("val", ds.val_idx), ("test", ds.test_idx)):
        mask = torch.zeros(ds.num_nodes[t], dtype=torch.bool)
        mask[idx[t]] = True
        data[t][f"{split}_mask"] = mask
    for et, ei in ds.edge_index.items():
        data[et].edge_index = ei
    return data


# ------------------------------------------------------------------------------------ model
class SAGE(nn.Module):
    """GraphSAGE on a homogeneous graph, written for ``to_hetero``: per layer, the mean over the
    in-neighbours (``SAGEConv((-1, -1), dim, root_weight=False)``, lazy: sized on the first batch)
    plus a linear map of the node's own state (``Linear(-1, dim)``). ``to_hetero`` gives every
    edge type its own ``SAGEConv`` (summed per destination type) and every node type its own
    ``Linear``: an R-GCN with GraphSAGE updates. (``SAGEConv``'s built-in root weight would be
    one per edge type, four of them summed for papers; one per node type learns markedly
    faster here.)"""

    def __init__(self, hidden: int, out: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        dims = [hidden] * (num_layers - 1) + [out]
        self.convs = nn.ModuleList(SAGEConv((-1, -1), d, root_weight=False) for d in dims)
        self.lins = nn.ModuleList(Linear(-1, d) for d in dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        for i, (conv, lin) in enumerate(zip(self.convs, self.lins)):
            x = conv(x, edge_index) + lin(x)
            if i < len(self.convs) - 1:
                x = self.dropout(F.relu(x))
        return x


class HeteroSAGE(nn.Module):
    """``to_hetero(SAGE)`` plus one learned input vector per featureless node type."""

    def __init__(self, metadata, featureless, hidden: int, out: int, num_layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.embed = nn.ParameterDict({nt: nn.Parameter(0.1 * torch.randn(hidden))
                                       for nt in featureless})
        self.gnn = to_hetero(SAGE(hidden, out, num_layers, dropout), metadata, aggr="sum")

    def forward(self, x_dict: Dict[str, torch.Tensor], edge_index_dict,
                num_nodes_dict: Dict[str, int]) -> Dict[str, torch.Tensor]:
        x_dict = dict(x_dict)
        for nt, vec in self.embed.items():
            x_dict[nt] = vec.expand(num_nodes_dict[nt], -1)
        return self.gnn(x_dict, edge_index_dict)


# ------------------------------------------------------------------------------------ script
def main(argv=None) -> History:
    args = parse_args(argv)
    require_framework("PyG", PYG_ERROR, PYG_INSTALL)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    fanouts = parse_fanouts(args, device)
    ds = load_mag(args)
    data = to_hetero_data(ds)
    t = ds.target
    Loader = loader_class(args.loader)
    print(f"device {device} | loader {args.loader} ({Loader.__module__}.{Loader.__name__}) | "
          f"fanouts {fanouts} per edge type | batch {args.batch_size} | hidden {args.hidden} | "
          f"CUDA path {'on' if ut.cuda_available() else 'off'}", flush=True)

    # PyG's script from here on; loader_kwargs is {} for PyG's loader.
    kw = dict(num_neighbors=fanouts, batch_size=args.batch_size,
              **loader_kwargs(args.loader, device, args.seed))
    loaders = {"train": Loader(data, input_nodes=(t, data[t].train_mask), shuffle=True, **kw),
               "val": Loader(data, input_nodes=(t, data[t].val_mask), **kw),
               "test": Loader(data, input_nodes=(t, data[t].test_mask), **kw)}
    featureless = [nt for nt in data.node_types if "x" not in data[nt]]
    model = HeteroSAGE(data.metadata(), featureless, args.hidden, ds.num_classes, len(fanouts),
                       args.dropout).to(device)

    def seed_logits(model, batch) -> Tuple[torch.Tensor, torch.Tensor]:
        out = model(batch.x_dict, batch.edge_index_dict, batch.num_nodes_dict)
        size = batch[t].batch_size
        return out[t][:size], batch[t].y[:size]

    with pyg_backend_required(args.loader), torch.no_grad():   # size the lazy layers
        seed_logits(model, next(iter(loaders["train"])).to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    hist = History("train_pyg_hetero", dict(vars(args), device=str(device), dataset_name=ds.name,
                                            num_nodes=ds.num_nodes, num_edges=ds.num_edges()))
    test_acc = run(model, optimizer, loaders, seed_logits, args, device, hist)
    hist.finish(test_acc, ds.num_classes, args.json)
    return hist


if __name__ == "__main__":
    main()
