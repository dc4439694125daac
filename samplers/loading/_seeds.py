"""Loader seeds, normalised once: what a seed is (a node or an edge id, of which type) and how a
permutation of them becomes batches.

Every loader front-end (node or edge seeds, homogeneous or typed) hands its ``indices`` to
:class:`SeedSet`, which validates them against what they index (nodes or edges, per type) before
any work starts and keeps one internal form: a 1-D id tensor plus, for typed seeds, a type index
per seed. The loading core then permutes positions and cuts batches without ever branching on
"homogeneous or not"; :meth:`SeedSet.batch` turns a batch back into what the sampler expects (a
tensor, or DGL's ``{type: ids}`` dict holding the types present in the batch, in key order).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from . import _dgl_compat

__all__ = ["SeedSet", "seed_kind"]

Tensor = torch.Tensor
Batch = Union[Tensor, Dict[Any, Tensor]]


def seed_kind(graph_sampler: Any) -> str:
    """``"edge"`` for samplers whose seeds are edge ids (DGL's ``as_edge_prediction_sampler``, or
    a sampler that declares ``seed_kind = "edge"``), else ``"node"``."""
    declared = getattr(graph_sampler, "seed_kind", None)
    if declared in ("node", "edge"):
        return declared
    dgl = sys.modules.get("dgl")
    cls = getattr(getattr(dgl, "dataloading", None), "EdgePredictionSampler", None) if dgl else None
    if cls is not None and isinstance(graph_sampler, cls):
        return "edge"
    return "node"


def _id_tensor(x: Any, name: str) -> Tensor:
    """``x`` as a 1-D int32/int64 CPU-or-device tensor; TypeError/ValueError/IndexError naming
    ``name`` for masks, floats, other shapes and unsigned values beyond int64."""
    if isinstance(x, np.ndarray):
        if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"DataLoader: {name} must hold integer ids, got dtype {x.dtype}"
                            + (" (a boolean mask: pass mask.nonzero()[0])" if x.dtype == np.bool_ else ""))
        if x.dtype.kind == "u" and x.size and int(x.max()) > np.iinfo(np.int64).max:
            raise IndexError(f"DataLoader: {name} holds {int(x.max())}, beyond any id")
        x = torch.from_numpy(np.ascontiguousarray(x).astype(np.int64, copy=False))
    elif not isinstance(x, Tensor):
        if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
            raise TypeError(f"DataLoader: {name} must be a tensor, array or sequence of ids, got "
                            f"{type(x).__name__}")
        if any(isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) for i in x):
            raise TypeError(f"DataLoader: {name} must hold integer ids, got a sequence with "
                            f"non-integers")
        x = torch.as_tensor(list(x), dtype=torch.int64)
    if x.dtype == torch.bool:
        raise TypeError(f"DataLoader: {name} must hold integer ids, got a boolean mask; pass "
                        f"mask.nonzero().squeeze(1)")
    if x.is_floating_point() or x.is_complex() or x.dtype not in (
            torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64):
        raise TypeError(f"DataLoader: {name} must hold integer ids, got dtype {x.dtype}")
    if x.dim() != 1:
        raise ValueError(f"DataLoader: {name} must be 1-D, got shape {tuple(x.shape)}")
    if x.dtype not in (torch.int32, torch.int64):
        x = x.to(torch.int64)
    return x.contiguous()


def _check_range_and_distinct(x: Tensor, count: Optional[int], name: str, what: str) -> None:
    if not x.numel():
        return
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or (count is not None and hi >= count):
        raise IndexError(f"DataLoader: {name} must be {what} ids in [0, {count}), got "
                         f"{lo if lo < 0 else hi}")
    # Decided once, here: a repeated seed would make some shuffles put it twice in one batch
    # (samplers need distinct seeds) and others not, failing mid-training at random.
    srt, order = torch.sort(x.cpu(), stable=True)
    rep = torch.nonzero(srt[1:] == srt[:-1])
    if rep.numel():
        j = int(rep[0, 0])
        raise ValueError(f"DataLoader: {name} must be distinct {what} ids (every seed once per "
                         f"epoch), got {what} {int(srt[j])} at positions {int(order[j])} and "
                         f"{int(order[j + 1])}; pass torch.unique({name.split('[')[0]})")


def _count(graph: Any, kind: str, key: Any) -> Optional[int]:
    """Number of nodes / edges (of type ``key``; ``None`` for untyped) of ``graph``, if known."""
    if _dgl_compat.is_dgl_graph(graph):
        if key is None:
            if kind == "node" and len(graph.ntypes) > 1:
                raise TypeError("DataLoader: the graph has several node types "
                                f"{list(graph.ntypes)}: pass indices as a dict {{node_type: ids}}")
            if kind == "edge" and len(graph.canonical_etypes) > 1:
                raise TypeError("DataLoader: the graph has several edge types: pass indices as a "
                                "dict {edge_type: edge ids}")
            return int(graph.num_nodes() if kind == "node" else graph.num_edges())
        try:
            return int(graph.num_nodes(key) if kind == "node" else graph.num_edges(key))
        except Exception as exc:  # noqa: BLE001 - DGL raises DGLError for an unknown type
            types = list(graph.ntypes) if kind == "node" else list(graph.canonical_etypes)
            raise KeyError(f"DataLoader: indices has {kind} type {key!r}, which the graph does not "
                           f"have (its {kind} types: {types})") from exc
    from ..graph._hetero_csc import HeteroCSCGraph

    if isinstance(graph, HeteroCSCGraph):
        try:
            if kind == "node":
                return graph.num_nodes(key)
            return graph.num_edges(graph.to_canonical_etype(key)) if key is not None else graph.num_edges()
        except KeyError as exc:
            raise KeyError(f"DataLoader: indices has {kind} type {key!r}, which the graph does not "
                           f"have ({exc.args[0]})") from None
        except TypeError:
            raise TypeError(f"DataLoader: the graph has several node types {graph.ntypes}: pass "
                            f"indices as a dict {{node_type: ids}}") from None
    if key is not None:
        raise TypeError(f"DataLoader: dict indices ({{type: ids}}) need a heterogeneous graph "
                        f"(samplers.HeteroCSCGraph or a DGL heterograph); got {type(graph).__name__}")
    if kind == "node":
        return _dgl_compat.graph_num_nodes(graph)
    n = getattr(graph, "num_edges", None)
    n = n() if callable(n) else n
    return int(n) if isinstance(n, (int, np.integer)) else None


def _idtype(graph: Any) -> Optional[torch.dtype]:
    dt = getattr(graph, "idtype", None)
    return dt if dt in (torch.int32, torch.int64) else None


class SeedSet:
    """A loader's seeds, validated once against what they index, in one internal form.

    Parameters
    ----------
    indices : tensor, array, sequence of ids, or dict ``{type: ids}``
        Seed node ids (``kind="node"``) or edge ids (``kind="edge"``); a dict gives them per node
        type / edge type (DGL's form for heterographs).
    graph : Any
        The graph they index (``CSCGraph`` or ``DGLGraph``).
    kind : str
        ``"node"`` or ``"edge"``.
    count : int, optional
        What ``indices`` (not a dict) must lie below, when the front-end knows it better than the
        graph does (the nodes of one type of a heterogeneous graph, or the rows of a table of seed
        edges); ``None``: the graph's node / edge count.
    name : str
        The argument named in error messages.
    loader : str
        The loader named in error messages.
    """

    def __init__(self, indices: Any, graph: Any, kind: str, count: Optional[int] = None,
                 name: str = "indices", loader: str = "DataLoader") -> None:
        if kind not in ("node", "edge"):
            raise ValueError(f"kind must be 'node' or 'edge', got {kind!r}")
        self.kind = kind
        what = "node" if kind == "node" else "edge"
        idtype = _idtype(graph)
        try:
            self._init(indices, graph, kind, what, idtype, count, name)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            if loader != "DataLoader" and exc.args and isinstance(exc.args[0], str) \
                    and exc.args[0].startswith("DataLoader: "):
                exc.args = (f"{loader}: " + exc.args[0][len("DataLoader: "):],) + exc.args[1:]
            raise

    def _init(self, indices: Any, graph: Any, kind: str, what: str, idtype: Optional[torch.dtype],
              count: Optional[int], name: str) -> None:
        if isinstance(indices, Mapping):
            if not indices:
                raise ValueError("DataLoader: indices is an empty dict")
            self.keys: Optional[List[Any]] = list(indices.keys())
            parts, types = [], []
            for i, (key, value) in enumerate(indices.items()):
                name = f"indices[{key!r}]"
                x = _id_tensor(value, name)
                _check_range_and_distinct(x, _count(graph, kind, key), name, what)
                x = x.to(idtype or torch.int64)
                parts.append(x.cpu())
                types.append(torch.full((x.numel(),), i, dtype=torch.int64))
            self.ids = torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)
            self.type_ids: Optional[Tensor] = torch.cat(types)
            self.user = {k: p for k, p in zip(self.keys, parts)}
        else:
            self.keys = None
            x = _id_tensor(indices, name)
            n = _count(graph, kind, None) if count is None else int(count)
            _check_range_and_distinct(x, n, name, what)
            if idtype is not None:
                x = x.to(idtype)   # in range: the sampler needs no cast or check
            self.ids, self.type_ids, self.user = x, None, x

    def __len__(self) -> int:
        return int(self.ids.numel())

    def ids_on(self, device: torch.device) -> Tensor:
        """The ids on ``device`` (the type ids stay on the CPU: :meth:`batch` splits by them)."""
        return self.ids.to(device)

    def batch(self, ids: Tensor, positions: Tensor) -> Batch:
        """What the sampler gets for one batch: the ids, or ``{type: ids}`` for the types present
        in the batch, in key order, each type's ids in batch order (as DGL's loader does).

        ``ids``: the batch's ids (on the sampling device); ``positions``: their positions in this
        set (CPU). The split by type is computed from the CPU type ids, so GPU ids are split
        without a host sync (one small host-to-device copy of indices per type)."""
        if self.type_ids is None:
            return ids
        out: Dict[Any, Tensor] = {}
        t = self.type_ids.index_select(0, positions.to(torch.int64))
        for i in sorted(torch.unique(t).tolist()):
            sel = torch.nonzero(t == i).flatten()
            out[self.keys[i]] = ids.index_select(
                0, sel.to(ids.device, non_blocking=ids.device.type == "cuda"))
        return out

    def count(self, batch: Batch) -> int:
        """Number of seeds in a batch."""
        return sum(v.numel() for v in batch.values()) if isinstance(batch, dict) else batch.numel()
