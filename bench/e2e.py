"""End-to-end GraphSAGE training throughput: how each way of feeding minibatches compares, one run.

The model and the training step are those of ``examples/train_graphsage.py`` (GraphSAGE, mean
aggregation, Adam); every configuration trains the same model on the same graph with the same
seeded sampler, so only the data path differs:

======================  ==========================================================================
``baseline``            what users do today: CPU sampling, ``feats[input_nodes]`` on the CPU in the
                        training loop, copy to the device
``unified``             this library: ``ut.unified(feats)``; GPU sampling over UVA (graph pinned in
                        place) on a GPU, Numba sampling on the CPU; zero-copy / Numba feature
                        gather; next batch produced on a side stream / thread while this one trains
``unified_unsorted``    ``unified`` with the gather reading rows in index order (no argsort)
``unified_capped``      ``unified`` with the gather capped at ``--capped-threads`` resident threads
``unified_cached``      ``unified`` with a GPU row cache of the ``--cache-fraction`` highest
                        out-degree nodes' features (``ut.cache``; GPU only)
``unified_one_sync``    ``unified`` with GPU sampling that syncs the host once per batch
                        (``NeighborSampler(one_sync=True)``; GPU only)
``unified_no_overlap``  the same, produced in the training thread (``prefetch=0``)
``unified_bf16``        ``unified`` with the features stored as bf16 (``ut.compress``), gathered as
                        float32 rows by the fused kernel
``unified_int8``        ``unified`` with the features stored as int8 (per-column scales)
``unified_int8_cached`` ``unified_int8`` with a GPU row cache of ``--cache-fraction`` of the nodes
                        (compressed rows: 4x the rows of a float32 cache of the same bytes)
``gpu_resident``        graph and features copied into GPU memory (upper bound; GPU only)
``dgl``                 DGL's CPU ``NeighborSampler`` + ``DataLoader`` with ``prefetch_node_feats``
                        (only where DGL imports: the dgl environment, CPU)
``dgl_dropin``          our DataLoader driving DGL's graph and sampler (the one-line import swap)
======================  ==========================================================================

Protocol: correctness first (one batch of every configuration: features equal ``feats[input_nodes]``
and labels ``labels[output_nodes]``); then ``--warmup`` training steps, then ``--rounds`` rounds of
``--batches`` steps timed with the wall clock between two device synchronisations (the loss stays
on the device, no per-step sync); the median round gives seeds/s, ms/step and the epoch time
extrapolated to the whole training split. Out-of-memory is recorded, not crashed on. Writes JSON
and a bar chart (PNG) next to it.

    python bench/e2e.py --out bench/results/e2e_cpu.json
    python bench/e2e.py --nodes 20000 --batches 3 --rounds 2 --out /tmp/e.json   # quick
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
sys.path.insert(1, os.path.join(REPO, "examples"))
from _common import env_info, free_cuda, is_oom, median, print_table, write_json  # noqa: E402

logger = logging.getLogger("bench.e2e")

CONFIGS = ("baseline", "unified", "unified_unsorted", "unified_capped", "unified_cached", "unified_one_sync",
           "unified_no_overlap", "unified_bf16", "unified_int8", "unified_int8_cached",
           "gpu_resident", "dgl",
           "dgl_dropin")


def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nodes", type=int, default=None,
                   help="synthetic graph nodes; if not given, 10M on a GPU, 1M on the CPU")
    p.add_argument("--avg-degree", type=float, default=15.0, help="synthetic graph: mean degree")
    p.add_argument("--feat-dim", type=int, default=128, help="synthetic graph: feature width")
    p.add_argument("--classes", type=int, default=16, help="synthetic graph: number of classes")
    p.add_argument("--fanouts", default="15,10,5",
                   help="comma-separated neighbours per layer (input layer first)")
    p.add_argument("--batch-size", type=int, default=1024, help="seed nodes per training step")
    p.add_argument("--hidden", type=int, default=256, help="hidden width of the GraphSAGE layers")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps; if not given, 5 on a GPU, 2 on the CPU")
    p.add_argument("--batches", type=int, default=None,
                   help="steps per timed round; if not given, 30 on a GPU, 5 on the CPU")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds; the median is reported")
    p.add_argument("--configs", default=None,
                   help=f"comma-separated subset of {','.join(CONFIGS)}; if not given, all that "
                        f"apply")
    p.add_argument("--device", default="cuda" if cuda else "cpu",
                   help="'cuda[:i]' or 'cpu'; cuda where available, else cpu")
    p.add_argument("--max-threads", type=int, default=None,
                   help="cap on resident GPU threads of the feature gather (unified); if not "
                        "given, no cap")
    p.add_argument("--capped-threads", type=int, default=16384,
                   help="max_threads of the unified_capped configuration's feature gather")
    p.add_argument("--cache-fraction", type=float, default=0.1,
                   help="share of the nodes whose features unified_cached keeps in GPU memory "
                        "(highest out-degree first)")
    p.add_argument("--cache", default=os.environ.get("UT_DATA_ROOT",
                                                     "~/.cache/unified-tensor/datasets"),
                   help="folder for the generated graph (.npy memmaps, made once); 'none': RAM")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the graph, the model and the sampler")
    p.add_argument("--out", default=None,
                   help="JSON result path (a .png chart is written beside); if not given, print "
                        "only")
    p.add_argument("--no-plot", action="store_true", help="write no .png chart beside the JSON")
    args = p.parse_args(argv)
    gpu = torch.device(args.device).type == "cuda"
    if args.nodes is None:
        args.nodes = 10_000_000 if gpu else 1_000_000
    if args.warmup is None:
        args.warmup = 5 if gpu else 2
    if args.batches is None:
        args.batches = 30 if gpu else 5
    return args


# ------------------------------------------------------------------------------------ pipelines
class DGLPipeline:
    """DGL's own loader (``dataloader_cls`` = DGL's) or ours driving DGL's graph and sampler."""

    def __init__(self, dgl, ds, device: torch.device, fanouts: List[int], batch_size: int,
                 dataloader_cls) -> None:
        self.dgl, self.device, self.batch_size = dgl, device, batch_size
        self.dataloader_cls = dataloader_cls
        src, dst = ds.edge_index()
        g = dgl.graph((src, dst), num_nodes=ds.num_nodes)
        g.ndata["feat"] = ds.features
        g.ndata["label"] = ds.labels
        self.graph = g.formats("csc")
        self.graph.create_formats_()      # what in-neighbour sampling reads; built once, untimed
        self.fanouts = fanouts
        self.feats, self.labels = ds.features, ds.labels

    def loader(self, seeds: torch.Tensor, shuffle: bool, seed: Optional[int] = None):
        if seed is not None:
            torch.manual_seed(seed)       # DGL shuffles with torch's global generator
        sampler = self.dgl.dataloading.NeighborSampler(
            self.fanouts, prefetch_node_feats=["feat"], prefetch_labels=["label"])
        return self.dataloader_cls(self.graph, seeds, sampler, device=self.device,
                                   batch_size=self.batch_size, shuffle=shuffle)

    def unpack(self, batch):
        _, _, blocks = batch
        return blocks, blocks[0].srcdata["feat"], blocks[-1].dstdata["label"]

    def close(self) -> None:
        pass


