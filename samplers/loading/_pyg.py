"""PyG's loaders on this library's sampler: ``NeighborLoader`` and ``LinkNeighborLoader``.

A PyG script changes one import::

    # from torch_geometric.loader import NeighborLoader
    from samplers.pyg import NeighborLoader

    loader = NeighborLoader(data, num_neighbors=[15, 10, 5], input_nodes=data.train_mask,
                            batch_size=1024, shuffle=True, device="cuda")
    for batch in loader:
        out = model(batch.x, batch.edge_index)[:batch.batch_size]

The batches are PyG's ``Data`` / ``HeteroData`` exactly as PyG documents them (seeds first,
``batch_size``, ``n_id``, ``e_id``, ``input_id``, ``num_sampled_nodes`` / ``num_sampled_edges``
per hop, every node and edge attribute of ``data`` sliced, ``edge_index`` in local ids), sampled
with PyG's semantics (hop ``k`` samples the nodes hop ``k - 1`` added) by this library's kernels:
no ``pyg-lib`` or ``torch-sparse`` needed, on any torch. With ``device="cuda"`` the graph is
sampled on the GPU (over UVA from pinned host memory, or in GPU memory) and every node / edge
attribute is gathered zero-copy from host memory (tables pinned in place, never copied); a
producer thread on a side stream prepares the next batch while this one trains, exactly as in
:class:`samplers.DataLoader`, whose loading core these loaders share.

This module imports ``torch_geometric``; nothing else in the package does.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

try:
    import torch_geometric  # noqa: F401
    from torch_geometric.data import Data, HeteroData
    from torch_geometric.sampler import (HeteroSamplerOutput, NegativeSampling, NumNeighbors,
                                         SamplerOutput)
except ImportError as _exc:  # pragma: no cover - exercised only without PyG
    raise ImportError("samplers.pyg needs torch_geometric (pip install torch_geometric); the rest "
                      "of samplers works without it") from _exc

from unified_tensor._cudart import CudaRuntimeError

from ._core import _LoaderCore, _gather, _to_device, _user_stacklevel
from ..sampling._frontier import HopSample, Temporal, hop_key, sample_hops
from ..graph._csc import CSCGraph
from ..graph._hetero_csc import HeteroCSCGraph
from ..sampling._neighbor import batch_key

__all__ = ["NeighborLoader", "LinkNeighborLoader"]

Tensor = torch.Tensor
EdgeType = Tuple[str, str, str]

_N = "_N"                   # the node type of a homogeneous graph, internally
_E: EdgeType = (_N, "_E", _N)

# Keyword arguments of torch.utils.data.DataLoader that PyG's loaders forward: accepted so a PyG
# script runs unchanged. batch_size / shuffle / drop_last / generator are used; the rest are not
# (one producer thread replaces worker processes; batches land on `device` directly).
_TORCH_KWARGS = frozenset({
    "num_workers", "pin_memory", "timeout", "worker_init_fn", "multiprocessing_context",
    "prefetch_factor", "persistent_workers", "pin_memory_device", "in_order", "collate_fn",
    "dataset", "sampler", "batch_sampler",
})

_fallback_warned: set = set()

# The sampling / packaging options both front-ends take with PyG's names and hand to _setup.
_SETUP_OPTIONS = frozenset({
    "replace", "subgraph_type", "disjoint", "temporal_strategy", "time_attr", "weight_attr",
    "transform", "transform_sampler_output", "is_sorted", "filter_per_worker", "neighbor_sampler",
    "directed", "device", "use_uva", "seed"})


def _subgraph_type(subgraph_type: Any, directed: bool, name: str) -> str:
    value = getattr(subgraph_type, "value", subgraph_type)
    if value not in ("directional", "bidirectional", "induced"):
        raise ValueError(f"{name}: subgraph_type must be 'directional', 'bidirectional' or "
                         f"'induced', got {subgraph_type!r}")
    if not directed:
        warnings.warn(f"{name}: directed=False is deprecated in PyG; use "
                      f"subgraph_type='induced' instead", DeprecationWarning,
                      stacklevel=_user_stacklevel())
        value = "induced"
    return value


class _PyGLoader(_LoaderCore):
    """What :class:`NeighborLoader` and :class:`LinkNeighborLoader` share: ``data`` turned into
    this library's typed CSC graph once, PyG's sampling options, the hop sampler, and
    :meth:`_filter`, which packages a sample as ``Data`` / ``HeteroData`` with every attribute
    gathered on ``device``."""

    def _setup(self, data: Any, num_neighbors: Any, seeds: Any, seed_count: int, seed_name: str,
               *, replace: bool, subgraph_type: Any, disjoint: bool, temporal_strategy: str,
               time_attr: Optional[str], weight_attr: Optional[str],
               transform: Optional[Callable], transform_sampler_output: Optional[Callable],
               is_sorted: bool, filter_per_worker: Optional[bool], neighbor_sampler: Any,
               directed: bool, device: Any, use_uva: Optional[bool], seed: Optional[int],
               kwargs: Dict[str, Any]) -> None:
        name = self._name
        unknown = sorted(set(kwargs) - _TORCH_KWARGS - {
            "batch_size", "shuffle", "drop_last", "generator", "prefetch", "max_threads",
            "use_alternate_streams", "pin_prefetcher", "input_id"})
        if unknown:
            raise TypeError(f"{name} got unexpected keyword argument(s) {unknown}")
        if kwargs.get("batch_sampler") is not None:
            raise ValueError(f"{name}: batch_sampler= is not supported; the loader batches its "
                             f"seeds itself (batch_size, drop_last; sampler= for the order)")
        if neighbor_sampler is not None:
            raise ValueError(f"{name}: neighbor_sampler= (a PyG sampler object) is not supported: "
                             f"this loader samples with the library's kernels; pass its options "
                             f"(num_neighbors, replace, subgraph_type) instead")
        if temporal_strategy not in ("uniform", "last"):
            raise ValueError(f"{name}: temporal_strategy must be 'uniform' or 'last', got "
                             f"{temporal_strategy!r}")
        if not isinstance(disjoint, (bool, np.bool_)):
            raise TypeError(f"{name}: disjoint must be a bool, got {disjoint!r}")
        if not isinstance(replace, (bool, np.bool_)):
            raise TypeError(f"{name}: replace must be a bool, got {replace!r}")
        self.data = data
        self.replace = bool(replace)
        self.subgraph_type = _subgraph_type(subgraph_type, directed, name)
        self.time_attr = time_attr
        self.temporal_strategy = temporal_strategy
        # node-level (times per node type) or edge-level (per edge type, edge-id order) times
        self._node_time, edge_time = (None, None) if time_attr is None else \
            _temporal_attrs(data, time_attr, name)
        self._temporal = time_attr is not None
        self.weight_attr = weight_attr
        if weight_attr is not None and self._temporal:   # pyg-lib refuses it too
            raise NotImplementedError(f"{name}: weighted temporal sampling (weight_attr and "
                                      f"time_attr together) is not supported yet")
        if self._temporal:   # as PyG: temporal sampling is disjoint
            disjoint = True
        self._cpu_only = self._temporal or weight_attr is not None
        if self._cpu_only:
            what = "temporal" if self._temporal else "weighted"
            if use_uva:
                raise ValueError(f"{name}: {what} sampling runs on the CPU sampler; "
                                 f"use_uva=True cannot apply (batches still land on device)")
            use_uva = False
        if disjoint and self.subgraph_type == "induced":
            raise ValueError(f"{name}: disjoint=True (and temporal sampling) does not support "
                             f"subgraph_type='induced'")
        self.disjoint = bool(disjoint)
        self.transform = transform
        self.transform_sampler_output = transform_sampler_output
        self.filter_per_worker = filter_per_worker   # accepted; there are no workers
        self.is_sorted = bool(is_sorted)             # accepted; the CSC is built once either way
        self._hetero = isinstance(data, HeteroData)
        graph = _typed_graph(data, name, getattr(self, "_input_type", None), self._node_time,
                             edge_time)
        self._edge_time = None if edge_time is None else _csc_edge_times(graph, edge_time)
        self.num_neighbors = self._num_neighbors(num_neighbors, graph)
        self._weights = None if weight_attr is None else _edge_weights(data, weight_attr, graph,
                                                                       name)
        num_workers = kwargs.get("num_workers", 0)
        self._init_core(graph, seeds, "node", device=device, use_uva=use_uva,
                        batch_size=kwargs.get("batch_size", 1),
                        drop_last=kwargs.get("drop_last", False),
                        shuffle=kwargs.get("shuffle", False),
                        use_alternate_streams=kwargs.get("use_alternate_streams"),
                        pin_prefetcher=kwargs.get("pin_prefetcher"),
                        prefetch=kwargs.get("prefetch"),
                        prefetch_factor=kwargs.get("prefetch_factor"),
                        max_threads=kwargs.get("max_threads"), seed=seed,
                        generator=kwargs.get("generator"), num_workers=num_workers,
                        seed_count=seed_count, seed_name=seed_name,
                        sampler=kwargs.get("sampler"), torch_kwargs=kwargs)
        if self._cpu_only and self._sample_device.type != "cpu":
            what = "temporal" if self._temporal else "weighted"
            raise NotImplementedError(f"{name}: {what} sampling runs on the CPU sampler, but "
                                      f"data's graph is on {self._sample_device}; keep data on "
                                      f"the CPU (device='cuda' still puts batches on the GPU)")
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self._draw_seed = int(seed)

    def _times(self, t: Any, n: int, what: str) -> np.ndarray:
        """Seed times (``input_time`` / ``edge_label_time``) in the node times' dtype, CPU."""
        name = self._name
        if not self._temporal:
            raise ValueError(f"{name}: {what} is set but time_attr is not (temporal sampling "
                             f"needs both, as in PyG)")
        if not isinstance(t, Tensor):
            t = torch.as_tensor(t)
        if t.dim() != 1 or t.numel() != n:
            raise ValueError(f"{name}: {what} must have one entry per seed ({n}), got shape "
                             f"{tuple(t.shape)}")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"{name}: {what} must hold times (numbers), got {t.dtype}")
        return _time_array(t, self._time_dtype, what, name)

    @property
    def _time_dtype(self) -> np.dtype:
        times = self._node_time if self._node_time is not None else self._edge_time
        return next(v.dtype for v in times.values() if v is not None)

    def _num_neighbors(self, num_neighbors: Any, graph: HeteroCSCGraph) -> Dict[EdgeType, List[int]]:
        name = self._name
        if isinstance(num_neighbors, NumNeighbors):
            nn = num_neighbors
        elif isinstance(num_neighbors, (list, tuple, dict)):
            nn = NumNeighbors(list(num_neighbors) if not isinstance(num_neighbors, dict)
                              else num_neighbors)
        else:
            raise TypeError(f"{name}: num_neighbors must be a list of ints or a dict "
                            f"{{edge_type: list of ints}}, got {type(num_neighbors).__name__}")
        etypes = [_E] if not self._hetero else graph.canonical_etypes
        if not self._hetero and isinstance(nn.values, dict):
            raise ValueError(f"{name}: num_neighbors is a dict, which needs HeteroData")
        try:
            values = nn.get_values(etypes)   # PyG's own rules (defaults, equal hop counts)
        except ValueError as exc:
            raise ValueError(f"{name}: num_neighbors: {exc}") from None
        if isinstance(values, list):
            values = {et: values for et in etypes}
        out = {}
        for et, v in values.items():
            hops = []
            for k, f in enumerate(v):
                if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < -1 \
                        or f > (1 << 31) - 1:
                    raise ValueError(f"{name}: num_neighbors[{k}] must be an int >= -1 (-1: all "
                                     f"neighbours), got {f!r}" + (f" for {et}" if self._hetero else ""))
                hops.append(int(f))
            out[et] = hops
        return out

    # ------------------------------------------------------------------------------------------
    def _batch_key(self, batch: int) -> int:
        return batch_key(self._draw_seed, batch)

    def _sample(self, seeds: Dict[str, Tensor], batch: int,
                tree_time: Optional[np.ndarray] = None) -> Any:
        """``seeds`` -> PyG's ``SamplerOutput`` / ``HeteroSamplerOutput`` on ``device`` (metadata
        left for the front-end), ``subgraph_type`` applied (``transform_sampler_output`` runs in
        :meth:`_filter`)."""
        temporal = None if not self._temporal else Temporal(
            self._node_time or {}, tree_time, last=self.temporal_strategy == "last",
            edge_time=self._edge_time)
        hs = sample_hops(self.graph, seeds, self.num_neighbors, self.replace,
                         self._batch_key(batch), induced=self.subgraph_type == "induced",
                         disjoint=self.disjoint, temporal=temporal, weights=self._weights)
        if self.device != self._sample_device:
            hs = _to_device(_hop_fields(hs), self.device, self._pin)
            hs = HopSample(*hs)
        out = self._sampler_output(hs)
        if self.subgraph_type == "bidirectional":
            out = _to_bidirectional(out)
        return out

    def _sampler_output(self, hs: HopSample) -> Any:
        node = {nt: ids.to(torch.int64) for nt, ids in hs.node.items()}
        if not self._hetero:
            return SamplerOutput(node=node[_N], row=hs.row[_E], col=hs.col[_E], edge=hs.edge[_E],
                                 batch=None if hs.batch is None else hs.batch[_N],
                                 num_sampled_nodes=hs.num_sampled_nodes[_N],
                                 num_sampled_edges=None if hs.num_sampled_edges is None
                                 else hs.num_sampled_edges[_E])
        return HeteroSamplerOutput(node=node, row=hs.row, col=hs.col, edge=hs.edge,
                                   batch=hs.batch,
                                   num_sampled_nodes=hs.num_sampled_nodes,
                                   num_sampled_edges=hs.num_sampled_edges)

    # ------------------------------------------------------------------------------------------
    def _filter(self, out: Any) -> Any:
        """PyG's ``filter_data`` / ``filter_hetero_data`` with this library's gather: a shallow
        copy of ``data`` whose node / edge attributes are the rows of the sampled nodes / edges
        on ``device``, plus ``n_id``, ``e_id``, ``num_sampled_nodes``, ``num_sampled_edges``."""
        if self.transform_sampler_output is not None:
            out = self.transform_sampler_output(out)
        data = copy.copy(self.data)
        if not self._hetero:
            self._filter_nodes(self.data._store, data._store, out.node, None)
            self._filter_edges(self.data._store, data._store, out.row, out.col, out.edge, None)
            if "n_id" not in data:
                data.n_id = out.node
            if out.edge is not None and "e_id" not in data:
                data.e_id = out.edge.to(torch.int64)
            data.batch = out.batch
            data.num_sampled_nodes = out.num_sampled_nodes
            data.num_sampled_edges = out.num_sampled_edges
            if out.orig_row is not None and out.orig_col is not None:
                data._orig_edge_index = torch.stack([out.orig_row, out.orig_col])
            return data
        empty = torch.empty(0, dtype=torch.int64, device=self.device)
        for nt in data.node_types:
            self._filter_nodes(self.data[nt], data[nt], out.node.get(nt, empty), nt)
        for et in data.edge_types:
            # As PyG's filter_hetero_data: an edge type absent from the sample has no edges; one
            # whose ids are None (bidirectional subgraphs) has no edge attributes.
            e = None if out.edge is None else out.edge.get(et, empty)
            self._filter_edges(self.data[et], data[et], out.row.get(et, empty),
                               out.col.get(et, empty), e, et)
        for nt, ids in out.node.items():
            if "n_id" not in data[nt]:
                data[nt].n_id = ids
        for et, e in (out.edge or {}).items():
            if e is not None and "e_id" not in data[et]:
                data[et].e_id = e.to(torch.int64)
        for key in ("batch", "num_sampled_nodes", "num_sampled_edges"):
            value = getattr(out, key)
            if value is not None:
                data.set_value_dict(key, value)
        if out.orig_row is not None and out.orig_col is not None:
            for et in out.orig_row:
                data[et]._orig_edge_index = torch.stack([out.orig_row[et], out.orig_col[et]])
        return data

    def _filter_nodes(self, store: Any, out_store: Any, index: Tensor, ntype: Any) -> None:
        for key, value in store.items():
            if key == "num_nodes":
                out_store.num_nodes = index.numel()
            elif store.is_node_attr(key):
                out_store[key] = self._select(("node", ntype, key), store, key, value, index)

    def _filter_edges(self, store: Any, out_store: Any, row: Tensor, col: Tensor,
                      index: Optional[Tensor], etype: Any) -> None:
        for key, value in store.items():
            if key == "edge_index":
                out_store.edge_index = torch.stack([row, col])
            elif store.is_edge_attr(key):
                if index is None:
                    out_store[key] = None
                    continue
                out_store[key] = self._select(("edge", etype, key), store, key, value, index)

    def _select(self, cache_key: tuple, store: Any, key: str, value: Any, index: Tensor) -> Any:
        """Rows ``index`` (on ``device``) of one attribute: tensors indexed along dim 0 through the
        zero-copy / Numba gather (pinned in place once, cached while the attribute is the same
        object); anything else as PyG would (``index_select`` on its dim, ``np.take``, lists)."""
        dim = store._parent().__cat_dim__(key, value, store)
        if isinstance(value, Tensor) and dim == 0 and value.layout == torch.strided \
                and not value.requires_grad:
            kind, owner, _ = cache_key
            where = f"data[{owner!r}].{key}" if owner is not None else f"data.{key}"
            try:
                table = self._table(cache_key, value, where, None)
            except (TypeError, ValueError, CudaRuntimeError) as exc:
                # e.g. a dtype the gather does not take, or memory the driver will not pin in
                # place (some refuse file-backed memmap pages): correct rows, gathered on the CPU
                if cache_key not in _fallback_warned:
                    _fallback_warned.add(cache_key)
                    warnings.warn(f"{self._name}: {where} is gathered with index_select (a copy on "
                                  f"the CPU), not zero-copy: {exc}", UserWarning,
                                  stacklevel=_user_stacklevel())
            else:
                return _gather(table, index.to(self.device, non_blocking=self.device.type == "cuda"), self.max_threads,
                               validate=False)
        if isinstance(value, Tensor):   # non_blocking only to a GPU: a CPU result is read at once
            return torch.index_select(value, dim, index.to(value.device).to(torch.int64)) \
                .to(self.device, non_blocking=self.device.type == "cuda")
        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.take(value, index.cpu().numpy(), axis=dim)) \
                .to(self.device, non_blocking=self.device.type == "cuda")
        if isinstance(value, (list, tuple)):
            return [value[i] for i in index.tolist()]
        raise TypeError(f"{self._name}: cannot slice attribute {key!r} of type "
                        f"{type(value).__name__}")

    def __call__(self, index: Any) -> Any:
        """The batch of the seeds at positions ``index`` (PyG's ``loader(index)``), made now in
        the calling thread."""
        return self._batch_of(index)

    def collate_fn(self, index: Any) -> Any:
        """torch's ``collate_fn``, as PyG's: positions of seeds (what ``batch_sampler`` yields)
        to their batch, packaged (as PyG's with ``filter_per_worker=True``), made now in the
        calling thread; the same as ``loader(index)``."""
        return self._batch_of(index)

    def _finish(self, data: Any) -> Any:
        return data if self.transform is None else self.transform(data)

    def _batch_tensors(self, batch: Any) -> Iterator[Tensor]:
        for store in batch.stores:
            for value in store.values():
                if isinstance(value, Tensor):
                    yield value
            # PyG keeps underscore attributes (bidirectional sampling's _orig_edge_index) in the
            # store's __dict__, not among its values: hand those over too.
            orig = vars(store).get("_orig_edge_index")
            if isinstance(orig, Tensor):
                yield orig

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------------------------
class NeighborLoader(_PyGLoader):
    r"""PyG's :class:`torch_geometric.loader.NeighborLoader` on this library's sampler.

    Same signature and batches as PyG's (see its documentation); what differs is where the work
    runs. Parameters beyond PyG's are keyword-only and optional.

    Parameters
    ----------
    data : Data or HeteroData
        The graph (``edge_index`` per edge type) and its attributes. Node attributes (any tensor
        with one row per node: ``x``, ``y``, masks) and edge attributes (one row per edge) are
        sliced for every batch; host tensors are pinned in place and read zero-copy by the GPU.
        A ``(FeatureStore, GraphStore)`` pair is read once into ``Data`` / ``HeteroData``
        (every tensor of the feature store in full, the edges in COO), so it suits stores that fit
        in host memory.
    num_neighbors : list of int, or dict {edge_type: list of int}
        Neighbours per node at each hop, hop 1 (around the seeds) first; ``-1`` takes all.
    input_nodes : tensor of ids, bool mask, None, str or (node_type, ids / mask / None)
        The seeds, every one used once per epoch (distinct: a repeated id raises ``ValueError``).
        ``None``: every node (``Data``); a node type: every node of it (``HeteroData``).
    time_attr, input_time, temporal_strategy
        Temporal sampling, as PyG. Node-level: ``time_attr`` names a node attribute (per node
        type for ``HeteroData``; types without it are always eligible); a node draws only
        in-neighbours no newer than its seed's time (``input_time[i]``, else the seed's own
        time). Edge-level: ``time_attr`` names an edge attribute (per edge type; types without
        it are always eligible) and ``input_time`` is required; a node draws only in-edges no
        newer than its seed's time. Uniformly or, with ``temporal_strategy="last"``, among the
        most recent ones. Sampling is then disjoint (``batch.batch``) and runs on the CPU
        sampler (batches still land on ``device``; data already on a GPU raises
        ``NotImplementedError``).
    weight_attr
        Weighted sampling, as PyG: an edge attribute (per edge type for ``HeteroData``; types
        without it are sampled uniformly) makes an in-edge drawn in proportion to its weight
        (0: never); without replacement by Efraimidis-Spirakis keys. Runs on the CPU sampler
        (batches still land on ``device``); not together with ``time_attr``.
    replace : bool
        Sample with replacement.
    subgraph_type : "directional", "bidirectional" or "induced"
        As PyG: the sampled edges; those plus their reverses (PyG's ``to_bidirectional``); or
        every edge between the sampled nodes.
    disjoint : bool
        Every seed grows its own subgraph (``batch.batch`` says whose each node is); a node
        reached from two seeds appears once per tree. (A node met by several trees at one hop
        draws the same neighbours in each: draws are keyed by node, so they are not independent
        across trees.) Not with ``subgraph_type="induced"``.
    transform, transform_sampler_output : callable
        As PyG: applied to each batch / each ``SamplerOutput``.
    is_sorted, filter_per_worker
        Accepted; no effect (the CSC is built once; there are no workers).
    neighbor_sampler
        Only ``None``.
    directed : bool
        Deprecated by PyG; ``False`` means ``subgraph_type="induced"``.
    batch_size, shuffle, drop_last, generator, sampler
        As ``torch.utils.data.DataLoader``: ``sampler`` (e.g. ``DistributedSampler`` over
        ``range(len(input_nodes))``) gives each epoch's seed positions, cut into batches of
        ``batch_size`` (a position twice in one batch raises ``ValueError``).
    num_workers, pin_memory, persistent_workers, prefetch_factor, timeout, worker_init_fn, ...
        Accepted and not used: one producer thread replaces worker processes (said once with a
        ``UserWarning`` when ``num_workers > 0``) and batches land on ``device`` directly.
    device : device, optional
        Where batches land. ``None``: where ``data`` is (the CPU, or its GPU). With a CUDA device
        the graph is sampled on the GPU (over UVA from pinned host memory unless ``use_uva=False``
        or the graph is in GPU memory) and attributes are gathered zero-copy.
    use_uva : bool, optional
        Sample on the GPU from pinned host memory (``None``: yes for a CUDA ``device`` when the
        graph is in host memory; ``False``: sample on the CPU and copy the result).
    seed : int, optional
        Seed of the shuffle and of the neighbour draws (reproducible epochs); ``None`` draws it
        from torch's global generator.
    prefetch, max_threads, use_alternate_streams, pin_prefetcher
        As :class:`samplers.DataLoader`.

    Examples
    --------
    >>> from samplers.pyg import NeighborLoader
    >>> loader = NeighborLoader(data, [10, 5], input_nodes=data.train_mask, batch_size=128,
    ...                         shuffle=True)                                  # doctest: +SKIP
    >>> batch = next(iter(loader))                                          # doctest: +SKIP
    >>> out = model(batch.x, batch.edge_index)[:batch.batch_size]           # doctest: +SKIP
    """

    _name = "NeighborLoader"

    def __init__(self, data: Any, num_neighbors: Any, input_nodes: Any = None,
                 input_time: Optional[Tensor] = None, replace: bool = False,
                 subgraph_type: Any = "directional", disjoint: bool = False,
                 temporal_strategy: str = "uniform", time_attr: Optional[str] = None,
                 weight_attr: Optional[str] = None, transform: Optional[Callable] = None,
                 transform_sampler_output: Optional[Callable] = None, is_sorted: bool = False,
                 filter_per_worker: Optional[bool] = None, neighbor_sampler: Any = None,
                 directed: bool = True, *, device: Any = None, use_uva: Optional[bool] = None,
                 seed: Optional[int] = None, **kwargs: Any) -> None:
        name = self._name
        data = _check_data(data, name)
        input_type, nodes, input_id = _input_nodes(data, input_nodes, kwargs.pop("input_id", None),
                                                   name)
        self.input_nodes = input_nodes
        self._input_type = input_type
        count = data.num_nodes if input_type is None else data[input_type].num_nodes
        self._setup(data, num_neighbors, nodes, count, "input_nodes", kwargs=kwargs,
                    **{k: v for k, v in locals().items() if k in _SETUP_OPTIONS})
        self._input_id = _check_input_id(input_id, len(self._seeds), "input_nodes", name)
        self.input_time = input_time
        self._input_time = None if input_time is None else \
            self._times(input_time, len(self._seeds), "input_time")
        if self._node_time is not None and self._input_time is None \
                and self._node_time.get(input_type or _N) is None:
            raise ValueError(f"{name}: time_attr={time_attr!r}: the seeds' node type has no "
                             f"times; pass input_time")
        if self._edge_time is not None and self._input_time is None:
            raise ValueError(f"{name}: time_attr={time_attr!r} is an edge attribute: "
                             f"edge-level temporal sampling needs input_time (the seeds' "
                             f"times), as in PyG")

    def _produce(self, seeds: Any, positions: Tensor, batch: int) -> Any:
        tree_time = seed_time = None
        if self._temporal:
            pos = positions.numpy()
            tree_time = self._input_time[pos] if self._input_time is not None \
                else self._node_time[self._input_type or _N][seeds.cpu().numpy()]
            if self._input_time is not None:
                seed_time = torch.from_numpy(tree_time).to(self.device, non_blocking=self.device.type == "cuda")
        out = self._sample({self._input_type or _N: seeds}, batch, tree_time)
        input_id = positions if self._input_id is None else self._input_id[positions]
        input_id = input_id.to(self.device, non_blocking=self.device.type == "cuda")
        out.metadata = (input_id, seed_time)
        data = self._filter(out)
        store = data if self._input_type is None else data[self._input_type]
        store.input_id = input_id
        store.seed_time = seed_time
        store.batch_size = int(positions.numel())
        return self._finish(data)


