"""GraphSAGE with DistributedDataParallel over several GPUs, all reading one host copy of the data.

The parent process loads the graph and puts every large array where all ranks can map it:

* the feature table: a file-backed ``np.memmap`` stays one (each rank maps the same file, one copy
  in the page cache), an in-RAM table goes to shared memory (``share_memory_()`` before
  ``ut.unified``);
* labels and the CSC arrays: shared memory.

``torch.multiprocessing.spawn`` then hands them to one process per GPU as handles, not copies
(``UnifiedTensor`` pickles as the file or the shared segment). Each rank pins the same pages for
its own GPU (``ut.unified``, ``graph.pin()``), samples its share of the seeds
(``DataLoader(use_ddp=True)``) and gathers features zero-copy; optionally each GPU keeps its own
hot-row cache (``--cache-fraction``, ``ut.cache``). So host memory holds the data once whatever the
number of GPUs. The ranks all-reduce gradients (DDP) and their accuracy counts.

Under ``torchrun`` (one process per rank, no parent to share from) every rank maps the dataset
from its cached ``.npy`` files instead, one copy in the page cache (``--cache DIR``, the default;
``--cache none`` gives every process its own copy in RAM, and says so). On several machines
(``torchrun --nnodes N``) each machine holds its own copy in its own ``--cache`` folder: local
rank 0 of every machine generates or converts it there while the machine's other ranks wait
(``--timeout``), and the seeds of every epoch are split over all ranks of all machines, each seed
on one rank.

Every rank prints its host memory at start (RSS, what ``top`` shows, counts the shared table in
every rank; PSS splits shared pages between the ranks that map them), and rank 0 prints, per
machine, the PSS of the feature table summed over the machine's ranks after training: one copy.

Runs without GPUs too (``--device cpu``: the ranks are CPU processes talking over gloo), which is
how CI checks it::

    python examples/train_multi_gpu.py                              # every visible GPU
    python examples/train_multi_gpu.py --world-size 2 --device cpu  # two CPU ranks
    torchrun --standalone --nproc_per_node 4 examples/train_multi_gpu.py
    # two machines with 4 GPUs each; on machine i (0 and 1), the same endpoint on both:
    torchrun --nnodes 2 --nproc-per-node 4 --node-rank i --rdzv-endpoint HOST0:29500 \\
        examples/train_multi_gpu.py --cache /local/disk/datasets
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import sys
import time
from typing import Optional

from _cli import add_data_args, add_train_args, fail


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p, nodes=200_000)
    t = add_train_args(p, epochs=3)
    t.add_argument("--world-size", type=int, default=None,
                   help="number of ranks; if not given, every visible GPU (2 with --device cpu)")
    t.add_argument("--timeout", type=float, default=None,
                   help="seconds a rank waits in a collective (a rank that died ends the job "
                        "with an error) and for local rank 0 of its machine to prepare the "
                        "dataset; if not given, torch's own limits (30 min on gloo, 10 min on "
                        "NCCL; 30 min to prepare)")
    t.add_argument("--report-dir", default=None, help=argparse.SUPPRESS)  # tests: seeds, memory
    t.add_argument("--cache-fraction", type=float, default=0.0,
                   help="GPU only: share of the nodes whose features each GPU keeps in its own "
                        "hot-row cache (highest out-degree first); 0: none")
    args = p.parse_args(argv)
    import torch   # after the parse: --help needs no torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device not in ("cuda", "cpu"):
        fail(f"--device must be 'auto', 'cuda' or 'cpu' (ranks take GPUs 0..N-1), got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: CUDA is not available here")
    if under_torchrun():
        world = int(os.environ["WORLD_SIZE"])
        if args.world_size is not None and args.world_size != world:
            fail(f"--world-size {args.world_size} differs from torchrun's WORLD_SIZE={world}")
        args.world_size = world
    if args.world_size is None:
        args.world_size = torch.cuda.device_count() if args.device == "cuda" else 2
    if args.world_size < 1:
        fail(f"--world-size must be >= 1, got {args.world_size}")
    if args.device == "cuda" and not under_torchrun() and args.world_size > torch.cuda.device_count():
        fail(f"--world-size {args.world_size} needs as many GPUs; {torch.cuda.device_count()} visible")
    if args.timeout is not None and not args.timeout > 0:
        fail(f"--timeout must be > 0 seconds, got {args.timeout}")
    if not 0.0 <= args.cache_fraction <= 1.0:
        fail(f"--cache-fraction must be in [0, 1], got {args.cache_fraction}")
    return args


def under_torchrun() -> bool:
    """Started by ``torchrun`` (``torch.distributed.run``): one process per rank already."""
    return all(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR"))


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from _util import History, load_dataset, parse_fanouts, unpack_blocks  # noqa: E402
from train_graphsage import GraphSAGE  # noqa: E402

import unified_tensor as ut  # noqa: E402
from samplers import CSCGraph, DataLoader, NeighborSampler  # noqa: E402


def shared_table(t: torch.Tensor, path) -> ut.UnifiedTensor:
    """``t`` as a UnifiedTensor every process can map: its ``.npy`` file when it has one, else
    shared memory (moved there once, before pinning)."""
    if path is not None:
        return ut.unified(np.load(path, mmap_mode="r"))
    return ut.unified(t.share_memory_() if not t.is_shared() else t)


def shared(t: torch.Tensor) -> torch.Tensor:
    return t if t.is_shared() else t.share_memory_()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def all_sum(x: float, device: torch.device) -> float:
    t = torch.tensor([float(x)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t)


@torch.no_grad()
def evaluate(model, loader, device: torch.device, max_batches: Optional[int]) -> float:
    """Accuracy over every rank's share of the loader's seeds (all-reduced)."""
    model.eval()
    correct = seen = 0.0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        blocks, x, y = unpack_blocks(batch)
        correct += float((model(blocks, x.float()).argmax(1) == y).sum())
        seen += y.numel()
    return all_sum(correct, device) / max(all_sum(seen, device), 1.0)


def run(rank: int, world: int, port: int, args, data) -> None:
    """One rank started by ``mp.spawn``: the data comes from the parent, as handles."""
    rank_main(rank, rank, world, f"tcp://127.0.0.1:{port}", args, lambda: data)


def rank_main(rank: int, local_rank: int, world: int, init_method: str, args, get_data) -> None:
    """One rank: its GPU (``cuda:local_rank``: the GPU index on its own machine, not the global
    rank), or the CPU; its share of every epoch's seeds."""
    import datetime

    cuda = args.device == "cuda"
    if cuda and local_rank >= torch.cuda.device_count():
        fail(f"local rank {local_rank} needs GPU {local_rank}, but this machine shows "
             f"{torch.cuda.device_count()}: --nproc-per-node must be at most its GPU count")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    # The timeout bounds every collective (a rank that died or hangs ends the job with an error
    # instead of a hang) and the wait for local rank 0 to prepare the machine's dataset.
    timeout = {} if args.timeout is None else {"timeout": datetime.timedelta(seconds=args.timeout)}
    dist.init_process_group("nccl" if cuda else "gloo", init_method=init_method,
                            rank=rank, world_size=world, **timeout)
    try:
        train_rank(rank, world, device, args, get_data())
        dist.barrier()                           # no rank leaves while another still talks
    finally:
        # The DDP model (and its reducer, which holds the process group) is gone by now: a
        # process group that outlives destroy_process_group aborts the process at exit.
        gc.collect()
        dist.destroy_process_group()


