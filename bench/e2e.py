"""End-to-end GraphSAGE training throughput: how each way of feeding minibatches compares, one run.

The model and the training step are those of ``examples/train_graphsage.py`` (GraphSAGE, mean
aggregation, Adam); every configuration trains the same model on the same graph (by default a
``samplers.datasets.papers_like`` graph: power-law in-degrees, ~1 % of the nodes labelled for
training, 128 float32 features) with the same seeded sampler, so only the data path differs.
``unified`` is what a user gets with the library's defaults; every other ``unified_*`` row is
named for the one thing it changes:

============================  ====================================================================
``unified``                   this library, defaults: ``ut.unified(feats)``; GPU sampling over UVA
                              (graph pinned in place) on a GPU, Numba sampling on the CPU;
                              zero-copy / Numba feature gather with its default (deferred) range
                              check; next batch produced on a side stream / thread while this one
                              trains (default prefetch, no thread cap)
``gpu_resident``              graph and features copied into GPU memory (upper bound; GPU only)
``baseline``                  the strongest pipeline without this library (what PyG's
                              ``NeighborLoader(num_workers, pin_memory=True)`` and DGL's CPU
                              ``DataLoader`` do): CPU sampling and CPU gather (``index_select``) in
                              ``--baseline-workers`` background threads, into pinned buffers (pinned
                              only where CUDA is), copied with ``non_blocking=True`` on a side
                              stream, overlapped with training
``unified_cached``            ``unified`` + a GPU row cache of the ``--cache-fraction`` hottest
                              nodes (highest out-degree; ``ut.cache``; GPU only)
``unified_reordered``         ``unified`` on the graph renumbered once in locality order
                              (``samplers.reorder``, ``--order``): hot rows and neighbours share
                              host pages
``unified_reordered_cached``  both of the above
``unified_graph_on_gpu``      ``unified`` with the graph structure in GPU memory (features still
                              read zero-copy from host memory; GPU only)
``baseline_naive``            the old baseline: CPU sampling, ``feats[input_nodes]`` on the CPU in
                              the training loop, pageable copy to the device, no overlap
``unified_int8_cached``       ``unified_int8`` + a GPU row cache of ``--cache-fraction`` of the
                              nodes (compressed rows: 4x the rows of a float32 cache of the bytes)
``unified_bf16``              ``unified`` with the features stored as bf16 (``ut.compress``),
                              gathered as float32 rows by the fused kernel
``unified_int8``              ``unified`` with the features stored as int8 (per-column scales)
``unified_one_sync``          ``unified`` with GPU sampling that syncs the host once per batch
                              (``NeighborSampler(one_sync=True)``; GPU only)
``unified_no_overlap``        ``unified`` produced in the training thread (``prefetch=0``)
``unified_capped``            ``unified`` with the gather capped at ``--capped-threads`` threads
``unified_unsorted``          ``unified`` with the gather reading rows in index order (no argsort)
``dgl``                       DGL's CPU ``NeighborSampler`` + ``DataLoader`` with
                              ``prefetch_node_feats`` (only where DGL imports: the dgl environment)
``dgl_dropin``                our DataLoader driving DGL's graph and sampler (the one-line swap)
============================  ====================================================================

The configurations run in that order (most valuable first); with ``--budget-s`` a configuration is
skipped, recorded, when the time left is less than the longest one so far took.

Protocol: correctness first (one batch of every configuration: features equal the table's rows
of ``input_nodes`` and labels the rows of ``output_nodes``); then ``--warmup`` training steps,
then ``--rounds`` rounds of ``--batches`` steps timed with the wall clock between two device
synchronisations (the loss stays on the device, no per-step sync); the median round gives
seeds/s, ms/step and the epoch time extrapolated to the whole training split. On a GPU,
``--sync-batches`` more (untimed) steps count the host syncs per batch on each thread (training,
producer; ``bench/_syncs.py``). Out-of-memory is recorded, not crashed on. Writes JSON and a bar
chart (PNG) next to it.

    python bench/e2e.py --out bench/results/e2e_cpu.json
    python bench/e2e.py --nodes 50000 --batches 3 --rounds 2 --out /tmp/e.json   # quick
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import logging
import os
import queue
import sys
import threading
import time
import types
import weakref
from typing import Callable, Dict, Iterator, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
sys.path.insert(1, os.path.join(REPO, "examples"))
from _common import env_info, free_cuda, is_oom, median, print_table, write_json  # noqa: E402

logger = logging.getLogger("bench.e2e")

# Most valuable first: the order of a run (--configs keeps this order too).
CONFIGS = ("unified", "gpu_resident", "baseline", "unified_cached", "unified_reordered",
           "unified_reordered_cached", "unified_graph_on_gpu", "baseline_naive",
           "unified_int8_cached", "unified_bf16", "unified_int8", "unified_one_sync",
           "unified_no_overlap", "unified_capped", "unified_unsorted", "dgl", "dgl_dropin")
GPU_ONLY = ("gpu_resident", "unified_cached", "unified_reordered_cached", "unified_graph_on_gpu",
            "unified_int8_cached", "unified_one_sync")
REORDERED = ("unified_reordered", "unified_reordered_cached")
# "ours": the rows the best-of figure is taken over (this library's data paths)
OURS = tuple(c for c in CONFIGS if c.startswith("unified"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--graph", choices=("papers_like", "synthetic"), default="papers_like",
                   help="papers_like: samplers.datasets.papers_like (ogbn-papers100M-shaped: "
                        "power-law in-degrees, nested communities, 1.1%% of the nodes labelled "
                        "for training); synthetic: samplers.datasets.synthetic_graph (the graph "
                        "of the results before issue 18, 15%% training nodes)")
    p.add_argument("--nodes", type=int, default=None,
                   help="graph nodes; if not given, 16M on a GPU (8 GiB of float32 features: the "
                        "gather benchmark's table, 10x a 0.1 cache), 1M on the CPU")
    p.add_argument("--avg-degree", type=float, default=None,
                   help="mean in-degree; if not given, 14.5 (papers100M) for papers_like, 15 for "
                        "synthetic")
    p.add_argument("--feat-dim", type=int, default=128, help="feature width (papers100M: 128)")
    p.add_argument("--classes", type=int, default=None,
                   help="number of classes; if not given, 172 (papers100M) for papers_like, 16 "
                        "for synthetic")
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
    p.add_argument("--device", default=None,
                   help="'cuda[:i]' or 'cpu'; if not given, cuda where available, else cpu")
    p.add_argument("--max-threads", type=int, default=None,
                   help="cap on resident GPU threads of the feature gather (unified); if not "
                        "given, no cap")
    p.add_argument("--capped-threads", type=int, default=16384,
                   help="max_threads of the unified_capped configuration's feature gather")
    p.add_argument("--cache-fraction", type=float, default=0.1,
                   help="share of the nodes whose features the *_cached configurations keep in "
                        "GPU memory (highest out-degree first); at most 1/8, so the table is at "
                        "least 8x the cache")
    p.add_argument("--order", choices=("community", "degree"), default="community",
                   help="locality order of the unified_reordered* configurations "
                        "(samplers.reorder; computed once, cached beside the dataset with --cache)")
    p.add_argument("--baseline-workers", type=int, default=2,
                   help="background threads of the baseline, each sampling and gathering whole "
                        "batches (PyG's num_workers)")
    p.add_argument("--baseline-prefetch", type=int, default=2,
                   help="batches each baseline worker may have ready ahead of training")
    p.add_argument("--sync-batches", type=int, default=5,
                   help="GPU: untimed steps after the timed rounds that count host syncs per "
                        "thread (0: none)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="wall-clock budget of the whole run: a configuration is skipped "
                        "(recorded) when less time is left than the longest one took; if not "
                        "given, no limit")
    p.add_argument("--cache", default=None,
                   help="folder for the generated graph (.npy memmaps, made once); 'none': RAM; "
                        "if not given, $UNIFIED_TENSOR_DATA_ROOT, else "
                        "~/.cache/unified-tensor/datasets")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the graph, the model and the sampler")
    p.add_argument("--out", default=None,
                   help="JSON result path (a .png chart is written beside); if not given, print "
                        "only")
    p.add_argument("--no-plot", action="store_true", help="write no .png chart beside the JSON")
    args = p.parse_args(argv)
    import torch   # after the parse: --help imports no torch

    from unified_tensor._env import data_root

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.cache is None:
        args.cache = data_root()
    gpu = torch.device(args.device).type == "cuda"
    if args.nodes is None:
        args.nodes = 16_000_000 if gpu else 1_000_000
    papers = args.graph == "papers_like"
    if args.avg_degree is None:
        args.avg_degree = 14.5 if papers else 15.0
    if args.classes is None:
        args.classes = 172 if papers else 16
    if not 0.0 < args.cache_fraction <= 0.125:
        p.error(f"--cache-fraction must be in (0, 1/8] (the table at least 8x the GPU cache "
                f"under test), got {args.cache_fraction}")
    for name in ("baseline_workers", "baseline_prefetch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.sync_batches < 0:
        p.error(f"--sync-batches must be >= 0, got {args.sync_batches}")
    if args.warmup is None:
        args.warmup = 5 if gpu else 2
    if args.batches is None:
        args.batches = 30 if gpu else 5
    return args


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402


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


def _pinned(t: torch.Tensor, pin: bool) -> torch.Tensor:
    return t.pin_memory() if pin and not t.is_pinned() else t


def _pinned_block(block, pin: bool):
    """A shallow copy of ``block`` whose tensors (attributes and dict values) are pinned, as
    PyG's ``Data.pin_memory()`` does for a batch; ``block`` itself when not pinning."""
    if not pin:
        return block
    out = copy.copy(block)
    for k, v in vars(block).items():
        if isinstance(v, torch.Tensor):
            setattr(out, k, _pinned(v, True))
        elif isinstance(v, dict):
            setattr(out, k, {kk: _pinned(vv, True) if isinstance(vv, torch.Tensor) else vv
                             for kk, vv in v.items()})
    return out