# ----------------------------------------------------------------------------------------------
class LinkNeighborLoader(_PyGLoader):
    r"""PyG's :class:`torch_geometric.loader.LinkNeighborLoader` on this library's sampler.

    Seeds are the columns of ``edge_label_index`` (each once per epoch); each batch samples the
    neighbourhoods of their endpoints (and of the negatives) as :class:`NeighborLoader` does and
    carries PyG's link outputs: ``edge_label_index`` (local ids) and ``edge_label`` (binary
    negatives: positives keep their label, or 1, negatives get 0; labels are shifted by one when
    the smallest is 0, as PyG does), or ``src_index`` / ``dst_pos_index`` / ``dst_neg_index``
    (triplet negatives), and ``input_id`` (the seed edges' positions).

    Parameters
    ----------
    data, num_neighbors, replace, subgraph_type, disjoint, transform, ...
        As :class:`NeighborLoader`.
    edge_label_index : [2, E] tensor, or (edge_type, [2, E] tensor or None), or edge_type
        The seed edges (``None``: ``data.edge_index``).
    edge_label : tensor, optional
        One label per seed edge.
    edge_label_time
        With ``time_attr``: each seed edge's time (both needed, as in PyG). Node-level times:
        the trees of a pair and its negatives hold no node newer than it, and negatives are
        redrawn (up to 5 times, then the oldest node) until no newer than it. Edge-level times
        (``time_attr`` an edge attribute): the trees hold no edge newer than it (negatives are
        drawn as without times, as PyG does). ``edge_label_time`` / ``seed_time`` are reported
        as PyG does.
    neg_sampling : NegativeSampling, str or dict, optional
        PyG's negative sampling: ``"binary"`` or ``"triplet"`` with ``amount`` negatives per
        positive (uniform, or by ``src_weight`` / ``dst_weight``). The draws are keyed by
        ``(seed, epoch, batch)`` like the neighbour draws, so epochs are reproducible with
        ``seed``.
    neg_sampling_ratio : float, optional
        Deprecated by PyG: ``NegativeSampling("binary", neg_sampling_ratio)``.
    device, use_uva, seed, ...
        As :class:`NeighborLoader`.
    """

    _name = "LinkNeighborLoader"
    _distinct_positions = False   # repeated seed edges merge like any shared endpoint

    def __init__(self, data: Any, num_neighbors: Any, edge_label_index: Any = None,
                 edge_label: Optional[Tensor] = None, edge_label_time: Optional[Tensor] = None,
                 replace: bool = False, subgraph_type: Any = "directional",
                 disjoint: bool = False, temporal_strategy: str = "uniform",
                 neg_sampling: Any = None, neg_sampling_ratio: Optional[float] = None,
                 time_attr: Optional[str] = None, weight_attr: Optional[str] = None,
                 transform: Optional[Callable] = None,
                 transform_sampler_output: Optional[Callable] = None, is_sorted: bool = False,
                 filter_per_worker: Optional[bool] = None, neighbor_sampler: Any = None,
                 directed: bool = True, *, device: Any = None, use_uva: Optional[bool] = None,
                 seed: Optional[int] = None, **kwargs: Any) -> None:
        name = self._name
        data = _check_data(data, name)
        if time_attr is not None and edge_label_time is None:
            raise ValueError(f"{name}: temporal sampling is on (time_attr={time_attr!r}) but "
                             f"'edge_label_time' is not set")
        if time_attr is None and edge_label_time is not None:
            raise ValueError(f"{name}: received conflicting 'edge_label_time' and 'time_attr' "
                             f"arguments: 'edge_label_time' is set while 'time_attr' is not")
        if neg_sampling_ratio is not None and neg_sampling_ratio != 0.0:
            neg_sampling = NegativeSampling("binary", neg_sampling_ratio)
        try:
            self.neg_sampling = NegativeSampling.cast(neg_sampling)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: neg_sampling: {exc}") from None
        input_type, eli = _edge_label_index(data, edge_label_index, name)
        self._input_type = input_type
        s_type, d_type = (_N, _N) if input_type is None else (input_type[0], input_type[-1])
        n_src = data.num_nodes if input_type is None else data[s_type].num_nodes
        n_dst = data.num_nodes if input_type is None else data[d_type].num_nodes
        _check_endpoints(eli, n_src, n_dst, name)
        num = eli.shape[1]
        if edge_label is not None:
            if not isinstance(edge_label, Tensor):
                raise TypeError(f"{name}: edge_label must be a tensor, got "
                                f"{type(edge_label).__name__}")
            if edge_label.dim() == 0 or edge_label.shape[0] != num:
                raise ValueError(f"{name}: edge_label has {tuple(edge_label.shape)} entries but "
                                 f"edge_label_index has {num} edges")
            if self.neg_sampling is not None and self.neg_sampling.is_triplet():
                raise ValueError(f"{name}: edge_label must be None with triplet negative "
                                 f"sampling (use src_index / dst_pos_index / dst_neg_index)")
            if self.neg_sampling is not None and self.neg_sampling.is_binary() and num \
                    and edge_label.min() == 0:
                edge_label = edge_label + 1   # PyG: 0 is the negatives' label
        if self.neg_sampling is not None:
            for w, n, what in ((getattr(self.neg_sampling, "src_weight", None), n_src, "src"),
                               (getattr(self.neg_sampling, "dst_weight", None), n_dst, "dst")):
                if w is not None and (not isinstance(w, Tensor) or w.numel() != n):
                    raise ValueError(f"{name}: neg_sampling.{what}_weight must have one entry "
                                     f"per {what} node ({n})")
                if w is not None and (w.is_complex() or not bool(torch.isfinite(w).all())
                                      or bool((w < 0).any()) or not bool((w > 0).any())):
                    raise ValueError(f"{name}: neg_sampling.{what}_weight must be finite, >= 0 "
                                     f"and not all 0 (negatives are drawn in proportion to it)")
        input_id = kwargs.pop("input_id", None)
        self.edge_label_index = edge_label_index
        self.edge_label = edge_label
        self._types = (s_type, d_type)
        self._counts = (n_src, n_dst)
        self._setup(data, num_neighbors, torch.arange(num), num, "edge_label_index",
                    kwargs=kwargs, **{k: v for k, v in locals().items() if k in _SETUP_OPTIONS})
        self._input_id = _check_input_id(input_id, num, "edge_label_index", name)
        self.edge_label_time = edge_label_time
        self._label_time = None if edge_label_time is None else \
            self._times(edge_label_time, num, "edge_label_time")
        dev = self._sample_device
        self._eli = eli.to(dev, self.graph.idtype)
        self._label = None if edge_label is None else edge_label.to(dev)

    def _negatives(self, num: int, endpoint: str, gen: torch.Generator,
                   seed_time: Optional[np.ndarray] = None) -> Tensor:
        """``num`` negative endpoints; in temporal sampling, none newer than its pair's
        ``seed_time`` (redrawn up to 5 times, then the oldest node, as PyG does)."""
        n = self._counts[0 if endpoint == "src" else 1]
        weight = getattr(self.neg_sampling, f"{endpoint}_weight", None)
        if n == 0:
            raise ValueError(f"{self._name}: cannot draw negatives from 0 {endpoint} nodes")

        def draw(k: int) -> Tensor:
            if weight is None:
                return torch.randint(n, (k,), generator=gen)
            return torch.multinomial(weight.float().cpu(), k, replacement=True, generator=gen)

        out = draw(num)
        node_time = None if self._node_time is None \
            else self._node_time.get(self._types[0 if endpoint == "src" else 1])
        if seed_time is not None and node_time is not None and num:
            t = torch.from_numpy(node_time)
            limit = torch.from_numpy(seed_time)
            bad = t[out] > limit
            for _ in range(5):
                k = int(bad.sum())
                if k == 0:
                    break
                out[bad] = draw(k)
                bad = t[out] > limit
            if bool(bad.any()):
                out[bad] = int(torch.argmin(t))
        return out.to(self._sample_device, self.graph.idtype)

    def _produce(self, seeds: Any, positions: Tensor, batch: int) -> Any:
        ns = self.neg_sampling
        src, dst = self._eli[0].index_select(0, seeds), self._eli[1].index_select(0, seeds)
        label = None if self._label is None else self._label.index_select(0, seeds)
        num_pos = int(positions.numel())
        key = self._batch_key(batch)
        # Temporal: every pair's time (negatives repeat their positive's), as PyG's edge_sample
        t = None if self._label_time is None else self._label_time[positions.numpy()]
        src_time = dst_time = t
        if ns is not None:
            gen = torch.Generator().manual_seed(hop_key(key, 1 << 20, 0) & ((1 << 63) - 1))
            num_neg = math.ceil(num_pos * ns.amount)
            reps = 1 + math.ceil(ns.amount)
            if ns.is_binary():
                if t is not None:
                    src_time = dst_time = np.tile(t, reps)[:num_pos + num_neg]
                neg_time = None if t is None else src_time[num_pos:]
                src = torch.cat([src, self._negatives(num_neg, "src", gen, neg_time)])
                dst = torch.cat([dst, self._negatives(num_neg, "dst", gen, neg_time)])
                if label is None:
                    label = torch.ones(num_pos, device=src.device)
                label = torch.cat([label, label.new_zeros((num_neg,) + label.shape[1:])])
            else:
                if t is not None:
                    dst_time = np.tile(t, reps)[:num_pos + num_neg]
                dst = torch.cat([dst, self._negatives(
                    num_neg, "dst", gen, None if t is None else dst_time[num_pos:])])
        s_type, d_type = self._types
        if self.disjoint:   # no merging: every endpoint roots its own tree, seeds in order
            if s_type != d_type:
                # trees are numbered per type; tree j is pair j (its time) in both
                tree_time = None if t is None else \
                    (dst_time if dst_time.shape[0] >= src_time.shape[0] else src_time)
                out = self._sample({s_type: src, d_type: dst}, batch, tree_time)
                inv_src = torch.arange(src.numel(), device=src.device)
                inv_dst = torch.arange(dst.numel(), device=dst.device)
            else:
                tree_time = None if t is None else np.concatenate([src_time, dst_time])
                out = self._sample({s_type: torch.cat([src, dst])}, batch, tree_time)
                inv_src = torch.arange(src.numel(), device=src.device)
                inv_dst = torch.arange(src.numel(), src.numel() + dst.numel(), device=dst.device)
            if isinstance(out.batch, dict):
                out.batch = {k: v % num_pos for k, v in out.batch.items()}
            else:
                out.batch = out.batch % num_pos
        elif s_type != d_type:
            src_u, inv_src = torch.unique(src, return_inverse=True)
            dst_u, inv_dst = torch.unique(dst, return_inverse=True)
            out = self._sample({s_type: src_u, d_type: dst_u}, batch)
        else:
            seed_u, inv = torch.unique(torch.cat([src, dst]), return_inverse=True)
            inv_src, inv_dst = inv[:src.numel()], inv[src.numel():]
            out = self._sample({s_type: seed_u}, batch)
        dev = self.device
        input_id = positions if self._input_id is None else self._input_id[positions]
        input_id = input_id.to(dev, non_blocking=dev.type == "cuda")
        data = self._filter(out)
        in_store = data if self._input_type is None else data[self._input_type]
        in_store.input_id = input_id
        src_time_t = None if t is None else torch.from_numpy(src_time).to(dev, non_blocking=dev.type == "cuda")
        if ns is None or ns.is_binary():
            in_store.edge_label_index = torch.stack([inv_src, inv_dst]).to(dev, non_blocking=dev.type == "cuda")
            in_store.edge_label = None if label is None else label.to(dev, non_blocking=dev.type == "cuda")
            in_store.edge_label_time = src_time_t
        else:
            src_store = data if self._input_type is None else data[s_type]
            dst_store = data if self._input_type is None else data[d_type]
            src_store.src_index = inv_src.to(dev, non_blocking=dev.type == "cuda")
            dst_store.dst_pos_index = inv_dst[:num_pos].to(dev, non_blocking=dev.type == "cuda")
            neg = inv_dst[num_pos:]
            # PyG pairs negative j with positive j // amount, or with j % num_pos when disjoint
            # (there a tree's id modulo num_pos names its positive)
            neg = neg.view(-1, num_pos).t() if self.disjoint else neg.view(num_pos, -1)
            dst_store.dst_neg_index = neg.squeeze(-1).to(dev, non_blocking=dev.type == "cuda")
            src_store.seed_time = src_time_t
            dst_store.seed_time = src_time_t
            if "edge_label_index" in in_store:
                del in_store.edge_label_index
        return self._finish(data)