def torchrun_data(args):
    """Under torchrun every process loads the dataset itself. A dataset cached on disk (the
    synthetic graph's .npy files, ``--cache DIR``) is mapped from the same files, so the page
    cache of each machine holds one copy; local rank 0 of every machine loads (and, the first
    time, generates) it before the machine's other ranks, which wait at most ``--timeout``."""
    from unified_tensor._dist import local_rank_zero_first

    with local_rank_zero_first("the dataset", timeout=args.timeout):
        ds = load_dataset(args)
    feats = (ut.unified(np.load(ds.features_path, mmap_mode="r")) if ds.features_path is not None
             else ut.unified(ds.features))
    labels, indptr, indices = (mapped_array(ds, k) for k in ("labels", "indptr", "indices"))
    return (feats, labels, indptr, indices,
            {"train": ds.train_idx, "val": ds.val_idx, "test": ds.test_idx},
            {"feat_dim": ds.feat_dim, "num_classes": ds.num_classes, "num_nodes": ds.num_nodes,
             "num_edges": ds.num_edges, "dataset_name": ds.name})


def mapped_array(ds, key: str) -> torch.Tensor:
    """``ds.<key>`` mapped from its ``.npy`` file beside the features when there is one (copy on
    write: the ranks of a machine share the page cache's copy), else as loaded."""
    t = getattr(ds, key)
    if ds.features_path is None:
        return t
    path = ds.features_path.parent / f"{key}.npy"
    if not path.is_file():
        return t
    arr = np.load(path, mmap_mode="c")
    if arr.shape != tuple(t.shape) or arr.dtype != t.numpy().dtype:
        return t
    return torch.from_numpy(arr)


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.1f} MiB"


