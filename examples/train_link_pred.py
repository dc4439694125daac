"""GraphSAGE link prediction in plain PyTorch, fed by unified-tensor's edge-seed DataLoader.

The graph is the built-in synthetic graph (or an OGB node-property graph on disk), made
undirected and simple; a random ``--held-out`` fraction of its edges is kept apart for validation
and as much again for test. The training graph holds every other edge twice, ``u -> v`` with id
``e`` and ``v -> u`` with id ``e + T``, so ``reverse_eids`` is known, and training runs DGL's
recipe with this library's samplers::

    sampler = EdgePredictionSampler(NeighborSampler(fanouts), exclude="reverse_id",
                                    reverse_eids=reverse_eids,
                                    negative_sampler=UniformNegativeSampler(k))
    for input_nodes, pair, neg_pair, blocks in DataLoader(graph, train_eids, sampler, ...):
        h = model(blocks, x)                       # embeddings of the pair graphs' nodes
        pos = (h[pair.edges()[0]] * h[pair.edges()[1]]).sum(1)   # dot-product scores
        neg = ...same on neg_pair...

``exclude="reverse_id"`` takes each batch's seed edges and their reverses out of the sampled
blocks, so the model never reads the edge it is asked to predict. Evaluation scores each held-out
edge ``(u, v)`` against ``--eval-negatives`` corrupted edges ``(u, v')`` on a graph that also holds
the held-out edges, all of them excluded from the blocks (``exclude=`` a callable), so message
passing sees training edges only. Prints per-epoch time, throughput (seed edges/s), loss, the
validation AUC and MRR, and the test AUC and MRR next to chance (AUC 0.5, MRR of a random
ranking).

``--loader baseline`` gathers ``feats[input_nodes]`` on the CPU in the training loop and copies it;
``--loader unified`` (default) passes ``ut.unified(feats)`` to the loader, which gathers the next
batch's rows (zero-copy on a GPU, where the graph is pinned and sampled over UVA) while this one
trains::

    python examples/train_link_pred.py                     # about a minute on a 2-core CPU
    python examples/train_link_pred.py --loader baseline
"""
from __future__ import annotations

import argparse
import time
from typing import Dict, List, Optional, Tuple

from _cli import fail, link_parser