# ----------------------------------------------------------------------------------------------
def _check_data(data: Any, name: str) -> Any:
    """``data`` itself, or a ``(FeatureStore, GraphStore)`` pair read into ``Data`` /
    ``HeteroData`` (see :func:`_from_stores`)."""
    if isinstance(data, (tuple, list)):
        from torch_geometric.data import FeatureStore, GraphStore

        if len(data) != 2 or not isinstance(data[0], FeatureStore) \
                or not isinstance(data[1], GraphStore):
            raise TypeError(f"{name}: data as a pair must be (FeatureStore, GraphStore), got "
                            f"({', '.join(type(x).__name__ for x in data)})")
        return _from_stores(data[0], data[1], name)
    if not isinstance(data, (Data, HeteroData)):
        raise TypeError(f"{name}: data must be a torch_geometric.data.Data or HeteroData, got "
                        f"{type(data).__name__}")
    return data


def _from_stores(feature_store: Any, graph_store: Any, name: str) -> Any:
    """A ``(FeatureStore, GraphStore)`` pair as ``Data`` (no node / edge types) or
    ``HeteroData``: every tensor of the feature store read once in full (``get_tensor``; then
    gathered from host memory like any attribute, zero-copy to a GPU) and the graph store's edges
    in COO. Meant for stores that fit in host memory; a remote store is read whole."""
    tensor_attrs = list(feature_store.get_all_tensor_attrs())
    edge_attrs = list(graph_store.get_all_edge_attrs())
    homo = all(a.group_name is None for a in tensor_attrs) and \
        all(a.edge_type is None for a in edge_attrs)
    types = [None] if homo else [a.edge_type for a in edge_attrs]
    rows, cols, perms = graph_store.coo(types) if edge_attrs else ({}, {}, {})
    if not isinstance(rows, dict):   # homogeneous: PyG returns the tensors themselves
        rows, cols, perms = {None: rows}, {None: cols}, {None: perms}
    data: Any = Data() if homo else HeteroData()
    counts: Dict[Any, int] = {}
    for a in tensor_attrs:
        t = feature_store.get_tensor(a.group_name, a.attr_name, None)   # index None: whole
        store = data if homo else data[a.group_name]
        store[a.attr_name] = t
        counts[a.group_name] = max(counts.get(a.group_name, 0), int(t.shape[0]))
    for a in edge_attrs:
        key = None if homo else a.edge_type
        row, col = rows.get(key), cols.get(key)
        if row is None:
            continue
        perm = (perms or {}).get(key)
        ei = torch.stack([row, col])
        if perm is not None:   # back to the store's edge order (edge ids)
            ei = ei[:, torch.argsort(perm)]
        size = a.size if a.size is not None else (int(row.max()) + 1 if row.numel() else 0,
                                                   int(col.max()) + 1 if col.numel() else 0)
        if homo:
            data.edge_index = ei
            counts[None] = max(counts.get(None, 0), int(size[0]), int(size[1]))
        else:
            src, _, dst = a.edge_type
            data[a.edge_type].edge_index = ei
            counts[src] = max(counts.get(src, 0), int(size[0]))
            counts[dst] = max(counts.get(dst, 0), int(size[1]))
    if homo:
        data.num_nodes = counts.get(None, 0)
    else:
        for nt, n in counts.items():
            data[nt].num_nodes = n
    return data


