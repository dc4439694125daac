"""Block (message-flow graph): one bipartite layer of a sampled minibatch, DGL's MFG accessors plus
PyG's ``edge_index``."""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import torch

__all__ = ["Block", "NID", "EID"]

NID = "_ID"   # dgl.NID
EID = "_ID"   # dgl.EID

DeviceLike = Union[str, int, torch.device]


def _check_ids(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must have dtype torch.int32 or torch.int64, got {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    return t


class Block:
    """A bipartite graph from ``num_src_nodes()`` source nodes to ``num_dst_nodes()`` destination
    nodes, as DGL's blocks: the first ``num_dst_nodes()`` source nodes are the destination nodes.

    Parameters
    ----------
    src_nodes, dst_nodes : torch.Tensor
        Global ids of the source / destination nodes (int32 or int64); stored as
        ``srcdata["_ID"]`` and ``dstdata["_ID"]``.
    edge_src, edge_dst : torch.Tensor
        Local endpoints of every edge: indices into ``src_nodes`` / ``dst_nodes``. Stored as one
        ``[2, E]`` int64 tensor (:attr:`edge_index`), so both must be on one device.
    edge_ids : torch.Tensor, optional
        Global edge ids, stored as ``edata["_ID"]``.

    Examples
    --------
    >>> b = Block(torch.tensor([5, 7, 9]), torch.tensor([5]), torch.tensor([1, 2]), torch.tensor([0, 0]))
    >>> b.num_src_nodes(), b.num_dst_nodes(), b.num_edges()
    (3, 1, 2)
    >>> b.edge_index.tolist()
    [[1, 2], [0, 0]]
    """

    is_block = True

    def __init__(self, src_nodes: torch.Tensor, dst_nodes: torch.Tensor, edge_src: torch.Tensor,
                 edge_dst: torch.Tensor, edge_ids: Optional[torch.Tensor] = None):
        _check_ids(src_nodes, "src_nodes")
        _check_ids(dst_nodes, "dst_nodes")
        _check_ids(edge_src, "edge_src")
        _check_ids(edge_dst, "edge_dst")
        if edge_src.numel() != edge_dst.numel():
            raise ValueError(f"edge_src and edge_dst must have the same length, got "
                             f"{edge_src.numel()} and {edge_dst.numel()}")
        if dst_nodes.numel() > src_nodes.numel():
            raise ValueError(f"a block's source nodes start with its destination nodes, got "
                             f"{dst_nodes.numel()} dst nodes > {src_nodes.numel()} src nodes")
        if edge_src.device != edge_dst.device:
            raise ValueError(f"edge_src and edge_dst must be on one device, got {edge_src.device} "
                             f"and {edge_dst.device}")
        self._init(src_nodes, dst_nodes, torch.stack([edge_src.long(), edge_dst.long()]),
                   edge_ids)

    def _init(self, src_nodes: torch.Tensor, dst_nodes: torch.Tensor, edge_index: torch.Tensor,
              edge_ids: Optional[torch.Tensor]) -> None:
        self._num_src = int(src_nodes.numel())
        self._num_dst = int(dst_nodes.numel())
        self._edge_index = edge_index
        self.srcdata: Dict[str, torch.Tensor] = {NID: src_nodes}
        self.dstdata: Dict[str, torch.Tensor] = {NID: dst_nodes}
        self.edata: Dict[str, torch.Tensor] = {}
        if edge_ids is not None:
            if edge_ids.numel() != edge_index.shape[1]:
                raise ValueError(f"edge_ids must have one entry per edge ({edge_index.shape[1]}), "
                                 f"got {edge_ids.numel()}")
            self.edata[EID] = edge_ids

    @classmethod
    def _from_edge_index(cls, src_nodes: torch.Tensor, dst_nodes: torch.Tensor,
                         edge_index: torch.Tensor, edge_ids: Optional[torch.Tensor]) -> "Block":
        """Internal: a block around an existing ``[2, E]`` int64 tensor, no checks, no copy."""
        b = cls.__new__(cls)
        b._init(src_nodes, dst_nodes, edge_index, edge_ids)
        return b

    # ---------------------------------------------------------------- DGL accessors
    def num_src_nodes(self) -> int:
        """Number of source nodes."""
        return self._num_src

    def num_dst_nodes(self) -> int:
        """Number of destination nodes."""
        return self._num_dst

    def num_edges(self) -> int:
        """Number of edges."""
        return int(self._edge_index.shape[1])

    def number_of_src_nodes(self) -> int:
        return self._num_src

    def number_of_dst_nodes(self) -> int:
        return self._num_dst

    def number_of_edges(self) -> int:
        return self.num_edges()

    def edges(self, form: str = "uv") -> Union[Tuple[torch.Tensor, torch.Tensor],
                                                Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                                                torch.Tensor]:
        """Edges with local ids, int64, on :attr:`device` (DGL's ``edges``).

        ``form="uv"``: ``(src, dst)``; ``"all"``: ``(src, dst, local edge ids)``; ``"eid"``: the
        local edge ids ``0 .. E-1``.
        """
        if form not in ("uv", "all", "eid"):
            raise ValueError(f"form must be 'uv', 'all' or 'eid', got {form!r}")
        src, dst = self._edge_index[0], self._edge_index[1]
        if form == "uv":
            return src, dst
        eid = torch.arange(self.num_edges(), device=self.device)
        return eid if form == "eid" else (src, dst, eid)

    def in_degrees(self) -> torch.Tensor:
        """In-degree of every destination node (int64), on :attr:`device`."""
        return torch.bincount(self._edge_index[1], minlength=self._num_dst)

    @property
    def edge_index(self) -> torch.Tensor:
        """``[2, E]`` int64 tensor on :attr:`device`: row 0 = local source ids, row 1 = local
        destination ids (PyG layout; pass ``size=(num_src_nodes(), num_dst_nodes())``)."""
        return self._edge_index

    @property
    def device(self) -> torch.device:
        """Device of the edges."""
        return self._edge_index.device

    @property
    def idtype(self) -> torch.dtype:
        """dtype of the global node ids."""
        return self.srcdata[NID].dtype

    # ---------------------------------------------------------------- moves / conversion
    def to(self, device: DeviceLike, non_blocking: bool = False) -> "Block":
        """A block with every tensor (edges, ``srcdata``, ``dstdata``, ``edata``) on ``device``."""
        dev = torch.device(device)
        mv = lambda t: t.to(dev, non_blocking=non_blocking)  # noqa: E731
        b = Block.__new__(Block)
        b._num_src, b._num_dst = self._num_src, self._num_dst
        b._edge_index = mv(self._edge_index)
        b.srcdata = {k: mv(v) for k, v in self.srcdata.items()}
        b.dstdata = {k: mv(v) for k, v in self.dstdata.items()}
        b.edata = {k: mv(v) for k, v in self.edata.items()}
        return b

    def to_dgl(self):
        """This block as ``dgl.create_block`` output on the same device, with ``dgl.NID`` in
        ``srcdata``/``dstdata``, ``dgl.EID`` in ``edata`` and every other field copied over."""
        try:
            import dgl
        except ImportError as exc:
            raise ImportError("Block.to_dgl() needs DGL (pip install dgl); use Block's own accessors "
                              "or edge_index otherwise") from exc
        idtype = self.idtype
        src, dst = self._edge_index[0].to(idtype), self._edge_index[1].to(idtype)
        blk = dgl.create_block((src, dst), num_src_nodes=self._num_src,
                               num_dst_nodes=self._num_dst, idtype=idtype, device=self.device)
        for k, v in self.srcdata.items():
            blk.srcdata[dgl.NID if k == NID else k] = v
        for k, v in self.dstdata.items():
            blk.dstdata[dgl.NID if k == NID else k] = v
        for k, v in self.edata.items():
            blk.edata[dgl.EID if k == EID else k] = v
        return blk

    def __repr__(self) -> str:
        return (f"Block(num_src_nodes={self._num_src}, num_dst_nodes={self._num_dst}, "
                f"num_edges={self.num_edges()}, device={self.device})")
