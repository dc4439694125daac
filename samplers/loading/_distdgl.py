"""DistDGL adapter: :class:`samplers.DataLoader` over a ``dgl.distributed.DistGraph``.

A DistDGL job partitions the graph (``dgl.distributed.partition_graph``); on every machine a
KVStore server holds that machine's partition of every node table in shared memory and trainers
on the same machine map it (``DistTensor.local_partition``); rows of other partitions come over
DistDGL's RPC. ``samplers.DataLoader(dist_graph, seeds, sampler, ...)`` returns a
:class:`DistNodeDataLoader` that

- samples through DistDGL's distributed sampler (``sampler.sample_blocks(dist_graph, seeds)``,
  what ``dgl.dataloading.DistNodeDataLoader`` calls: local seeds sampled in this process, remote
  ones by their partition's server) and yields DGL's ``(input_nodes, output_nodes, blocks)``;
- batches the seeds as DGL's ``DistDataLoader`` does (``torch.randperm`` per epoch when
  shuffling, so the same torch seed gives the same batches);
- reads the rows of this machine's partition straight out of the KVStore's shared memory, no RPC:
  on a CUDA ``device`` the GPU gathers them zero-copy (the segment pinned in place by
  ``unified_tensor``); on the CPU they are handed, with the cache's misses, to DGL's fast pull,
  which copies local rows out of that same shared memory in C++; only the other partitions' rows
  go through ``DistTensor`` (RPC);
- optionally keeps the hottest rows of the whole graph, remote ones included, in a row cache
  (``cache_rows``), so a hot remote row crosses the network once instead of every batch.

This module is the only one that knows DistDGL; it imports DGL only when handed a DistGraph.
Imports: ``unified_tensor`` and :mod:`samplers.loading._core`.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Union

import torch

from unified_tensor._streams import to_device_async

from ._core import _normalise_device

__all__ = ["DistNodeDataLoader", "DistRowReader", "is_dist_graph"]

Tensor = torch.Tensor


def is_dist_graph(graph: Any) -> bool:
    """Whether ``graph`` is a ``dgl.distributed.DistGraph`` (without importing DGL)."""
    mod = sys.modules.get("dgl.distributed")
    cls = getattr(mod, "DistGraph", None) if mod is not None else None
    return cls is not None and isinstance(graph, cls)


def _is_dist_tensor(t: Any) -> bool:
    mod = sys.modules.get("dgl.distributed")
    cls = getattr(mod, "DistTensor", None) if mod is not None else None
    return cls is not None and isinstance(t, cls)


_SPLIT_KERNEL = None


def _split_kernel():
    """Serial Numba kernel (no thread pool: it keeps to DistDGL's per-process thread budget):
    copy the cached rows of ``ids`` into ``out`` and list the positions of the others."""
    global _SPLIT_KERNEL
    if _SPLIT_KERNEL is None:
        from numba import njit

        @njit(nogil=True, cache=True)
        def copy_hits(slot_of, ids, cache, out, miss_pos):  # pragma: no cover - compiled
            k = 0
            w = cache.shape[1]
            for i in range(ids.shape[0]):
                s = slot_of[ids[i]]
                if s < 0:
                    miss_pos[k] = i
                    k += 1
                else:
                    for j in range(w):
                        out[i, j] = cache[s, j]
            return k

        _SPLIT_KERNEL = copy_hits
    return _SPLIT_KERNEL


def _bytes2d(t: Tensor) -> Tensor:
    """A contiguous tensor's rows as a 2-D uint8 tensor (same memory)."""
    return t.view(torch.uint8).reshape(t.shape[0], -1)


class DistRowReader:
    """Rows of one node ``DistTensor`` by global node id.

    Rows held in the cache come from the cache; rows of this machine's partition from the
    KVStore's shared memory (``DistTensor.local_partition``: on CUDA gathered zero-copy by the GPU
    from the segment pinned in place; on the CPU copied by DGL's fast pull in C++); only the
    remaining rows of other partitions go over RPC (one pull per call). The result is the same
    tensor as ``dist_tensor[ids]``.

    Parameters
    ----------
    dist_tensor : dgl.distributed.DistTensor
        A node table of a homogeneous DistGraph.
    device : torch.device
        Where rows are returned (and where the cache lives).
    cache_ids : torch.Tensor, optional
        Distinct global node ids whose rows are cached, fetched once here (remote ones over RPC).

    Attributes
    ----------
    stats : dict
        ``rows_local``, ``rows_cached``, ``rows_rpc`` (rows served by each route) and
        ``rpc_bytes`` (row bytes pulled over RPC) since construction or :meth:`reset_stats`;
        ``cache_fill_rpc_bytes``: row bytes pulled to fill the cache.
    """

    def __init__(self, dist_tensor: Any, device: torch.device,
                 cache_ids: Optional[Tensor] = None) -> None:
        import unified_tensor as ut

        if not _is_dist_tensor(dist_tensor):
            raise TypeError(f"DistRowReader: expected a dgl.distributed.DistTensor, got "
                            f"{type(dist_tensor).__name__}")
        policy = dist_tensor.part_policy
        if not policy.is_node:
            raise ValueError(f"DistRowReader: {dist_tensor.name!r} is an edge table; only node "
                             f"tables are gathered")
        self.dist_tensor = dist_tensor
        self.device = device
        self.num_rows = int(dist_tensor.shape[0])
        own = policy.partition_book.partid2nids(policy.part_id, policy.type_name)
        self.start = int(own[0]) if own.numel() else 0
        self.end = self.start + int(own.numel())
        if own.numel() and int(own[-1]) != self.end - 1:
            raise ValueError("DistRowReader: this partition's node ids are not one contiguous "
                             "range (DistDGL's RangePartitionBook guarantees it)")
        local = dist_tensor.local_partition          # the KVStore's shared memory, CPU
        if local is None or local.shape[0] != self.end - self.start:
            raise RuntimeError(
                f"DistRowReader: the local partition of {dist_tensor.name!r} is not mapped in "
                f"this process (got {None if local is None else tuple(local.shape)} rows for "
                f"{self.end - self.start} owned ids): the trainer must run on the machine of its "
                f"partition's KVStore server, sharing its shared memory")
        self._local_ptr = local.data_ptr()
        self._plain = local
        # in place: same memory, pinned when CUDA is usable (zero-copy GPU gathers)
        self.local = ut.unified(local) if device.type == "cuda" else local
        self.row_shape = tuple(local.shape[1:])
        self.dtype = local.dtype
        self.row_bytes = _prod(self.row_shape) * local.element_size()
        self.reset_stats()
        self.cache_fill_rpc_bytes = 0
        self._slot_of: Optional[Tensor] = None
        self._cache_rows: Optional[Tensor] = None
        if cache_ids is not None and cache_ids.numel():
            self._fill_cache(cache_ids.to(torch.int64).cpu())

    # ------------------------------------------------------------------------------------------
    def reset_stats(self) -> None:
        self.stats: Dict[str, int] = {"rows_local": 0, "rows_cached": 0, "rows_rpc": 0,
                                      "rpc_bytes": 0}

    @property
    def local_data_ptr(self) -> int:
        """Address of the shared-memory rows read for the local partition."""
        return self._local_ptr

    @property
    def cache_size(self) -> int:
        return 0 if self._cache_rows is None else int(self._cache_rows.shape[0])

    def _fill_cache(self, ids: Tensor) -> None:
        if ids.min() < 0 or ids.max() >= self.num_rows:
            raise IndexError(f"DistRowReader: cache ids out of range [0, {self.num_rows})")
        if torch.unique(ids).numel() != ids.numel():
            raise ValueError("DistRowReader: cache ids must be distinct")
        rows = self._read(ids, count=False)
        self.cache_fill_rpc_bytes = self._last_rpc_rows * self.row_bytes
        slot_of = torch.full((self.num_rows,), -1, dtype=torch.int32)
        slot_of[ids] = torch.arange(ids.numel(), dtype=torch.int32)
        # on the host whatever the device: it is only looked up with host ids (the sampler's),
        # so the hit / miss split needs no device-to-host read
        self._slot_of = slot_of
        self._cache_rows = rows.to(self.device).contiguous()
        from unified_tensor._deps import has_numba

        self._use_numba = self.device.type == "cpu" and has_numba() and self.row_bytes > 0

    def _read(self, ids: Tensor, count: bool = True) -> Tensor:
        """Rows ``ids`` (CPU int64, in range) from shared memory and RPC, on ``self.device``."""
        if ids.numel() == 0:
            self._last_rpc_rows = 0
            return torch.empty((0,) + self.row_shape, dtype=self.dtype, device=self.device)
        is_local = (ids >= self.start) & (ids < self.end)
        if self.device.type != "cuda":
            # DGL's fast pull reads this machine's rows from the same shared memory in C++ (no
            # RPC, no staging copy) while the other partitions' rows come over RPC: one call
            n_local = int(is_local.sum())
            out = self.dist_tensor[ids]
        else:
            n_local = -1
            out = torch.empty((ids.numel(),) + self.row_shape, dtype=self.dtype,
                              device=self.device)
            local_pos = is_local.nonzero().squeeze(1)
            remote_pos = (~is_local).nonzero().squeeze(1)
            n_local = int(local_pos.numel())
            if remote_pos.numel():
                rows = self.dist_tensor[ids.index_select(0, remote_pos)]
                out.index_copy_(0, to_device_async(remote_pos, self.device), to_device_async(rows, self.device))
            if local_pos.numel():
                # zero-copy: the GPU gathers straight from the pinned shared memory
                off = to_device_async(ids.index_select(0, local_pos) - self.start, self.device)
                out.index_copy_(0, to_device_async(local_pos, self.device), self.local[off])
        n_remote = ids.numel() - n_local
        self._last_rpc_rows = n_remote
        if count:
            self.stats["rows_local"] += n_local
            self.stats["rows_rpc"] += n_remote
            self.stats["rpc_bytes"] += n_remote * self.row_bytes
        return out

    def __getitem__(self, ids: Any) -> Tensor:
        """Rows ``ids`` (global node ids, any integer dtype, any device); on ``self.device``."""
        ids = torch.as_tensor(ids)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dim() != 1:
            raise TypeError(f"DistRowReader: ids must be a 1-D integer tensor, got "
                            f"{ids.dtype} with shape {tuple(ids.shape)}")
        ids = ids.to(torch.int64).cpu()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_rows):
            raise IndexError(f"DistRowReader: node ids out of range [0, {self.num_rows}) for "
                             f"{self.dist_tensor.name!r}")
        return self.rows(ids)

    def rows(self, ids: Tensor) -> Tensor:
        """:meth:`__getitem__` without the checks: ``ids`` CPU int64 node ids, all in range
        (what DistDGL's sampler returns)."""
        if self._slot_of is None or ids.numel() == 0:
            return self._read(ids)
        if self._use_numba:
            out = torch.empty((ids.numel(),) + self.row_shape, dtype=self.dtype)
            miss_pos = torch.empty(ids.numel(), dtype=torch.int64)
            k = _split_kernel()(self._slot_of.numpy(), ids.numpy(),
                                _bytes2d(self._cache_rows).numpy(), _bytes2d(out).numpy(),
                                miss_pos.numpy())
            miss_pos = miss_pos[:k]
            if k:
                out.index_copy_(0, miss_pos, self._read(ids.index_select(0, miss_pos)))
            self.stats["rows_cached"] += ids.numel() - k
            return out
        slot = self._slot_of.index_select(0, ids)          # host ids, host slot map: no sync
        miss = slot < 0
        miss_pos = miss.nonzero().squeeze(1)
        if miss_pos.numel() == ids.numel():
            return self._read(ids)
        hit_pos = (~miss).nonzero().squeeze(1)
        out = torch.empty((ids.numel(),) + self.row_shape, dtype=self.dtype, device=self.device)
        if miss_pos.numel():
            out.index_copy_(0, to_device_async(miss_pos, self.device),
                            self._read(ids.index_select(0, miss_pos)))
        hit_slot = to_device_async(slot.index_select(0, hit_pos).long(), self.device)
        out.index_copy_(0, to_device_async(hit_pos, self.device),
                        self._cache_rows.index_select(0, hit_slot))
        self.stats["rows_cached"] += int(hit_pos.numel())
        return out