def _to_bidirectional(out: Any) -> Any:
    """``out.to_bidirectional()`` (the same edges, in the same order), with the edge id of a pair
    that has several copies chosen deterministically on every device: the first copy, i.e. the
    sampled edge in that very direction when there is one, else the reverse of a sampled edge.
    PyG's coalesce (``reduce="any"``) keeps whichever copy an unstable sort puts last on the CPU
    and an arbitrary one on a GPU (a scatter with repeated indices), so ``e_id`` and the edge
    attributes gathered with it could differ between devices and runs. Heterogeneous outputs
    carry no edge ids there and are left to PyG."""
    if not isinstance(out, SamplerOutput) or out.edge is None:
        return out.to_bidirectional()
    res = copy.copy(out)
    res.num_sampled_nodes = res.num_sampled_edges = None
    row = torch.cat([out.row, out.col])
    col = torch.cat([out.col, out.row])
    edge = torch.cat([out.edge, out.edge])
    n = int(out.node.numel())
    key = col.to(torch.int64) * max(n, 1) + row.to(torch.int64)     # coalesce's order: by col, then row
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    first = torch.full((uniq.numel(),), key.numel(), dtype=torch.int64, device=key.device)
    first.scatter_reduce_(0, inverse, torch.arange(key.numel(), device=key.device), reduce="amin")
    res.row = (uniq % max(n, 1)).to(out.row.dtype)
    res.col = (uniq // max(n, 1)).to(out.col.dtype)
    res.edge = edge[first]
    return res


def _edge_lists(data: Any) -> List[Any]:
    """The ``edge_index`` of every relation of ``data`` (``Data`` or ``HeteroData``) that has one."""
    if isinstance(data, HeteroData):
        return [data[et].get("edge_index") for et in data.edge_types
                if data[et].get("edge_index") is not None]
    ei = getattr(data, "edge_index", None)
    return [] if ei is None else [ei]


def _data_device(data: Any) -> torch.device:
    """The device of ``data``'s first tensor attribute (the CPU when it has none)."""
    for store in data.stores:
        for value in store.values():
            if isinstance(value, Tensor):
                return value.device
    return torch.device("cpu")


def _time_sorted(g: CSCGraph, node_time: Optional[np.ndarray],
                 edge_time: Optional[np.ndarray] = None) -> CSCGraph:
    """``g`` with every node's in-edges ordered by their source's time (``node_time``) or by
    their own (``edge_time``, indexed by edge id), then CSC order, as PyG orders neighbourhoods
    for temporal sampling (``sort_csc``); edge ids unchanged."""
    if (node_time is None and edge_time is None) or g.num_edges == 0:
        return g
    ip, ix = g.indptr.long(), g.indices.long()
    col = torch.repeat_interleave(torch.arange(g.num_nodes, device=ip.device), ip[1:] - ip[:-1])
    eids = g.edge_ids if g.edge_ids is not None else torch.arange(g.num_edges, device=ip.device)
    if edge_time is not None:
        t = torch.from_numpy(edge_time).to(ip.device)[eids.long()]
    else:
        t = torch.from_numpy(node_time).to(ip.device)[ix]
    order = torch.argsort(t, stable=True)                    # by time, CSC order among equals
    order = order[torch.argsort(col[order], stable=True)]    # then grouped by destination again
    return CSCGraph(g.indptr, g.indices[order].contiguous(), eids[order].contiguous())


def _csc_edge_times(graph: HeteroCSCGraph, edge_time: Dict[EdgeType, Optional[np.ndarray]]
                    ) -> Dict[EdgeType, Optional[np.ndarray]]:
    """Edge times (by edge id) in each edge type's CSC order, the order the sampler reads."""
    out: Dict[EdgeType, Optional[np.ndarray]] = {}
    for et in graph.canonical_etypes:
        t = edge_time.get(et)
        eids = graph[et].edge_ids
        out[et] = None if t is None else (t if eids is None else t[eids.cpu().long().numpy()])
    return out


def _typed_graph(data: Any, name: str, seed_etype: Any = None,
                 node_time: Optional[Dict[str, Optional[np.ndarray]]] = None,
                 edge_time: Optional[Dict[EdgeType, Optional[np.ndarray]]] = None
                 ) -> HeteroCSCGraph:
    """``data``'s edges as one CSC per edge type (a homogeneous graph: one type ``_N``). A graph
    without edges is an empty graph, as in PyG; ``seed_etype`` (a link loader's seed edge type,
    which ``data`` may lack) is added without edges when missing."""
    # Placeholder edge lists (a relation without edge_index, the seed type, no edges at all) take
    # the dtype and device of the edge lists there are, so every CSC shares one placement.
    present = [ei for ei in _edge_lists(data) if isinstance(ei, Tensor)]
    idtype = present[0].dtype if present else torch.int64
    dev = present[0].device if present else _data_device(data)

    def empty() -> Tensor:
        return torch.empty(2, 0, dtype=idtype, device=dev)

    if isinstance(data, HeteroData):
        eidx = {}
        for et in data.edge_types:
            store = data[et]
            ei = store.get("edge_index")
            if ei is None:
                if store.get("adj_t") is not None:
                    raise TypeError(f"{name}: data[{et!r}] holds adj_t (a SparseTensor graph); "
                                    f"pass edge_index")
                ei = empty()
            eidx[et] = ei
        num_nodes = {nt: int(data[nt].num_nodes or 0) for nt in data.node_types}
        if isinstance(seed_etype, tuple) and seed_etype not in eidx:
            eidx[seed_etype] = empty()
        if not eidx:   # no edge types at all: one empty relation keeps the graph well-formed
            if not num_nodes:
                raise ValueError(f"{name}: data has no node types")
            nt = next(iter(num_nodes))
            eidx[(nt, "__no_edges__", nt)] = empty()
        try:
            graph = HeteroCSCGraph.from_edge_index_dict(eidx, num_nodes)
            if node_time or edge_time:
                graph = HeteroCSCGraph({et: _time_sorted(g, (node_time or {}).get(et[0]),
                                                         (edge_time or {}).get(et))
                                        for et, g in graph.items()}, num_nodes)
            return graph
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}: data's edge_index: {exc}") from None
    ei = getattr(data, "edge_index", None)
    if ei is None:
        if getattr(data, "adj_t", None) is not None:
            raise TypeError(f"{name}: data holds adj_t (a SparseTensor graph); pass edge_index")
        ei = empty()
    n = data.num_nodes
    try:
        csc = CSCGraph.from_edge_index(ei, None if n is None else int(n))
        if node_time or edge_time:
            csc = _time_sorted(csc, (node_time or {}).get(_N), (edge_time or {}).get(_E))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: data.edge_index: {exc}") from None
    return HeteroCSCGraph({_E: csc}, {_N: csc.num_nodes})


