"""CPU sampling speed against DGL, as a robust ratio: interleaved runs, median of the ratios.

A shared 2-core machine swings a single ratio by up to 2x between runs, so this alternates ours and
DGL's sampler ``--runs`` times on the same graph and seeds (ours, DGL, ours, DGL, ...; each run
``--batches`` batches of ``--batch-size`` seeds after a warm-up) and reports every per-pair ratio
and their median. Homogeneous (``NeighborSampler`` on ``CSCGraph`` vs DGL's on a CSC DGLGraph) and,
with ``--hetero``, heterogeneous (``HeteroCSCGraph`` vs a DGL heterograph, the same edges and
per-edge-type fanouts). Needs DGL (the dgl environment).

    python bench/sampler_ratio.py --out bench/results/sampler_ratio_cpu.json
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from _common import env_info, median, write_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nodes", type=int, default=1_000_000, help="nodes of the power-law graph")
    p.add_argument("--edges", type=int, default=20_000_000, help="edges of the power-law graph")
    p.add_argument("--fanouts", default="15,10,5", help="comma-separated fanouts, input layer first")
    p.add_argument("--batch-size", type=int, default=1024, help="seeds per batch")
    p.add_argument("--batches", type=int, default=10, help="timed batches per run")
    p.add_argument("--runs", type=int, default=5, help="interleaved runs of each sampler")
    p.add_argument("--hetero", action="store_true",
                   help="also compare the heterogeneous samplers (an ogbn-mag-shaped random graph)")
    p.add_argument("--seed", type=int, default=0, help="graph and seed-order seed")
    p.add_argument("--out", default=None, help="JSON result path")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402


def _time(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def runner(sampler, graph, batches) -> Callable[[], None]:
    """One run: ``sampler.sample(graph, b)`` for every batch ``b``."""
    def run() -> None:
        for b in batches:
            sampler.sample(graph, b)
    return run


def check_last_block(ours, theirs, graph, dgraph, seeds) -> None:
    """Both samplers' output block (destination nodes = the seeds) must have the same size: the
    same destination nodes and, per edge type, ``min(in-degree, fanout)`` edges per node."""
    mine = ours.sample(graph, seeds)[2][-1]
    dgl_block = theirs.sample(dgraph, seeds)[2][-1]
    etypes = getattr(mine, "canonical_etypes", None)
    if etypes is None:   # homogeneous
        got, want = [mine.num_edges()], [dgl_block.num_edges()]
    else:
        got = [mine.num_edges(et) for et in etypes]
        want = [dgl_block.num_edges(et) if et in dgl_block.canonical_etypes else 0 for et in etypes]
    if got != want:
        raise RuntimeError(f"sampler_ratio: our output block has {got} edges, DGL's {want}")


def interleave(ours: Callable[[], None], theirs: Callable[[], None], runs: int) -> Dict[str, object]:
    ours(), theirs()   # warm-up (compilation, caches)
    t_ours, t_dgl = [], []
    for _ in range(runs):
        t_ours.append(_time(ours))
        t_dgl.append(_time(theirs))
    ratios = [d / o for o, d in zip(t_ours, t_dgl)]
    return {"ours_s": t_ours, "dgl_s": t_dgl, "ratios": ratios, "median_ratio": median(ratios)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import dgl

    from sampler import make_graph
    from samplers import CSCGraph, HeteroCSCGraph, NeighborSampler

    fanouts = [int(f) for f in args.fanouts.split(",")]
    bs, nb = args.batch_size, args.batches
    src, dst = make_graph(args.nodes, args.edges, 2.5, args.seed)
    g = CSCGraph.from_edge_index(torch.stack([src, dst]), args.nodes)
    dg = dgl.graph((src, dst), num_nodes=args.nodes).formats("csc")
    dg.create_formats_()
    seeds = torch.randperm(args.nodes, generator=torch.Generator().manual_seed(args.seed))
    batches = [seeds[i * bs:(i + 1) * bs] for i in range(nb)]
    check_last_block(NeighborSampler(fanouts, seed=0), dgl.dataloading.NeighborSampler(fanouts),
                     g, dg, batches[0])
    res = {"homogeneous": interleave(runner(NeighborSampler(fanouts, seed=0), g, batches),
                                     runner(dgl.dataloading.NeighborSampler(fanouts), dg, batches),
                                     args.runs)}
    print(f"homogeneous sampling, {args.nodes:,} nodes / {g.num_edges:,} edges, fanouts {fanouts}: "
          f"ours/DGL speed ratios {[round(r, 2) for r in res['homogeneous']['ratios']]}, median "
          f"{res['homogeneous']['median_ratio']:.2f}x", flush=True)

    if args.hetero:
        gen = torch.Generator().manual_seed(args.seed + 1)
        n = {"paper": args.nodes // 2, "author": args.nodes // 3, "field": max(args.nodes // 100, 10)}
        e = args.edges // 4
        w = torch.stack([torch.randint(0, n["author"], (e,), generator=gen),
                         torch.randint(0, n["paper"], (e,), generator=gen)])
        c = torch.stack([torch.randint(0, n["paper"], (e,), generator=gen),
                         torch.randint(0, n["paper"], (e,), generator=gen)])
        t = torch.stack([torch.randint(0, n["paper"], (e // 2,), generator=gen),
                         torch.randint(0, n["field"], (e // 2,), generator=gen)])
        eidx = {("author", "writes", "paper"): w, ("paper", "rev_writes", "author"): w.flip(0),
                ("paper", "cites", "paper"): c, ("paper", "has_topic", "field"): t,
                ("field", "rev_has_topic", "paper"): t.flip(0)}
        hg = HeteroCSCGraph.from_edge_index_dict(eidx, n)
        dhg = dgl.heterograph({et: (v[0], v[1]) for et, v in eidx.items()}, num_nodes_dict=n)
        dhg = dhg.formats("csc")
        dhg.create_formats_()
        pseeds = torch.randperm(n["paper"], generator=gen)
        hb = [{"paper": pseeds[i * bs:(i + 1) * bs]} for i in range(nb)]
        check_last_block(NeighborSampler(fanouts, seed=0), dgl.dataloading.NeighborSampler(fanouts),
                         hg, dhg, hb[0])
        res["heterogeneous"] = interleave(runner(NeighborSampler(fanouts, seed=0), hg, hb),
                                          runner(dgl.dataloading.NeighborSampler(fanouts), dhg, hb),
                                          args.runs)
        print(f"heterogeneous sampling, {sum(n.values()):,} nodes / {hg.num_edges():,} edges, "
              f"5 edge types: ours/DGL speed ratios "
              f"{[round(r, 2) for r in res['heterogeneous']['ratios']]}, median "
              f"{res['heterogeneous']['median_ratio']:.2f}x", flush=True)
    payload = {"benchmark": "sampler_ratio", "env": env_info("cpu"), "params": vars(args),
               "dgl": dgl.__version__, "threads": torch.get_num_threads(), **res}
    if args.out:
        write_json(args.out, payload)
        print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    main()
