"""GraphSAGE link prediction in PyG: ``RandomLinkSplit`` and LinkNeighborLoader, one import swapped.

PyG's usual link-prediction recipe on the built-in synthetic graph (or an OGB node-property graph
on disk), made undirected and simple: ``RandomLinkSplit`` holds out ``--held-out`` of the edges for
validation and as much again for test and builds the training graph without them (the validation
graph adds nothing, the test graph the validation edges, as PyG does), with one negative per
held-out edge. Training samples around batches of training edges with binary negatives, a
GraphSAGE encoder embeds the sampled nodes and a dot product scores each pair::

    # from torch_geometric.loader import LinkNeighborLoader   # PyG's (pyg-lib / torch-sparse)
    from samplers.pyg import LinkNeighborLoader                # unified-tensor: the one-line swap

    loader = LinkNeighborLoader(train_data, num_neighbors=[10, 5], neg_sampling="binary",
                                edge_label_index=train_data.edge_label_index,
                                edge_label=train_data.edge_label, batch_size=512, shuffle=True,
                                device="cuda")
    for batch in loader:
        z = model(batch.x, batch.edge_index)
        out = (z[batch.edge_label_index[0]] * z[batch.edge_label_index[1]]).sum(-1)
        loss = F.binary_cross_entropy_with_logits(out, batch.edge_label)

``--disjoint-train-ratio`` (PyG's ``disjoint_train_ratio``) keeps that fraction of the training
edges for supervision only, out of the message-passing graph, so the model does not learn to
find the edge it is asked about among its own inputs. Evaluation scores the held-out edges and
their negatives on the training graph and reports the AUC (the probability that a held-out edge
outscores a negative; chance 0.5). ``--loader pyg`` runs the same code with PyG's own
``LinkNeighborLoader`` (needs pyg-lib or torch-sparse). Prints per-epoch time, throughput (seed
edges/s), loss and validation AUC, and the test AUC at the end::

    python examples/train_pyg_link.py                 # about a minute on a 2-core CPU
    python examples/train_pyg_link.py --loader pyg
"""
from __future__ import annotations

import argparse
import time
from typing import Dict, Optional, Tuple

from _cli import add_pyg_args, link_parser, require_framework


def parse_args(argv=None) -> argparse.Namespace:
    p, t = link_parser(__doc__)
    add_pyg_args(t)
    t.add_argument("--held-out", type=float, default=0.05,
                   help="fraction of the undirected edges held out for validation, and the same "
                        "again for test (RandomLinkSplit's num_val and num_test)")
    t.add_argument("--disjoint-train-ratio", type=float, default=0.3,
                   help="fraction of the training edges used for supervision only, not for "
                        "message passing (RandomLinkSplit's disjoint_train_ratio)")
    t.add_argument("--negatives", type=float, default=1.0,
                   help="binary negatives per training edge (neg_sampling amount)")
    args = p.parse_args(argv)
    if not 0.0 < args.held_out < 0.5:
        p.error(f"--held-out must be in (0, 0.5), got {args.held_out}")
    if not 0.0 <= args.disjoint_train_ratio < 1.0:
        p.error(f"--disjoint-train-ratio must be in [0, 1), got {args.disjoint_train_ratio}")
    if not args.negatives > 0:
        p.error(f"--negatives must be > 0, got {args.negatives}")
    return args


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _util import load_dataset, parse_fanouts, pick_device, progress, sync  # noqa: E402
from train_link_pred import LinkHistory, auc  # noqa: E402
from train_pyg import (PYG_ERROR, PYG_INSTALL, loader_class, loader_kwargs,  # noqa: E402
                       pyg_backend_required)

import unified_tensor as ut  # noqa: E402

if PYG_ERROR is None:   # else main() says what is missing (so that --help works without PyG)
    import torch_geometric.transforms as T
    from torch_geometric.data import Data
    from torch_geometric.nn import GraphSAGE
    from torch_geometric.utils import remove_self_loops, to_undirected


# ------------------------------------------------------------------------------------ data
def link_split(ds, held_out: float, disjoint_train_ratio: float, seed: int
               ) -> Tuple["Data", "Data", "Data"]:
    """``(train_data, val_data, test_data)`` of PyG's ``RandomLinkSplit`` on the dataset's graph,
    made undirected and simple: each a ``Data`` with ``x`` (the dataset's table, not copied),
    the ``edge_index`` to pass messages on, and ``edge_label_index`` / ``edge_label`` (the edges
    to score; val and test with one negative per positive, label 0)."""
    edge_index, _ = remove_self_loops(ds.edge_index())
    data = Data(x=ds.features, edge_index=to_undirected(edge_index, num_nodes=ds.num_nodes),
                num_nodes=ds.num_nodes)
    torch.manual_seed(seed)   # RandomLinkSplit draws with torch's global generator
    split = T.RandomLinkSplit(num_val=held_out, num_test=held_out, is_undirected=True,
                              add_negative_train_samples=False,
                              disjoint_train_ratio=disjoint_train_ratio)
    return split(data)