def make_pipeline(name: str, ds, device: torch.device, fanouts: List[int], args):
    from train_graphsage import Pipeline

    if name in ("dgl", "dgl_dropin"):
        import dgl
        from samplers import DataLoader

        cls = dgl.dataloading.DataLoader if name == "dgl" else DataLoader
        return DGLPipeline(dgl, ds, device, fanouts, args.batch_size, cls)
    mode = {"baseline": "baseline", "unified": "unified", "unified_unsorted": "unified",
            "unified_capped": "unified", "unified_one_sync": "unified", "unified_cached": "unified",
            "unified_no_overlap": "unified", "gpu_resident": "gpu", "unified_bf16": "unified",
            "unified_int8": "unified", "unified_int8_cached": "unified"}[name]
    storage = {"unified_bf16": "bf16", "unified_int8": "int8",
               "unified_int8_cached": "int8"}.get(name, "fp32")
    return Pipeline(mode, ds, device, fanouts, args.batch_size,
                    overlap=name != "unified_no_overlap", seed=args.seed,
                    max_threads=args.capped_threads if name == "unified_capped" else args.max_threads,
                    one_sync=name == "unified_one_sync",
                    cache_fraction=args.cache_fraction
                    if name in ("unified_cached", "unified_int8_cached") else 0.0,
                    storage=storage)


