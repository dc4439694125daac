"""The seed (or negative) edges of a link-prediction batch: :class:`PairGraph`, DGL's
``pair_graph`` / ``neg_pair_graph`` of ``(input_nodes, pair_graph, neg_pair_graph, blocks)``."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from ._hetero_csc import EdgeType

__all__ = ["PairGraph"]

Tensor = torch.Tensor


class PairGraph:
    """The seed (or negative) edges of a batch over the batch's compacted node set, with DGL's
    accessors: ``edges(etype)`` gives local ``(u, v)``, ``ndata["_ID"]`` the global node ids
    (``{ntype: ids}`` for heterogeneous graphs), ``edata["_ID"]`` the global edge ids (seed edges
    only), :attr:`edge_index` ``[2, E]`` (or ``{etype: [2, E]}``) for PyG-style scoring."""

    def __init__(self, nodes: Union[Tensor, Dict[str, Tensor]],
                 edge_index: Union[Tensor, Dict[EdgeType, Tensor]],
                 edge_ids: Union[None, Tensor, Dict[EdgeType, Tensor]] = None):
        self.ndata = {"_ID": nodes}
        self._edge_index = edge_index
        self.edata = {} if edge_ids is None else {"_ID": edge_ids}
        self.is_hetero = isinstance(nodes, dict)

    @property
    def edge_index(self):
        return self._edge_index

    @property
    def canonical_etypes(self) -> List[EdgeType]:
        return list(self._edge_index) if self.is_hetero else []

    def _ei(self, etype: Any) -> Tensor:
        if not self.is_hetero:
            return self._edge_index
        if etype is None:
            if len(self._edge_index) != 1:
                raise TypeError("the pair graph has several edge types: pass etype")
            return next(iter(self._edge_index.values()))
        if isinstance(etype, tuple):
            return self._edge_index[etype]
        hits = [et for et in self._edge_index if et[1] == etype]
        if len(hits) != 1:
            raise KeyError(f"edge type {etype!r} names {len(hits)} edge types of the pair graph")
        return self._edge_index[hits[0]]

    def edges(self, etype: Any = None) -> Tuple[Tensor, Tensor]:
        ei = self._ei(etype)
        return ei[0], ei[1]

    def num_edges(self, etype: Any = None) -> int:
        if self.is_hetero and etype is None:
            return sum(int(e.shape[1]) for e in self._edge_index.values())
        return int(self._ei(etype).shape[1])

    def num_nodes(self, ntype: Optional[str] = None) -> int:
        nodes = self.ndata["_ID"]
        if not self.is_hetero:
            return int(nodes.numel())
        if ntype is None:
            return sum(int(v.numel()) for v in nodes.values())
        return int(nodes[ntype].numel()) if ntype in nodes else 0

    def to(self, device, non_blocking: bool = False) -> "PairGraph":
        mv = (lambda x: None if x is None else
              ({k: v.to(device, non_blocking=non_blocking) for k, v in x.items()} if isinstance(x, dict)
               else x.to(device, non_blocking=non_blocking)))
        return PairGraph(mv(self.ndata["_ID"]), mv(self._edge_index), mv(self.edata.get("_ID")))

    def __repr__(self) -> str:
        return f"PairGraph(num_nodes={self.num_nodes()}, num_edges={self.num_edges()})"
