"""The DGL-style front-end of the loading core: :class:`DataLoader`, a drop-in for
``dgl.dataloading.DataLoader`` (same positional arguments, every DGL keyword, DGL's tuples)."""
from __future__ import annotations

import contextlib
import inspect
import warnings
from typing import Any, Iterator, Mapping, Optional

import torch

from . import _dgl_compat
from ._core import DeviceLike, _LoaderCore, _contiguous_table, _gather, _on, _to_device
from ._seeds import SeedSet, seed_kind

__all__ = ["DataLoader"]

Tensor = torch.Tensor

# Keyword arguments that DGL's DataLoader forwards to ``torch.utils.data.DataLoader``. They are
# accepted so a DGL script runs unchanged; see the DataLoader docstring for what each one does here.
_TORCH_LOADER_KWARGS = frozenset({
    "num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn",
    "multiprocessing_context", "generator", "prefetch_factor", "persistent_workers",
    "pin_memory_device", "sampler", "batch_sampler", "in_order", "dataset",
})

class _SeedBatches(torch.utils.data.IterableDataset):
    """A :class:`DataLoader`'s ``dataset``, shaped as DGL's (``TensorizedDataset``): an iterable
    dataset of the seed batches, whose ``len()`` is the number of batches per epoch
    (``len(loader)``). Iterating it yields the seed ids batch by batch in their given order (this
    rank's share with ``use_ddp``, ``drop_last`` applied; never shuffled, and the loader's epochs
    are not touched): a tensor, or ``{type: ids}`` of the types present, as the graph sampler gets
    them; ``loader.collate_fn(ids)`` makes a batch of them."""

    def __init__(self, loader: "DataLoader") -> None:
        self._loader = loader

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Any]:
        loader = self._loader
        order = loader._order(0, shuffle=False)
        ids = loader._seeds.ids.index_select(0, order.to(loader._seeds.ids.device))
        bs = loader.batch_size
        for start in range(0, order.numel(), bs):
            yield loader._seeds.batch(ids[start:start + bs], order[start:start + bs])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_seeds={len(self._loader._seeds)}, batches={len(self)})"