# ------------------------------------------------------------------------------------ timing
def check_batch(pipe, ds) -> None:
    """One batch: features and labels must be exactly the rows of the sampled nodes."""
    it = iter(pipe.loader(ds.train_idx[:pipe.batch_size], shuffle=False))
    input_nodes, output_nodes, _ = batch = next(it)
    blocks, x, y = pipe.unpack(batch)
    import unified_tensor as ut
    table = getattr(pipe, "feats", None)   # a compressed table: its decoded rows (CPU gather)
    ref = table if isinstance(table, ut.CompressedTensor) else ds.features
    assert torch.equal(x.cpu(), ref[input_nodes.long().cpu()]), "features differ"
    assert torch.equal(y.cpu(), ds.labels[output_nodes.long().cpu()]), "labels differ"
    assert blocks[-1].num_dst_nodes() == output_nodes.numel()
    del it


def steps(model, opt, pipe, seeds: torch.Tensor, seed: int) -> Iterator[tuple]:
    """Endless training steps over shuffled epochs; yields ``(seeds in the step, loss tensor)``."""
    from _util import train_step

    epoch = 0
    while True:
        for batch in pipe.loader(seeds, shuffle=True, seed=seed + epoch):
            blocks, x, y = pipe.unpack(batch)
            loss, _ = train_step(model, opt, blocks, x, y)
            yield y.numel(), loss
        epoch += 1


def run_config(name: str, ds, device: torch.device, fanouts: List[int], args) -> Dict[str, object]:
    if name != "unified_unsorted":
        return _run_config(name, ds, device, fanouts, args)
    from unified_tensor import _gather

    old = _gather.SORT_ROWS_BELOW
    _gather.SORT_ROWS_BELOW = 0          # never sort: rows read in index order
    try:
        return _run_config(name, ds, device, fanouts, args)
    finally:
        _gather.SORT_ROWS_BELOW = old


