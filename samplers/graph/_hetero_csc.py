"""Heterogeneous graphs without DGL: one CSC per canonical edge type.

:class:`HeteroCSCGraph` keeps one :class:`~samplers.CSCGraph` per canonical edge type
``(src_type, relation, dst_type)``: its in-edges per destination node, with source ids in the source
type's id space. Its sampled layers are :class:`~samplers.HeteroBlock` (``_hetero_block.py``); the
sampling itself is :func:`samplers.sampling._hetero.sample_hetero_layers`.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

from unified_tensor._numba_guard import reset_locks_after_fork

from ._csc import CSCGraph, _plain

__all__ = ["HeteroCSCGraph", "EdgeType"]

EdgeType = Tuple[str, str, str]
Tensor = torch.Tensor
DeviceLike = Union[str, int, torch.device]


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
        reset_locks_after_fork(self, "_scratch_lock")   # free again in a forked child

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