def _input_nodes(data: Any, input_nodes: Any, input_id: Optional[Tensor], name: str
                 ) -> Tuple[Optional[str], Tensor, Optional[Tensor]]:
    """PyG's ``get_input_nodes``: ``(node type, seed ids, input ids or None)``."""
    def to_ids(nodes: Any, n: int, what: str) -> Tuple[Tensor, Optional[Tensor]]:
        if isinstance(nodes, Tensor) and nodes.dtype == torch.bool:
            if nodes.dim() != 1 or nodes.numel() != n:
                raise ValueError(f"{name}: {what} is a boolean mask of shape "
                                 f"{tuple(nodes.shape)}, expected ({n},)")
            ids = nodes.nonzero().view(-1).cpu()
            return ids, ids if input_id is None else input_id
        if isinstance(nodes, np.ndarray) and nodes.dtype == np.bool_:
            return to_ids(torch.from_numpy(nodes), n, what)
        return nodes, input_id

    if isinstance(data, Data):
        if input_nodes is None:
            return None, torch.arange(data.num_nodes), None
        if isinstance(input_nodes, (str, tuple)) and not isinstance(input_nodes, Tensor):
            raise TypeError(f"{name}: input_nodes (node type) needs HeteroData; for Data pass ids "
                            f"or a mask")
        return (None, *to_ids(input_nodes, data.num_nodes, "input_nodes"))
    if input_nodes is None:
        raise ValueError(f"{name}: input_nodes is required for HeteroData: a node type, or "
                         f"(node_type, ids or mask)")
    if isinstance(input_nodes, str):
        nt, nodes = input_nodes, None
    elif isinstance(input_nodes, (list, tuple)) and len(input_nodes) == 2 \
            and isinstance(input_nodes[0], str):
        nt, nodes = input_nodes
    else:
        raise TypeError(f"{name}: input_nodes for HeteroData must be a node type or "
                        f"(node_type, ids or mask), got {type(input_nodes).__name__}")
    if nt not in data.node_types:
        raise KeyError(f"{name}: input_nodes names node type {nt!r}, which data lacks "
                       f"(has {data.node_types})")
    n = data[nt].num_nodes
    if nodes is None:
        return nt, torch.arange(n), None
    return (nt, *to_ids(nodes, n, f"input_nodes[{nt!r}]"))