def memory_line(mem) -> str:
    """One rank's host memory, from ``/proc/self/smaps_rollup``."""
    if mem is None:
        return "host memory: not reported here (/proc/self/smaps_rollup is Linux only)"
    return (f"host memory: RSS {mib(mem['rss'])} (what top shows: pages shared with the other "
            f"ranks count in each), of which shared {mib(mem['shared'])}; PSS {mib(mem['pss'])} "
            f"(this rank's share of every page)")


def report_memory(feats, node, report: Optional[dict]) -> None:
    """After training, with every rank still mapping the data: rank 0 prints per machine the
    PSS of the feature table summed over that machine's ranks, which is one copy (at most the
    table's size, however many ranks), against the RSS that ``top`` adds up."""
    from unified_tensor._dist import host_memory

    mem = host_memory(feats._ut_plain)
    if report is not None:
        report["memory_after_training"] = mem
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, (node.node_rank, mem))
    if dist.get_rank() != 0 or any(m is None for _, m in everyone):
        return
    for machine in sorted({n for n, _ in everyone}):
        mems = [m for n, m in everyone if n == machine]
        rss, pss = sum(m["rss"] for m in mems), sum(m["pss"] for m in mems)
        tab = sum(m["table"]["pss"] for m in mems)
        size = mems[0]["table"]["nbytes"]
        print(f"machine {machine} after training: {len(mems)} rank(s), RSS {mib(rss)} summed "
              f"(what top adds up), PSS {mib(pss)} summed; features {mib(size)}: PSS summed over "
              f"the ranks {mib(tab)} = {tab / max(size, 1):.2f} x the table (one copy: <= 1; the "
              f"process that launched the ranks may hold a share too)",
              flush=True)