def _run_config(name: str, ds, device: torch.device, fanouts: List[int], args) -> Dict[str, object]:
    from train_graphsage import GraphSAGE

    t0 = time.perf_counter()
    pipe = make_pipeline(name, ds, device, fanouts, args)
    setup_s = time.perf_counter() - t0
    gen = None
    try:
        check_batch(pipe, ds)
        torch.manual_seed(args.seed)
        model = GraphSAGE(ds.feat_dim, args.hidden, ds.num_classes, len(fanouts)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = steps(model, opt, pipe, ds.train_idx, args.seed)
        for _ in range(args.warmup):
            next(gen)
        rounds = []
        for _ in range(args.rounds):
            _sync(device)
            t1, n, losses = time.perf_counter(), 0, []
            for _ in range(args.batches):
                k, loss = next(gen)
                n += k
                losses.append(loss)
            _sync(device)
            rounds.append((time.perf_counter() - t1, n, float(torch.stack(losses).mean())))
    finally:
        if gen is not None:
            gen.close()
        pipe.close()
    dt = median([r[0] for r in rounds])
    n = median([r[1] for r in rounds])
    sps = n / dt
    return {"seeds_per_s": sps, "ms_per_step": 1e3 * dt / args.batches,
            "epoch_s_est": ds.train_idx.numel() / sps, "setup_s": setup_s,
            "round_s": [r[0] for r in rounds], "mean_loss": [r[2] for r in rounds]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def guarded(name: str, fn: Callable[[], Dict[str, object]]) -> Dict[str, object]:
    row: Dict[str, object] = {"config": name}
    try:
        row.update(fn())
        row["status"] = "ok"
    except (Exception, SystemExit) as exc:  # recorded, not crashed on (OOM, a missing package, ...)
        oom = is_oom(exc)
        row["status"] = "oom" if oom else "error"
        row["error"] = f"{type(exc).__name__}: {exc}"
        logger.warning("%s failed: %s", name, row["error"])
        free_cuda()
    gc.collect()
    return row


def plot(path: str, rows: List[dict], title: str) -> Optional[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # plotting is optional
        logger.info("no plot (%r)", exc)
        return None
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [r["config"] for r in ok]
    vals = [r["seeds_per_s"] for r in ok]
    bars = ax.bar(names, vals, color=["#d62728" if n == "unified" else "#7f7f7f" for n in names])
    for b, v in zip(bars, vals):
        ax.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                    fontsize=8)
    ax.set_ylabel("training seeds / s")
    ax.set_title(title, fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=15, ha="right", fontsize=8)
    fig.tight_layout()
    png = os.path.splitext(path)[0] + ".png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from samplers.datasets import synthetic_graph

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    fanouts = [int(f) for f in args.fanouts.split(",")]
    t0 = time.perf_counter()
    root = None if str(args.cache).lower() == "none" else os.path.expanduser(args.cache)
    ds = synthetic_graph(args.nodes, avg_degree=args.avg_degree, num_classes=args.classes,
                         feat_dim=args.feat_dim, seed=args.seed, root=root)
    data_s = time.perf_counter() - t0
    logger.info("%s (ready in %.1f s)", ds, data_s)
    need = (args.warmup + args.batches * args.rounds) * args.batch_size
    if need > ds.train_idx.numel():
        logger.info("note: %d steps need %d seeds > %d training seeds: runs over epochs",
                    args.warmup + args.batches * args.rounds, need, ds.train_idx.numel())

    if args.configs:
        configs = [c.strip() for c in args.configs.split(",") if c.strip()]
        bad = sorted(set(configs) - set(CONFIGS))
        if bad:
            raise SystemExit(f"--configs: unknown {bad}; choose from {CONFIGS}")
    else:
        configs = ["baseline", "unified", "unified_no_overlap"]
        if device.type == "cuda":
            configs[2:2] = ["unified_capped", "unified_cached", "unified_one_sync"]
            configs.append("gpu_resident")
        else:
            try:
                import dgl  # noqa: F401
                configs += ["dgl", "dgl_dropin"]
            except Exception as exc:  # optional: recorded in the JSON
                logger.info("DGL not available (%r): no DGL rows", exc)

    env = env_info("cuda" if device.type == "cuda" else "cpu")
    dataset = {"name": ds.name, "num_nodes": ds.num_nodes, "num_edges": ds.num_edges,
               "feat_dim": ds.feat_dim, "train": int(ds.train_idx.numel()),
               "feature_bytes": ds.features.numel() * ds.features.element_size(), "ready_s": data_s}
    rows = []
    for name in configs:
        logger.info("== %s", name)
        rows.append(guarded(name, lambda: run_config(name, ds, device, fanouts, args)))
        if args.out:   # partial results on disk after every configuration (a run may be cut off)
            write_json(args.out, {"benchmark": "e2e", "device": device.type, "env": env,
                                  "params": vars(args), "dataset": dataset, "rows": rows,
                                  "partial": True})

    def sps(name):
        r = next((r for r in rows if r["config"] == name and r["status"] == "ok"), None)
        return None if r is None else r["seeds_per_s"]

    ratios = {}
    for a, b in (("unified", "baseline"), ("unified", "unified_no_overlap"),
                 ("unified_capped", "unified"), ("unified_capped", "baseline"),
                 ("unified_one_sync", "unified"), ("unified_cached", "unified"),
                 ("unified_cached", "baseline"), ("unified_bf16", "unified"),
                 ("unified_int8", "unified"), ("unified_int8_cached", "unified"),
                 ("unified_int8_cached", "gpu_resident"),
                 ("unified", "unified_unsorted"),
                 ("unified", "gpu_resident"), ("unified", "dgl"), ("dgl_dropin", "dgl")):
        if sps(a) and sps(b):
            ratios[f"{a}/{b}"] = sps(a) / sps(b)
    targets = {}
    if device.type == "cuda":
        if "unified/baseline" in ratios:
            targets["unified >= 2x baseline"] = ratios["unified/baseline"] >= 2.0
        if "unified/gpu_resident" in ratios:
            targets["unified time within 1.15x of gpu_resident"] = \
                ratios["unified/gpu_resident"] >= 1 / 1.15

    print_table(["config", "seeds/s", "ms/step", "epoch s (est.)", "status"],
                [[r["config"], r.get("seeds_per_s"), r.get("ms_per_step"), r.get("epoch_s_est"),
                  r["status"] if r["status"] == "ok" else r["error"][:60]] for r in rows])
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x", flush=True)
    for k, v in targets.items():
        print(f"target {k}: {'met' if v else 'NOT met'}", flush=True)
    summary = "; ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()) or "no ratio"
    payload = {"benchmark": "e2e", "device": device.type, "env": env, "params": vars(args),
               "dataset": dataset, "rows": rows, "ratios": ratios, "targets": targets, "summary": summary}
    if args.out:
        write_json(args.out, payload)
        logger.info("wrote %s", args.out)
        if not args.no_plot:
            png = plot(args.out, rows, f"GraphSAGE {fanouts}, batch {args.batch_size}, "
                                       f"{ds.num_nodes:,} nodes x {ds.feat_dim} feats, "
                                       f"{env['device_name'][:40]}")
            if png:
                logger.info("wrote %s", png)
    failed = [r for r in rows if r["status"] == "error"]
    if failed:
        raise SystemExit(f"e2e: {len(failed)} configuration(s) failed: "
                         + "; ".join(f"{r['config']}: {r['error']}" for r in failed))
    return payload


if __name__ == "__main__":
    main()