def _gpu_tensors(obj) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        if obj.is_cuda:
            yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _gpu_tensors(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _gpu_tensors(x)
    elif hasattr(obj, "__dict__"):
        for x in vars(obj).values():
            if isinstance(x, (torch.Tensor, dict)):
                yield from _gpu_tensors(x)


class StrongBaseline:
    """The strongest pipeline a user runs without this library (``baseline``).

    What PyG's ``NeighborLoader(num_workers=..., pin_memory=True)`` and DGL's CPU ``DataLoader``
    (prefetch thread) do: ``workers`` background threads each take whole batches (batch ``i`` goes
    to worker ``i % workers``; batches are yielded in order), sample them on the CPU, gather the
    feature and label rows on the CPU with ``torch.index_select`` straight into pinned buffers
    (pinned only where CUDA is), pin the blocks, and copy everything to the device with
    ``non_blocking=True`` on the worker's own side stream; the training thread waits for that
    copy on the GPU (an event, no host sync) and hands the tensors to its stream
    (``record_stream``). Each worker keeps at most ``prefetch`` batches ready, so sampling, gather
    and copy overlap with training. On a CPU device the same threads run, without pinning or
    copies. The CPU sampler is this library's Numba one (the same draws as ``unified``); it
    stands for pyg-lib's / DGL's C++ samplers, which run the same algorithm.
    """

    def __init__(self, ds, device: torch.device, fanouts: List[int], batch_size: int,
                 seed: int, workers: int, prefetch: int) -> None:
        from samplers import CSCGraph, NeighborSampler

        self.device, self.batch_size = device, batch_size
        self.graph = CSCGraph.from_csc(ds.indptr, ds.indices)     # host memory: CPU sampling
        self.sampler = NeighborSampler(fanouts, seed=seed)
        self.feats, self.labels = ds.features, ds.labels            # plain host tensors
        self.workers, self.prefetch = workers, prefetch
        self.pin = device.type == "cuda"
        self.streams = ([torch.cuda.Stream(device) for _ in range(workers)] if self.pin
                        else [None] * workers)
        self._epochs: "weakref.WeakSet[_BaselineEpoch]" = weakref.WeakSet()

    def loader(self, seeds: torch.Tensor, shuffle: bool, seed: Optional[int] = None):
        ep = _BaselineEpoch(self, seeds, shuffle, seed)
        self._epochs.add(ep)
        return ep

    def produce(self, seeds: torch.Tensor, key: int, stream) -> tuple:
        """One batch, on a worker thread: CPU sampling and gather, pinned, copied."""
        input_nodes, output_nodes, blocks = self.sampler.sample_distinct(
            self.graph, seeds, batch=key, seeds_checked=True)
        idx_in, idx_out = input_nodes.long(), output_nodes.long()
        x = torch.empty((idx_in.numel(),) + tuple(self.feats.shape[1:]), dtype=self.feats.dtype,
                        pin_memory=self.pin)
        torch.index_select(self.feats, 0, idx_in, out=x)
        y = torch.empty((idx_out.numel(),) + tuple(self.labels.shape[1:]),
                        dtype=self.labels.dtype, pin_memory=self.pin)
        torch.index_select(self.labels, 0, idx_out, out=y)
        if not self.pin:
            return (input_nodes, output_nodes, blocks, x, y), None
        blocks = [_pinned_block(b, True) for b in blocks]
        with torch.cuda.stream(stream):
            dev = self.device
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            blocks = [b.to(dev, non_blocking=True) for b in blocks]
            event = torch.cuda.Event()
            event.record(stream)
        return (input_nodes, output_nodes, blocks, x, y), event

    def unpack(self, batch):
        _, _, blocks, x, y = batch
        return blocks, x, y

    def close(self) -> None:
        for ep in list(self._epochs):
            ep.close()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _BaselineEpoch:
    """One epoch of :class:`StrongBaseline`: worker threads started by ``__iter__``."""

    _POLL_S = 0.1

    def __init__(self, pipe: StrongBaseline, seeds: torch.Tensor, shuffle: bool,
                 seed: Optional[int]) -> None:
        seeds = torch.as_tensor(seeds).long()
        if shuffle:
            g = torch.Generator()
            g.manual_seed(0 if seed is None else seed)
            seeds = seeds[torch.randperm(seeds.numel(), generator=g)]
        self.pipe = pipe
        self.batches = list(seeds.split(pipe.batch_size))
        self.stop = threading.Event()
        self.queues = [queue.Queue(maxsize=pipe.prefetch) for _ in range(pipe.workers)]
        self.threads: List[threading.Thread] = []

    def __len__(self) -> int:
        return len(self.batches)

    def _work(self, w: int) -> None:
        q, stream = self.queues[w], self.pipe.streams[w]
        try:
            for i in range(w, len(self.batches), len(self.queues)):
                if self.stop.is_set():
                    return
                item = self.pipe.produce(self.batches[i], i, stream)
                while not self.stop.is_set():
                    try:
                        q.put(item, timeout=self._POLL_S)
                        break
                    except queue.Full:
                        continue
                del item
        except BaseException as exc:  # handed to the training thread, which re-raises it
            while not self.stop.is_set():
                try:
                    q.put(_Failed(exc), timeout=self._POLL_S)
                    return
                except queue.Full:
                    continue

    def __iter__(self):
        self.threads = [threading.Thread(target=self._work, args=(w,), daemon=True,
                                         name=f"e2e-baseline-worker-{w}")
                        for w in range(len(self.queues))]
        for t in self.threads:
            t.start()
        try:
            for i in range(len(self.batches)):
                w = i % len(self.queues)
                while True:
                    try:
                        item = self.queues[w].get(timeout=self._POLL_S)
                        break
                    except queue.Empty:
                        if not self.threads[w].is_alive() and self.queues[w].empty():
                            raise RuntimeError(f"baseline worker {w} exited without batch {i}")
                if isinstance(item, _Failed):
                    raise item.exc
                batch, event = item
                if event is not None:
                    cur = torch.cuda.current_stream(self.pipe.device)
                    cur.wait_event(event)
                    for t in _gpu_tensors(batch):
                        t.record_stream(cur)
                yield batch
                del batch, item
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        for q in self.queues:
            with contextlib.suppress(queue.Empty):
                while True:
                    q.get_nowait()
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(30)
        self.threads = []


class ReorderedData:
    """The dataset renumbered once in locality order (``samplers.reorder``), computed on first
    use and shared by the ``unified_reordered*`` configurations; with a cache folder the order
    (``old_of_new``) is saved beside the dataset and reused by later runs."""

    def __init__(self, ds, order: str, root: Optional[str]) -> None:
        self.ds, self.order, self.root = ds, order, root
        self.data = None
        self.info: Dict[str, object] = {}

    def _path(self) -> Optional[str]:
        if self.root is None:
            return None
        return os.path.join(self.root, f"{self.ds.name}.order-{self.order}.npy")

    def get(self):
        if self.data is not None:
            return self.data
        import numpy as np

        from samplers import CSCGraph, reorder

        ds, path = self.ds, self._path()
        t0 = time.perf_counter()
        perm = None
        if path is not None and os.path.isfile(path):
            try:
                perm = torch.from_numpy(np.load(path))
                if perm.shape != (ds.num_nodes,):
                    perm = None
            except (OSError, ValueError) as exc:
                logger.info("recomputing the %s order (%s unreadable: %s)", self.order, path, exc)
                perm = None
        graph = CSCGraph.from_csc(ds.indptr, ds.indices)
        r = reorder(graph, ds.features, ds.labels, ids=ds.train_idx,
                    order=self.order if perm is None else perm)
        if perm is None and path is not None:
            tmp = f"{path}.{os.getpid()}.tmp.npy"
            np.save(tmp, r.old_of_new.numpy())
            os.replace(tmp, path)
        self.info = {"order": self.order, "seconds": round(time.perf_counter() - t0, 2),
                     "loaded_order": perm is not None}
        logger.info("reordered (%s) in %.1f s%s", self.order, self.info["seconds"],
                    " (order read from the cache)" if perm is not None else "")
        self.data = types.SimpleNamespace(
            name=f"{ds.name}+{self.order}", num_nodes=ds.num_nodes, num_edges=ds.num_edges,
            feat_dim=ds.feat_dim, num_classes=ds.num_classes, indptr=r.graph.indptr,
            indices=r.graph.indices, features=r.tables[0], labels=r.tables[1], train_idx=r.ids)
        return self.data


def make_pipeline(name: str, ds, device: torch.device, fanouts: List[int], args,
                  reordered: Optional[ReorderedData] = None):
    from train_graphsage import Pipeline

    if name in GPU_ONLY and device.type != "cuda":
        raise SystemExit(f"{name} needs a CUDA device")
    if name in ("dgl", "dgl_dropin"):
        import dgl
        from samplers import DataLoader

        cls = dgl.dataloading.DataLoader if name == "dgl" else DataLoader
        pipe = DGLPipeline(dgl, ds, device, fanouts, args.batch_size, cls)
    elif name == "baseline":
        pipe = StrongBaseline(ds, device, fanouts, args.batch_size, args.seed,
                              args.baseline_workers, args.baseline_prefetch)
    else:
        if name in REORDERED:
            if reordered is None:
                raise ValueError(f"{name} needs the reordered dataset")
            ds = reordered.get()
        mode = {"baseline_naive": "baseline", "gpu_resident": "gpu"}.get(name, "unified")
        storage = {"unified_bf16": "bf16", "unified_int8": "int8",
                   "unified_int8_cached": "int8"}.get(name, "fp32")
        cached = name in ("unified_cached", "unified_reordered_cached", "unified_int8_cached")
        pipe = Pipeline(mode, ds, device, fanouts, args.batch_size,
                        overlap=name != "unified_no_overlap", seed=args.seed,
                        max_threads=args.capped_threads if name == "unified_capped"
                        else args.max_threads,
                        one_sync=name == "unified_one_sync",
                        cache_fraction=args.cache_fraction if cached else 0.0, storage=storage)
        if name == "unified_graph_on_gpu":
            pipe.graph = pipe.graph.to_placement("cuda", device)   # the pinned one is released
    pipe.data = ds        # the tables and seeds this pipeline reads (reordered ones included)
    return pipe


# ------------------------------------------------------------------------------------ timing
def check_batch(pipe, ds) -> None:
    """One batch: features and labels must be exactly the rows of the sampled nodes (of the
    tables the pipeline reads: the reordered ones for a reordered configuration)."""
    import unified_tensor as ut

    data = getattr(pipe, "data", ds)
    it = iter(pipe.loader(data.train_idx[:pipe.batch_size], shuffle=False))
    batch = next(it)
    input_nodes, output_nodes = batch[0], batch[1]
    blocks, x, y = pipe.unpack(batch)
    table = getattr(pipe, "feats", None)   # a compressed table: its decoded rows (CPU gather)
    ref = table if isinstance(table, ut.CompressedTensor) else data.features
    assert torch.equal(x.cpu(), ref[input_nodes.long().cpu()]), "features differ"
    assert torch.equal(y.cpu(), data.labels[output_nodes.long().cpu()]), "labels differ"
    assert blocks[-1].num_dst_nodes() == output_nodes.numel()
    close = getattr(it, "close", None)
    if close is not None:
        close()
    del it


class _Scope:
    """Where the training thread's host syncs go: the model step (``model``: e.g.
    ``torch.bincount`` in the GraphSAGE layers syncs on a GPU) and an epoch's start and end
    (``epoch``: once per epoch, e.g. the seeds' copy to the GPU when a loader is built, the
    deferred range checks settled at the end) are counted apart from the per-batch data path."""

    counter = None

    def _in(self, role: str):
        return self.counter.scope(role) if self.counter is not None else contextlib.nullcontext()

    def model(self):
        return self._in("model")

    def epoch(self):
        return self._in("epoch")


def steps(model, opt, pipe, seeds: torch.Tensor, seed: int,
          scope: Optional[_Scope] = None) -> Iterator[tuple]:
    """Endless training steps over shuffled epochs; yields ``(seeds in the step, loss tensor)``."""
    from _util import train_step

    scope = scope or _Scope()
    epoch = 0
    while True:
        with scope.epoch():
            loader = pipe.loader(seeds, shuffle=True, seed=seed + epoch)
            it = iter(loader)
        for _ in range(len(loader)):
            blocks, x, y = pipe.unpack(next(it))
            with scope.model():
                loss, _ = train_step(model, opt, blocks, x, y)
            yield y.numel(), loss
        with scope.epoch():
            for _ in it:          # the end of the epoch (the loader's end-of-epoch work)
                raise RuntimeError(f"{type(loader).__name__} yielded more than len() batches")
        epoch += 1


def run_config(name: str, ds, device: torch.device, fanouts: List[int], args,
               reordered: Optional[ReorderedData] = None) -> Dict[str, object]:
    if name != "unified_unsorted":
        return _run_config(name, ds, device, fanouts, args, reordered)
    from unified_tensor import _gather

    old = _gather.SORT_ROWS_BELOW
    _gather.SORT_ROWS_BELOW = 0          # never sort: rows read in index order
    try:
        return _run_config(name, ds, device, fanouts, args, reordered)
    finally:
        _gather.SORT_ROWS_BELOW = old


def _run_config(name: str, ds, device: torch.device, fanouts: List[int], args,
                reordered: Optional[ReorderedData] = None) -> Dict[str, object]:
    from _syncs import SyncCounter
    from train_graphsage import GraphSAGE

    t0 = time.perf_counter()
    pipe = make_pipeline(name, ds, device, fanouts, args, reordered)
    setup_s = time.perf_counter() - t0
    gen = None
    syncs = None
    scope = _Scope()
    try:
        check_batch(pipe, ds)
        torch.manual_seed(args.seed)
        model = GraphSAGE(ds.feat_dim, args.hidden, ds.num_classes, len(fanouts)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = steps(model, opt, pipe, pipe.data.train_idx, args.seed, scope)
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
        if device.type == "cuda" and args.sync_batches:
            # untimed: the debug mode's warnings cost time
            with SyncCounter() as counter:
                scope.counter = counter
                for _ in range(args.sync_batches):
                    next(gen)
            scope.counter = None
            syncs = counter.per_batch(args.sync_batches)
    finally:
        if gen is not None:
            gen.close()
        pipe.close()
    dt = median([r[0] for r in rounds])
    n = median([r[1] for r in rounds])
    sps = n / dt
    row = {"seeds_per_s": sps, "ms_per_step": 1e3 * dt / args.batches,
           "epoch_s_est": pipe.data.train_idx.numel() / sps, "setup_s": setup_s,
           "round_s": [r[0] for r in rounds], "mean_loss": [r[2] for r in rounds]}
    if syncs is not None:
        row["syncs_per_batch"] = syncs
    if name in REORDERED and reordered is not None:
        row["reorder"] = reordered.info
    return row


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


RATIOS = (("unified", "baseline"), ("unified", "baseline_naive"), ("baseline", "baseline_naive"),
          ("unified", "gpu_resident"), ("gpu_resident", "unified"),
          ("unified_cached", "unified"), ("unified_reordered", "unified"),
          ("unified_reordered_cached", "unified"), ("unified_graph_on_gpu", "unified"),
          ("unified_cached", "gpu_resident"), ("unified_reordered", "gpu_resident"),
          ("unified_reordered_cached", "gpu_resident"), ("unified_graph_on_gpu", "gpu_resident"),
          ("unified_cached", "baseline"), ("unified_reordered_cached", "baseline"),
          ("unified", "unified_no_overlap"), ("unified_capped", "unified"),
          ("unified_capped", "baseline"), ("unified_one_sync", "unified"),
          ("unified_bf16", "unified"), ("unified_int8", "unified"),
          ("unified_int8_cached", "unified"), ("unified_int8_cached", "gpu_resident"),
          ("unified", "unified_unsorted"), ("unified", "dgl"), ("dgl_dropin", "dgl"))


def load_dataset(args, root: Optional[str]):
    from samplers.datasets import papers_like, synthetic_graph

    if args.graph == "papers_like":
        return papers_like(args.nodes, avg_degree=args.avg_degree, feat_dim=args.feat_dim,
                           num_classes=args.classes, seed=args.seed, root=root)
    return synthetic_graph(args.nodes, avg_degree=args.avg_degree, num_classes=args.classes,
                           feat_dim=args.feat_dim, seed=args.seed, root=root)


def default_configs(device: torch.device) -> List[str]:
    """Every configuration that applies to ``device`` (DGL's where DGL imports, on the CPU)."""
    if device.type == "cuda":
        return [c for c in CONFIGS if not c.startswith("dgl")]
    # on the CPU: no GPU-only rows, and no thread cap / sort order (CUDA gather options)
    configs = [c for c in CONFIGS if c not in GPU_ONLY and not c.startswith("dgl")
               and c not in ("unified_capped", "unified_unsorted")]
    try:
        import dgl  # noqa: F401
        configs += ["dgl", "dgl_dropin"]
    except Exception as exc:  # optional: recorded in the log
        logger.info("DGL not available (%r): no DGL rows", exc)
    return configs


def summarize_rows(rows: List[dict], device: torch.device) -> tuple:
    """``(ratios, targets, best_ours)`` of the finished rows."""
    sps = {r["config"]: r["seeds_per_s"] for r in rows if r["status"] == "ok"}
    ratios = {f"{a}/{b}": sps[a] / sps[b] for a, b in RATIOS if sps.get(a) and sps.get(b)}
    ours = {c: v for c, v in sps.items() if c in OURS}
    best = max(ours, key=ours.get) if ours else None
    if best is not None:
        for ref in ("gpu_resident", "baseline"):
            if sps.get(ref):
                ratios[f"best_ours/{ref}"] = ours[best] / sps[ref]
    targets: Dict[str, bool] = {}
    if device.type == "cuda":
        if "unified/baseline" in ratios:
            targets["unified >= 2x baseline"] = ratios["unified/baseline"] >= 2.0
        if "unified/gpu_resident" in ratios:
            targets["unified time within 1.15x of gpu_resident"] = \
                ratios["unified/gpu_resident"] >= 1 / 1.15
        if "best_ours/gpu_resident" in ratios:
            targets["best ours >= 0.87x gpu_resident"] = ratios["best_ours/gpu_resident"] >= 0.87
        synced = [r for r in rows if r["status"] == "ok" and r["config"] in OURS
                  and "syncs_per_batch" in r]
        if synced:
            targets["host syncs per batch: producer <= 1, training 0"] = all(
                r["syncs_per_batch"]["producer"] <= 1 and r["syncs_per_batch"]["training"] == 0
                for r in synced)
    return ratios, targets, best


def main(argv=None) -> dict:
    t_start = time.perf_counter()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    fanouts = [int(f) for f in args.fanouts.split(",")]
    if args.configs:
        asked = [c.strip() for c in args.configs.split(",") if c.strip()]
        bad = sorted(set(asked) - set(CONFIGS))
        if bad:
            raise SystemExit(f"--configs: unknown {bad}; choose from {CONFIGS}")
        configs = [c for c in CONFIGS if c in asked]       # most valuable first
    else:
        configs = default_configs(device)

    t0 = time.perf_counter()
    root = None if str(args.cache).lower() == "none" else os.path.expanduser(args.cache)
    ds = load_dataset(args, root)
    data_s = time.perf_counter() - t0
    logger.info("%s (ready in %.1f s)", ds, data_s)
    need = (args.warmup + args.batches * args.rounds) * args.batch_size
    if need > ds.train_idx.numel():
        logger.info("note: %d steps need %d seeds > %d training seeds: runs over epochs",
                    args.warmup + args.batches * args.rounds, need, ds.train_idx.numel())

    env = env_info("cuda" if device.type == "cuda" else "cpu")
    feature_bytes = ds.features.numel() * ds.features.element_size()
    dataset = {"name": ds.name, "graph": args.graph, "num_nodes": ds.num_nodes,
               "num_edges": ds.num_edges, "feat_dim": ds.feat_dim,
               "num_classes": ds.num_classes, "train": int(ds.train_idx.numel()),
               "feature_bytes": feature_bytes, "table_over_cache": 1.0 / args.cache_fraction,
               "ready_s": data_s}
    reordered = ReorderedData(ds, args.order, root)
    rows: List[dict] = []
    took: List[float] = []
    for name in configs:
        if args.budget_s is not None and took:
            left = args.budget_s - (time.perf_counter() - t_start)
            if left < max(took):
                reason = (f"budget: {left:.0f} s of --budget-s {args.budget_s:.0f} left, the "
                          f"longest configuration took {max(took):.0f} s")
                logger.info("== %s skipped (%s)", name, reason)
                rows.append({"config": name, "status": "skipped", "reason": reason})
                continue
        logger.info("== %s", name)
        t1 = time.perf_counter()
        rows.append(guarded(name, lambda: run_config(name, ds, device, fanouts, args, reordered)))
        took.append(time.perf_counter() - t1)
        rows[-1]["wall_s"] = round(took[-1], 2)
        if name in REORDERED and not set(REORDERED) & set(configs[configs.index(name) + 1:]):
            reordered.data = None   # the reordered tables: freed after their last configuration
        if args.out:   # partial results on disk after every configuration (a run may be cut off)
            write_json(args.out, {"benchmark": "e2e", "device": device.type, "env": env,
                                  "params": vars(args), "dataset": dataset, "rows": rows,
                                  "partial": True})

    ratios, targets, best = summarize_rows(rows, device)

    def cell_syncs(r, role):
        s = r.get("syncs_per_batch")
        return None if s is None else s.get(role)

    print_table(["config", "seeds/s", "ms/step", "epoch s (est.)", "syncs/batch train",
                 "producer", "model", "status"],
                [[r["config"], r.get("seeds_per_s"), r.get("ms_per_step"), r.get("epoch_s_est"),
                  cell_syncs(r, "training"), cell_syncs(r, "producer"), cell_syncs(r, "model"),
                  r["status"] if r["status"] == "ok"
                  else (r.get("error") or r.get("reason") or "")[:60]] for r in rows])
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x", flush=True)
    if best is not None:
        print(f"best of ours: {best}", flush=True)
    for k, v in targets.items():
        print(f"target {k}: {'met' if v else 'NOT met'}", flush=True)
    summary = "; ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()) or "no ratio"
    payload = {"benchmark": "e2e", "device": device.type, "env": env, "params": vars(args),
               "dataset": dataset, "rows": rows, "ratios": ratios, "best_ours": best,
               "targets": targets, "summary": summary,
               "wall_s": round(time.perf_counter() - t_start, 1)}
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