def parse_args(argv=None) -> argparse.Namespace:
    p, t = link_parser(__doc__)
    t.add_argument("--loader", choices=("baseline", "unified"), default="unified",
                   help="how minibatches reach the model: 'baseline': CPU sampling, "
                        "feats[input_nodes] on the CPU in the training loop, then a copy (what "
                        "users do today); 'unified': ut.unified(feats) handed to the loader, "
                        "which gathers the next batch's rows (zero-copy on a GPU, where the graph "
                        "is sampled over UVA) while this one trains")
    t.add_argument("--negatives", type=int, default=1,
                   help="uniform negative destinations per positive edge in training")
    t.add_argument("--eval-negatives", type=int, default=20,
                   help="uniform negative destinations per held-out edge (AUC and MRR)")
    t.add_argument("--held-out", type=float, default=0.05,
                   help="fraction of the undirected edges held out for validation, and the same "
                        "again for test (removed from the training graph)")
    args = p.parse_args(argv)
    for name in ("negatives", "eval_negatives"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0.0 < args.held_out < 0.5:
        p.error(f"--held-out must be in (0, 0.5), got {args.held_out}")
    return args


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _util import (History, load_dataset, parse_fanouts, pick_device, progress, sync,  # noqa: E402
                   unified_table)
from train_graphsage import GraphSAGE  # noqa: E402

import unified_tensor as ut  # noqa: E402
from samplers import (CSCGraph, DataLoader, EdgePredictionSampler, NeighborSampler,  # noqa: E402
                      UniformNegativeSampler)


# ------------------------------------------------------------------------------------ edges
class LinkSplit:
    """The undirected simple edges of a dataset, split into train / val / test.

    ``edge_index`` holds ``[train u->v (T), train v->u (T), held-out u->v (H), held-out v->u (H)]``
    with val before test inside each held-out half; :attr:`train_graph` is its first ``2T`` edges
    (same ids), :attr:`full_graph` all of them.
    """

    def __init__(self, ds, held_out: float, seed: int) -> None:
        src, dst = ds.edge_index()
        n = ds.num_nodes
        keep = src != dst
        lo, hi = torch.minimum(src, dst)[keep], torch.maximum(src, dst)[keep]
        key = torch.unique(lo * n + hi)                      # undirected, no parallel edges
        gen = torch.Generator().manual_seed(seed)
        key = key[torch.randperm(key.numel(), generator=gen)]
        u, v = key // n, key % n
        m = key.numel()
        n_val = n_test = int(held_out * m)
        t = m - n_val - n_test
        if t <= 0 or n_val == 0:
            fail(f"--held-out {held_out}: the graph has {m} undirected edges, too few to split")
        fwd = torch.stack([u, v])
        ei = torch.cat([fwd[:, :t], fwd[:, :t].flip(0), fwd[:, t:], fwd[:, t:].flip(0)], 1)
        h = n_val + n_test
        self.num_train, self.num_val, self.num_test = t, n_val, n_test
        self.train_eids = torch.arange(t)
        self.val_eids = torch.arange(2 * t, 2 * t + n_val)
        self.test_eids = torch.arange(2 * t + n_val, 2 * t + h)
        self.held_out_eids = torch.arange(2 * t, 2 * t + 2 * h)  # both directions
        self.reverse_eids = torch.cat([torch.arange(t, 2 * t), torch.arange(t)])
        self.train_graph = CSCGraph.from_edge_index(ei[:, :2 * t].contiguous(), n)
        self.full_graph = CSCGraph.from_edge_index(ei, n)

    def __repr__(self) -> str:
        return (f"undirected edges: train {self.num_train} (graph of {2 * self.num_train} "
                f"directed), val {self.num_val}, test {self.num_test}")


# ------------------------------------------------------------------------------------ data path
class Pipeline:
    """Turns seed edges into ``(pair, neg_pair, blocks, x)`` on the training device."""

    def __init__(self, mode: str, ds, split: LinkSplit, device: torch.device, fanouts: List[int],
                 batch_size: int, negatives: int, eval_negatives: int, seed: int) -> None:
        if mode not in ("baseline", "unified"):
            raise ValueError(f"mode must be 'baseline' or 'unified', got {mode!r}")
        self.mode, self.device, self.batch_size = mode, device, batch_size
        # (on the device the blocks are sampled on, so excluding them copies nothing)
        sample_device = device if mode == "unified" else torch.device("cpu")
        held_out = split.held_out_eids.to(sample_device)
        # Training: the batch's edges and their reverses leave the blocks.
        self.train_sampler = EdgePredictionSampler(
            NeighborSampler(fanouts, seed=seed), exclude="reverse_id",
            reverse_eids=split.reverse_eids, negative_sampler=UniformNegativeSampler(negatives))
        # Evaluation: on the graph with the held-out edges, every one of them excluded, so the
        # blocks hold training edges only.
        self.eval_sampler = EdgePredictionSampler(
            NeighborSampler(fanouts, seed=seed + 1), exclude=lambda seeds: held_out,
            negative_sampler=UniformNegativeSampler(eval_negatives))
        graphs = (split.train_graph, split.full_graph)
        if mode == "baseline":
            # CPU sampling; the training loop gathers feats[input_nodes] on the CPU and copies.
            self.train_graph, self.eval_graph = graphs
            self.feats = ds.features
        else:
            # ut.unified pins the host table in place; the loader gathers from it.
            self.feats = unified_table(ds.features, "features")
            self.train_graph, self.eval_graph = (
                tuple(g.pin() for g in graphs) if device.type == "cuda" else graphs)

    def loader(self, eids: torch.Tensor, train: bool, seed: Optional[int] = None) -> DataLoader:
        graph = self.train_graph if train else self.eval_graph
        sampler = self.train_sampler if train else self.eval_sampler
        if self.mode == "baseline":
            return DataLoader(graph, eids, sampler, device="cpu", batch_size=self.batch_size,
                              shuffle=train, seed=seed)
        return DataLoader(graph, eids, sampler, device=self.device, batch_size=self.batch_size,
                          shuffle=train, seed=seed, features=self.feats)

    def unpack(self, batch) -> Tuple:
        input_nodes, pair, neg, blocks = batch
        if self.mode == "baseline":
            dev = self.device
            x = self.feats[input_nodes].to(dev, non_blocking=True)      # CPU gather + copy
            pair, neg = pair.to(dev, non_blocking=True), neg.to(dev, non_blocking=True)
            blocks = [b.to(dev, non_blocking=True) for b in blocks]
        else:
            x = blocks[0].srcdata["feat"]
        return pair, neg, blocks, x

    def close(self) -> None:
        if self.mode == "unified":
            ut.unpin(self.feats)


# ------------------------------------------------------------------------------------ train / eval
def scores(model, pair, neg, blocks, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Dot-product scores of the positive and negative pairs (``h`` rows are the pair graphs'
    nodes: the last block's destination nodes)."""
    h = model(blocks, x.float())
    u, v = pair.edges()
    nu, nv = neg.edges()
    return (h[u] * h[v]).sum(1), (h[nu] * h[nv]).sum(1)


def train_epoch(model, opt, loader, pipe: Pipeline, epoch: int, max_batches: Optional[int],
                show: bool) -> Tuple[float, int]:
    """One epoch of binary cross-entropy on positive vs negative pairs; ``(mean loss, seed
    edges seen)``."""
    model.train()
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    loss_sum = torch.zeros((), device=pipe.device)
    n_seen = n_batches = 0
    for batch in progress(loader, total, f"epoch {epoch}", show):
        pair, neg, blocks, x = pipe.unpack(batch)
        pos_s, neg_s = scores(model, pair, neg, blocks, x)
        logits = torch.cat([pos_s, neg_s])
        target = torch.cat([torch.ones_like(pos_s), torch.zeros_like(neg_s)])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * pos_s.numel()
        n_seen += pos_s.numel()
        n_batches += 1
        if max_batches is not None and n_batches >= max_batches:
            break
    return float(loss_sum) / max(n_seen, 1), n_seen


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """Area under the ROC curve: the probability that a positive outscores a negative (ties
    count one half), from the ranks of all scores (Mann-Whitney U)."""
    s = torch.cat([pos, neg]).double()
    order = s.argsort()
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, s.numel() + 1, dtype=s.dtype)
    # average ranks over ties
    uniq, inv, counts = torch.unique(s, return_inverse=True, return_counts=True)
    if uniq.numel() != s.numel():
        mean_rank = torch.zeros_like(uniq).index_add_(0, inv, ranks) / counts
        ranks = mean_rank[inv]
    n_pos, n_neg = pos.numel(), neg.numel()
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1))


