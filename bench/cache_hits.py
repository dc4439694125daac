"""GPU row-cache hit rate per hotness source and cache size, measured on CPU-sampled minibatches.

``ut.cache(feats, hotness=h, max_rows=k)`` keeps the ``k`` highest-scoring rows of a host feature
table in GPU memory; a gather then reads those rows from the GPU and only the others over PCIe.
How much that saves depends on how many of the rows a batch reads (its ``input_nodes``) are in the
cache: the hit rate. It needs no GPU to measure: this script samples minibatches on the CPU and
counts, for a cache of the top ``int(f * num_nodes)`` rows of each hotness source,

=================  ===============================================================================
``out_degree``     ``graph.out_degrees()`` (no presampling; what ``e2e.py``'s ``unified_cached``
                   uses)
``presample``      :func:`samplers.presample_hotness` over ``--presample-batches`` batches drawn
                   with another loader and sampler seed than the measured ones
``random``         a random score per row (control: hit rate about ``f``)
``oracle``         the measured batches' own read counts (upper bound of any static cache of that
                   size on those batches; not a usable policy)
=================  ===============================================================================

the share of the measured batches' feature-row reads it serves (``hits / reads``, every batch's
``input_nodes`` counted, so a row read by several batches counts each time). Per row also the
rows read per batch and the PCIe bytes per batch the cache saves for ``--feat-dim`` float32
features. Graph: the built-in synthetic power-law graph (``samplers.datasets.synthetic_graph``,
``e2e.py``'s parameters, so its ``--cache`` folder is shared); seeds: its training split, shuffled,
the DGL-style ``samplers.DataLoader`` with ``NeighborSampler(fanouts)`` on the CPU.

    python bench/cache_hits.py --out bench/results/cache_hits_cpu.json
    python bench/cache_hits.py --nodes 20000 --batches 5 --presample-batches 5 --cache none  # quick
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Dict, Iterator, List

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
from _common import env_info, print_table, write_json  # noqa: E402

logger = logging.getLogger("bench.cache_hits")

SOURCES = ("out_degree", "presample", "random", "oracle")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nodes", type=int, default=1_000_000, help="synthetic graph nodes")
    p.add_argument("--avg-degree", type=float, default=15.0, help="synthetic graph: mean degree")
    p.add_argument("--feat-dim", type=int, default=128,
                   help="float32 feature width: row bytes of the PCIe numbers (and of the "
                        "generated table, so e2e.py's cached graph is reused)")
    p.add_argument("--classes", type=int, default=16, help="synthetic graph: number of classes")
    p.add_argument("--fanouts", default="15,10,5",
                   help="comma-separated neighbours per layer (input layer first)")
    p.add_argument("--batch-size", type=int, default=1024, help="seed nodes per batch")
    p.add_argument("--batches", type=int, default=40,
                   help="measured batches (their input_nodes are the reads the caches serve)")
    p.add_argument("--presample-batches", type=int, default=40,
                   help="batches counted by presample_hotness (another loader/sampler seed)")
    p.add_argument("--fractions", default="0.01,0.05,0.1,0.2",
                   help="comma-separated cache sizes as a share of the nodes")
    p.add_argument("--cache", default=None,
                   help="folder for the generated graph (.npy memmaps, made once); 'none': RAM; "
                        "if not given, $UNIFIED_TENSOR_DATA_ROOT, else "
                        "~/.cache/unified-tensor/datasets")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the graph and of the measured batches (presample: seed + 1, "
                        "random scores: seed + 2)")
    p.add_argument("--out", default=None, help="JSON result path; if not given, print only")
    args = p.parse_args(argv)
    if args.cache is None:
        from unified_tensor._env import data_root   # after the parse: --help imports no torch

        args.cache = data_root()
    try:
        args.fanout_list = [int(f) for f in args.fanouts.split(",")]
        args.fraction_list = [float(f) for f in args.fractions.split(",")]
    except ValueError as exc:
        p.error(f"--fanouts / --fractions: {exc}")
    if any(not 0.0 <= f <= 1.0 for f in args.fraction_list):
        p.error(f"--fractions must be in [0, 1], got {args.fractions}")
    if args.batches < 1 or args.presample_batches < 0 or args.batch_size < 1:
        p.error("--batches and --batch-size must be >= 1, --presample-batches >= 0")
    return args


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402


def endless(loader) -> Iterator:
    """The loader's batches, epoch after epoch (each epoch reshuffled); closes the open epoch
    when the generator is closed."""
    if len(loader) == 0:
        raise SystemExit("the loader yields no batch: too few training seeds for --batch-size")
    while True:
        it = iter(loader)
        try:
            yield from it
        finally:
            it.close()


def read_counts(graph, seeds: torch.Tensor, fanouts: List[int], batch_size: int, seed: int,
                num_batches: int) -> torch.Tensor:
    """How often ``num_batches`` batches (loader shuffle and sampler draws seeded ``seed``) read
    each node's row."""
    from samplers import DataLoader, NeighborSampler, presample_hotness

    loader = DataLoader(graph, seeds, NeighborSampler(fanouts, seed=seed), batch_size=batch_size,
                        shuffle=True, seed=seed, device="cpu")
    gen = endless(loader)
    try:
        return presample_hotness(gen, graph.num_nodes, num_batches)
    finally:
        gen.close()


