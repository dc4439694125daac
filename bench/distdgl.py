"""DistDGL: samplers.DataLoader over a DistGraph vs DGL's own distributed loader (CPU).

A papers100M-shaped graph (``samplers.datasets.papers_like``: power-law in-degrees, nested
communities) partitioned in 2 with ``dgl.distributed.partition_graph``; 2 simulated machines on
this host (bench/_distdgl_cluster.py), each one KVStore server + one trainer. In every trainer,
interleaved, ``--runs`` times (both trainers run the same variant at once, lined up by a barrier):

- ``dgl``: ``dgl.dataloading.DistNodeDataLoader`` + ``g.ndata["feat"][input_nodes]`` and
  ``g.ndata["label"][output_nodes]`` (what DistDGL's training scripts do);
- ``ours``: ``samplers.DataLoader(g, ...)`` with ``features="feat", labels="label"`` (local rows
  from the KVStore's shared memory, remote rows over RPC);
- ``ours_cache``: the same with ``cache_rows=--cache`` (the hottest rows of the whole graph by
  out-degree; on the CPU only remote ones, since local rows are already in memory).

Each variant takes the same batches in a run (same torch seed). Reported per trainer: median
batches/s, and row bytes pulled over RPC per batch (features + labels). Correctness first: the
rows of our loader equal DGL's ``DistTensor`` reads for the same batch.

    python bench/distdgl.py --nodes 300000 --runs 5 --out bench/results/distdgl_cpu.json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import _distdgl_cluster as cluster  # noqa: E402
from _common import env_info, median, print_table, write_json  # noqa: E402

VARIANTS = ("dgl", "ours", "ours_cache", "ours_cache_prefetch")


def _model_step(dim, p):
    """One training step of a 2-layer GraphSAGE (hidden 64) on a batch."""
    import dgl.nn as dglnn
    import torch

    class SAGE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = dglnn.SAGEConv(dim, 64, "mean")
            self.l2 = dglnn.SAGEConv(64, p["classes"], "mean")

        def forward(self, blocks, h):
            return self.l2(blocks[1], torch.relu(self.l1(blocks[0], h)))

    model = SAGE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(blocks, x, y):
        loss = torch.nn.functional.cross_entropy(model(blocks, x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _trainer(m, g, p):
    import dgl
    import torch

    import samplers

    gpb = g.get_partition_book()
    own = gpb.partid2nids(gpb.partid)
    lo, hi = int(own[0]), int(own[-1]) + 1
    nid = dgl.distributed.node_split(g.ndata["train_mask"], gpb, force_even=True)
    sampler = dgl.dataloading.NeighborSampler(p["fanouts"])
    feat, label = g.ndata["feat"], g.ndata["label"]
    row_bytes = feat.shape[1] * 4 + 8            # float32 row + int64 label
    b = p["batch_size"]
    t0 = time.perf_counter()
    cached = samplers.DataLoader(g, nid, sampler, batch_size=b, shuffle=True, features="feat",
                                 labels="label", cache_rows=p["cache"])
    cache_setup_s = time.perf_counter() - t0
    reader = cached.readers["feat"]
    # the same cache rows, produced one batch ahead in a thread (the loop body makes no RPC)
    prefetching = samplers.DataLoader(g, nid, sampler, batch_size=b, shuffle=True,
                                      features="feat", labels="label", cache_rows=p["cache"],
                                      use_prefetch_thread=True)
    step = _model_step(feat.shape[1], p) if p["step"] == "sage" else None
    loaders = {
        "dgl": lambda: dgl.dataloading.DistNodeDataLoader(g, nid, sampler, batch_size=b,
                                                          shuffle=True),
        "ours": lambda: samplers.DataLoader(g, nid, sampler, batch_size=b, shuffle=True,
                                            features="feat", labels="label"),
            "ours_cache": lambda: cached,
        "ours_cache_prefetch": lambda: prefetching,
    }

    def batches(name, k):
        """k batches of one variant (new epochs as needed): rows fetched, RPC bytes counted."""
        rpc_bytes = 0
        done = 0
        while done < k:
            loader = loaders[name]()
            if name != "dgl":
                loader.reset_stats()
            for inp, out, blocks in loader:
                if name == "dgl":
                    x, y = feat[inp], label[out]
                    rpc_bytes += int(((inp < lo) | (inp >= hi)).sum()) * feat.shape[1] * 4 + \
                        int(((out < lo) | (out >= hi)).sum()) * 8
                else:
                    x, y = blocks[0].srcdata["feat"], blocks[-1].dstdata["label"]
                assert x.shape[0] == inp.shape[0] and y.shape[0] == out.shape[0]
                if step is not None:
                    step(blocks, x, y)
                done += 1
                if done == k:
                    break
            if name != "dgl":
                rpc_bytes += loader.stats["rpc_bytes"]
        return rpc_bytes / k

    # correctness first: the same batch, our rows == DGL's DistTensor reads
    for name in ("ours", "ours_cache", "ours_cache_prefetch"):
        torch.manual_seed(7)
        inp, out, blocks = next(iter(loaders[name]()))
        assert torch.equal(blocks[0].srcdata["feat"], feat[inp]), name
        assert torch.equal(blocks[-1].dstdata["label"], label[out]), name
    for name in VARIANTS:                          # warm-up
        g.barrier()
        batches(name, 2)

    rates = {v: [] for v in VARIANTS}
    bytes_per_batch = {v: [] for v in VARIANTS}
    for r in range(p["runs"]):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for name in order:
            torch.manual_seed(1000 + r)
            g.barrier()
            t = time.perf_counter()
            bpb = batches(name, p["batches"])
            dt = time.perf_counter() - t
            rates[name].append(p["batches"] / dt)
            bytes_per_batch[name].append(bpb)
    g.barrier()
    return {"machine": m, "seeds": int(nid.numel()), "own_rows": hi - lo,
            "rates": rates, "rpc_bytes_per_batch": bytes_per_batch,
            "cache_rows": reader.cache_size, "cache_fill_rpc_bytes": reader.cache_fill_rpc_bytes,
            "cache_setup_s": cache_setup_s, "row_bytes": row_bytes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--nodes", type=int, default=300_000, help="nodes of the papers-like graph")
    ap.add_argument("--feat-dim", type=int, default=128, help="float32 feature width")
    ap.add_argument("--train-fraction", type=float, default=0.05,
                    help="share of nodes used as training seeds (papers100M: 0.011)")
    ap.add_argument("--fanouts", default="10,5", help="neighbours per layer, input first")
    ap.add_argument("--batch-size", type=int, default=512, help="training seeds per batch")
    ap.add_argument("--batches", type=int, default=10, help="timed batches per variant and run")
    ap.add_argument("--runs", type=int, default=5, help="interleaved runs (the median is reported)")
    ap.add_argument("--cache", type=float, default=0.1, help="cache rows as a share of nodes")
    ap.add_argument("--step", default="none", choices=["none", "sage"],
                    help="loop body: nothing (loader throughput) or a GraphSAGE training step")
    ap.add_argument("--part-method", default="metis", choices=["metis", "random"],
                    help="dgl.distributed.partition_graph part_method")
    ap.add_argument("--timeout", type=float, default=3000,
                    help="seconds before the simulated cluster is stopped with an error")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "distdgl_cpu.json"),
                    help="JSON result path")
    a = ap.parse_args(argv)

    ok, why = cluster.can_simulate()
    if not ok:
        print(f"cannot simulate two DistDGL machines here: {why}", file=sys.stderr)
        return 2
    import dgl
    import torch

    from samplers.datasets import papers_like

    t0 = time.perf_counter()
    ds = papers_like(a.nodes, feat_dim=a.feat_dim, train_fraction=a.train_fraction)
    deg = ds.indptr[1:] - ds.indptr[:-1]
    dst = torch.repeat_interleave(torch.arange(ds.num_nodes), deg)
    g = dgl.graph((ds.indices.long(), dst), num_nodes=ds.num_nodes)
    g.ndata["feat"] = torch.as_tensor(ds.features)
    labels = ds.labels.clone()
    labels[labels < 0] = 0
    g.ndata["label"] = labels
    mask = torch.zeros(ds.num_nodes, dtype=torch.bool)
    mask[ds.train_idx] = True
    g.ndata["train_mask"] = mask
    gen_s = time.perf_counter() - t0
    params = {"fanouts": [int(f) for f in a.fanouts.split(",")], "batch_size": a.batch_size,
              "batches": a.batches, "runs": a.runs, "cache": a.cache, "step": a.step,
              "classes": int(ds.num_classes)}
    with tempfile.TemporaryDirectory(prefix="distdgl_parts_") as d:
        t0 = time.perf_counter()
        cfg, _ = cluster.partition(g, d, 2, a.part_method)
        part_s = time.perf_counter() - t0
        del g
        t0 = time.perf_counter()
        results = cluster.run(cfg, _trainer, (params,), num_machines=2, timeout=a.timeout)
        job_s = time.perf_counter() - t0

    rows, summary = [], {}
    for r in results:
        med = {v: median(r["rates"][v]) for v in VARIANTS}
        byt = {v: median(r["rpc_bytes_per_batch"][v]) for v in VARIANTS}
        ratios = [o / d for o, d in zip(r["rates"]["ours_cache"], r["rates"]["dgl"])]
        ratios_pf = [o / d for o, d in zip(r["rates"]["ours_cache_prefetch"], r["rates"]["dgl"])]
        ratios_nc = [o / d for o, d in zip(r["rates"]["ours"], r["rates"]["dgl"])]
        s = {"batches_per_s": med, "rpc_bytes_per_batch": byt,
             "speedup_ours_cache_vs_dgl": median(ratios),
             "speedup_ours_vs_dgl": median(ratios_nc),
             "speedup_ours_cache_prefetch_vs_dgl": median(ratios_pf),
             "rpc_bytes_cache_over_nocache": byt["ours_cache"] / byt["ours"] if byt["ours"] else None,
             "rpc_bytes_ours_over_dgl": byt["ours"] / byt["dgl"] if byt["dgl"] else None}
        summary[f"trainer{r['machine']}"] = s
        rows.append([r["machine"], f"{med['dgl']:.2f}", f"{med['ours']:.2f}",
                     f"{med['ours_cache']:.2f}", f"{med['ours_cache_prefetch']:.2f}",
                     f"{s['speedup_ours_cache_vs_dgl']:.2f}",
                     f"{s['speedup_ours_cache_prefetch_vs_dgl']:.2f}",
                     f"{byt['dgl'] / 1e3:.1f}", f"{byt['ours_cache'] / 1e3:.1f}",
                     f"{s['rpc_bytes_cache_over_nocache']:.3f}"])
    print_table(["trainer", "dgl b/s", "ours b/s", "+cache b/s", "+prefetch b/s", "speedup",
                 "speedup pf", "dgl RPC kB/b",
                 "cache RPC kB/b", "bytes ratio"], rows)
    payload = {
        "benchmark": "distdgl", "device": "cpu", "env": env_info("cpu"),
        "params": dict(vars(a), fanouts=params["fanouts"]),
        "dataset": {"generator": "papers_like", "num_nodes": ds.num_nodes,
                    "num_edges": int(ds.indices.numel()), "train": int(ds.train_idx.numel()),
                    "feat_dim": a.feat_dim},
        "setup_s": {"generate": gen_s, "partition": part_s, "job": job_s},
        "protocol": ("2 simulated machines on one host (private /dev/shm each), 1 KVStore server "
                     "+ 1 trainer per machine; variants interleaved (order rotated per run), "
                     "both trainers lined up on the same variant by a barrier; batches/s over "
                     f"{a.batches} batches per variant and run, median of {a.runs} runs per "
                     "trainer; RPC bytes = row bytes of features+labels pulled from the other "
                     "partition per batch (cache fill not included, reported separately)"),
        "trainers": results, "summary": summary,
    }
    write_json(a.out, payload)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
