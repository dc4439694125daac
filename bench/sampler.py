"""Neighbour sampler and DataLoader throughput: ours vs DGL's, on one power-law graph, one run.

Measured (fanouts 15,10,5, batch 1024 by default; seeds = all nodes, shuffled):

* ``sample``: the sampler alone, ``sampler.sample(graph, seeds)`` per batch
  (ours: ``samplers.NeighborSampler`` on ``CSCGraph``; DGL: ``dgl.dataloading.NeighborSampler``);
* ``loader``: the whole DataLoader, no features;
* ``loader+feat``: the whole DataLoader with ``--feat-dim`` float32 features and labels gathered for
  every batch (ours: ``features=``/``labels=``; DGL: ``prefetch_node_feats``/``prefetch_labels``);
  plus ``drop-in``: our DataLoader driving DGL's graph and sampler (only the loader changed);
* on a GPU: ours with the CSC pinned in host memory (UVA) and in GPU memory, features zero-copy.

Each row: warm-up batches, then ``--rounds`` rounds of ``--batches`` batches, wall clock (GPU
synchronised at the end of a round); the median round gives batches/s and sampled edges/s.
Correctness is checked on one batch before timing. Out-of-memory is recorded, not crashed on.

    python bench/sampler.py --out bench/results/sampler_cpu.json
    python bench/sampler.py --nodes 200000 --edges 4000000 --out /tmp/s.json   # quick
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from _common import env_info, free_cuda, is_oom, median, print_table, write_json  # noqa: E402

logger = logging.getLogger("bench.sampler")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nodes", type=int, default=1_000_000, help="nodes of the power-law graph")
    p.add_argument("--edges", type=int, default=20_000_000, help="edges of the power-law graph")
    p.add_argument("--degree-exponent", type=float, default=2.5,
                   help="power-law exponent of the degree distribution")
    p.add_argument("--fanouts", type=str, default="15,10,5",
                   help="comma-separated neighbours per layer (input layer first)")
    p.add_argument("--batch-size", type=int, default=1024, help="seed nodes per batch")
    p.add_argument("--feat-dim", type=int, default=128,
                   help="float32 feature width of the loader+feat rows")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches before each row")
    p.add_argument("--batches", type=int, default=10, help="batches per timed round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds; the median is reported")
    p.add_argument("--seed", type=int, default=0, help="seed of the graph, features and samplers")
    p.add_argument("--no-dgl", action="store_true", help="skip DGL even when it imports")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU rows")
    p.add_argument("--out", type=str, default=None, help="JSON result path; if not given, print only")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import numpy as np  # noqa: E402
import torch  # noqa: E402


# ------------------------------------------------------------------------------------ graph
def make_graph(n: int, m: int, exponent: float, seed: int):
    from samplers.datasets._synthetic import generate_edges, node_weights

    w = node_weights(n, m / n, exponent, seed)
    labels = np.arange(n, dtype=np.int64) % 16
    np.random.default_rng(seed).shuffle(labels)
    src, dst = generate_edges(w, labels, 16, m, 0.0, seed)
    return torch.from_numpy(src.astype(np.int64)), torch.from_numpy(dst.astype(np.int64))


# ------------------------------------------------------------------------------------ timing
def num_edges(blocks) -> int:
    return int(sum(b.num_edges() for b in blocks))


def run_timed(batches: Iterator, args, cuda: bool) -> Dict[str, object]:
    """Consume ``warmup`` batches, then ``rounds`` x ``batches``; median round."""
    for _ in range(args.warmup):
        next(batches)
    rounds: List[tuple] = []
    for _ in range(args.rounds):
        if cuda:
            torch.cuda.synchronize()
        t0, edges = time.perf_counter(), 0
        for _ in range(args.batches):
            edges += next(batches)
        if cuda:
            torch.cuda.synchronize()
        rounds.append((time.perf_counter() - t0, edges))
    dt = median([r[0] for r in rounds])
    edges = median([r[1] for r in rounds])
    return {"batches_per_s": args.batches / dt, "medges_per_s": edges / dt / 1e6,
            "ms_per_batch": 1e3 * dt / args.batches, "edges_per_batch": edges / args.batches,
            "round_s": [r[0] for r in rounds]}


def sampler_batches(sampler, graph, seeds: torch.Tensor, bs: int) -> Iterator[int]:
    for i in range(0, seeds.numel() - bs + 1, bs):
        _, _, blocks = sampler.sample(graph, seeds[i:i + bs])
        yield num_edges(blocks)


def loader_batches(loader, feat_key: Optional[str]) -> Iterator[int]:
    for _, _, blocks in loader:
        if feat_key is not None:
            blocks[0].srcdata[feat_key]        # materialise (DGL: a no-op after prefetching)
        yield num_edges(blocks)


def guarded(name: str, fn: Callable[[], Dict[str, object]], results: List[dict], **meta) -> None:
    row = {"name": name, **meta}
    try:
        row.update(fn())
    except Exception as exc:  # recorded, not crashed on (OOM, a missing optional package, ...)
        row["error"] = ("out of memory: " if is_oom(exc) else "") + f"{type(exc).__name__}: {exc}"
        logger.warning("%s failed: %s", name, row["error"])
        free_cuda()
    results.append(row)
    gc.collect()


# ------------------------------------------------------------------------------------ checks
def check_ours(blocks, inp, out, feats, labels, fanouts) -> None:
    x = blocks[0].srcdata["feat"]
    torch.testing.assert_close(x.cpu(), feats[inp.long().cpu()])
    assert torch.equal(blocks[-1].dstdata["label"].cpu(), labels[out.long().cpu()])
    for b, f in zip(blocks, fanouts):
        deg = torch.bincount(b.edge_index[1].cpu(), minlength=b.num_dst_nodes())
        assert int(deg.max()) <= f, "fanout exceeded"


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from samplers import CSCGraph, DataLoader, NeighborSampler

    fanouts = [int(f) for f in args.fanouts.split(",")]
    bs = args.batch_size
    need = (args.warmup + args.batches * args.rounds + 1) * bs
    if need > args.nodes:
        raise SystemExit(f"--nodes {args.nodes} too small for {need} seeds; lower --batches")

    t0 = time.perf_counter()
    src, dst = make_graph(args.nodes, args.edges, args.degree_exponent, args.seed)
    g = CSCGraph.from_edge_index(torch.stack([src, dst]), args.nodes)
    gen = torch.Generator().manual_seed(args.seed)
    feats = torch.randn(args.nodes, args.feat_dim, generator=gen)
    labels = torch.randint(0, 16, (args.nodes,), generator=gen)
    seeds = torch.randperm(args.nodes, generator=gen)
    logger.info("graph: %d nodes, %d edges (built in %.1f s)", args.nodes, src.numel(),
                time.perf_counter() - t0)

    dgl = None
    if not args.no_dgl:
        try:
            import dgl  # noqa: F811
        except Exception as exc:  # optional: recorded in the JSON
            logger.info("DGL not available (%r): ours only", exc)
    dg = None
    if dgl is not None:
        dg = dgl.graph((src, dst), num_nodes=args.nodes)
        dg = dg.formats("csc")             # what in-neighbour sampling reads; built once, untimed
        dg.create_formats_()
        dg.ndata["feat"] = feats
        dg.ndata["label"] = labels
    del src, dst

    results: List[dict] = []
    ours = NeighborSampler(fanouts, seed=args.seed)

    # correctness first
    dl = DataLoader(g, seeds[:bs], ours, batch_size=bs, features=feats, labels=labels)
    inp, out, blocks = next(iter(dl))
    check_ours(blocks, inp, out, feats, labels, fanouts)
    del dl, inp, out, blocks

    common = dict(batch_size=bs, shuffle=False, drop_last=True)
    guarded("sample", lambda: run_timed(sampler_batches(ours, g, seeds, bs), args, False),
            results, impl="ours", device="cpu")
    if dg is not None:
        dsamp = dgl.dataloading.NeighborSampler(fanouts)
        guarded("sample", lambda: run_timed(sampler_batches(dsamp, dg, seeds, bs), args, False),
                results, impl="dgl", device="cpu")
    guarded("loader", lambda: run_timed(loader_batches(
        DataLoader(g, seeds, ours, **common), None), args, False),
        results, impl="ours", device="cpu")
    if dg is not None:
        guarded("loader", lambda: run_timed(loader_batches(
            dgl.dataloading.DataLoader(dg, seeds, dgl.dataloading.NeighborSampler(fanouts),
                                       **common), None), args, False),
            results, impl="dgl", device="cpu")
    guarded("loader+feat", lambda: run_timed(loader_batches(
        DataLoader(g, seeds, ours, features=feats, labels=labels, **common), "feat"), args, False),
        results, impl="ours", device="cpu")
    if dg is not None:
        def dsamp_feat():
            return dgl.dataloading.NeighborSampler(fanouts, prefetch_node_feats=["feat"],
                                                   prefetch_labels=["label"])
        guarded("loader+feat", lambda: run_timed(loader_batches(
            dgl.dataloading.DataLoader(dg, seeds, dsamp_feat(), **common), "feat"), args, False),
            results, impl="dgl", device="cpu")
        guarded("loader+feat", lambda: run_timed(loader_batches(
            DataLoader(dg, seeds, dsamp_feat(), **common), "feat"), args, False),
            results, impl="drop-in (ours + DGL graph/sampler)", device="cpu")

    if not args.no_gpu and torch.cuda.is_available():
        for placement in ("pinned", "cuda"):
            def gpu_graph(p=placement):
                return g.to_placement(p)
            sd = seeds.cuda()
            guarded("sample", lambda: run_timed(sampler_batches(ours, gpu_graph(), sd, bs),
                                                args, True),
                    results, impl=f"ours (CSC {placement})", device="cuda")
            guarded("loader+feat", lambda: run_timed(loader_batches(
                DataLoader(gpu_graph(), seeds, ours, device="cuda", features=feats,
                           labels=labels, **common), "feat"), args, True),
                results, impl=f"ours (CSC {placement}, feats zero-copy)", device="cuda")
            free_cuda()

    # ratios against DGL in the same run
    def find(name, impl):
        return next((r for r in results if r["name"] == name and r["impl"] == impl
                     and "error" not in r), None)
    ratios = {}
    for name, key in (("sample", "medges_per_s"), ("loader", "batches_per_s"),
                      ("loader+feat", "batches_per_s")):
        a, b = find(name, "ours"), find(name, "dgl")
        if a and b:
            ratios[f"{name} ours/dgl ({key})"] = a[key] / b[key]
    rows = [[r["name"], r["impl"], r["device"], r.get("batches_per_s"), r.get("medges_per_s"),
             r.get("ms_per_batch"), r.get("error", "")] for r in results]
    print_table(["what", "impl", "device", "batches/s", "M edges/s", "ms/batch", "error"], rows)
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x", flush=True)
    summary = "; ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()) or "no DGL rows"
    payload = {"benchmark": "sampler", "env": env_info("cuda" if torch.cuda.is_available()
                                                         and not args.no_gpu else "cpu"),
               "params": vars(args), "num_edges": g.num_edges, "rows": results,
               "ratios": ratios, "summary": summary}
    if args.out:
        write_json(args.out, payload)
        logger.info("wrote %s", args.out)
    return payload


if __name__ == "__main__":
    main()