def top_rows_hits(hotness: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
    """``out[k - 1]`` = reads served by a cache of the ``k`` highest-``hotness`` rows (ties: lower
    row id first, as ``ut.cache`` picks them)."""
    order = torch.argsort(hotness, descending=True, stable=True)
    return torch.cumsum(reads[order], 0)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from samplers.datasets import synthetic_graph

    t_start = time.perf_counter()
    root = None if str(args.cache).lower() == "none" else os.path.expanduser(args.cache)
    ds = synthetic_graph(args.nodes, avg_degree=args.avg_degree, num_classes=args.classes,
                         feat_dim=args.feat_dim, seed=args.seed, root=root)
    graph = ds.graph()
    n = graph.num_nodes
    data_s = time.perf_counter() - t_start
    logger.info("%s (ready in %.1f s)", ds, data_s)

    t0 = time.perf_counter()
    reads = read_counts(graph, ds.train_idx, args.fanout_list, args.batch_size, args.seed,
                        args.batches)
    measure_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    presampled = read_counts(graph, ds.train_idx, args.fanout_list, args.batch_size,
                             args.seed + 1, args.presample_batches)
    presample_s = time.perf_counter() - t0
    total = int(reads.sum())
    if total == 0:
        raise SystemExit("the measured batches read no rows")

    gen = torch.Generator().manual_seed(args.seed + 2)
    hotness: Dict[str, torch.Tensor] = {
        "out_degree": graph.out_degrees(),
        "presample": presampled,
        "random": torch.rand(n, generator=gen),
        "oracle": reads,
    }
    hits = {name: top_rows_hits(h, reads) for name, h in hotness.items()}

    row_bytes = 4 * args.feat_dim
    per_batch = total / args.batches
    rows = []
    for f in args.fraction_list:
        k = int(f * n)
        for name in SOURCES:
            h = int(hits[name][k - 1]) if k > 0 else 0
            rows.append({"source": name, "fraction": f, "cached_rows": k,
                         "cache_bytes": k * row_bytes + 4 * n,
                         "hits": h, "reads": total, "hit_rate": h / total,
                         "hits_per_batch": h / args.batches,
                         "pcie_bytes_saved_per_batch": h / args.batches * row_bytes,
                         "pcie_bytes_left_per_batch": (total - h) / args.batches * row_bytes})
    measured = {"batches": args.batches, "reads": total, "mean_input_nodes_per_batch": per_batch,
                "distinct_rows_read": int((reads > 0).sum()),
                "pcie_bytes_per_batch_uncached": per_batch * row_bytes, "row_bytes": row_bytes,
                "presample_batches": args.presample_batches,
                "presample_reads": int(presampled.sum())}

    print(f"{ds.num_nodes:,} nodes, {ds.num_edges:,} edges; fanouts {args.fanouts}, batch "
          f"{args.batch_size}; {args.batches} measured batches: {per_batch:,.0f} input nodes / "
          f"batch = {per_batch * row_bytes / 2**20:.1f} MiB of {row_bytes} B rows; "
          f"presample {args.presample_batches} batches", flush=True)
    print_table(["fraction", "rows", "source", "hit rate", "MiB saved / batch", "MiB left / batch"],
                [[r["fraction"], r["cached_rows"], r["source"], r["hit_rate"],
                  r["pcie_bytes_saved_per_batch"] / 2**20, r["pcie_bytes_left_per_batch"] / 2**20]
                 for r in rows], floatfmt="{:.3f}")

    def rate(name, f):
        return next(r["hit_rate"] for r in rows if r["source"] == name and r["fraction"] == f)
    summary = {f"f={f}": ", ".join(f"{s} {rate(s, f):.3f}" for s in SOURCES)
               for f in args.fraction_list}
    params = {k: v for k, v in vars(args).items() if k not in ("fanout_list", "fraction_list")}
    payload = {"benchmark": "cache_hits", "device": "cpu", "env": env_info("cpu"), "params": params,
               "dataset": {"name": ds.name, "num_nodes": ds.num_nodes, "num_edges": ds.num_edges,
                           "train": int(ds.train_idx.numel()), "ready_s": data_s},
               "measured": measured, "sources": list(SOURCES), "rows": rows, "summary": summary,
               "timing_s": {"data": data_s, "measured_batches": measure_s,
                            "presample_batches": presample_s,
                            "total": time.perf_counter() - t_start}}
    if args.out:
        write_json(args.out, payload)
        logger.info("wrote %s", args.out)
    return payload


if __name__ == "__main__":
    main()
