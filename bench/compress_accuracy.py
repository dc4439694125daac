"""Test accuracy with compressed feature tables (issue 17): fp32 vs bf16 vs fp16 vs int8.

Two tasks, each trained with the main demo's model and loop (examples/train_graphsage.py, its
defaults unless given), ``--seeds`` seeds per storage, storages interleaved per seed:

* ``demo``: the main demo's synthetic graph as it is (features of one scale);
* ``scaled``: the same kind of graph with features spanning 8 orders of magnitude across columns
  (column ``j`` multiplied by ``10**e_j``, ``e_j`` in [-4, 4]) and rare extreme values in every
  column (0.05 % of the values times 1000): a per-tensor int8 scale loses the small columns and a
  min/max per-column scale loses a column's resolution to its outliers. The model sees the columns
  rescaled at its input by the fp32 table's column spread (a user who normalises in the model,
  not in the stored table). ``int8_minmax`` (per column, exact min/max, no clipping) is run too,
  to show what the robust range buys.

Prints a table (mean and spread of test accuracy per storage, and the difference to fp32) and
writes JSON (default ``bench/results/compress_accuracy.json``). CPU or GPU.

    python bench/compress_accuracy.py                 # ~20 min on 2 CPU cores
    python bench/compress_accuracy.py --seeds 1 --nodes 20000 --epochs 1   # smoke
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE.parent))

STORAGES = ("fp32", "bf16", "fp16", "int8")


def parse_args(argv=None) -> Tuple[argparse.Namespace, List[str]]:
    """This script's options, and the rest of the command line (for train_graphsage's parser)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                epilog="Every other option goes to examples/train_graphsage.py "
                                       "(see its --help: --nodes, --epochs, --device, ...); "
                                       "--no-progress is always passed.")
    p.add_argument("--seeds", type=int, default=3,
                   help="training runs per task and storage (model seeds 0..N-1)")
    p.add_argument("--tasks", default="demo,scaled",
                   help="comma-separated subset of demo,scaled (see the module docstring)")
    p.add_argument("--storages", default=",".join(STORAGES + ("int8_minmax",)),
                   help="comma-separated feature storages to train with (fp32 is the reference "
                        "the others are compared to)")
    p.add_argument("--out", default=str(HERE / "results" / "compress_accuracy.json"),
                   help="JSON result path")
    return p.parse_known_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402


def scaled_features(x: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    f = x.shape[1]
    expo = torch.linspace(-4, 4, f)[torch.randperm(f, generator=g)]
    y = x.float() * (10.0 ** expo)
    hit = torch.rand(y.shape, generator=g) < 5e-4
    return torch.where(hit, y * 1000.0, y).contiguous()


class InputScale(torch.nn.Module):
    """The model's own input normalisation: x / (fp32 column spread), then the GraphSAGE."""

    def __init__(self, inner: torch.nn.Module, col_scale: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("inv", 1.0 / col_scale.clamp_min(1e-30))

    def forward(self, blocks, x):
        return self.inner(blocks, x * self.inv)


def build_table(ds, storage: str):
    import unified_tensor as ut

    if storage == "fp32":
        return ds.features, {}
    kind, kw = (("int8", {"clip": 1.0}) if storage == "int8_minmax" else (storage, {}))
    t0 = time.perf_counter()
    table = ut.compress(ds.features, kind, **kw)
    rmse = table.column_rmse
    spread = ds.features.float().std(0).clamp_min(1e-30)
    return table, {"build_s": time.perf_counter() - t0,
                   "rmse_over_std_median": float((rmse / spread).median()),
                   "rmse_over_std_max": float((rmse / spread).max())}


def train_once(tg, args, ds, table, seed: int, col_scale=None) -> float:
    """One training run of the demo's pipeline with ``table`` as the features; test accuracy."""
    from _util import History, fit, parse_fanouts, pick_device

    run_args = argparse.Namespace(**vars(args))
    run_args.seed = seed
    torch.manual_seed(seed)
    device = pick_device(run_args.device)
    fanouts = parse_fanouts(run_args, device)
    ds2 = dataclasses.replace(ds, features=table)
    pipe = tg.Pipeline("unified", ds2, device, fanouts, run_args.batch_size, True, seed)
    model = tg.GraphSAGE(ds.feat_dim, run_args.hidden, ds.num_classes, len(fanouts),
                         run_args.dropout)
    if col_scale is not None:
        model = InputScale(model, col_scale)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=run_args.lr)
    hist = History("compress_accuracy", {})
    return float(fit(model, opt, pipe, ds2, run_args, device, hist))


def main(argv=None) -> dict:
    import train_graphsage as tg
    from _util import load_dataset

    known, rest = parse_args(argv)
    args = tg.parse_args(rest + ["--no-progress"])
    tasks = known.tasks.split(",")
    storages = known.storages.split(",")
    base = load_dataset(args)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "torch": torch.__version__,
                           "device": "cuda" if torch.cuda.is_available() else "cpu"},
               "params": {"nodes": args.nodes, "epochs": args.epochs, "seeds": known.seeds,
                          "batch_size": args.batch_size, "hidden": args.hidden},
               "tasks": {}}
    for task in tasks:
        if task == "demo":
            ds, col_scale = base, None
        elif task == "scaled":
            feats = scaled_features(base.features, args.data_seed)
            ds = dataclasses.replace(base, features=feats, features_path=None)
            col_scale = feats.std(0)
        else:
            raise SystemExit(f"unknown task {task!r}")
        tables, skipped = {}, {}
        for s in storages:
            try:
                tables[s] = build_table(ds, s)
            except ValueError as exc:   # e.g. fp16 cannot hold the scaled task's range
                skipped[s] = str(exc)
                print(f"{task:7s} {s:12s} skipped: {exc}", flush=True)
        storages_t = [s for s in storages if s in tables]
        accs = {s: [] for s in storages_t}
        for seed in range(known.seeds):
            for s in storages_t:   # interleaved: a slow moment of the machine hits all alike
                acc = train_once(tg, args, ds, tables[s][0], seed, col_scale)
                accs[s].append(acc)
                print(f"{task:7s} seed {seed} {s:12s} test acc {acc:.4f}", flush=True)
        rows = {s: {"skipped": why} for s, why in skipped.items()}
        ref = statistics.mean(accs["fp32"]) if "fp32" in accs else None
        for s in storages_t:
            a = accs[s]
            mean = statistics.mean(a)
            rows[s] = {"test_acc": a, "mean": mean,
                       "spread": (max(a) - min(a)) if len(a) > 1 else 0.0,
                       "stdev": statistics.stdev(a) if len(a) > 1 else 0.0,
                       "minus_fp32_points": None if ref is None else 100 * (mean - ref),
                       **tables[s][1]}
        results["tasks"][task] = rows
    print(f"\n{'task':7s} {'storage':12s} {'mean acc':>9s} {'spread':>7s} {'vs fp32 (points)':>17s}")
    for task, rows in results["tasks"].items():
        for s, r in rows.items():
            if "skipped" in r:
                print(f"{task:7s} {s:12s} skipped ({r['skipped'][:60]})")
                continue
            d = r["minus_fp32_points"]
            print(f"{task:7s} {s:12s} {r['mean']:9.4f} {r['spread']:7.4f} "
                  f"{'' if d is None else f'{d:+.2f}':>17s}")
    Path(known.out).parent.mkdir(parents=True, exist_ok=True)
    Path(known.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
