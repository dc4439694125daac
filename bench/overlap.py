"""Gather beside training: does a capped zero-copy gather overlap with a concurrent training step?

For each thread cap of ``ut.gather(max_threads=...)`` (``none`` = fill the GPU) this times, with the
wall clock between device synchronisations, median of ``--reps``:

  gather   the gather alone on a side stream (``--gather-mb`` of ``--row-bytes`` rows, uniform ids,
           from a pinned ``--table-gb`` table)
  train    a stand-in training step alone on the main stream (bf16 matmuls + activations sized
           like a GraphSAGE layer stack, ``--train-ms`` long)
  both     the two launched together on the two streams

and reports ``both / (gather + train)`` (1.0: no overlap; 0.5: perfect overlap of equal parts) and
the gather's GB/s against ``pcie_h2d`` (a contiguous pinned copy of the same bytes). The issue's
target: with the loader's default cap, ``both < 0.8 x (gather + train)`` while the gather alone
still reaches >= 0.9 x pcie_h2d at 512 B rows.

    PYTHONPATH=. python bench/overlap.py --out /tmp/overlap.json
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from _common import anon_hugepages_kb, env_info, hugepage_empty, median, write_json  # noqa: E402

import unified_tensor as ut  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--table-gb", type=float, default=4.0, help="pinned table size (GiB)")
    p.add_argument("--row-bytes", type=int, default=512, help="row size (bytes, multiple of 4)")
    p.add_argument("--gather-mb", type=float, default=64.0, help="bytes gathered per call (MiB)")
    p.add_argument("--caps", default="none,4096,8192,16384,32768,65536,131072",
                   help="comma-separated max_threads values ('none' = no cap)")
    p.add_argument("--train-ms", type=float, default=None,
                   help="length of the stand-in training step in ms; if not given, about the uncapped gather")
    p.add_argument("--tables", default="torch,hugepages",
                   help="table allocations to try: torch (torch.empty) and/or hugepages "
                        "(madvise(MADV_HUGEPAGE), 2 MiB pages where THP is enabled)")
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per measurement (median)")
    p.add_argument("--out", default=None, help="JSON path")
    return p.parse_args(argv)


def _wall(fn, reps: int) -> float:
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return median(ts)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not ut.cuda_available():
        print("overlap: needs a CUDA GPU and the CUDA path; nothing to do")
        return 0
    dev = torch.device("cuda")
    w = args.row_bytes // 4
    n = int(args.table_gb * 2**30) // args.row_bytes
    m = int(args.gather_mb * 2**20) // args.row_bytes
    side = torch.cuda.Stream()
    host = torch.empty(m * args.row_bytes, dtype=torch.uint8, pin_memory=True)
    dst = torch.empty(m * args.row_bytes, dtype=torch.uint8, device=dev)
    pcie_ms = _wall(lambda: dst.copy_(host, non_blocking=True), args.reps)
    a = torch.randn(32768, 1024, device=dev, dtype=torch.bfloat16)
    ws = [torch.randn(1024, 1024, device=dev, dtype=torch.bfloat16) for _ in range(4)]

    def layer_stack(k: int):
        h = a
        for _ in range(k):
            for wt in ws:
                h = torch.relu(h @ wt)
        return h

    one = _wall(lambda: layer_stack(1), args.reps)
    caps = [None if c.strip().lower() == "none" else int(c) for c in args.caps.split(",")]
    rows = []
    result = {"benchmark": "overlap", "env": env_info("cuda"), "params": vars(args), "pcie_h2d_ms": pcie_ms,
              "rows": rows}
    for alloc in [x for x in args.tables.split(",") if x]:
        thp0 = anon_hugepages_kb()
        buf = hugepage_empty(n * args.row_bytes) if alloc == "hugepages" else \
            torch.empty(n * args.row_bytes, dtype=torch.uint8)
        table = buf.view(torch.float32).view(n, w)
        table.view(-1)[:: 1024].fill_(1.0)     # touch every page
        thp = anon_hugepages_kb()
        huge_gib = None if thp is None or thp0 is None else (thp - thp0) / 2**20
        t = ut.unified(table)
        idx = torch.randint(0, n, (m,), device=dev)
        out = torch.empty(m, w, device=dev)
        ref_rows = torch.randint(0, m, (64,), device=dev)
        ut.gather(t, idx, out=out)
        torch.cuda.synchronize()
        assert torch.equal(out[ref_rows].cpu(), table[idx[ref_rows].cpu()]), "gather result differs"

        def gather_on_side(cap):
            with torch.cuda.stream(side):
                ut.gather(t, idx, out=out, validate=False, max_threads=cap)

        g_uncapped = _wall(lambda: gather_on_side(None), args.reps)
        k = max(1, round((args.train_ms or g_uncapped) / one))
        train_ms = _wall(lambda: layer_stack(k), args.reps)
        print(f"[{alloc}] table {n} x {args.row_bytes} B pinned ({args.table_gb} GiB, huge pages "
              f"{huge_gib if huge_gib is None else round(huge_gib, 2)} GiB), gather {m} rows "
              f"({m * args.row_bytes / 2**20:.0f} MiB); pcie_h2d {pcie_ms:.2f} ms "
              f"({m * args.row_bytes / pcie_ms / 1e6:.1f} GB/s); train step {train_ms:.2f} ms ({k} x 4 matmuls)")
        print(f"{'cap':>8} {'gather ms':>10} {'GB/s':>7} {'/pcie':>6} {'both ms':>8} {'both/sum':>9} {'both/max':>9}")
        for cap in caps:
            g = _wall(lambda: gather_on_side(cap), args.reps)

            def both(cap=cap):
                side.wait_stream(torch.cuda.current_stream())
                gather_on_side(cap)
                layer_stack(k)
            b = _wall(both, args.reps)
            row = {"table": alloc, "hugepages_gib": huge_gib, "cap": cap, "gather_ms": g,
                   "gather_gbps": m * args.row_bytes / g / 1e6, "gather/pcie_h2d": pcie_ms / g,
                   "train_ms": train_ms, "both_ms": b, "both/sum": b / (g + train_ms),
                   "both/max": b / max(g, train_ms)}
            rows.append(row)
            print(f"{str(cap):>8} {g:>10.2f} {row['gather_gbps']:>7.1f} {row['gather/pcie_h2d']:>6.2f} "
                  f"{b:>8.2f} {row['both/sum']:>9.2f} {row['both/max']:>9.2f}", flush=True)
            if args.out:
                write_json(args.out, result)
        torch.cuda.synchronize()
        del t, table, buf, idx, out
    return 0


if __name__ == "__main__":
    sys.exit(main())