def mrr_chance(k: int) -> float:
    """Expected MRR of a random ranking of one positive among ``k`` negatives."""
    return sum(1.0 / r for r in range(1, k + 2)) / (k + 1)


@torch.no_grad()
def evaluate(model, loader, pipe: Pipeline, k: int, max_batches: Optional[int] = None
             ) -> Tuple[float, float]:
    """``(AUC, MRR)`` of the held-out edges of ``loader``, each against its ``k`` negatives
    (same source, uniform destination); a tie ranks the positive below (pessimistic MRR)."""
    model.eval()
    pos_all, neg_all = [], []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        pos_s, neg_s = scores(model, *pipe.unpack(batch))
        pos_all.append(pos_s.float().cpu())
        neg_all.append(neg_s.float().cpu().view(-1, k))    # row j: the negatives of positive j
    pos, neg = torch.cat(pos_all), torch.cat(neg_all)
    rank = 1 + (neg >= pos.unsqueeze(1)).sum(1)
    return auc(pos, neg.flatten()), float((1.0 / rank.double()).mean())


class LinkHistory(History):
    """Per-epoch records of link prediction (AUC, and MRR where measured, instead of
    accuracies)."""

    def epoch(self, **rec: float) -> None:
        self.epochs.append(rec)
        mrr = f" | val MRR {rec['val_mrr']:.4f}" if "val_mrr" in rec else ""
        print(f"epoch {rec['epoch']:>2} | time {rec['time_s']:.2f} s | "
              f"{rec['seeds_per_s']:,.0f} seed edges/s | loss {rec['loss']:.4f} | "
              f"val AUC {rec['val_auc']:.4f}{mrr}", flush=True)

    def finish_link(self, test_auc: float, test_mrr: Optional[float], k: int,
                    path: Optional[str]) -> None:
        timed = self.epochs[1:] or self.epochs
        thr = sum(e["seeds_per_s"] for e in timed) / len(timed) if timed else 0.0
        self.final = dict(test_auc=test_auc, chance_auc=0.5, seeds_per_s=thr)
        mrr = ""
        if test_mrr is not None:
            self.final.update(test_mrr=test_mrr, chance_mrr=mrr_chance(k))
            mrr = (f" | test MRR {test_mrr:.4f} against {k} negatives (chance "
                   f"{mrr_chance(k):.4f})")
        span = f"epochs {timed[0]['epoch']}..{timed[-1]['epoch']}" if timed else "no epoch"
        print(f"test AUC {test_auc:.4f} (chance 0.5000){mrr} | throughput {thr:,.0f} seed "
              f"edges/s (mean of {span})", flush=True)
        self.write(path)