def _prod(shape: Sequence[int]) -> int:
    p = 1
    for s in shape:
        p *= int(s)
    return p


def _cache_ids_by_hotness(hotness: Tensor, k: int, exclude: Optional[tuple]) -> Tensor:
    """The ``k`` hottest node ids (ties: smaller id first), leaving out ``[start, end)``."""
    hot = hotness.to(torch.float64).clone()
    if exclude is not None:
        hot[exclude[0]:exclude[1]] = -float("inf")
    k = min(k, int((hot > -float("inf")).sum()))
    if k <= 0:
        return torch.empty(0, dtype=torch.int64)
    # stable descending order so equal hotness prefers small ids deterministically
    order = torch.sort(hot, descending=True, stable=True).indices
    return order[:k].to(torch.int64)


class DistNodeDataLoader:
    r"""Node minibatches over a ``dgl.distributed.DistGraph``; what :class:`samplers.DataLoader`
    returns when handed one (``dgl.dataloading.DistNodeDataLoader``'s role, with features).

    Each batch is DGL's ``(input_nodes, output_nodes, blocks)``, sampled by DistDGL's distributed
    sampler. With ``features`` / ``labels`` (or a DGL sampler's ``prefetch_node_feats`` /
    ``prefetch_labels``) the rows are attached as ``blocks[0].srcdata[name]`` and
    ``blocks[-1].dstdata[name]``: local rows from the KVStore's shared memory, cached rows from
    the cache, the rest over RPC. Runs in the calling thread by default: DistDGL's RPC client is
    not thread-safe, and a training loop usually makes RPC calls of its own.

    Parameters
    ----------
    graph : dgl.distributed.DistGraph
        A homogeneous DistGraph (``dgl.distributed.initialize`` already called).
    indices : torch.Tensor or sequence of int
        This trainer's seed node ids (e.g. from ``dgl.distributed.node_split``), each used once
        per epoch.
    graph_sampler : DGL block sampler
        ``dgl.dataloading.NeighborSampler`` (or any sampler with ``sample_blocks(g, seeds)``), or
        :class:`samplers.NeighborSampler`, turned into DGL's with the same fanouts and
        ``replace``.
    device : str or torch.device, optional
        Where blocks and rows are returned; default CPU. On CUDA the local rows are gathered
        zero-copy from the pinned shared memory and the cache lives on the GPU.
    batch_size, shuffle, drop_last :
        As DGL's ``DistDataLoader``: the last batch is smaller unless ``drop_last``.
    features, labels : str, DistTensor, sequence of str, or dict {name: str or DistTensor}
        Node tables attached to ``blocks[0].srcdata`` / ``blocks[-1].dstdata``; a string names a
        column of ``graph.ndata``. Default: the sampler's ``prefetch_node_feats`` /
        ``prefetch_labels`` if it has them, else nothing (then the batch is exactly DGL's).
    cache_rows : int or float, optional
        Rows per feature table kept in the row cache (a float in (0, 1] is a share of the
        graph's nodes). The hottest nodes by ``cache_hotness`` over the whole graph are cached;
        on a CPU ``device`` this machine's own rows are skipped (they are already in memory), so
        the cache holds the hottest remote rows.
    cache_hotness : torch.Tensor, optional
        One number per node of the whole graph (e.g. :func:`samplers.presample_hotness`).
        Default: out-degrees (``graph.out_degrees()``, one RPC round): a node is an input of as
        many sampled batches as it has out-neighbours drawing it.
    use_prefetch_thread : bool
        Sample and fetch the next batch in a background thread. Only when the loop body makes no
        DistDGL call of its own (no ``DistTensor`` reads, no ``dgl.distributed`` calls) while
        iterating: DistDGL's RPC client is not thread-safe. Default ``False``.
    generator : torch.Generator, optional
        RNG for shuffling (default: torch's global RNG, as DGL).

    Attributes
    ----------
    readers : dict
        ``{name: DistRowReader}`` for every attached table; ``reader.stats`` counts rows by route
        and RPC bytes.

    >>> loader = samplers.DataLoader(g, train_nid, dgl.dataloading.NeighborSampler([10, 5]),
    ...                              batch_size=1024, shuffle=True, features="feat",
    ...                              labels="label", cache_rows=0.1)
    >>> for input_nodes, output_nodes, blocks in loader:
    ...     x, y = blocks[0].srcdata["feat"], blocks[-1].dstdata["label"]
    """

    def __init__(self, graph: Any, indices: Any, graph_sampler: Any,
                 device: Optional[Union[str, torch.device]] = None, use_ddp: bool = False,
                 ddp_seed: int = 0, batch_size: int = 1, drop_last: bool = False,
                 shuffle: bool = False, use_prefetch_thread: Optional[bool] = None,
                 use_alternate_streams: Optional[bool] = None, pin_prefetcher: Optional[bool] = None,
                 use_uva: bool = False, gpu_cache: Optional[dict] = None, *,
                 features: Any = None, labels: Any = None,
                 cache_rows: Optional[Union[int, float]] = None,
                 cache_hotness: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, num_workers: int = 0,
                 **kwargs: Any) -> None:
        if not is_dist_graph(graph):
            raise TypeError(f"DistNodeDataLoader: graph must be a dgl.distributed.DistGraph, got "
                            f"{type(graph).__name__}")
        unknown = sorted(k for k, v in kwargs.items()
                         if k not in ("pin_memory", "persistent_workers", "prefetch_factor",
                                      "timeout") or (k == "pin_memory" and v))
        if unknown:
            raise TypeError(f"DataLoader(DistGraph) got unsupported keyword argument(s) {unknown}")
        if use_ddp:
            raise ValueError("DataLoader(DistGraph): use_ddp=True is not supported; split the "
                             "seeds per trainer with dgl.distributed.node_split, as DistDGL does")
        if use_uva or gpu_cache is not None:
            raise ValueError("DataLoader(DistGraph): use_uva / gpu_cache do not apply; pass "
                             "device='cuda' and cache_rows=...")
        if num_workers:
            raise ValueError(f"DataLoader(DistGraph): num_workers={num_workers} is not "
                             f"supported; DistDGL's sampler processes are started by "
                             f"dgl.distributed.initialize (DGL_NUM_SAMPLER)")
        if len(graph.ntypes) != 1 or len(graph.canonical_etypes) != 1:
            raise ValueError(f"DataLoader(DistGraph): only homogeneous DistGraphs are supported, "
                             f"got node types {graph.ntypes}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader(DistGraph): batch_size must be a positive int, got "
                             f"{batch_size!r}")
        self.graph = graph
        self.graph_sampler = _dgl_sampler(graph_sampler)
        if getattr(self.graph_sampler, "seed_kind", "node") == "edge" or \
                type(self.graph_sampler).__name__ == "EdgePredictionSampler":
            raise ValueError("DataLoader(DistGraph): edge seeds are not supported by this "
                             "adapter; use dgl.dataloading.DistEdgeDataLoader")
        self.device = _normalise_device("cpu" if device is None else device)
        if use_alternate_streams and self.device.type != "cuda":
            raise ValueError("DataLoader(DistGraph): use_alternate_streams=True needs a CUDA "
                             "device")
        self.batch_size = batch_size
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self.use_prefetch_thread = bool(use_prefetch_thread)
        self.generator = generator
        self.indices = self._check_seeds(indices)

        num_nodes = graph.num_nodes()
        feat_spec = features if features is not None else \
            list(getattr(self.graph_sampler, "prefetch_node_feats", None) or [])
        label_spec = labels if labels is not None else \
            list(getattr(self.graph_sampler, "prefetch_labels", None) or [])
        self._features = self._tables(feat_spec, "features", "feat")
        self._labels = self._tables(label_spec, "labels", "label")

        k = _cache_count(cache_rows, num_nodes)
        cache_ids = None
        if k and self._features:
            if cache_hotness is None:
                cache_hotness = graph.out_degrees()
            cache_hotness = torch.as_tensor(cache_hotness)
            if cache_hotness.shape != (num_nodes,):
                raise ValueError(f"DataLoader(DistGraph): cache_hotness must have one entry per "
                                 f"node ({num_nodes}), got shape {tuple(cache_hotness.shape)}")
            first = next(iter(self._features.values()))
            own = first.part_policy.partition_book.partid2nids(first.part_policy.part_id,
                                                               first.part_policy.type_name)
            exclude = None
            if self.device.type != "cuda" and own.numel():
                exclude = (int(own[0]), int(own[-1]) + 1)
            cache_ids = _cache_ids_by_hotness(cache_hotness, k, exclude)
        self.readers: Dict[str, DistRowReader] = {}
        for name, t in list(self._features.items()) + list(self._labels.items()):
            if name not in self.readers:
                ids = cache_ids if name in self._features else None
                self.readers[name] = DistRowReader(t, self.device, cache_ids=ids)

    # ------------------------------------------------------------------------------------------
    def _check_seeds(self, indices: Any) -> Tensor:
        if isinstance(indices, Mapping):
            raise TypeError("DataLoader(DistGraph): indices must be node ids of a homogeneous "
                            "graph, got a dict")
        t = torch.as_tensor(indices)
        if t.dtype == torch.bool or t.dtype.is_floating_point or t.dim() != 1:
            raise TypeError(f"DataLoader(DistGraph): indices must be a 1-D integer tensor, got "
                            f"{t.dtype} with shape {tuple(t.shape)}")
        t = t.to(self.graph.idtype).cpu()
        n = self.graph.num_nodes()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
            bad = t[(t < 0) | (t >= n)][0].item()
            raise IndexError(f"DataLoader(DistGraph): indices contains node id {bad}, outside "
                             f"[0, {n})")
        return t

    def _tables(self, spec: Any, arg: str, default_key: str) -> Dict[str, Any]:
        if spec is None:
            return {}
        if isinstance(spec, str) or _is_dist_tensor(spec):
            spec = {spec if isinstance(spec, str) else default_key: spec}
        elif not isinstance(spec, Mapping):
            spec = {s: s for s in spec}
        out = {}
        for key, t in spec.items():
            if isinstance(t, str):
                if t not in self.graph.ndata:
                    raise KeyError(f"DataLoader(DistGraph): {arg}: {t!r} is not a node table of "
                                   f"the DistGraph (has {sorted(self.graph.ndata.keys())})")
                t = self.graph.ndata[t]
            if not _is_dist_tensor(t):
                raise TypeError(f"DataLoader(DistGraph): {arg}[{key!r}] must be a DistTensor or "
                                f"the name of one in graph.ndata, got {type(t).__name__}")
            if int(t.shape[0]) != self.graph.num_nodes():
                raise ValueError(f"DataLoader(DistGraph): {arg}[{key!r}] has {t.shape[0]} rows, "
                                 f"the graph {self.graph.num_nodes()} nodes")
            out[key] = t
        return out

    # ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        n = self.indices.numel()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> Tensor:
        n = self.indices.numel()
        if not self.shuffle:
            return self.indices
        # DGL's DistDataLoader: data_idx = F.rand_shuffle(data_idx) = arr[th.randperm(len(arr))]
        perm = torch.randperm(n, generator=self.generator)
        return self.indices[perm]

    def _batch(self, seeds: Tensor) -> tuple:
        input_nodes, output_nodes, blocks = self.graph_sampler.sample_blocks(self.graph, seeds)
        for name in self._features:
            blocks[0].srcdata[name] = self.readers[name].rows(input_nodes.to(torch.int64))
        for name in self._labels:
            blocks[-1].dstdata[name] = self.readers[name].rows(output_nodes.to(torch.int64))
        if self.device.type != "cpu":
            blocks = [b.to(self.device) for b in blocks]
            input_nodes = input_nodes.to(self.device)
            output_nodes = output_nodes.to(self.device)
        return input_nodes, output_nodes, blocks

    def _batches(self) -> Iterator[tuple]:
        order = self._order()
        for b in range(len(self)):
            yield self._batch(order[b * self.batch_size:(b + 1) * self.batch_size])

    def __iter__(self) -> Iterator[tuple]:
        if not self.use_prefetch_thread:
            return self._batches()
        return _threaded(self._batches())

    def reset_stats(self) -> None:
        for r in self.readers.values():
            r.reset_stats()

    @property
    def stats(self) -> Dict[str, int]:
        """Rows per route and RPC bytes over all feature and label tables (see
        :attr:`DistRowReader.stats`)."""
        tot = {"rows_local": 0, "rows_cached": 0, "rows_rpc": 0, "rpc_bytes": 0}
        for r in self.readers.values():
            for k in tot:
                tot[k] += r.stats[k]
        return tot


