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
``--cache none`` gives every process its own copy in RAM, and says so).

Runs without GPUs too (``--device cpu``: the ranks are CPU processes talking over gloo), which is
how CI checks it::

    python examples/train_multi_gpu.py                              # every visible GPU
    python examples/train_multi_gpu.py --world-size 2 --device cpu  # two CPU ranks
    torchrun --standalone --nproc_per_node 4 examples/train_multi_gpu.py
"""
from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _util import (History, add_data_args, add_train_args, fail, load_dataset, parse_fanouts,
                   unpack_blocks)
from train_graphsage import GraphSAGE

import unified_tensor as ut
from samplers import CSCGraph, DataLoader, NeighborSampler


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
    """One rank: its GPU (``cuda:local_rank``, or the CPU), its share of every epoch's seeds."""
    cuda = args.device == "cuda"
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=init_method,
                            rank=rank, world_size=world)
    try:
        train_rank(rank, world, device, args, get_data())
        dist.barrier()                           # no rank leaves while another still talks
    finally:
        # The DDP model (and its reducer, which holds the process group) is gone by now: a
        # process group that outlives destroy_process_group aborts the process at exit.
        gc.collect()
        dist.destroy_process_group()


def torchrun_data(args, rank: int):
    """Under torchrun every process loads the dataset itself. A dataset cached on disk (the
    synthetic graph's .npy files, ``--cache DIR``) is mapped from the same files, so the page
    cache holds one copy; rank 0 loads (and, the first time, generates) it before the others."""
    if rank != 0:
        dist.barrier()
    ds = load_dataset(args)
    if rank == 0:
        dist.barrier()
    feats = (ut.unified(np.load(ds.features_path, mmap_mode="r")) if ds.features_path is not None
             else ut.unified(ds.features))
    return (feats, ds.labels, ds.indptr, ds.indices,
            {"train": ds.train_idx, "val": ds.val_idx, "test": ds.test_idx},
            {"feat_dim": ds.feat_dim, "num_classes": ds.num_classes, "num_nodes": ds.num_nodes,
             "num_edges": ds.num_edges, "dataset_name": ds.name})


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
    where = ("file-backed memmap" if isinstance(feats._ut_source, np.memmap)
             else "shared memory" if feats._ut_plain.is_shared()
             else "a private copy (in RAM per process; --cache DIR shares one copy)")
    sys.stdout.write(f"rank {rank}: {device}, features in {where}\n")   # one write: whole lines
    sys.stdout.flush()
    fanouts = parse_fanouts(args, device)
    sampler = NeighborSampler(fanouts, seed=args.seed)

    def loader(ids, shuffle):
        return DataLoader(graph, ids, sampler, device=device, batch_size=args.batch_size,
                          shuffle=shuffle, seed=args.seed, use_ddp=True, features=feats,
                          labels=labels)

    model = GraphSAGE(meta["feat_dim"], args.hidden, meta["num_classes"], len(fanouts),
                      args.dropout).to(device)
    model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if cuda else None)
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



def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p, nodes=200_000)
    t = add_train_args(p, epochs=3)
    t.add_argument("--world-size", type=int, default=None,
                   help="number of ranks; if not given, every visible GPU (2 with --device cpu)")
    t.add_argument("--cache-fraction", type=float, default=0.0,
                   help="GPU only: share of the nodes whose features each GPU keeps in its own "
                        "hot-row cache (highest out-degree first); 0: none")
    args = p.parse_args(argv)
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
    if not 0.0 <= args.cache_fraction <= 1.0:
        fail(f"--cache-fraction must be in [0, 1], got {args.cache_fraction}")
    return args


def under_torchrun() -> bool:
    """Started by ``torchrun`` (``torch.distributed.run``): one process per rank already."""
    return all(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR"))


def main(argv=None) -> None:
    args = parse_args(argv)
    if under_torchrun():
        rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        rank_main(rank, local, args.world_size, "env://", args, lambda: torchrun_data(args, rank))
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