class DataLoader(_LoaderCore):
    r"""Iterate over minibatches of sampled blocks, prefetching one step ahead.

    A drop-in for :class:`dgl.dataloading.DataLoader`: the same positional arguments, every DGL
    keyword argument, and the same ``(input_nodes, output_nodes, blocks)`` tuples. With a DGLGraph
    and a DGL sampler it yields real DGL blocks; with :class:`~samplers.CSCGraph` and
    :class:`~samplers.NeighborSampler` it yields the library's :class:`~samplers.Block`. It calls
    ``graph_sampler.sample(graph, seeds)`` once per batch, so any sampler written for DGL's
    interface works.

    Parameters
    ----------
    graph : CSCGraph, HeteroCSCGraph, dgl.DGLGraph or any graph ``graph_sampler`` understands
        Graph to sample from. With a :class:`~samplers.HeteroCSCGraph`, ``indices`` is
        ``{node_type: ids}``, ``features`` / ``labels`` are ``{node_type: table}`` (or
        ``{name: {node_type: table}}``) and the blocks' ``srcdata[name]`` / ``dstdata[name]`` are
        ``{node_type: rows}``.
    indices : torch.Tensor, numpy.ndarray, sequence of int, or dict of those
        1-D seed ids (int8..int64, on any device), every one of them used exactly once per
        epoch; distinct, checked once at construction. Node ids, or edge ids when
        ``graph_sampler`` is an edge-prediction sampler (DGL's ``as_edge_prediction_sampler``, or
        a sampler with ``seed_kind = "edge"``). For a DGL heterograph a dict ``{node_type: ids}``
        (``{edge_type: ids}`` for edge seeds), checked per type; batches are then dicts of the
        types present, as DGL's. Boolean masks are rejected with ``TypeError`` (DGL takes ids
        too): pass ``mask.nonzero().squeeze(1)``.
    graph_sampler : object with ``sample(graph, seeds)``
        ``samplers.NeighborSampler``, ``dgl.dataloading.NeighborSampler`` or a custom sampler.
    device : torch.device, str, int or None
        Device of the yielded blocks and features. ``None``: the current CUDA device if
        ``use_uva``, else the graph's device (CUDA for a graph in GPU memory, else CPU). Sampling
        runs on the GPU when ``device`` is CUDA and the graph is in GPU memory, pinned, or
        ``use_uva=True``; otherwise it runs on the CPU and the result is moved to ``device``.
    use_ddp : bool
        Split the seeds across ``torch.distributed`` ranks (each rank gets ``ceil(n / world)``
        seeds, the permutation padded by wrapping around; with ``drop_last`` the tail that does not
        divide evenly is dropped). The permutation uses ``ddp_seed + epoch`` so all ranks agree.
    ddp_seed : int
        Seed of the shared permutation when ``use_ddp``.
    batch_size : int
        Seeds per batch.
    drop_last : bool
        Drop the last, smaller batch.
    shuffle : bool
        Shuffle the seeds at the start of every epoch.
    use_prefetch_thread : bool or None
        Produce batches in a background thread. ``None``: yes unless ``prefetch=0``. ``False`` is
        the same as ``prefetch=0`` (everything runs in the calling thread).
    use_alternate_streams : bool or None
        Issue the producer's CUDA work on the shared side stream (``None``: yes when ``device`` is
        CUDA). ``False`` issues it on the calling thread's current stream. ``True`` with a CPU
        ``device`` raises ``ValueError``.
    pin_prefetcher : bool or None
        Pin CPU-sampled tensors before the host-to-device copy (``None``: yes when sampling on the
        CPU for a CUDA ``device``). ``True`` in any other case raises ``ValueError``.
    use_uva : bool
        Pin the graph in place (``CSCGraph.pin()`` / ``DGLGraph.pin_memory_()``) and sample on the
        GPU over UVA. Requires a CUDA ``device`` and a graph in host memory.
    gpu_cache : dict or None
        DGL's GPU feature cache. Not used: features are read zero-copy from pinned host memory (or
        from GPU memory if they are there); a non-``None`` value warns once and is ignored.
    features : torch.Tensor, numpy.ndarray, UnifiedTensor, dict of those, or None
        Node features gathered for every batch into ``blocks[0].srcdata["feat"]`` (a dict
        ``{name: table}`` fills ``srcdata[name]``). Host tables are made unified in place with
        :func:`unified_tensor.unified` (pinned, no copy) and gathered zero-copy on the GPU, or with
        the CPU gather for a CPU ``device``; tables already on the GPU are gathered with
        ``index_select``. Row count must equal the graph's number of nodes.
    labels : torch.Tensor, numpy.ndarray, dict of those, or None
        Same for ``blocks[-1].dstdata["label"]`` (rows of ``output_nodes``).
    prefetch : int or None
        Batches produced ahead of the one being consumed (the queue depth). ``None``: 1 for a CUDA
        ``device`` (GPU memory), 2 for the CPU; ``prefetch_factor`` is used when given. ``0``: no
        producer thread.
    max_threads : int or None
        Cap on the resident GPU threads of the feature gather, so it leaves SMs to training
        (passed to :func:`unified_tensor.gather`); ``None`` (default) lets the gather fill the
        GPU. No cap by default, by measurement: on an H200 a 16384-thread cap made end-to-end
        GraphSAGE 3-6% slower in two runs (bench/results/h200_2026-11-26).
    seed : int or None
        Seed of the shuffling generator (reproducible epochs). Mutually exclusive with
        ``generator``; with neither, shuffling draws from torch's global RNG.
    generator : torch.Generator or None
        CPU generator for shuffling.
    num_workers, persistent_workers, pin_memory, timeout, worker_init_fn, \
multiprocessing_context, prefetch_factor, pin_memory_device, in_order
        Accepted for compatibility and not used: there are no worker processes; one producer thread
        runs the sampler, whose CPU kernels are themselves parallel (``num_workers > 0`` says so
        once, with a ``UserWarning``). The loader is a ``torch.utils.data.DataLoader`` subclass
        (as DGL's is), so trainers that check ``isinstance`` accept it.
    collate_fn, sampler, batch_sampler, dataset
        Accepted only as ``None`` (batching is done here); anything else raises ``ValueError``.

    Attributes
    ----------
    The public attributes of ``torch.utils.data.DataLoader``, with the values DGL's loader gives:
    ``dataset`` is an iterable dataset of the seed batches (``len(loader.dataset) == len(loader)``,
    as DGL's ``TensorizedDataset``), ``sampler`` torch's sampler for an iterable dataset,
    ``batch_sampler`` ``None``, ``collate_fn`` turns seed ids into a batch, ``pin_memory`` is
    ``pin_prefetcher``; ``num_workers``, ``timeout``, ``prefetch_factor``,
    ``persistent_workers``, ``worker_init_fn``, ``multiprocessing_context``,
    ``pin_memory_device``, ``generator`` and ``in_order`` are what was given (torch's defaults
    otherwise). ``batch_size`` and ``drop_last`` are the values given: DGL 2.1 reports ``None``
    and ``False`` there (it batches in its dataset and hands torch ``batch_size=None``). As in
    torch, ``batch_size``, ``drop_last``, ``dataset``, ``sampler``, ``batch_sampler`` and
    ``persistent_workers`` cannot be set after construction (``ValueError``). DGL's ``graph``,
    ``indices``, ``graph_sampler``, ``device``, ``use_uva``, ``use_ddp``, ``ddp_seed``,
    ``shuffle``, ``pin_prefetcher``, ``use_prefetch_thread`` and ``use_alternate_streams`` are
    there too.

    Raises
    ------
    TypeError
        ``indices`` not integers (floats, bools) or a dict; ``features``/``labels`` not tensors;
        an unknown keyword argument.
    IndexError
        ``indices`` outside ``[0, num_nodes)``.
    ValueError
        ``indices`` not 1-D, ``batch_size < 1``, ``features``/``labels`` with the wrong number of
        rows, or an explicit option that cannot work (see above).

    Examples
    --------
    >>> from samplers import CSCGraph, NeighborSampler, DataLoader
    >>> g = CSCGraph.from_edge_index(edge_index, num_nodes)                    # doctest: +SKIP
    >>> loader = DataLoader(g, train_ids, NeighborSampler([15, 10, 5]), batch_size=1024,
    ...                     shuffle=True, device="cuda", features=x, labels=y)  # doctest: +SKIP
    >>> for input_nodes, output_nodes, blocks in loader:                      # doctest: +SKIP
    ...     out = model(blocks, blocks[0].srcdata["feat"])
    ...     loss = F.cross_entropy(out, blocks[-1].dstdata["label"])
    """

    def __new__(cls, graph: Any = None, *args: Any, **kwargs: Any) -> Any:
        # A DistDGL DistGraph goes to the DistDGL adapter (DGL routes it to its Dist loaders)
        from . import _distdgl

        if _distdgl.is_dist_graph(graph):
            return _distdgl.DistNodeDataLoader(graph, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, graph: Any, indices: Any, graph_sampler: Any,
                 device: Optional[DeviceLike] = None, use_ddp: bool = False, ddp_seed: int = 0,
                 batch_size: int = 1, drop_last: bool = False, shuffle: bool = False,
                 use_prefetch_thread: Optional[bool] = None,
                 use_alternate_streams: Optional[bool] = None,
                 pin_prefetcher: Optional[bool] = None, use_uva: bool = False,
                 gpu_cache: Optional[dict] = None, *,
                 features: Any = None, labels: Any = None, prefetch: Optional[int] = None,
                 max_threads: Optional[int] = None, seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, num_workers: int = 0,
                 **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _TORCH_LOADER_KWARGS)
        if unknown:
            raise TypeError(f"DataLoader got unexpected keyword argument(s) {unknown}")
        for name in ("collate_fn", "sampler", "batch_sampler", "dataset"):
            if kwargs.get(name) is not None:
                raise ValueError(f"DataLoader: {name}={kwargs[name]!r} is not supported; the loader "
                                 f"batches `indices` itself and calls graph_sampler.sample()")
        if not hasattr(graph_sampler, "sample") or not callable(graph_sampler.sample):
            raise TypeError(f"DataLoader: graph_sampler must have a sample(graph, seeds) method, "
                            f"got {type(graph_sampler).__name__}")
        self.graph_sampler = graph_sampler
        is_dgl = _dgl_compat.is_dgl_graph(graph)
        from ..sampling._link import EdgePredictionSampler
        from ..sampling._neighbor import NeighborSampler, overrides_sample
        # The fast path (sample_distinct, keyed by batch) only for this library's samplers as
        # they are: a subclass that overrides sample / sample_blocks gets its method called, as
        # DGL's DataLoader calls graph_sampler.sample.
        self._own_sampler = not is_dgl and (
            (isinstance(graph_sampler, NeighborSampler) and not overrides_sample(graph_sampler))
            or (isinstance(graph_sampler, EdgePredictionSampler)
                and type(graph_sampler).sample is EdgePredictionSampler.sample))
        # a subclass may override sample_distinct without the keyword: then it is not passed
        self._seeds_checked_kw = self._own_sampler and "seeds_checked" in \
            inspect.signature(graph_sampler.sample_distinct).parameters
        self._init_core(graph, indices, seed_kind(graph_sampler), device=device,
                        use_uva=bool(use_uva), batch_size=batch_size, drop_last=drop_last,
                        shuffle=shuffle, use_ddp=use_ddp, ddp_seed=ddp_seed,
                        use_prefetch_thread=use_prefetch_thread,
                        use_alternate_streams=use_alternate_streams,
                        pin_prefetcher=pin_prefetcher, prefetch=prefetch,
                        prefetch_factor=kwargs.get("prefetch_factor"), max_threads=max_threads,
                        seed=seed, generator=generator, num_workers=num_workers,
                        torch_kwargs=kwargs)
        self.pin_memory = self._pin   # as DGL: torch's pin_memory is pin_prefetcher
        if gpu_cache is not None:
            warnings.warn("DataLoader: gpu_cache is ignored (features are read zero-copy from "
                          "pinned host memory)", UserWarning, stacklevel=2)
        self._num_nodes = _dgl_compat.graph_num_nodes(self.graph)
        self.indices = self._seeds.user

        # --- features / labels -----------------------------------------------------------------
        self._features = self._check_tables(features, "features", "feat")
        self._labels = self._check_tables(labels, "labels", "label")

    # --- torch's and DGL's attributes ------------------------------------------------------------
    def _index_attributes(self) -> tuple:
        # DGL's: an iterable dataset that yields whole batches, so torch's sampler for iterable
        # datasets and no batch sampler
        from torch.utils.data.dataloader import _InfiniteConstantSampler

        return _SeedBatches(self), _InfiniteConstantSampler(), None

    def collate_fn(self, items: Any) -> Any:
        """torch's ``collate_fn``, as DGL's: a batch of the seed ids ``items`` (what iterating
        ``dataset`` yields: ids, or ``{type: ids}``), checked as ``indices`` are, sampled and
        packaged as the loader's batches are, made now in the calling thread."""
        seeds = SeedSet(items, self.graph, self._seeds.kind, name="items")
        positions = torch.arange(len(seeds))
        return self._produce_now(seeds.batch(seeds.ids_on(self._sample_device), positions),
                                 positions)

    @property
    def pin_prefetcher(self) -> bool:
        """Whether CPU-sampled batches are pinned before their copy to ``device`` (as resolved)."""
        return self._pin

    @property
    def use_prefetch_thread(self) -> bool:
        """Whether a producer thread makes batches ahead (``prefetch > 0``)."""
        return self.prefetch > 0

    @property
    def use_alternate_streams(self) -> bool:
        """Whether the producer's CUDA work runs on the side stream (as resolved)."""
        return self._use_side_stream

    # ------------------------------------------------------------------------------------------
    def _check_tables(self, tables: Any, name: str, default_key: str) -> dict:
        """``{key: table}`` (homogeneous) or ``{key: {ntype: table}}`` (a HeteroCSCGraph: pass
        ``{ntype: table}``, or ``{key: {ntype: table}}`` for several keys), each table checked
        and made unified in place."""
        if tables is None:
            return {}
        from ..graph._hetero_csc import HeteroCSCGraph

        if isinstance(self.graph, HeteroCSCGraph):
            if not isinstance(tables, Mapping) or not tables:
                raise TypeError(f"DataLoader: {name} for a heterogeneous graph must be a dict "
                                f"{{node_type: table}} (or {{name: {{node_type: table}}}})")
            if all(isinstance(v, Mapping) for v in tables.values()):
                nested = tables
            else:
                nested = {default_key: tables}
            out: dict = {}
            for key, per_type in nested.items():
                out[key] = {}
                for nt, t in per_type.items():
                    arg = f"{name}[{nt!r}]" if len(nested) == 1 else f"{name}[{key!r}][{nt!r}]"
                    if nt not in self.graph.ntypes:
                        raise KeyError(f"DataLoader: {arg}: node type {nt!r} is not in the graph "
                                       f"(has {self.graph.ntypes})")
                    out[key][nt] = self._one_table(t, arg, self.graph.num_nodes(nt))
            return out
        if not isinstance(tables, Mapping):
            tables = {default_key: tables}
        return {key: self._one_table(t, name if len(tables) == 1 else f"{name}[{key!r}]",
                                     self._num_nodes)
                for key, t in tables.items()}

    def _parent_table(self, kind: str, name: str, type_: Any) -> Tensor:
        """A DGL graph's column as a gather table (unified in place when gathering to a GPU)."""
        col = _dgl_compat.parent_column(self.graph, kind, name, type_)
        if col.is_cuda or self.device.type != "cuda":
            return col
        key = (kind, name, type_)
        with self._tables_lock:
            hit = self._tables.get(key)
            if hit is None or hit[0] is not col:
                import unified_tensor as ut
                hit = (col, ut.unified(_contiguous_table(col, f"the graph's {kind} column {name!r}")))
                self._tables[key] = hit
        return hit[1]

    # ------------------------------------------------------------------------------------------
    def _produce(self, seeds: Any, positions: Tensor, batch: int) -> Any:
        if self._own_sampler:   # seeds checked distinct and in range once, at construction;
            # draws keyed by (seed, epoch, batch index): independent of prefetch depth and breaks
            kw = {"seeds_checked": True} if self._seeds_checked_kw else {}
            result = self.graph_sampler.sample_distinct(self.graph, seeds, batch=batch, **kw)
        else:
            result = self.graph_sampler.sample(self.graph, seeds)
        if self._is_dgl:
            _dgl_compat.resolve_lazy_features(result, self._fetch_parent)
        if self.device != self._sample_device:
            result = _to_device(result, self.device, self._pin)
        if self._features or self._labels:
            self._attach(result)
        return result

    def _fetch_parent(self, kind: str, name: str, type_: Any, ids: Tensor) -> Tensor:
        table = self._parent_table(kind, name, type_)
        return _gather(table, ids.to(self.device, non_blocking=self.device.type == "cuda"),
                       self.max_threads, validate=True)

    def _attach(self, result: Any) -> None:
        if not (isinstance(result, (tuple, list)) and len(result) in (3, 4)
                and isinstance(result[-1], (list, tuple)) and len(result[-1]) > 0):
            raise TypeError("DataLoader: features=/labels= need graph_sampler.sample() to return "
                            "(input_nodes, output_nodes, blocks) or (input_nodes, pair_graph, "
                            "[neg_pair_graph,] blocks) with at least one block, got "
                            f"{type(result).__name__}")
        input_nodes, blocks = result[0], result[-1]
        output_nodes = result[1] if self._seeds.kind == "node" else None
        if output_nodes is None and self._labels:
            raise ValueError("DataLoader: labels= apply to node seeds; with edge seeds (link "
                             "prediction) the pair graphs are the targets")
        mt = self.max_threads
        # Ids from this library's sampler are in range by construction (graph validated, seeds
        # checked at construction): no range check, so no host sync per table. Any other sampler's
        # ids are checked.
        check = not self._own_sampler

        def rows(table: Any, ids: Any) -> Any:
            if isinstance(table, Mapping):   # heterogeneous: {ntype: table}, ids {ntype: ids}
                return {nt: _gather(t, _on(ids[nt], self.device), mt, check)
                        for nt, t in table.items() if nt in ids}
            return _gather(table, _on(ids, self.device), mt, check)

        for key, table in self._features.items():
            blocks[0].srcdata[key] = rows(table, input_nodes)
        for key, table in self._labels.items():
            blocks[-1].dstdata[key] = rows(table, output_nodes)

    @contextlib.contextmanager
    def enable_cpu_affinity(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        """No-op context manager, for scripts written for DGL (there are no worker processes)."""
        yield

    def __repr__(self) -> str:
        return (f"DataLoader(num_seeds={len(self._seeds)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device}, "
                f"sample_device={self._sample_device}, prefetch={self.prefetch}, "
                f"features={sorted(self._features)}, labels={sorted(self._labels)})")
