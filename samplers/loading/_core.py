"""The loading core every loader front-end shares: :class:`_LoaderCore`.

One iterator = one epoch. A producer (a thread, unless ``prefetch=0``) samples batch i+1 and
gathers its features while the training step on batch i runs:

* GPU path (graph pinned or on the GPU, ``device="cuda"``): sampling and the zero-copy feature
  gather are issued on the process-wide side stream of the device
  (:func:`unified_tensor._streams.side_stream`); after each batch the producer records an event;
  the consumer makes its current stream wait for that event and calls ``record_stream`` on every
  CUDA tensor of the batch before yielding it, so the caching allocator never reuses batch memory
  while training kernels may still read it, and training never reads a batch before it is written.
* CPU-sampling path (graph in pageable host memory): the producer samples on the CPU (Numba kernels
  release the GIL), moves the blocks to ``device`` (``non_blocking`` from pinned memory) and
  gathers the features there; batches travel through a bounded queue of depth ``prefetch``.

A ``break`` out of the loop, garbage collection of the iterator, the end of the epoch or an
exception in the producer all stop the producer (a stop event checked between batches and while
waiting on the full queue) and join it; an exception is re-raised in the training loop with the
producer's traceback.

The front-ends (:class:`~samplers.DataLoader` in ``_dataloader.py``, the PyG loaders in
``_pyg.py``) only say what a seed is and how a sample is packaged.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import math
import queue
import threading
import warnings
from typing import Any, Iterator, Mapping, Optional, Union

import numpy as np
import torch

from . import _dgl_compat
from ._seeds import SeedSet

__all__ = ["_LoaderCore"]

logger = logging.getLogger("samplers")

Tensor = torch.Tensor
DeviceLike = Union[torch.device, str, int]

_workers_warned = False


def _user_stacklevel() -> int:
    """``stacklevel`` that makes a warning point at the first frame outside this package (the
    user's line that built the loader, however many front-end layers sit in between)."""
    import os
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # samplers/
    inside = lambda f: os.path.abspath(f).startswith(here + os.sep)  # noqa: E731
    frame, level = sys._getframe(1), 1
    while frame is not None and inside(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _warn_workers_once(num_workers: int, name: str = "DataLoader") -> None:
    global _workers_warned
    if not _workers_warned:
        _workers_warned = True
        warnings.warn(f"{name}: num_workers={num_workers} is not used: one producer thread "
                      f"replaces worker processes (it samples and gathers the next batch on a side "
                      f"stream while this one trains; the CPU sampler is itself multi-threaded)",
                      UserWarning, stacklevel=_user_stacklevel())


# What torch.utils.data.DataLoader refuses to change once built (its __setattr__); the same here.
_FROZEN_AFTER_INIT = frozenset({"batch_size", "batch_sampler", "sampler", "drop_last", "dataset",
                                "persistent_workers"})

_JOIN_TIMEOUT_S = 10.0     # how long a stopped producer may take to finish its current batch
_POLL_S = 0.05             # producer put / consumer get poll period (checks the stop flag)
_thread_ids = itertools.count()


class _LoaderCore(torch.utils.data.DataLoader):
    """The loading core every front-end shares (DGL-style :class:`DataLoader`, the PyG loaders of
    :mod:`samplers.pyg`): seeds validated once (:class:`~samplers.loading._seeds.SeedSet`), devices and
    where sampling runs, epoch permutations (shuffle, DDP split, ``drop_last``), the producer
    thread with its bounded queue, the side stream and the event hand-over, and tables made
    unified in place. A front-end says what a seed is (the ``kind`` / ``count`` it gives
    :meth:`_init_core`) and implements :meth:`_produce`, which turns one batch of seeds into what
    the loader yields. It is a ``torch.utils.data.DataLoader`` subclass (as DGL's and PyG's loaders
    are) so trainers that check ``isinstance`` accept it."""

    _name = "DataLoader"
    _distinct_positions = True   # loader(index): seeds of one batch must be distinct

    def _init_core(self, graph: Any, indices: Any, kind: str, *, device: Optional[DeviceLike],
                   use_uva: Optional[bool], batch_size: int, drop_last: bool, shuffle: bool,
                   use_ddp: bool = False, ddp_seed: int = 0,
                   use_prefetch_thread: Optional[bool] = None,
                   use_alternate_streams: Optional[bool] = None,
                   pin_prefetcher: Optional[bool] = None, prefetch: Optional[int] = None,
                   prefetch_factor: Optional[int] = None, max_threads: Optional[int] = None,
                   seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                   num_workers: int = 0, seed_count: Optional[int] = None,
                   seed_name: str = "indices", sampler: Any = None,
                   torch_kwargs: Optional[Mapping[str, Any]] = None) -> None:
        name = self._name
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"{name}: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size must be >= 1, got {batch_size}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) \
                or num_workers < 0:
            raise ValueError(f"{name}: num_workers must be an int >= 0, got {num_workers!r}")
        torch_kwargs = dict(torch_kwargs or {})
        timeout = torch_kwargs.get("timeout", 0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer,
                                                                 np.floating)):
            raise TypeError(f"{name}: timeout must be a number, got {timeout!r}")
        if timeout < 0:
            raise ValueError(f"{name}: timeout option should be non-negative, got {timeout!r}")
        self.multiprocessing_context = torch_kwargs.get("multiprocessing_context")  # checked
        if sampler is not None:   # torch's DataLoader(sampler=...): positions, epoch by epoch
            if shuffle:
                raise ValueError(f"{name}: sampler= is mutually exclusive with shuffle=True "
                                 f"(as in torch.utils.data.DataLoader)")
            if use_ddp:
                raise ValueError(f"{name}: pass either sampler= or use_ddp=True, not both")
            if not hasattr(sampler, "__iter__"):
                raise TypeError(f"{name}: sampler must be iterable (yield positions of seeds), "
                                f"got {type(sampler).__name__}")
        self._user_sampler = sampler   # `sampler` itself is torch's attribute (_torch_attributes)
        self.graph = graph
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self.use_ddp = bool(use_ddp)
        self.ddp_seed = int(ddp_seed)
        self.num_workers = int(num_workers)
        if self.num_workers > 0:
            _warn_workers_once(self.num_workers, name)
        self.max_threads = _check_max_threads(max_threads)
        self._is_dgl = _dgl_compat.is_dgl_graph(graph)
        self._epoch = 0
        self._calls = 0   # batches made by loader(index): keys them apart from the epochs'
        self._tables: dict = {}
        self._tables_lock = threading.Lock()
        # --- devices -------------------------------------------------------------------------
        placement = _dgl_compat.graph_placement(graph)
        if device is None:
            if use_uva:
                device = torch.device("cuda", _current_cuda_index())
            elif placement == "cuda":
                device = _dgl_compat.graph_device(graph) or torch.device("cuda")
            else:
                device = torch.device("cpu")
        self.device = _normalise_device(device, name)
        cuda_out = self.device.type == "cuda"
        if cuda_out and not torch.cuda.is_available():
            raise ValueError(f"{name}: device={device!r} but CUDA is not available")
        if use_uva is None:   # a front-end that built its own graph: sample it over UVA
            use_uva = cuda_out and placement == "cpu"
        if use_uva:
            if not cuda_out:
                raise ValueError(f"{name}: use_uva=True samples on the GPU, so it needs a CUDA "
                                 f"device, got device={device!r}")
            if placement == "cuda":
                raise ValueError(f"{name}: use_uva=True reads the graph from pinned host memory, "
                                 "but the graph is already in GPU memory (use use_uva=False)")
            if placement == "cpu":
                self.graph = graph = _pin_graph(graph)
                placement = "pinned"
        if placement == "cuda":
            gdev = _dgl_compat.graph_device(graph)
            if gdev is not None and _normalise_device(gdev) != self.device:
                raise ValueError(f"{name}: the graph is on {gdev} so device must be the same "
                                 f"GPU, got device={device!r}")
        self.use_uva = bool(use_uva)
        self._sample_device = (self.device if cuda_out and placement in ("cuda", "pinned")
                               else torch.device("cpu"))
        cpu_to_cuda = cuda_out and self._sample_device.type == "cpu"

        if use_alternate_streams and not cuda_out:
            raise ValueError(f"{name}: use_alternate_streams=True only applies to a CUDA device, "
                             f"got device={self.device}")
        self._use_side_stream = cuda_out if use_alternate_streams is None \
            else bool(use_alternate_streams)
        if pin_prefetcher and not cpu_to_cuda:
            raise ValueError(f"{name}: pin_prefetcher=True only applies when sampling on the CPU "
                             f"for a CUDA device (device={self.device}, graph {placement})")
        self._pin = cpu_to_cuda if pin_prefetcher is None else bool(pin_prefetcher)

        # --- prefetch depth ------------------------------------------------------------------
        if prefetch is None:
            prefetch = prefetch_factor or (1 if cuda_out else 2)
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise ValueError(f"{name}: prefetch must be an int >= 0, got {prefetch!r}")
        if use_prefetch_thread and prefetch == 0:
            raise ValueError(f"{name}: use_prefetch_thread=True needs prefetch >= 1, got 0")
        self.prefetch = 0 if use_prefetch_thread is False else int(prefetch)

        # --- shuffling generator ---------------------------------------------------------------
        if seed is not None and generator is not None:
            raise ValueError(f"{name}: pass either seed or generator, not both")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"{name}: seed must be an int, got {seed!r}")
            generator = torch.Generator().manual_seed(int(seed))
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{name}: generator must be a torch.Generator, got {generator!r}")
        self.generator = generator

        # --- seeds -----------------------------------------------------------------------------
        self._num_nodes = _dgl_compat.graph_num_nodes(graph)
        # Validated once against what they index (nodes or edges, per type), cast to the graph's
        # idtype; the core below only permutes positions and cuts batches.
        self._seeds = SeedSet(indices, graph, kind, count=seed_count, name=seed_name,
                              loader=name)
        self.indices = self._seeds.user
        self._seed_ids_dev = self._seeds.ids_on(self._sample_device)
        self._torch_attributes(prefetch_factor, torch_kwargs)

    # --- torch.utils.data.DataLoader's public attributes ---------------------------------------
    def _torch_attributes(self, prefetch_factor: Optional[int], kw: Mapping[str, Any]) -> None:
        """Set what ``torch.utils.data.DataLoader.__init__`` sets (it is never called here), with
        the values DGL's / PyG's loaders give, so code that reads them works
        (``len(loader.dataset)``, ``loader.sampler``, ...): ``dataset`` / ``sampler`` /
        ``batch_sampler`` from :meth:`_index_attributes`, the worker options as given (accepted,
        not used: there are no workers) with torch's defaults; then what torch freezes is
        frozen."""
        self.dataset, self.sampler, self.batch_sampler = self._index_attributes()
        self.timeout = kw.get("timeout", 0)
        self.worker_init_fn = kw.get("worker_init_fn")
        self.pin_memory = bool(kw.get("pin_memory", False))
        self.pin_memory_device = kw.get("pin_memory_device", "")
        self.persistent_workers = bool(kw.get("persistent_workers", False))
        self.in_order = bool(kw.get("in_order", True))
        self.prefetch_factor = 2 if prefetch_factor is None and self.num_workers > 0 \
            else prefetch_factor
        self._torch_frozen = True

    def _index_attributes(self) -> tuple:
        """``(dataset, sampler, batch_sampler)`` in torch's sense. Here PyG's: a map-style dataset
        of seed positions, ``range(len(indices))``; the user's ``sampler``, else a
        ``RandomSampler`` (``shuffle``, drawing from ``generator``) or ``SequentialSampler`` over
        it; a ``BatchSampler`` of ``batch_size`` / ``drop_last`` around that. They describe the
        epoch and do not run it: the loader permutes positions itself (a user's ``sampler`` aside),
        so a shuffled epoch is not the order the ``RandomSampler`` yields, and iterating that
        sampler draws from ``generator``, as in torch."""
        from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

        dataset = range(len(self._seeds))
        sampler = self._user_sampler
        if sampler is None:   # RandomSampler refuses an empty dataset; an empty epoch is the same
            sampler = RandomSampler(dataset, generator=self.generator) \
                if self.shuffle and len(dataset) else SequentialSampler(dataset)
        return dataset, sampler, BatchSampler(sampler, self.batch_size, self.drop_last)

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr in _FROZEN_AFTER_INIT and self.__dict__.get("_torch_frozen", False):
            raise ValueError(f"{attr} attribute should not be set after "
                             f"{type(self).__name__} is initialized")
        super().__setattr__(attr, value)

    @property
    def multiprocessing_context(self) -> Any:
        """As torch's (a start method's name is turned into its context); accepted and not used:
        there are no worker processes."""
        return self.__dict__.get("_multiprocessing_context")

    @multiprocessing_context.setter
    def multiprocessing_context(self, context: Any) -> None:
        import multiprocessing

        if isinstance(context, str):
            methods = torch.multiprocessing.get_all_start_methods()
            if context not in methods:
                raise ValueError(f"{self._name}: multiprocessing_context should specify a valid "
                                 f"start method in {methods!r}, got {context!r}")
            context = torch.multiprocessing.get_context(context)
        elif context is not None and not isinstance(context, multiprocessing.context.BaseContext):
            raise TypeError(f"{self._name}: multiprocessing_context should be a context object or "
                            f"the name of a start method, got {context!r}")
        self._multiprocessing_context = context


    # ------------------------------------------------------------------------------------------
    def _produce(self, seeds: Any, positions: Tensor, batch_key: int) -> Any:
        """One batch from its seeds (what :meth:`SeedSet.batch` gives, on the sampling device),
        their positions in ``indices`` (CPU int64) and the batch's identity ``(epoch << 32) +
        index``. Runs in the producer thread, inside the side-stream context."""
        raise NotImplementedError

    def _batch_tensors(self, batch: Any) -> Iterator[Tensor]:
        """Every CUDA-relevant tensor of a batch, for the stream hand-over."""
        return _iter_tensors(batch)

    def _table(self, key: Any, t: Any, arg: str, rows: Optional[int]) -> Any:
        """``t`` checked and made unified in place, cached under ``key`` while ``t`` is the same
        object (front-ends that read tables from the user's data object at every batch)."""
        with self._tables_lock:
            hit = self._tables.get(key)
            if hit is None or hit[0] is not t:
                hit = (t, self._one_table(t, arg, rows))
                self._tables[key] = hit
        return hit[1]

    def _one_table(self, t: Any, arg: str, rows: Optional[int]) -> Any:
        name = self._name
        if isinstance(t, np.ndarray):
            pass
        elif not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {arg} must be a torch.Tensor or numpy.ndarray, "
                            f"got {type(t).__name__}")
        if t.ndim == 0:
            raise ValueError(f"{name}: {arg} must have one row per node, got a scalar")
        if rows is not None and t.shape[0] != rows:
            raise ValueError(f"{name}: {arg} has {t.shape[0]} rows but the graph has "
                             f"{rows} nodes")
        if isinstance(t, torch.Tensor) and t.is_cuda:
            if self.device.type != "cuda" or t.device != self.device:
                raise ValueError(f"{name}: {arg} is on {t.device} but device={self.device}; "
                                 f"keep the table in host memory (it is read zero-copy)")
            return t
        import unified_tensor as ut
        try:
            return ut.unified(_contiguous_table(t, arg, name))   # pins in place, no copy
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: {arg}: {exc}") from None

    # ------------------------------------------------------------------------------------------
    def _num_local_seeds(self) -> int:
        n = len(self._seeds)
        if self._user_sampler is not None:
            return len(self._user_sampler)
        if not self.use_ddp:
            return n
        world = _world_size()
        if self.drop_last and n % world:
            return (n - world) // world + 1 if n >= world else 0
        return math.ceil(n / world)

    def __len__(self) -> int:
        """Number of batches per epoch (on this rank when ``use_ddp``)."""
        n = self._num_local_seeds()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _epoch_order(self) -> Tensor:
        """Positions into ``indices`` for this epoch (CPU int64), shuffled / split per rank."""
        epoch, self._epoch = self._epoch, self._epoch + 1
        return self._order(epoch, self.shuffle)

    def _order(self, epoch: int, shuffle: bool) -> Tensor:
        """Positions into ``indices`` of epoch ``epoch``; with ``shuffle=False`` it draws from no
        generator (only a user's ``sampler`` is iterated), so it has no side effects."""
        n = len(self._seeds)
        if self._user_sampler is not None:
            order = self._sampler_order(n)
        elif self.use_ddp:
            gen = torch.Generator().manual_seed(self.ddp_seed + epoch)
            order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
            world, rank = _world_size(), _rank()
            per_rank = self._num_local_seeds()
            total = per_rank * world
            if total > n:
                order = order.repeat(math.ceil(total / max(n, 1)))[:total]
            order = order[:total][rank::world]
        elif shuffle:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        if self.drop_last:
            order = order[: (order.numel() // self.batch_size) * self.batch_size]
        return order

    def _sampler_order(self, n: int) -> Tensor:
        """This epoch's positions from ``sampler`` (e.g. ``DistributedSampler``), checked: in
        range, and distinct within every batch (a batch's seeds must be)."""
        name = self._name
        order = torch.as_tensor([int(i) for i in iter(self._user_sampler)], dtype=torch.int64)
        if order.numel() and (int(order.min()) < 0 or int(order.max()) >= n):
            bad = int(order.min()) if int(order.min()) < 0 else int(order.max())
            raise IndexError(f"{name}: sampler yielded position {bad}, outside [0, {n})")
        bs = self.batch_size
        full = order.numel() // bs * bs
        for part in (order[:full].view(-1, bs), order[full:].view(1, -1)):
            if part.numel() and part.shape[1] > 1:
                srt = torch.sort(part, dim=1).values
                rep = torch.nonzero(srt[:, 1:] == srt[:, :-1])
                if rep.numel():
                    r, c = int(rep[0, 0]), int(rep[0, 1])
                    raise ValueError(f"{name}: sampler put position {int(srt[r, c])} twice in one "
                                     f"batch; a batch's seeds must be distinct")
        return order

    def __iter__(self) -> "_LoaderIter":
        return _LoaderIter(self)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch counter used by the ``use_ddp`` permutation (as DDP samplers do)."""
        self._epoch = int(epoch)

    def _batch_of(self, index: Any) -> Any:
        """One batch, made now in the calling thread on its current stream, of the seeds at
        positions ``index`` of ``indices`` (PyG's ``loader(index)``). Its draws are keyed apart
        from every epoch's batches: by a per-loader call counter."""
        name = self._name
        pos = torch.as_tensor(index)
        if pos.dtype == torch.bool or pos.is_floating_point() or pos.is_complex():
            raise TypeError(f"{name}: index must hold integer positions, got {pos.dtype}")
        pos = pos.reshape(-1).to("cpu", torch.int64)
        n = len(self._seeds)
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= n):
            bad = int(pos.min()) if int(pos.min()) < 0 else int(pos.max())
            raise IndexError(f"{name}: index holds position {bad}, outside [0, {n})")
        if self._distinct_positions and pos.numel() > 1:
            srt = torch.sort(pos).values
            rep = torch.nonzero(srt[1:] == srt[:-1])
            if rep.numel():
                raise ValueError(f"{name}: index holds position {int(srt[int(rep[0, 0])])} twice; "
                                 f"a batch's seeds must be distinct")
        ids = self._seed_ids_dev.index_select(0, pos.to(self._sample_device))
        return self._produce_now(self._seeds.batch(ids, pos), pos)

    def _produce_now(self, seeds: Any, positions: Tensor) -> Any:
        """:meth:`_produce` run now in the calling thread on its current stream (``loader(index)``,
        ``collate_fn``), its draws keyed apart from every epoch's batches by a per-loader call
        counter."""
        with self._tables_lock:
            calls, self._calls = self._calls, self._calls + 1
        ctx = torch.cuda.device(self.device) if self.device.type == "cuda" \
            else contextlib.nullcontext()
        with ctx:
            return self._produce(seeds, positions, (0xFFFFFFFF << 32) + calls)


# ----------------------------------------------------------------------------------------------
# One epoch of work: what the producer runs. It holds the loader, never the iterator, so dropping
# the iterator triggers its finaliser even while the producer thread is alive.
class _Epoch:
    def __init__(self, loader: _LoaderCore, order: Tensor, number: int) -> None:
        self.loader = loader
        self.order = order
        self.number = number
        self.device = loader.device
        self.cuda = loader.device.type == "cuda"
        self.stream = None
        if self.cuda and loader._use_side_stream:
            from unified_tensor._streams import side_stream
            self.stream = side_stream(loader.device)

    @contextlib.contextmanager
    def _cuda_context(self) -> Iterator[None]:
        if not self.cuda:
            yield
            return
        with torch.cuda.device(self.device):
            if self.stream is None:
                yield
            else:
                with torch.cuda.stream(self.stream):
                    yield

    def batches(self) -> Iterator[tuple]:
        """Yield ``(batch, event)``; CUDA work of each batch is issued inside the stream context
        only (never across a ``yield``, so the consumer's thread keeps its own stream)."""
        loader = self.loader
        with self._cuda_context():
            order = self.order.to(loader._sample_device, non_blocking=True)
            ids_all = loader._seed_ids_dev.index_select(0, order)
        bs = loader.batch_size
        for index, start in enumerate(range(0, ids_all.numel(), bs)):
            with self._cuda_context():
                positions = self.order[start:start + bs]
                seeds = loader._seeds.batch(ids_all[start:start + bs], positions)
                batch = loader._produce(seeds, positions, (self.number << 32) + index)
                event = None
                if self.cuda:
                    from unified_tensor._streams import record_event
                    event = record_event(self.stream or torch.cuda.current_stream(self.device))
            yield batch, event
            del batch, event   # the consumer owns the batch now

class _End:
    pass


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: "queue.Queue", item: Any, stop: threading.Event) -> bool:
    """Put without ever blocking forever: give up when ``stop`` is set. True if it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _producer_main(epoch: _Epoch, q: "queue.Queue", stop: threading.Event,
                   on_exit: Optional[list] = None) -> None:
    """``on_exit``: callables run as the thread ends, after its last CUDA work was issued (a
    close() that ran on this thread, from a finaliser, leaves its stream wait there)."""
    try:
        for item in epoch.batches():
            if stop.is_set() or not _put(q, item, stop):
                return
            del item
    except BaseException as exc:  # handed to the consumer, which re-raises it
        _put(q, _Failure(exc), stop)
        return
    finally:
        for fn in on_exit or ():
            with contextlib.suppress(Exception):
                fn()
    _put(q, _End(), stop)


class _LoaderIter:
    """One epoch over a :class:`DataLoader`."""

    def __init__(self, loader: _LoaderCore) -> None:
        self._device = loader.device
        self._loader_tensors = loader._batch_tensors
        self._num_batches = len(loader)
        number = loader._epoch
        epoch = _Epoch(loader, loader._epoch_order(), number)
        self._thread: Optional[threading.Thread] = None
        self._done = False
        self._side = None
        self._consumer = None   # the stream batches are handed over to (the training stream)
        self._on_exit: list = []
        if epoch.cuda:
            # Whatever the user's stream produced so far (graph / indices / tables moved to the
            # GPU) must be complete before the side stream reads it.
            current = self._consumer = torch.cuda.current_stream(self._device)
            if epoch.stream is not None and epoch.stream != current:
                epoch.stream.wait_stream(current)
                self._side = epoch.stream
        if loader.prefetch == 0:
            self._sync = epoch.batches()
            return
        self._sync = None
        self._stop = threading.Event()
        self._queue: "queue.Queue" = queue.Queue(maxsize=loader.prefetch)
        self._thread = threading.Thread(
            target=_producer_main, args=(epoch, self._queue, self._stop, self._on_exit), daemon=True,
            name=f"samplers-DataLoader-producer-{next(_thread_ids)}")
        self._thread.start()

    def __iter__(self) -> "_LoaderIter":
        return self

    def __len__(self) -> int:
        return self._num_batches

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._sync is not None:
            try:
                batch, event = next(self._sync)
            except StopIteration:
                self._done = True
                self._settle_checks()
                raise
        else:
            item = self._get()
            if isinstance(item, _End):
                self.close()
                self._settle_checks()
                raise StopIteration
            if isinstance(item, _Failure):
                self.close()
                exc = item.exc
                if hasattr(exc, "add_note"):
                    exc.add_note("(raised in the samplers.DataLoader producer thread)")
                raise exc
            batch, event = item
        if self._device.type == "cuda":
            from unified_tensor._streams import hand_over
            self._consumer = torch.cuda.current_stream(self._device)
            hand_over(self._loader_tensors(batch), event, self._device)
        return batch

    def _settle_checks(self) -> None:
        """End of the epoch: raise a deferred IndexError of any CUDA gather so far (the user's
        ``feats[idx]`` included) before the epoch counts as done. Waits only when checks are in
        flight: one wait per epoch, none per batch."""
        if self._device.type == "cuda":
            from unified_tensor import _checks
            _checks.settle_all(block=True)

    def _get(self) -> Any:
        while True:
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError("DataLoader: the producer thread exited without a result")

    def close(self) -> None:
        """Stop the producer and join it (called at the end of the epoch, on error and on GC)."""
        self._done = True
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        with contextlib.suppress(queue.Empty):   # free queued batches now
            while True:
                self._queue.get_nowait()
        on_producer = thread is threading.current_thread()
        if not on_producer:
            thread.join(_JOIN_TIMEOUT_S)
            if thread.is_alive():
                logger.warning("DataLoader: producer thread %s still running %.0f s after stop; "
                               "it exits after its current batch", thread.name, _JOIN_TIMEOUT_S)
        if self._side is not None:
            # Batches dropped unconsumed (a break) may still be sampled / gathered on the side
            # stream, reading the loader's GPU tensors (a GPU graph, seed ids, GPU tables) that
            # were never recorded on it: the consumer's stream (the one batches were handed over
            # to, not this thread's: the garbage collector may run close() on the producer
            # thread, whose current stream is the side stream) waits for them (on the GPU, no
            # host sync) before anything it frees can be reused. On the producer thread the wait
            # is left to the thread's end, after the last side-stream work it issues.
            wait = functools.partial(_consumer_waits, self._consumer, self._side)
            if on_producer:
                self._on_exit.append(wait)
            else:
                wait()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to clean
            pass


def _consumer_waits(consumer: Any, side: Any) -> None:
    """``consumer`` waits (on the GPU) for everything issued on ``side`` so far; never a stream
    on itself, never a stream capturing a CUDA graph (the wait would join the capture)."""
    if consumer is None or consumer == side:
        return
    from unified_tensor._checks import stream_capturing

    with contextlib.suppress(Exception):
        if not stream_capturing(consumer):
            consumer.wait_stream(side)


# ----------------------------------------------------------------------------------------------
def _gather(table: Tensor, idx: Tensor, max_threads: Optional[int], validate: bool) -> Tensor:
    """Rows ``idx`` of ``table`` on ``idx``'s device (GPU tables: ``index_select`` when the ids
    are known valid; else ``ut.gather``, whose deferred check never poisons the context)."""
    if table.is_cuda and not validate:
        return torch.index_select(table, 0, idx.to(table.device, non_blocking=True))
    import unified_tensor as ut
    if table.is_cuda:
        idx = idx.to(table.device, non_blocking=True)
    return ut.gather(table, idx, max_threads=max_threads, validate=validate)


def _on(t: Any, device: torch.device) -> Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"DataLoader: expected the sampler to return tensors of node ids, got "
                        f"{type(t).__name__}")
    # non_blocking only to a GPU: ids copied to the CPU are read at once by the CPU gather
    return t.to(device, non_blocking=device.type == "cuda")


_TO_ACCEPTS_NON_BLOCKING: dict = {}


def _to_device(obj: Any, device: torch.device, pin: bool) -> Any:
    """Move a sampler's result (tensors, blocks, nested containers) to ``device``; asynchronously
    only to a GPU (a CPU result may be read at once, before an asynchronous copy has landed)."""
    nb = torch.device(device).type == "cuda"
    if isinstance(obj, torch.Tensor):
        if pin and obj.device.type == "cpu" and not obj.is_pinned():
            obj = obj.pin_memory()
        return obj.to(device, non_blocking=nb)
    if isinstance(obj, list):
        return [_to_device(x, device, pin) for x in obj]
    if isinstance(obj, tuple):
        moved = [_to_device(x, device, pin) for x in obj]
        return type(obj)(*moved) if hasattr(obj, "_fields") else tuple(moved)
    if isinstance(obj, dict):
        return {k: _to_device(v, device, pin) for k, v in obj.items()}
    to = getattr(obj, "to", None)
    if to is None or not callable(to):
        return obj
    cls = type(obj)
    accepts = _TO_ACCEPTS_NON_BLOCKING.get(cls)
    if accepts is None:
        try:
            params = inspect.signature(to).parameters
            accepts = "non_blocking" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            accepts = False
        _TO_ACCEPTS_NON_BLOCKING[cls] = accepts
    return to(device, non_blocking=nb) if accepts else to(device)


def _iter_tensors(obj: Any, _depth: int = 0) -> Iterator[Tensor]:
    """Every tensor reachable from a batch: containers, DGL frames and graph structure, Block
    attributes (one level of ``vars``), for ``record_stream``."""
    if _depth > 6:
        return
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _iter_tensors(x, _depth + 1)
    elif isinstance(obj, Mapping):
        for x in obj.values():
            yield from _iter_tensors(x, _depth + 1)
    elif _dgl_compat.is_dgl_graph(obj):
        yield obj   # DGLGraph.record_stream covers its structure and its features
    elif hasattr(obj, "__dict__"):
        for x in vars(obj).values():
            if isinstance(x, (torch.Tensor, list, tuple, Mapping)):
                yield from _iter_tensors(x, _depth + 1)


# ----------------------------------------------------------------------------------------------
def _contiguous_table(t: Any, what: str, name: str = "DataLoader") -> Any:
    """``t`` itself, or for a non-contiguous tensor (a column slice, a transposed or expanded
    tensor) a contiguous copy, with a warning that says what it costs (DGL gathers from such
    tables; the zero-copy path needs contiguous rows)."""
    if isinstance(t, torch.Tensor) and t.layout == torch.strided and not t.is_contiguous() \
            and not t.requires_grad:
        mib = t.numel() * t.element_size() / 2**20
        warnings.warn(f"{name}: {what} is not contiguous; gathering from a contiguous copy "
                      f"({mib:.1f} MiB more host memory). Pass a contiguous tensor to avoid it.",
                      UserWarning, stacklevel=_user_stacklevel())
        return t.contiguous()
    return t


def _check_max_threads(max_threads: Any) -> Optional[int]:
    if max_threads is None:
        return None
    if isinstance(max_threads, bool) or not isinstance(max_threads, (int, np.integer)):
        raise TypeError(f"DataLoader: max_threads must be an int or None, got {max_threads!r}")
    if max_threads < 1:
        raise ValueError(f"DataLoader: max_threads must be >= 1, got {max_threads}")
    return int(max_threads)


def _normalise_device(device: DeviceLike, name: str = "DataLoader") -> torch.device:
    if isinstance(device, int) and not isinstance(device, bool):
        return torch.device("cuda", device)
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"{name}: device={device!r} is not a device") from exc
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", _current_cuda_index())
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: device must be 'cpu' or 'cuda', got {device!r}")
    return dev


def _current_cuda_index() -> int:
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def _pin_graph(graph: Any) -> Any:
    if _dgl_compat.is_dgl_graph(graph):
        graph.pin_memory_()
        return graph
    pin = getattr(graph, "pin", None)
    if pin is None:
        raise ValueError(f"DataLoader: use_uva=True needs a graph that can be pinned, got "
                         f"{type(graph).__name__}")
    pinned = pin()
    return graph if pinned is None else pinned


def _world_size() -> int:
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _rank() -> int:
    import torch.distributed as dist
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