def train_rank(rank: int, world: int, device: torch.device, args, data) -> None:
    """Train and evaluate on this rank (its locals, the DDP model included, die on return)."""
    cuda = device.type == "cuda"
    feats, labels, indptr, indices, splits, meta = data
    torch.manual_seed(args.seed)
    graph = CSCGraph.from_csc(indptr, indices)
    labels = ut.unified(labels)              # the shared pages, pinned in place
    if cuda:
        graph = graph.pin()              # the shared pages, registered for this GPU
        if args.cache_fraction > 0:      # this GPU's own copy of the hottest rows
            ut.cache(feats, hotness=graph.out_degrees(),
                     max_rows=int(args.cache_fraction * graph.num_nodes), device=device)
    from unified_tensor._dist import host_memory, node_info

    node = node_info()
    where = ("file-backed memmap" if isinstance(feats._ut_source, np.memmap)
             else "shared memory" if feats._ut_plain.is_shared()
             else "a private copy (in RAM per process; --cache DIR shares one copy)")
    sys.stdout.write(f"rank {rank}: {device}, features in {where}; machine {node.node_rank} of "
                     f"{node.num_nodes}, local rank {node.local_rank} of {node.local_world_size}; "
                     f"{memory_line(host_memory())}\n")   # one write: whole lines
    sys.stdout.flush()
    report = None
    if args.report_dir is not None:    # test-only: what this rank saw, for tests/test_multinode.py
        report = dict(node._asdict(), seeds={}, features_path=getattr(feats._ut_source,
                                                                        "filename", None))
    fanouts = parse_fanouts(args, device)
    sampler = NeighborSampler(fanouts, seed=args.seed)

    def loader(ids, shuffle):
        return DataLoader(graph, ids, sampler, device=device, batch_size=args.batch_size,
                          shuffle=shuffle, seed=args.seed, use_ddp=True, features=feats,
                          labels=labels)

    model = GraphSAGE(meta["feat_dim"], args.hidden, meta["num_classes"], len(fanouts),
                      args.dropout).to(device)
    model = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if cuda else None)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    hist = History("train_multi_gpu", dict(vars(args), world_size=world, **meta)) \
        if rank == 0 else None
    train = loader(splits["train"], shuffle=True)
    for epoch in range(args.epochs):
        train.set_epoch(epoch)
        model.train()
        dist.barrier()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)         # on the device: no sync per step
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for i, batch in enumerate(train):
            if args.max_batches is not None and i >= args.max_batches:
                break
            if report is not None:
                report["seeds"].setdefault(str(epoch), []).extend(batch[1].tolist())
            blocks, x, y = unpack_blocks(batch)
            logits = model(blocks, x.float())
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * y.numel()
            correct += (logits.argmax(1) == y).sum()
            seen += y.numel()
        if cuda:
            torch.cuda.synchronize(device)
        dt = all_sum(time.perf_counter() - t0, device) / world   # mean over the ranks
        total = all_sum(seen, device)
        loss_all = all_sum(float(loss_sum), device) / max(total, 1.0)
        acc_all = all_sum(float(correct), device) / max(total, 1.0)
        val = evaluate(model, loader(splits["val"], shuffle=False), device, args.eval_batches)
        if hist is not None:
            hist.epoch(epoch=epoch, time_s=dt, seeds_per_s=total / dt, loss=loss_all,
                       train_acc=acc_all, val_acc=val)
    test = evaluate(model, loader(splits["test"], shuffle=False), device, args.eval_batches)
    if hist is not None:
        hist.finish(test, meta["num_classes"], args.json)
    dist.barrier()                    # every rank still maps the data: PSS splits it between them
    report_memory(feats, node, report)
    if report is not None:
        os.makedirs(args.report_dir, exist_ok=True)
        with open(os.path.join(args.report_dir, f"rank{rank}.json"), "w") as fh:
            json.dump(report, fh, default=str)


def main(argv=None) -> None:
    args = parse_args(argv)
    if under_torchrun():
        if "TORCHELASTIC_RUN_ID" in os.environ:   # started by torchrun's agent: die with it
            from unified_tensor._dist import exit_with_parent
            exit_with_parent()
        rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        rank_main(rank, local, args.world_size, "env://", args, lambda: torchrun_data(args))
        return
    ds = load_dataset(args)
    print(f"{args.world_size} rank(s) on {args.device} | batch {args.batch_size} per rank | "
          f"CUDA path {'on' if ut.cuda_available() else 'off'}", flush=True)
    data = (shared_table(ds.features, ds.features_path), shared(ds.labels), shared(ds.indptr),
            shared(ds.indices),
            {"train": ds.train_idx, "val": ds.val_idx, "test": ds.test_idx},
            {"feat_dim": ds.feat_dim, "num_classes": ds.num_classes, "num_nodes": ds.num_nodes,
             "num_edges": ds.num_edges, "dataset_name": ds.name})
    mp.spawn(run, args=(args.world_size, free_port(), args, data), nprocs=args.world_size,
             join=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")   # ranks share the cores
    main()