def _edge_label_index(data: Any, eli: Any, name: str) -> Tuple[Optional[EdgeType], Tensor]:
    """PyG's ``get_edge_label_index``: ``(edge type or None, [2, E] int64 CPU tensor)``."""
    if isinstance(data, Data):
        if eli is None:
            eli = data.edge_index
        etype = None
    else:
        if eli is None:
            raise ValueError(f"{name}: edge_label_index is required for HeteroData: an edge type "
                             f"or (edge_type, [2, E] tensor)")
        if isinstance(eli, (list, tuple)) and len(eli) and isinstance(eli[0], str):
            etype, eli = tuple(eli), None
        elif isinstance(eli, (list, tuple)) and len(eli) == 2:
            etype, eli = eli
            etype = tuple(etype) if isinstance(etype, (list, tuple)) else etype
        else:
            raise TypeError(f"{name}: edge_label_index for HeteroData must be an edge type or "
                            f"(edge_type, [2, E] tensor)")
        try:
            etype = data._to_canonical(*etype) if isinstance(etype, tuple) else data._to_canonical(etype)
        except Exception:  # noqa: BLE001 - PyG raises several types for an unknown edge type
            etype = None
        if not (isinstance(etype, tuple) and len(etype) == 3
                and etype[0] in data.node_types and etype[-1] in data.node_types):
            raise KeyError(f"{name}: edge_label_index names an edge type whose node types data "
                           f"lacks (edge types {data.edge_types}, node types {data.node_types})")
        if eli is None:
            if etype not in data.edge_types or data[etype].get("edge_index") is None:
                raise ValueError(f"{name}: edge_label_index=({etype!r}, None) needs "
                                 f"data[{etype!r}].edge_index")
            eli = data[etype].edge_index
    if isinstance(eli, np.ndarray):
        eli = torch.from_numpy(eli)
    if not isinstance(eli, Tensor):
        raise TypeError(f"{name}: edge_label_index must be a [2, E] tensor, got "
                        f"{type(eli).__name__}")
    if eli.dtype == torch.bool or eli.is_floating_point() or eli.is_complex():
        raise TypeError(f"{name}: edge_label_index must hold integer node ids, got {eli.dtype}")
    if eli.dim() != 2 or eli.shape[0] != 2:
        raise ValueError(f"{name}: edge_label_index must have shape [2, E], got "
                         f"{tuple(eli.shape)}")
    return etype, eli.to("cpu", torch.int64)