# ------------------------------------------------------------------------------------ train / test
def pair_scores(model, batch) -> torch.Tensor:
    """Dot-product scores of ``batch.edge_label_index``'s pairs (local ids) from the GraphSAGE
    embeddings of the sampled nodes."""
    z = model(batch.x, batch.edge_index)
    src, dst = batch.edge_label_index
    return (z[src] * z[dst]).sum(-1)


def train(model, loader, optimizer, device: torch.device, epoch: int,
          max_batches: Optional[int], show: bool) -> Tuple[float, int]:
    """One epoch of binary cross-entropy on the seed edges and their negatives; ``(mean loss,
    seed edges seen)``."""
    model.train()
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    loss_sum = torch.zeros((), device=device)
    seen = steps = 0
    for batch in progress(loader, total, f"epoch {epoch}", show):
        batch = batch.to(device)
        optimizer.zero_grad()
        out = pair_scores(model, batch)
        loss = F.binary_cross_entropy_with_logits(out, batch.edge_label)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * batch.input_id.numel()
        seen += batch.input_id.numel()
        steps += 1
        if steps == total:
            break
    return float(loss_sum) / max(seen, 1), seen


@torch.no_grad()
def test(model, loader, device: torch.device, max_batches: Optional[int]) -> float:
    """AUC of the scores of ``loader``'s labelled edges (label 1: held out, 0: negative)."""
    model.eval()
    scores, labels = [], []
    for step, batch in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        batch = batch.to(device)
        scores.append(pair_scores(model, batch).float().cpu())
        labels.append(batch.edge_label.cpu())
    s, y = torch.cat(scores), torch.cat(labels)
    return auc(s[y == 1], s[y == 0])


# ------------------------------------------------------------------------------------ script
def main(argv=None) -> LinkHistory:
    args = parse_args(argv)
    require_framework("PyG", PYG_ERROR, PYG_INSTALL)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    fanouts = parse_fanouts(args, device)
    ds = load_dataset(args)
    train_data, val_data, test_data = link_split(ds, args.held_out, args.disjoint_train_ratio,
                                                 args.seed)
    Loader = loader_class(args.loader, link=True)
    print(f"edges: train {train_data.edge_label_index.shape[1]} (message passing "
          f"{train_data.edge_index.shape[1]} directed), val {val_data.edge_label_index.shape[1]}, "
          f"test {test_data.edge_label_index.shape[1]} (half negatives) | device {device} | "
          f"loader {args.loader} ({Loader.__module__}.{Loader.__name__}) | fanouts {fanouts} | "
          f"batch {args.batch_size} edges | hidden {args.hidden} | "
          f"CUDA path {'on' if ut.cuda_available() else 'off'}", flush=True)

    # PyG's script from here on; loader_kwargs is {} for PyG's loader.
    kw = dict(num_neighbors=fanouts, batch_size=args.batch_size,
              **loader_kwargs(args.loader, device, args.seed))
    train_loader = Loader(train_data, edge_label_index=train_data.edge_label_index,
                          edge_label=train_data.edge_label, shuffle=True,
                          neg_sampling=dict(mode="binary", amount=args.negatives), **kw)
    val_loader, test_loader = (Loader(d, edge_label_index=d.edge_label_index,
                                      edge_label=d.edge_label, **kw)
                               for d in (val_data, test_data))
    model = GraphSAGE(ds.feat_dim, args.hidden, num_layers=len(fanouts),
                      dropout=args.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    params: Dict[str, object] = dict(
        vars(args), device=str(device), dataset_name=ds.name, num_nodes=ds.num_nodes,
        num_train_edges=train_data.edge_label_index.shape[1],
        num_val_edges=val_data.edge_label_index.shape[1],
        num_test_edges=test_data.edge_label_index.shape[1])
    hist = LinkHistory("train_pyg_link", params)
    with pyg_backend_required(args.loader):
        for epoch in range(args.epochs):
            sync(device)
            t0 = time.perf_counter()
            loss, n = train(model, train_loader, optimizer, device, epoch, args.max_batches,
                            not args.no_progress)
            sync(device)
            dt = time.perf_counter() - t0
            val_auc = test(model, val_loader, device, args.eval_batches)
            hist.epoch(epoch=epoch, time_s=dt, seeds_per_s=n / dt, loss=loss, val_auc=val_auc)
        test_auc = test(model, test_loader, device, args.eval_batches)
    hist.finish_link(test_auc, None, 0, args.json)
    return hist


if __name__ == "__main__":
    main()
