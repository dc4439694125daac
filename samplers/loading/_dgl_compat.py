"""What the DataLoader needs to know about DGL objects, without importing DGL.

DGL is optional: every check here looks at ``sys.modules`` so that nothing imports DGL for a user
who never passed a DGL object (if an object is a ``DGLGraph``, DGL is already imported).

DGL's samplers (``dgl.dataloading.NeighborSampler(prefetch_node_feats=..., prefetch_labels=...)``)
do not copy features: they put ``dgl.LazyFeature`` placeholders into the frames of the blocks they
return, and DGL's DataLoader replaces each placeholder with the rows of the parent graph's column,
indexed by the block's ``dgl.NID`` (or ``dgl.EID``). :func:`resolve_lazy_features` does the same
replacement, with the rows fetched by our gather instead of DGL's.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterator, Optional

import torch

__all__ = ["is_dgl_graph", "graph_placement", "graph_num_nodes", "resolve_lazy_features",
           "iter_dgl_graphs"]


def _dgl():
    return sys.modules.get("dgl")


def is_dgl_graph(obj: Any) -> bool:
    """Whether ``obj`` is a ``dgl.DGLGraph`` (blocks included); never imports DGL."""
    dgl = _dgl()
    return dgl is not None and isinstance(obj, dgl.DGLGraph)


def graph_placement(graph: Any) -> str:
    """Where a graph's structure lives: ``"cpu"``, ``"pinned"`` (host memory, UVA-readable) or ``"cuda"``.

    Works for ``CSCGraph`` (its ``placement``), ``DGLGraph`` (``device`` / ``is_pinned()``) and any
    object with a ``device`` attribute; anything else counts as ``"cpu"``.
    """
    placement = getattr(graph, "placement", None)
    if isinstance(placement, str):
        return placement
    if is_dgl_graph(graph):
        if graph.device.type == "cuda":
            return "cuda"
        return "pinned" if graph.is_pinned() else "cpu"
    device = getattr(graph, "device", None)
    if isinstance(device, (torch.device, str)) and torch.device(device).type == "cuda":
        return "cuda"
    return "cpu"


def graph_device(graph: Any) -> Optional[torch.device]:
    """The CUDA device a graph lives on, or ``None`` for host-resident graphs."""
    if is_dgl_graph(graph):
        return graph.device if graph.device.type == "cuda" else None
    for name in ("device", "indptr"):
        value = getattr(graph, name, None)
        if isinstance(value, torch.Tensor):
            value = value.device
        if isinstance(value, (torch.device, str)) and torch.device(value).type == "cuda":
            return torch.device(value)
    return None


def graph_num_nodes(graph: Any) -> Optional[int]:
    """Number of nodes of a graph (``DGLGraph.num_nodes()`` or ``CSCGraph.num_nodes``), if known."""
    n = getattr(graph, "num_nodes", None)
    if callable(n):
        try:
            n = n()
        except TypeError:  # num_nodes(ntype) required, e.g. heterographs
            return None
    if isinstance(n, torch.Tensor) and n.numel() == 1:
        n = int(n)
    return n if isinstance(n, int) else None


def iter_dgl_graphs(obj: Any) -> Iterator[Any]:
    """Every ``DGLGraph`` in a (nested) tuple/list/dict returned by a sampler."""
    if is_dgl_graph(obj):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from iter_dgl_graphs(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from iter_dgl_graphs(item)


def resolve_lazy_features(result: Any,
                          fetch: Callable[[str, str, Any, torch.Tensor], torch.Tensor]) -> int:
    """Replace every ``dgl.LazyFeature`` column in the DGL graphs of ``result``, in place.

    Parameters
    ----------
    result : Any
        What ``graph_sampler.sample(parent, seeds)`` returned (DGL blocks / subgraphs, nested in
        tuples, lists or dicts).
    fetch : callable
        ``fetch(kind, name, type_, ids)`` with ``kind`` in ``{"node", "edge"}`` returns the rows
        ``ids`` of the parent's column ``name`` of node/edge type ``type_``, on the output device.

    Returns
    -------
    int
        How many columns were filled.
    """
    dgl = _dgl()
    if dgl is None:
        return 0
    from dgl.frame import LazyFeature  # DGL is imported already if result holds DGL graphs

    filled = 0
    for subg in iter_dgl_graphs(result):
        for kind, frames, types, id_name in (
                ("node", subg._node_frames, subg.ntypes, dgl.NID),
                ("edge", subg._edge_frames, subg.canonical_etypes, dgl.EID)):
            for tid, frame in enumerate(frames):
                default_ids = frame[id_name] if id_name in frame else None
                for key in list(frame.keys()):
                    column = frame._columns[key]
                    if not isinstance(column, LazyFeature):
                        continue
                    ids = column.id_ if column.id_ is not None else default_ids
                    if ids is None:
                        raise ValueError(
                            f"DataLoader: the sampler returned a LazyFeature {key!r} with no ids "
                            f"and the graph has no {id_name!r} column to take them from")
                    frame[key] = fetch(kind, column.name or key, types[tid], ids)
                    filled += 1
    # Top-level LazyFeature objects (DGL's `other_storages`) are not supported; they stay as is.
    return filled


def parent_column(parent: Any, kind: str, name: str, type_: Any) -> torch.Tensor:
    """The full column ``name`` of node/edge type ``type_`` of a DGL graph (a host or CUDA tensor)."""
    view = parent.nodes[type_] if kind == "node" else parent.edges[type_]
    if name not in view.data:
        raise KeyError(f"DataLoader: the sampler asked to prefetch {kind} feature {name!r} but the "
                       f"graph has no such {kind} column (has {sorted(view.data.keys())})")
    return view.data[name]
