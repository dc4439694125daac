"""Heterogeneous graphs without DGL: one CSC per canonical edge type, per-type blocks.

:class:`HeteroCSCGraph` keeps one :class:`~samplers.CSCGraph` per canonical edge type
``(src_type, relation, dst_type)``: its in-edges per destination node, with source ids in the source
type's id space. :class:`HeteroBlock` is one sampled layer with DGL's heterogeneous MFG accessors
(``num_src_nodes(ntype)``, ``srcdata[name][ntype]``) and PyG's ``edge_index`` per edge type (the
``edge_index_dict`` that ``HeteroConv`` takes). :func:`sample_hetero_layers` samples the layers with
the homogeneous per-edge-type primitives (Numba on the CPU, ``cuda/sample.cu`` on the GPU) and
relabels once per node type, destination nodes first, as DGL's ``to_block`` does.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._graph import CSCGraph, _plain

__all__ = ["HeteroCSCGraph", "HeteroBlock", "EdgeType"]

EdgeType = Tuple[str, str, str]
Tensor = torch.Tensor
DeviceLike = Union[str, int, torch.device]
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _check_etype(et: Any) -> EdgeType:
    if not (isinstance(et, tuple) and len(et) == 3 and all(isinstance(x, str) for x in et)):
        raise TypeError(f"edge types must be canonical (src_type, relation, dst_type) tuples of "
                        f"str, got {et!r}")
    return et


class HeteroCSCGraph:
    """A heterogeneous graph: one CSC per canonical edge type.

    Parameters
    ----------
    graphs : dict
        ``{(src_type, relation, dst_type): CSCGraph}``. Each CSC holds the in-edges of the
        destination type's nodes; its ``indices`` are source-type ids. (A CSC may be padded with
        zero-degree nodes up to ``max(num_src, num_dst)`` nodes: ids past ``num_nodes[dst_type]``
        are never seeds.)
    num_nodes : dict
        ``{node_type: number of nodes}`` for every type an edge type names.

    Build one with :meth:`from_edge_index_dict` (PyG's ``edge_index_dict`` layout) or
    :meth:`from_dgl`.

    Examples
    --------
    >>> g = HeteroCSCGraph.from_edge_index_dict(
    ...     {("author", "writes", "paper"): torch.tensor([[0, 1, 1], [0, 0, 2]])},
    ...     {"author": 2, "paper": 3})
    >>> g.num_nodes("paper"), g.num_edges(("author", "writes", "paper"))
    (3, 3)
    """

    def __init__(self, graphs: Mapping, num_nodes: Mapping):
        if not isinstance(graphs, Mapping) or not graphs:
            raise TypeError("graphs must be a non-empty dict {(src_type, relation, dst_type): CSCGraph}")
        if not isinstance(num_nodes, Mapping):
            raise TypeError(f"num_nodes must be a dict {{node_type: int}}, got {type(num_nodes).__name__}")
        self._num_nodes: Dict[str, int] = {}
        for nt, n in num_nodes.items():
            if not isinstance(nt, str):
                raise TypeError(f"node types must be str, got {nt!r}")
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise ValueError(f"num_nodes[{nt!r}] must be an int >= 0, got {n!r}")
            self._num_nodes[nt] = int(n)
        self._graphs: Dict[EdgeType, CSCGraph] = {}
        for et, g in graphs.items():
            s, _, d = _check_etype(et)
            if not isinstance(g, CSCGraph):
                raise TypeError(f"graphs[{et!r}] must be a CSCGraph, got {type(g).__name__}")
            for nt in (s, d):
                if nt not in self._num_nodes:
                    raise ValueError(f"edge type {et!r} names node type {nt!r}, which num_nodes lacks")
            if g.num_nodes < self._num_nodes[d]:
                raise ValueError(f"graphs[{et!r}] has {g.num_nodes} destination nodes but "
                                 f"num_nodes[{d!r}] is {self._num_nodes[d]}")
            if g.num_edges and int(_plain(g.indices).max()) >= self._num_nodes[s]:
                raise ValueError(f"graphs[{et!r}] has source ids beyond num_nodes[{s!r}] = "
                                 f"{self._num_nodes[s]}")
            self._graphs[et] = g
        placements = {g.placement for g in self._graphs.values()}
        idtypes = {g.idtype for g in self._graphs.values()}
        if len(placements) != 1 or len(idtypes) != 1:
            raise ValueError(f"every edge type's CSC must share one placement and idtype, got "
                             f"{sorted(placements)} and {sorted(map(str, idtypes))}")
        self._placement = placements.pop()
        self._idtype = idtypes.pop()
        self._scratch: Dict[str, List[np.ndarray]] = {}
        self._scratch_lock = threading.Lock()

    def _take_scratch(self, ntype: str) -> np.ndarray:
        """A node-sized int32 array of -1 for ``ntype`` (CPU relabel map); give it back when done."""
        with self._scratch_lock:
            pool = self._scratch.setdefault(ntype, [])
            if pool:
                return pool.pop()
        return np.full(self._num_nodes[ntype], -1, dtype=np.int32)

    def _give_scratch(self, ntype: str, s: np.ndarray) -> None:
        with self._scratch_lock:
            self._scratch.setdefault(ntype, []).append(s)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_edge_index_dict(cls, edge_index_dict: Mapping, num_nodes: Mapping) -> "HeteroCSCGraph":
        """From ``{(src_type, relation, dst_type): [2, E] edge_index}`` (PyG's layout); edge ``j``
        of a type gets id ``j`` of that type."""
        if not isinstance(num_nodes, Mapping):
            raise TypeError(f"num_nodes must be a dict {{node_type: int}}, got {type(num_nodes).__name__}")
        for nt, n in num_nodes.items():   # before building CSCs, so the message names this
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise ValueError(f"num_nodes[{nt!r}] must be an int >= 0, got {n!r}")
        graphs = {}
        for et, ei in edge_index_dict.items():
            s, _, d = _check_etype(et)
            if s not in num_nodes or d not in num_nodes:
                raise ValueError(f"num_nodes lacks a node type of edge type {et!r}")
            n = max(int(num_nodes[s]), int(num_nodes[d]))
            graphs[et] = CSCGraph.from_edge_index(ei, n)
        return cls(graphs, num_nodes)

    @classmethod
    def from_dgl(cls, g: Any) -> "HeteroCSCGraph":
        """From a DGL heterograph (edge ids are DGL's per-type edge ids)."""
        num_nodes = {nt: int(g.num_nodes(nt)) for nt in g.ntypes}
        eidx = {}
        for et in g.canonical_etypes:
            src, dst = g.edges(etype=et, order="eid")
            eidx[et] = torch.stack([src, dst])
        return cls.from_edge_index_dict(eidx, num_nodes)

    # ------------------------------------------------------------------ queries
    @property
    def ntypes(self) -> List[str]:
        return list(self._num_nodes)

    @property
    def canonical_etypes(self) -> List[EdgeType]:
        return list(self._graphs)

    @property
    def num_nodes_dict(self) -> Dict[str, int]:
        return dict(self._num_nodes)

    @property
    def idtype(self) -> torch.dtype:
        return self._idtype

    @property
    def placement(self) -> str:
        return self._placement

    @property
    def device(self) -> torch.device:
        return next(iter(self._graphs.values())).device

    def to_canonical_etype(self, etype: Any) -> EdgeType:
        """``etype`` as a canonical edge type (a relation name must be unique)."""
        if isinstance(etype, tuple):
            if etype not in self._graphs:
                raise KeyError(f"edge type {etype!r} is not in the graph (has {self.canonical_etypes})")
            return etype
        hits = [et for et in self._graphs if et[1] == etype]
        if len(hits) != 1:
            raise KeyError(f"edge type {etype!r} names {len(hits)} canonical edge types "
                           f"({hits or self.canonical_etypes}); pass the canonical tuple")
        return hits[0]

    def num_nodes(self, ntype: Optional[str] = None) -> int:
        if ntype is None:
            if len(self._num_nodes) != 1:
                raise TypeError("the graph has several node types: pass num_nodes(ntype)")
            ntype = next(iter(self._num_nodes))
        if ntype not in self._num_nodes:
            raise KeyError(f"node type {ntype!r} is not in the graph (has {self.ntypes})")
        return self._num_nodes[ntype]

    def num_edges(self, etype: Any = None) -> int:
        if etype is None:
            return sum(g.num_edges for g in self._graphs.values())
        return self._graphs[self.to_canonical_etype(etype)].num_edges

    def __getitem__(self, etype: Any) -> CSCGraph:
        return self._graphs[self.to_canonical_etype(etype)]

    def items(self) -> Iterator[Tuple[EdgeType, CSCGraph]]:
        return iter(self._graphs.items())

    # ------------------------------------------------------------------ placement
    def _map(self, fn) -> "HeteroCSCGraph":
        return HeteroCSCGraph({et: fn(g) for et, g in self._graphs.items()}, self._num_nodes)

    def pin(self) -> "HeteroCSCGraph":
        """Every edge type's arrays pinned in place (the GPU sampler reads them over UVA)."""
        return self._map(lambda g: g.pin())

    def to_placement(self, placement: str, device: Optional[DeviceLike] = None) -> "HeteroCSCGraph":
        return self._map(lambda g: g.to_placement(placement, device))

    def to(self, device: DeviceLike) -> "HeteroCSCGraph":
        return self._map(lambda g: g.to(device))

    def __repr__(self) -> str:
        return (f"HeteroCSCGraph(num_nodes={self._num_nodes}, "
                f"num_edges={ {et: g.num_edges for et, g in self._graphs.items()} }, "
                f"idtype={self._idtype}, placement={self._placement!r})")


class _TypedData(Mapping):
    """``block.srcdata`` / ``dstdata`` of a heterogeneous block: ``data[name]`` is a dict
    ``{ntype: tensor}`` (DGL's heterograph convention); assigning a dict sets those types."""

    def __init__(self, ntypes: Sequence[str]):
        self._ntypes = list(ntypes)
        self._data: Dict[str, Dict[str, Tensor]] = {}

    def __getitem__(self, name: str) -> Dict[str, Tensor]:
        return self._data[name]

    def __setitem__(self, name: str, value: Mapping) -> None:
        if not isinstance(value, Mapping):
            raise TypeError(f"a heterogeneous block's data[{name!r}] takes a dict {{ntype: tensor}}, "
                            f"got {type(value).__name__}")
        bad = [k for k in value if k not in self._ntypes]
        if bad:
            raise KeyError(f"node types {bad} are not in this block (has {self._ntypes})")
        self._data.setdefault(name, {}).update(value)

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class HeteroBlock:
    """One sampled layer of a heterogeneous graph, as DGL's heterogeneous blocks: per node type,
    the first ``num_dst_nodes(ntype)`` source nodes are the destination nodes.

    ``srcdata["_ID"]`` / ``dstdata["_ID"]`` hold the global ids per node type,
    :attr:`edge_index` ``{etype: [2, E] int64}`` the local edges per canonical edge type (PyG's
    ``edge_index_dict``), ``edata["_ID"]`` the global edge ids per edge type.
    """

    is_block = True

    def __init__(self, src_nodes: Mapping, dst_nodes: Mapping, edge_index: Mapping,
                 edge_ids: Mapping):
        self.srctypes = list(src_nodes)
        self.dsttypes = list(dst_nodes)
        self.canonical_etypes = list(edge_index)
        self.srcdata = _TypedData(self.srctypes)
        self.dstdata = _TypedData(self.dsttypes)
        self.srcdata["_ID"] = dict(src_nodes)
        self.dstdata["_ID"] = dict(dst_nodes)
        self._edge_index: Dict[EdgeType, Tensor] = dict(edge_index)
        self.edata: Dict[str, Dict[EdgeType, Tensor]] = {"_ID": dict(edge_ids)}

    @property
    def ntypes(self) -> List[str]:
        return list(dict.fromkeys(self.srctypes + self.dsttypes))

    @property
    def edge_index(self) -> Dict[EdgeType, Tensor]:
        """``{canonical etype: [2, E] int64 local edges}`` (row 0 sources, row 1 destinations)."""
        return self._edge_index

    edge_index_dict = edge_index

    def _one(self, types: List[str], ntype: Optional[str], what: str) -> str:
        if ntype is None:
            if len(types) != 1:
                raise TypeError(f"the block has several {what} node types {types}: pass ntype")
            return types[0]
        return ntype

    def num_src_nodes(self, ntype: Optional[str] = None) -> int:
        nt = self._one(self.srctypes, ntype, "source")
        ids = self.srcdata["_ID"].get(nt)
        return 0 if ids is None else int(ids.numel())

    def num_dst_nodes(self, ntype: Optional[str] = None) -> int:
        nt = self._one(self.dsttypes, ntype, "destination")
        ids = self.dstdata["_ID"].get(nt)
        return 0 if ids is None else int(ids.numel())

    def num_edges(self, etype: Any = None) -> int:
        if etype is None:
            return sum(int(e.shape[1]) for e in self._edge_index.values())
        return int(self._edge_index[self._canonical(etype)].shape[1])

    def _canonical(self, etype: Any) -> EdgeType:
        if isinstance(etype, tuple):
            return etype
        hits = [et for et in self._edge_index if et[1] == etype]
        if len(hits) != 1:
            raise KeyError(f"edge type {etype!r} names {len(hits)} edge types of the block")
        return hits[0]

    def edges(self, etype: Any = None) -> Tuple[Tensor, Tensor]:
        """``(src, dst)`` local ids of the edges of ``etype``."""
        if etype is None:
            if len(self._edge_index) != 1:
                raise TypeError("the block has several edge types: pass etype")
            etype = next(iter(self._edge_index))
        ei = self._edge_index[self._canonical(etype)]
        return ei[0], ei[1]

    @property
    def device(self) -> torch.device:
        return next(iter(self.srcdata["_ID"].values())).device

    def to(self, device: DeviceLike, non_blocking: bool = False) -> "HeteroBlock":
        mv = lambda d: {k: v.to(device, non_blocking=non_blocking) for k, v in d.items()}  # noqa: E731
        b = HeteroBlock(mv(self.srcdata["_ID"]), mv(self.dstdata["_ID"]), mv(self._edge_index),
                        mv(self.edata["_ID"]))
        for name, per_type in self.srcdata.items():
            if name != "_ID":
                b.srcdata[name] = mv(per_type)
        for name, per_type in self.dstdata.items():
            if name != "_ID":
                b.dstdata[name] = mv(per_type)
        return b

    def __repr__(self) -> str:
        return (f"HeteroBlock(num_src_nodes={ {t: self.num_src_nodes(t) for t in self.srctypes} }, "
                f"num_dst_nodes={ {t: self.num_dst_nodes(t) for t in self.dsttypes} }, "
                f"num_edges={ {et: int(e.shape[1]) for et, e in self._edge_index.items()} })")


def _etype_key(layer_key: int, index: int) -> int:
    from ._sampler_cpu import mix64_py

    return mix64_py(layer_key ^ (((index + 1) * _GOLDEN) & _MASK))


def sample_hetero_layers(graph: HeteroCSCGraph, seeds: Dict[str, Tensor],
                         fanouts: List[Dict[EdgeType, int]], replace: bool,
                         layer_key, exclude: Optional[Dict[EdgeType, Tensor]] = None
                         ) -> Tuple[Dict[str, Tensor], List[HeteroBlock]]:
    """Sample ``len(fanouts)`` layers (``fanouts[i]`` for block ``i``, input layer first) of
    ``graph`` from ``seeds`` (``{ntype: distinct ids}`` of the graph's idtype, all on the CPU or
    all on one GPU). ``layer_key(layer)`` gives each layer's key; each edge type's draws are keyed
    by it and the edge type's position, so results are reproducible and the CPU and GPU agree.

    ``exclude``: ``{etype: ascending CSC positions}`` removed before the draws, or ``None``.

    Returns ``(input_nodes, blocks)``: ``{ntype: ids}`` of the first block's source nodes and the
    blocks, input layer first.
    """
    from ._sampler_cpu import relabel_rows_cpu, sample_layer
    from ._sampler_cuda import relabel_first_appearance, sample_layer_cuda

    etypes = graph.canonical_etypes
    dst = dict(seeds)
    blocks: List[HeteroBlock] = []
    for layer in range(len(fanouts)):
        fan = fanouts[-1 - layer]
        key = layer_key(layer)
        # Per edge type: [2, E] edges (row 0 global source ids, row 1 local destination ids) and
        # the edge ids.
        raw: Dict[EdgeType, Tuple[Tensor, Tensor]] = {}
        for i, et in enumerate(etypes):
            s, _, d = et
            ids = dst.get(d)
            if ids is None or ids.numel() == 0 or fan.get(et, 0) == 0:
                continue
            g = graph[et]
            ekey = _etype_key(key, i)
            ex = None if exclude is None else exclude.get(et)
            if ids.is_cuda:
                _, ei, eid = sample_layer_cuda(g, ids, fan[et], replace, ekey, check=False,
                                               relabel=False, excl=ex)
            else:
                ip, ix = _plain(g.indptr).numpy(), _plain(g.indices).numpy()
                eids = None if g.edge_ids is None else _plain(g.edge_ids).numpy()
                _, ei_np, eid_np, _ = sample_layer(ip, ix, eids, ids.numpy(), fan[et], replace,
                                                   ekey, None, relabel=False,
                                                   excl=None if ex is None else ex.cpu().numpy())
                ei, eid = torch.from_numpy(ei_np), torch.from_numpy(eid_np)
            raw[et] = (ei, eid)
        # Relabel once per source node type: that type's destination nodes first (DGL's
        # to_block), then new sources in edge order over the edge types.
        src_types = list(dict.fromkeys(list(dst) + [et[0] for et in raw]))
        src_nodes: Dict[str, Tensor] = {}
        edge_index: Dict[EdgeType, Tensor] = {}
        for s in src_types:
            mine = [et for et in raw if et[0] == s]
            first = dst.get(s)
            if first is None:
                first = raw[mine[0]][0][0, :0].to(graph.idtype)
            if not first.is_cuda:
                # Sequential relabel over a node-sized map, row 0 of every edge type's [2, E]
                # int64 edges turned into local ids in place (no concatenation, no stacking).
                scratch = graph._take_scratch(s)
                try:
                    rows = [raw[et][0].numpy()[0] for et in mine]
                    nodes_np = relabel_rows_cpu(first.numpy(), rows, scratch)
                finally:
                    graph._give_scratch(s, scratch)
                src_nodes[s] = torch.from_numpy(nodes_np)
                for et in mine:
                    edge_index[et] = raw[et][0]
                continue
            cat = torch.cat([raw[et][0][0] for et in mine]) if mine else first[:0]
            nodes, local, _ = relabel_first_appearance(first, cat)
            src_nodes[s] = nodes
            pos = 0
            for et in mine:
                k = raw[et][0].shape[1]
                edge_index[et] = torch.stack([local[pos:pos + k], raw[et][0][1].to(torch.int64)])
                pos += k
        any_ids = next(iter(dst.values()))
        empty = torch.empty((2, 0), dtype=torch.int64, device=any_ids.device)
        full_index = {et: edge_index.get(et, empty) for et in etypes
                      if et[0] in src_nodes and et[2] in dst}
        edge_ids = {et: raw[et][1] if et in raw else empty[0] for et in full_index}
        blocks.append(HeteroBlock(src_nodes, dst, full_index, edge_ids))
        dst = src_nodes
    blocks.reverse()
    return dst, blocks
