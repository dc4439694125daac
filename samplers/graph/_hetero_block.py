"""One sampled layer of a heterogeneous graph: :class:`HeteroBlock`, with DGL's heterogeneous MFG
accessors (``num_src_nodes(ntype)``, ``srcdata[name][ntype]``) and PyG's ``edge_index`` per edge type
(the ``edge_index_dict`` that ``HeteroConv`` takes)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ._hetero_csc import EdgeType

__all__ = ["HeteroBlock"]

Tensor = torch.Tensor
DeviceLike = Union[str, int, torch.device]


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