def _cache_count(cache_rows: Any, num_nodes: int) -> int:
    if cache_rows is None:
        return 0
    if isinstance(cache_rows, bool) or not isinstance(cache_rows, (int, float)):
        raise TypeError(f"DataLoader(DistGraph): cache_rows must be an int or a float, got "
                        f"{type(cache_rows).__name__}")
    if isinstance(cache_rows, float):
        if not 0.0 <= cache_rows <= 1.0:
            raise ValueError(f"DataLoader(DistGraph): cache_rows={cache_rows} as a share of the "
                             f"nodes must be in [0, 1]")
        return int(cache_rows * num_nodes)
    if cache_rows < 0:
        raise ValueError(f"DataLoader(DistGraph): cache_rows must be >= 0, got {cache_rows}")
    return min(int(cache_rows), num_nodes)


def _dgl_sampler(sampler: Any) -> Any:
    """A DGL block sampler for the DistGraph: DGL's as is, this library's NeighborSampler turned
    into DGL's (same fanouts and ``replace``)."""
    from ..sampling._neighbor import NeighborSampler

    if isinstance(sampler, NeighborSampler):
        import dgl

        if any(isinstance(f, Mapping) for f in sampler.fanouts):
            raise ValueError("DataLoader(DistGraph): per-edge-type fanouts need a "
                             "heterogeneous graph")
        return dgl.dataloading.NeighborSampler(list(sampler.fanouts), replace=sampler.replace)
    if not callable(getattr(sampler, "sample_blocks", None)):
        raise TypeError(f"DataLoader(DistGraph): graph_sampler must be a DGL block sampler "
                        f"(with sample_blocks) or samplers.NeighborSampler, got "
                        f"{type(sampler).__name__}")
    return sampler


class _End:
    pass


def _threaded(batches: Iterator[tuple]) -> Iterator[tuple]:
    """Run ``batches`` one item ahead in a daemon thread; errors re-raised in the caller."""
    import queue
    import threading

    q: "queue.Queue" = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def main() -> None:
        try:
            for item in batches:
                if not put(item):
                    return
            put(_End())
        except BaseException as exc:  # handed to the consumer, re-raised there
            put(exc)

    th = threading.Thread(target=main, name="distdgl-producer", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        th.join()