def _time_array(t: Tensor, dtype: np.dtype, what: str, name: str) -> np.ndarray:
    """Times as a CPU NumPy array of ``dtype`` (int64 or float64), exactly: integer times stay
    integers (no float rounding of large timestamps)."""
    t = t.detach().cpu()
    if dtype == np.int64 and t.is_floating_point():
        raise TypeError(f"{name}: {what} is {t.dtype} but the times of time_attr are "
                        f"integers; pass integer times (or make time_attr floating point)")
    return t.numpy().astype(dtype, copy=False)


def _edge_weights(data: Any, weight_attr: str, graph: HeteroCSCGraph,
                  name: str) -> Dict[EdgeType, Optional[np.ndarray]]:
    """``{edge type: float64 weights in CSC order}`` of ``data``'s edge attribute
    ``weight_attr`` (edge types without it: ``None``, sampled uniformly)."""
    stores = [(_E, data)] if isinstance(data, Data) else [(et, data[et]) for et in data.edge_types]
    out: Dict[EdgeType, Optional[np.ndarray]] = {}
    for et, store in stores:
        w = store.get(weight_attr) if hasattr(store, "get") else getattr(store, weight_attr, None)
        if w is None:
            out[et] = None
            continue
        ne = graph[et].num_edges
        where = f"weight_attr={weight_attr!r}" + ("" if et == _E else f" of {et}")
        if not isinstance(w, Tensor) or w.dim() != 1 or w.numel() != ne:
            raise ValueError(f"{name}: {where} must be a 1-D tensor with one weight per edge "
                             f"({ne})")
        if w.dtype == torch.bool or w.is_complex():
            raise TypeError(f"{name}: {where} must hold numbers, got {w.dtype}")
        wd = w.detach().cpu().to(torch.float64)
        if not bool(torch.isfinite(wd).all()) or bool((wd < 0).any()):
            raise ValueError(f"{name}: {where} must be finite and >= 0")
        eids = graph[et].edge_ids
        out[et] = (wd if eids is None else wd[eids.cpu().long()]).numpy()
    if all(v is None for v in out.values()):
        raise ValueError(f"{name}: weight_attr={weight_attr!r}: no edge attribute of that name")
    return out


