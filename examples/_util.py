"""Helpers shared by the example scripts: dataset loading, training epochs, per-epoch reporting.

The training loops themselves stay in each script, where a reader expects them; the command-line
options are in ``_cli.py`` (argparse only, so that ``--help`` needs none of the imports here).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

# Run from a checkout without installing: make `unified_tensor` and `samplers` importable.
_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from _cli import fail  # noqa: E402
from samplers.datasets import NodeDataset, load_ogb, synthetic_graph  # noqa: E402
from unified_tensor._env import data_root  # noqa: E402


def parse_fanouts(args: argparse.Namespace, device: torch.device) -> List[int]:
    """``--fanouts`` as ints; when not given, 15,10,5 on a GPU and 10,5 on the CPU (stored back)."""
    if args.fanouts is None:
        args.fanouts = "15,10,5" if device.type == "cuda" else "10,5"
    return [int(f) for f in args.fanouts.split(",")]


def load_dataset(args: argparse.Namespace) -> NodeDataset:
    """The dataset the arguments name, on the CPU (features possibly a memmap). ``--cache`` not
    given becomes the data root (``UNIFIED_TENSOR_DATA_ROOT`` or the default), stored back."""
    t0 = time.perf_counter()
    if args.cache is None:
        args.cache = data_root()
    if args.dataset == "synthetic":
        root = None if str(args.cache).lower() == "none" else args.cache
        ds = synthetic_graph(args.nodes, avg_degree=args.avg_degree, num_classes=args.classes,
                             feat_dim=args.feat_dim, seed=args.data_seed, root=root)
    elif args.dataset.startswith("ogbn-"):
        if args.ogb_root is None:
            fail(f"--dataset {args.dataset} needs --ogb-root (nothing is downloaded)")
        try:
            ds = load_ogb(args.dataset, args.ogb_root, split=args.ogb_split)
        except (FileNotFoundError, ValueError) as exc:   # missing or damaged (the message says)
            choices = getattr(exc, "choices", None)   # the split folder (SplitNotFoundError)
            if choices is not None:                   # advise this command line's option
                pick = (f"; pass --ogb-split {choices[0]} to use it" if len(choices) == 1 else
                        "; pass --ogb-split NAME, one of them" if choices else "")
                exc = f"{exc.detail}{pick}"
            fail(f"--ogb-root {args.ogb_root}: {exc}")
    else:
        fail(f"--dataset must be 'synthetic' or 'ogbn-...', got {args.dataset!r}")
    print(f"dataset: {ds} (ready in {time.perf_counter() - t0:.1f} s)", flush=True)
    return ds


def unified_table(t: torch.Tensor, what: str) -> torch.Tensor:
    """``ut.unified(t)``; if the memory cannot be registered in place (some drivers refuse to pin
    file-backed memmap pages), say so and pin a copy in RAM instead."""
    import unified_tensor as ut
    from unified_tensor import CudaRuntimeError

    try:
        return ut.unified(t)
    except CudaRuntimeError as exc:
        print(f"note: cannot pin the {what} in place ({exc}); pinning a copy in RAM instead",
              flush=True)
        return ut.unified(t.clone())


def stored_table(ds, storage: str) -> torch.Tensor:
    """The feature table as ``--storage`` asks: ``fp32`` as it is, else ``ut.compress(...)``
    (bf16 / fp16 / int8 with per-column scales). For a dataset cached on disk the compressed table
    is written into the dataset's folder once and mapped by later runs (no re-quantisation)."""
    import unified_tensor as ut

    if storage == "fp32":
        return ds.features
    if storage not in ("bf16", "fp16", "int8"):
        fail(f"--storage must be fp32, bf16, fp16 or int8, got {storage!r}")
    t0 = time.perf_counter()
    src = getattr(ds, "features_path", None)   # a dataset cached on disk: keep it beside it
    folder = None if src is None else Path(src).parent / f"features.{storage}"
    if folder is not None and (folder / "meta.json").is_file():
        try:
            table = ut.load_compressed(folder)
            if tuple(table.shape) == tuple(ds.features.shape):
                print(f"features: {storage}, mapped from {folder}", flush=True)
                return table
        except (OSError, ValueError) as exc:
            print(f"note: rebuilding {folder} ({exc})", flush=True)
    try:
        table = ut.compress(ds.features, storage, path=folder)
    except (TypeError, ValueError) as exc:
        fail(f"--storage {storage}: {exc}")
    rmse = table.column_rmse
    print(f"features: {storage} ({table.nbytes_stored / 2**20:.1f} MiB stored, "
          f"{ds.features.numel() * 4 / 2**20:.1f} MiB as float32), built in "
          f"{time.perf_counter() - t0:.1f} s; reconstruction RMSE per column: median "
          f"{float(rmse.median()):.3g}, max {float(rmse.max()):.3g}", flush=True)
    return table


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {name}: CUDA is not available here")
    return dev


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def progress(iterable, total: int, desc: str, enabled: bool):
    """A tqdm progress bar when tqdm is installed and ``enabled``; the iterable itself otherwise."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def unpack_blocks(batch) -> tuple:
    """``(blocks, x, y)`` of a loader batch whose features and labels were gathered into
    ``blocks[0].srcdata["feat"]`` and ``blocks[-1].dstdata["label"]`` (ours or DGL's prefetch)."""
    _, _, blocks = batch
    return blocks, blocks[0].srcdata["feat"], blocks[-1].dstdata["label"]


def train_step(model, opt, blocks, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """One optimiser step; returns ``(loss, logits)``, both detached and left on the device."""
    logits = model(blocks, x.float())
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


def train_epoch(model, opt, loader, device: torch.device, epoch: int,
                max_batches: Optional[int], show: bool, unpack=unpack_blocks) -> tuple:
    """One epoch (at most ``max_batches`` steps); ``unpack(batch)`` gives ``(blocks, x, y)``.
    Returns ``(mean loss, train accuracy, seeds seen)``; the sums stay on the device (no host
    sync per batch)."""
    model.train()
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n_seen = n_batches = 0
    for batch in progress(loader, total, f"epoch {epoch}", show):
        blocks, x, y = unpack(batch)
        loss, logits = train_step(model, opt, blocks, x, y)
        loss_sum += loss * y.numel()
        correct += (logits.argmax(1) == y).sum()
        n_seen += y.numel()
        n_batches += 1
        if max_batches is not None and n_batches >= max_batches:
            break
    return float(loss_sum) / max(n_seen, 1), int(correct) / max(n_seen, 1), n_seen


@torch.no_grad()
def evaluate(model, loader, device: torch.device, max_batches: Optional[int] = None,
             unpack=unpack_blocks) -> float:
    """Accuracy over (at most ``max_batches`` batches of) ``loader``."""
    model.eval()
    correct, seen = torch.zeros((), dtype=torch.int64, device=device), 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        blocks, x, y = unpack(batch)
        correct += (model(blocks, x.float()).argmax(1) == y).sum()
        seen += y.numel()
    return int(correct) / max(seen, 1)


class History:
    """Per-epoch records, printed as they come and optionally written as JSON."""

    def __init__(self, name: str, params: Dict[str, object]) -> None:
        self.name = name
        self.params = params
        self.epochs: List[Dict[str, float]] = []
        self.final: Dict[str, float] = {}

    def epoch(self, **rec: float) -> None:
        self.epochs.append(rec)
        parts = [f"epoch {rec['epoch']:>2}", f"time {rec['time_s']:.2f} s",
                 f"{rec['seeds_per_s']:,.0f} seeds/s", f"loss {rec['loss']:.4f}",
                 f"train acc {rec['train_acc']:.4f}"]
        if "val_acc" in rec:
            parts.append(f"val acc {rec['val_acc']:.4f}")
        print(" | ".join(parts), flush=True)

    def finish(self, test_acc: float, num_classes: int, path: Optional[str]) -> None:
        """Print the test accuracy and the mean throughput (epoch 0 left out: it includes JIT and
        kernel compiles), store them in ``final`` and write the JSON to ``path`` if given."""
        timed = self.epochs[1:] or self.epochs
        thr = sum(e["seeds_per_s"] for e in timed) / len(timed) if timed else 0.0
        self.final = dict(test_acc=test_acc, seeds_per_s=thr, chance=1.0 / num_classes)
        span = f"epochs {timed[0]['epoch']}..{timed[-1]['epoch']}" if timed else "no epoch"
        print(f"test acc {test_acc:.4f} (chance {1.0 / num_classes:.4f}) | throughput "
              f"{thr:,.0f} seeds/s (mean of {span})", flush=True)
        self.write(path)

    def write(self, path: Optional[str]) -> None:
        if not path:
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            json.dump({"example": self.name, "params": self.params, "epochs": self.epochs,
                       "final": self.final}, fh, indent=1, default=str)


def fit(model, opt, pipe, ds, args: argparse.Namespace, device: torch.device, hist) -> float:
    """The examples' training run: ``args.epochs`` epochs over ``ds.train_idx`` (per-epoch time,
    seeds/s, loss, train and val accuracy into ``hist``), then the test accuracy, returned.
    ``pipe`` gives ``loader(ids, shuffle, seed=None)``, ``unpack(batch)`` and ``close()``."""
    try:
        for epoch in range(args.epochs):
            sync(device)
            t0 = time.perf_counter()
            loss, train_acc, n = train_epoch(
                model, opt, pipe.loader(ds.train_idx, shuffle=True, seed=args.seed + epoch),
                device, epoch, args.max_batches, not args.no_progress, unpack=pipe.unpack)
            sync(device)
            dt = time.perf_counter() - t0
            val_acc = evaluate(model, pipe.loader(ds.val_idx, shuffle=False), device,
                               args.eval_batches, unpack=pipe.unpack)
            hist.epoch(epoch=epoch, time_s=dt, seeds_per_s=n / dt, loss=loss,
                       train_acc=train_acc, val_acc=val_acc)
        return evaluate(model, pipe.loader(ds.test_idx, shuffle=False), device,
                        args.eval_batches, unpack=pipe.unpack)
    finally:
        pipe.close()


def load_mag(args: argparse.Namespace):
    """``synthetic_mag`` with the options of :func:`add_mag_args`; prints what it made."""
    from samplers.datasets import synthetic_mag

    t0 = time.perf_counter()
    try:
        ds = synthetic_mag(args.papers, num_classes=args.classes, feat_dim=args.feat_dim,
                           seed=args.data_seed)
    except (TypeError, ValueError) as exc:
        fail(str(exc))
    print(f"dataset: {ds} (ready in {time.perf_counter() - t0:.1f} s)", flush=True)
    return ds
