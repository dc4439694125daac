"""Edge ids of a CSC graph: each edge's endpoints and CSC position (built once per graph), and
excluded edge ids turned into the ascending CSC positions the sampling kernels skip."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, Tuple

import torch

from ..graph._csc import CSCGraph, _plain

__all__ = ["edge_endpoints", "excluded_positions"]

Tensor = torch.Tensor

_endpoints: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_endpoints_lock = threading.Lock()


def edge_endpoints(g: CSCGraph) -> Tuple[Tensor, Tensor, Tensor]:
    """``(src, dst, pos)`` of every edge id of ``g``: its endpoints and its position in the CSC
    arrays (int64 CPU tensors indexed by edge id), built once per graph from its CSC arrays."""
    with _endpoints_lock:
        hit = _endpoints.get(g)
    if hit is not None:
        return hit
    ip = _plain(g.indptr).cpu().long()
    ix = _plain(g.indices).cpu().long()
    deg = ip[1:] - ip[:-1]
    dst_by_pos = torch.repeat_interleave(torch.arange(deg.numel()), deg)
    if g.edge_ids is None:
        src, dst, pos = ix, dst_by_pos, torch.arange(ix.numel())
    else:
        eids = _plain(g.edge_ids).cpu().long()
        src = torch.empty_like(ix)
        dst = torch.empty_like(ix)
        pos = torch.empty_like(ix)
        src[eids] = ix
        dst[eids] = dst_by_pos
        pos[eids] = torch.arange(ix.numel())
    with _endpoints_lock:
        _endpoints[g] = (src, dst, pos)
    return src, dst, pos


def excluded_positions(graph: Any, excluded: Dict[Any, Tensor], hetero: bool,
                       device: torch.device) -> Dict[Any, Tensor]:
    """Excluded edge ids ``{etype: ids}`` (key ``None`` for a homogeneous graph) -> ascending,
    distinct CSC positions per edge type, on ``device``."""
    out = {}
    for et, eids in excluded.items():
        g = graph[et] if hetero else graph
        _, _, pos = edge_endpoints(g)
        e = eids.reshape(-1).cpu().long()
        if e.numel() and (int(e.min()) < 0 or int(e.max()) >= pos.numel()):
            bad = int(e.min()) if int(e.min()) < 0 else int(e.max())
            raise IndexError(f"excluded edge id {bad}{'' if et is None else f' of {et!r}'} is "
                             f"outside [0, {pos.numel()})")
        out[et] = torch.unique(pos[e]).to(device)   # sorted
    return out