def _temporal_attrs(data: Any, time_attr: str, name: str
                    ) -> Tuple[Optional[Dict[str, Optional[np.ndarray]]],
                               Optional[Dict[EdgeType, Optional[np.ndarray]]]]:
    """``(node_time, edge_time)`` of ``data``'s attribute ``time_attr``, one of them ``None``, as
    PyG decides: a node attribute (node-level temporal sampling: ``{node type: times or None}``)
    or an edge attribute (edge-level: ``{edge type: times by edge id, or None}``); for ``Data`` a
    node attribute wins, for ``HeteroData`` one on node and edge types both is an error. One
    dtype for all: int64 when every time is an integer, else float64."""
    if isinstance(data, Data):
        node_level = time_attr in data and data.is_node_attr(time_attr)
        edge_level = not node_level and time_attr in data and data.is_edge_attr(time_attr)
        node_stores = [(_N, data)] if node_level else []
        edge_stores = [(_E, data)] if edge_level else []
    else:
        node_stores = [(nt, data[nt]) for nt in data.node_types if time_attr in data[nt]]
        edge_stores = [(et, data[et]) for et in data.edge_types if time_attr in data[et]]
        if node_stores and edge_stores:
            raise ValueError(f"{name}: time_attr={time_attr!r} holds both node-level and "
                             f"edge-level information (on node types "
                             f"{[nt for nt, _ in node_stores]} and edge types "
                             f"{[et for et, _ in edge_stores]})")
    if not node_stores and not edge_stores:
        raise ValueError(f"{name}: time_attr={time_attr!r}: did not find any temporal data "
                         f"(neither a node-level nor an edge-level attribute of that name)")
    raw: Dict[Any, Optional[Tensor]] = {}
    for key, store in node_stores or edge_stores:
        value = store.get(time_attr) if hasattr(store, "get") else getattr(store, time_attr, None)
        if node_stores:
            count, what = store.num_nodes, "node" + ("" if key == _N else f" of type {key!r}")
        else:
            ei = store.get("edge_index") if hasattr(store, "get") else None
            count = int(ei.shape[1]) if isinstance(ei, Tensor) and ei.dim() == 2 else None
            what = "edge" + ("" if key == _E else f" of type {key}")
        if not isinstance(value, Tensor) or value.dim() != 1 or value.numel() != count:
            raise ValueError(f"{name}: time_attr={time_attr!r} must be a 1-D tensor with one time "
                             f"per {what}")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name}: time_attr={time_attr!r} must hold numbers, got {value.dtype}")
        raw[key] = value
    dtype = np.int64 if all(not v.is_floating_point() for v in raw.values()) else np.float64
    times = {k: _time_array(v, dtype, time_attr, name) for k, v in raw.items()}
    if node_stores:
        nts = [_N] if isinstance(data, Data) else data.node_types
        return {nt: times.get(nt) for nt in nts}, None
    ets = [_E] if isinstance(data, Data) else data.edge_types
    return None, {et: times.get(et) for et in ets}


def _check_input_id(input_id: Any, n: int, what: str, name: str) -> Optional[Tensor]:
    """A custom ``input_id`` (PyG's ``NodeLoader`` / ``LinkLoader`` argument): one entry per seed,
    reported per batch as ``input_id[positions]``; its dtype is kept."""
    if input_id is None:
        return None
    if not isinstance(input_id, Tensor):
        input_id = torch.as_tensor(input_id)
    if input_id.dim() == 0 or input_id.shape[0] != n:
        raise ValueError(f"{name}: input_id has shape {tuple(input_id.shape)} but {what} has "
                         f"{n} seeds")
    return input_id.cpu()


def _check_endpoints(eli: Tensor, n_src: int, n_dst: int, name: str) -> None:
    for row, n, what in ((eli[0], n_src, "source"), (eli[1], n_dst, "destination")):
        if row.numel():
            lo, hi = int(row.min()), int(row.max())
            if lo < 0 or hi >= n:
                raise IndexError(f"{name}: edge_label_index holds {what} node "
                                 f"{lo if lo < 0 else hi}, outside [0, {n})")


def _hop_fields(hs: HopSample) -> tuple:
    return (hs.node, hs.row, hs.col, hs.edge, hs.num_sampled_nodes, hs.num_sampled_edges,
            hs.batch)