def main(argv=None) -> LinkHistory:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    fanouts = parse_fanouts(args, device)
    ds = load_dataset(args)
    split = LinkSplit(ds, args.held_out, args.seed)
    print(f"{split} | device {device} | loader {args.loader} | fanouts {fanouts} | "
          f"batch {args.batch_size} edges | negatives {args.negatives} | hidden {args.hidden} | "
          f"CUDA path {'on' if ut.cuda_available() else 'off'}", flush=True)

    pipe = Pipeline(args.loader, ds, split, device, fanouts, args.batch_size, args.negatives,
                    args.eval_negatives, args.seed)
    model = GraphSAGE(ds.feat_dim, args.hidden, args.hidden, len(fanouts), args.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    params: Dict[str, object] = dict(vars(args), device=str(device), dataset_name=ds.name,
                                     num_nodes=ds.num_nodes, num_train_edges=split.num_train,
                                     num_val_edges=split.num_val, num_test_edges=split.num_test)
    hist = LinkHistory("train_link_pred", params)
    k = args.eval_negatives
    try:
        for epoch in range(args.epochs):
            sync(device)
            t0 = time.perf_counter()
            loss, n = train_epoch(model, opt,
                                  pipe.loader(split.train_eids, train=True, seed=args.seed + epoch),
                                  pipe, epoch, args.max_batches, not args.no_progress)
            sync(device)
            dt = time.perf_counter() - t0
            val_auc, val_mrr = evaluate(model, pipe.loader(split.val_eids, train=False), pipe, k,
                                        args.eval_batches)
            hist.epoch(epoch=epoch, time_s=dt, seeds_per_s=n / dt, loss=loss, val_auc=val_auc,
                       val_mrr=val_mrr)
        test_auc, test_mrr = evaluate(model, pipe.loader(split.test_eids, train=False), pipe, k,
                                      args.eval_batches)
    finally:
        pipe.close()
    hist.finish_link(test_auc, test_mrr, k, args.json)
    return hist


if __name__ == "__main__":
    main()
