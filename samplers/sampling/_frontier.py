"""Hop-by-hop neighbour sampling with PyG's semantics, on this library's kernels.

DGL's blocks sample every destination node of every layer again (a seed is sampled at hop 1 and
once more, as a source of block 2, at hop 2). PyG's ``NeighborLoader`` (pyg-lib's
``neighbor_sample``) samples each node once: hop ``k`` draws the in-neighbours of the nodes that
hop ``k - 1`` *added*, and the batch is one subgraph whose nodes are numbered in order of first
appearance (seeds first, then each hop's new nodes) and whose edges are every hop's edges in hop
order. This module does exactly that, typed (``{node_type: ids}``, one CSC per canonical edge
type; a homogeneous graph is one node type and one edge type), on the CPU (Numba kernels) or on a
GPU (the CUDA kernels over UVA or GPU memory), with the same counter-based draws as
:class:`~samplers.NeighborSampler`: keyed by ``(batch key, hop, edge type, node)``, so a batch is
reproducible and does not depend on threads or on the device.

Nothing here imports PyG; :mod:`samplers.pyg` packages the result as PyG's ``SamplerOutput``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..graph._csc import CSCGraph, _plain
from ..graph._hetero_csc import EdgeType, HeteroCSCGraph

__all__ = ["HopSample", "Temporal", "sample_hops", "raw_layer", "relabel_typed", "hop_key"]

Tensor = torch.Tensor


def hop_key(key: int, hop: int, etype_index: int) -> int:
    """The draw key of one edge type at one hop of a batch keyed ``key``: the key the block
    sampler gives that edge type at that layer."""
    from ._hetero import _etype_key
    from ._neighbor import NeighborSampler

    return _etype_key(NeighborSampler._layer_key(key, hop), etype_index)


def raw_layer(g: CSCGraph, ids: Tensor, fanout: int, replace: bool, key: int
              ) -> Tuple[Tensor, Tensor, Tensor]:
    """Up to ``fanout`` in-neighbours of each of ``ids`` (distinct, the graph's idtype, on the CPU
    or a GPU), not relabelled: ``(src, dst_pos, eid)``, the global source id, the position in
    ``ids`` of the destination and the global edge id of every sampled edge (all int64, fresh
    tensors the caller may modify in place), grouped by destination, on ``ids``' device."""
    from ._layer_cpu import sample_layer
    from ._layer_cuda import sample_layer_cuda

    if ids.is_cuda:
        _, ei, eid = sample_layer_cuda(g, ids, fanout, replace, key, check=False, relabel=False)
        return ei[0], ei[1], eid
    ip, ix = _plain(g.indptr).numpy(), _plain(g.indices).numpy()
    eids = None if g.edge_ids is None else _plain(g.edge_ids).numpy()
    _, ei_np, eid_np, _ = sample_layer(ip, ix, eids, ids.numpy(), fanout, replace, key, None,
                                       relabel=False)
    return torch.from_numpy(ei_np[0]), torch.from_numpy(ei_np[1]), torch.from_numpy(eid_np)


def _raw_layer_temporal(g: CSCGraph, ids: Tensor, seed_time: np.ndarray,
                        node_time: Optional[np.ndarray], fanout: int, replace: bool, last: bool,
                        key: int, edge_time: Optional[np.ndarray] = None
                        ) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`raw_layer` keeping only in-edges no newer than each seed's time (CPU): an in-edge
    is as old as its source (``node_time``) or as itself (``edge_time``, in CSC order)."""
    from ._layer_cpu import sample_layer_temporal

    if ids.is_cuda:
        raise NotImplementedError("temporal sampling runs on the CPU sampler")
    ip, ix = _plain(g.indptr).numpy(), _plain(g.indices).numpy()
    eids = None if g.edge_ids is None else _plain(g.edge_ids).numpy()
    src, dst, eid = sample_layer_temporal(ip, ix, eids, ids.numpy(), seed_time, node_time,
                                          fanout, replace, last, key, edge_time)
    return torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(eid)


def _raw_layer_weighted(g: CSCGraph, ids: Tensor, weight: np.ndarray, fanout: int,
                        replace: bool, key: int) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`raw_layer` drawing in-edges in proportion to ``weight`` (CSC order; CPU)."""
    from ._layer_cpu import sample_layer_weighted

    if ids.is_cuda:
        raise NotImplementedError("weighted sampling runs on the CPU sampler")
    ip, ix = _plain(g.indptr).numpy(), _plain(g.indices).numpy()
    eids = None if g.edge_ids is None else _plain(g.edge_ids).numpy()
    src, dst, eid = sample_layer_weighted(ip, ix, eids, ids.numpy(), weight, fanout, replace, key)
    return torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(eid)


def relabel_typed(graph: HeteroCSCGraph, ntype: str, first: Tensor, rest: Tensor
                  ) -> Tuple[Tensor, Tensor]:
    """``(nodes, local)``: ``first`` (distinct) followed by the new nodes of ``rest`` in order of
    first appearance, and the position in ``nodes`` of every entry of ``rest`` (int64), on the
    inputs' device (CPU: a sequential map over a node-sized scratch array; GPU: torch ops)."""
    from ._layer_cpu import relabel_cpu
    from ._layer_cuda import relabel_first_appearance

    rest = rest.to(first.dtype)
    if first.is_cuda:
        nodes, local, _ = relabel_first_appearance(first, rest)
        return nodes, local
    scratch = graph._take_scratch(ntype)
    try:
        nodes_np, local_np = relabel_cpu(first.numpy(), rest.numpy(), scratch)
    finally:
        graph._give_scratch(ntype, scratch)
    return torch.from_numpy(nodes_np), torch.from_numpy(local_np)


@dataclass
class HopSample:
    """One sampled subgraph, typed. ``node[t]``: global ids of type ``t`` (seeds first, then each
    hop's new nodes; the graph's idtype). ``row[et]`` / ``col[et]``: local source / destination of
    every edge of type ``et`` (int64, indices into ``node[src type]`` / ``node[dst type]``), hop
    by hop; ``edge[et]``: their global edge ids (int64). ``num_sampled_nodes[t]``: nodes of type
    ``t`` added at each hop (entry 0: the seeds); ``num_sampled_edges[et]``: edges per hop
    (``None`` for an induced subgraph, whose edges are not per hop). ``batch[t]``: with
    ``disjoint``, the tree (seed position) of every node of ``node[t]`` (int64), else ``None``."""
    node: Dict[str, Tensor]
    row: Dict[EdgeType, Tensor]
    col: Dict[EdgeType, Tensor]
    edge: Dict[EdgeType, Tensor]
    num_sampled_nodes: Dict[str, List[int]]
    num_sampled_edges: Optional[Dict[EdgeType, List[int]]] = field(default=None)
    batch: Optional[Dict[str, Tensor]] = field(default=None)


@dataclass
class Temporal:
    """PyG's temporal sampling, node-level or edge-level. Node-level: ``node_time[t]`` (a NumPy
    array per node type, or ``None``: that type's nodes are always eligible). Edge-level
    (``node_time`` empty): ``edge_time[et]`` (one time per CSC position of edge type ``et``, or
    ``None``: that type's in-edges are always eligible). ``tree_time[b]`` is the time of tree
    ``b`` (its seed's, same dtype), and the strategy (``last``: the most recent, else
    uniform)."""
    node_time: Dict[str, Optional[np.ndarray]]
    tree_time: np.ndarray
    last: bool = False
    edge_time: Optional[Dict[EdgeType, Optional[np.ndarray]]] = None


def sample_hops(graph: HeteroCSCGraph, seeds: Dict[str, Tensor],
                num_neighbors: Dict[EdgeType, List[int]], replace: bool, key: int,
                induced: bool = False, disjoint: bool = False,
                temporal: Optional[Temporal] = None,
                weights: Optional[Dict[EdgeType, np.ndarray]] = None) -> HopSample:
    """Sample ``len(num_neighbors[et])`` hops from ``seeds`` (``{node_type: distinct ids}`` of the
    graph's idtype, all on the CPU or all on one GPU). ``num_neighbors[et][k]``: neighbours per
    node over edge type ``et`` at hop ``k`` (``-1``: all, ``0``: none). ``induced``: after the
    nodes are sampled, keep every edge of the graph between them instead of the sampled edges
    (PyG's ``subgraph_type="induced"``). ``disjoint``: every seed grows its own tree (PyG's
    ``disjoint=True``): a node reached from two seeds appears twice, ``batch`` says whose it is,
    and seeds need not be distinct. (A node that appears in several trees at one hop draws the
    same neighbours in each: draws are keyed by node.)
    """
    if disjoint and induced:
        raise NotImplementedError("disjoint sampling of induced subgraphs is not supported")
    if temporal is not None and not disjoint:
        raise ValueError("temporal sampling is disjoint (each seed has its own time)")
    if temporal is not None and weights:
        raise NotImplementedError("weighted temporal sampling is not supported")
    if temporal is not None and temporal.edge_time is not None \
            and any(t is not None for t in temporal.node_time.values()):
        raise ValueError("temporal sampling is node-level or edge-level, not both (as pyg-lib)")
    etypes = graph.canonical_etypes
    num_hops = max((len(v) for v in num_neighbors.values()), default=0)
    any_ids = next(iter(seeds.values()))
    dev, idtype = any_ids.device, graph.idtype
    node: Dict[str, Tensor] = {nt: seeds[nt] if nt in seeds else torch.empty(0, dtype=idtype, device=dev)
                               for nt in graph.ntypes}
    lo = {nt: 0 for nt in graph.ntypes}
    hi = {nt: int(node[nt].numel()) for nt in graph.ntypes}
    nsn = {nt: [hi[nt]] for nt in graph.ntypes}
    tree = {nt: torch.arange(hi[nt], device=dev) for nt in graph.ntypes} if disjoint else None
    rows: Dict[EdgeType, List[Tensor]] = {et: [] for et in etypes}
    cols: Dict[EdgeType, List[Tensor]] = {et: [] for et in etypes}
    eids: Dict[EdgeType, List[Tensor]] = {et: [] for et in etypes}
    nse: Dict[EdgeType, List[int]] = {et: [] for et in etypes}
    for hop in range(num_hops):
        raw: Dict[EdgeType, Tuple[Tensor, Tensor, Tensor]] = {}
        for i, et in enumerate(etypes):
            d = et[2]
            fan = num_neighbors[et][hop] if hop < len(num_neighbors[et]) else 0
            if fan == 0 or hi[d] == lo[d]:
                continue
            if weights is not None and weights.get(et) is not None:
                src, dst_pos, eid = _raw_layer_weighted(graph[et], node[d][lo[d]:hi[d]],
                                                        weights[et], fan, replace,
                                                        hop_key(key, hop, i))
            elif temporal is None:
                src, dst_pos, eid = raw_layer(graph[et], node[d][lo[d]:hi[d]], fan, replace,
                                              hop_key(key, hop, i))
            else:
                edge_time = None if temporal.edge_time is None else temporal.edge_time.get(et)
                src, dst_pos, eid = _raw_layer_temporal(
                    graph[et], node[d][lo[d]:hi[d]], temporal.tree_time[tree[d][lo[d]:hi[d]].numpy()],
                    None if edge_time is not None else temporal.node_time.get(et[0]), fan,
                    replace, temporal.last, hop_key(key, hop, i), edge_time)
            if lo[d]:
                dst_pos += lo[d]   # positions in node[d]: the frontier starts at lo[d]
            raw[et] = (src, dst_pos, eid)
            if disjoint:   # the source joins its destination's tree
                raw[et] = raw[et] + (tree[d][raw[et][1]],)
        new_hi = dict(hi)
        for s in dict.fromkeys(et[0] for et in raw):
            mine = [et for et in raw if et[0] == s]
            if not disjoint and not node[s].is_cuda:
                # CPU: every edge type's sources relabelled in place, one map (no concatenation)
                node[s] = _relabel_rows(graph, s, node[s], [raw[et][0] for et in mine])
                new_hi[s] = int(node[s].numel())
                for et in mine:
                    rows[et].append(raw[et][0])
                    cols[et].append(raw[et][1])
                    eids[et].append(raw[et][2])
                continue
            cat = torch.cat([raw[et][0] for et in mine]) if len(mine) > 1 else raw[mine[0]][0]
            if disjoint:
                trees = torch.cat([raw[et][3] for et in mine])
                node[s], tree[s], local = _relabel_disjoint(graph.num_nodes(s), node[s], tree[s],
                                                            cat, trees)
            else:
                node[s], local = relabel_typed(graph, s, node[s], cat)
            new_hi[s] = int(node[s].numel())
            pos = 0
            for et in mine:
                k = raw[et][0].numel()
                rows[et].append(local[pos:pos + k])
                cols[et].append(raw[et][1])
                eids[et].append(raw[et][2])
                pos += k
        for et in etypes:
            nse[et].append(int(raw[et][0].numel()) if et in raw else 0)
        for nt in graph.ntypes:
            nsn[nt].append(new_hi[nt] - hi[nt])
            lo[nt], hi[nt] = hi[nt], new_hi[nt]
    empty = torch.empty(0, dtype=torch.int64, device=dev)
    if induced:
        out_row, out_col, out_edge = _induced_edges(graph, node)
        return HopSample(node, out_row, out_col, out_edge, nsn, None)

    def cat(parts: List[Tensor]) -> Tensor:
        return torch.cat(parts) if len(parts) > 1 else (parts[0] if parts else empty)

    return HopSample(node, {et: cat(rows[et]) for et in etypes},
                     {et: cat(cols[et]) for et in etypes}, {et: cat(eids[et]) for et in etypes},
                     nsn, nse, tree)


def _relabel_rows(graph: HeteroCSCGraph, ntype: str, first: Tensor, rows: List[Tensor]) -> Tensor:
    """CPU :func:`relabel_typed` of ``first`` and ``rows`` (int64), the rows turned into local ids
    in place; returns the nodes."""
    from ._layer_cpu import relabel_rows_cpu

    scratch = graph._take_scratch(ntype)
    try:
        nodes = relabel_rows_cpu(first.numpy(), [r.numpy() for r in rows], scratch)
    finally:
        graph._give_scratch(ntype, scratch)
    return torch.from_numpy(nodes)


def _relabel_disjoint(n: int, nodes: Tensor, trees: Tensor, src: Tensor, src_trees: Tensor
                      ) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`relabel_typed` over ``(tree, node)`` pairs: ``(nodes, trees, local)``."""
    from ._layer_cuda import relabel_first_appearance

    span = max(n, 1)
    first = trees * span + nodes.to(torch.int64)
    rest = src_trees * span + src.to(torch.int64)
    keys, local, _ = relabel_first_appearance(first, rest)
    return (keys % span).to(nodes.dtype), keys // span, local


def _induced_edges(graph: HeteroCSCGraph, node: Dict[str, Tensor]
                   ) -> Tuple[Dict[EdgeType, Tensor], Dict[EdgeType, Tensor], Dict[EdgeType, Tensor]]:
    """Every edge of ``graph`` whose two endpoints are in ``node``, as local ``(row, col, edge)``,
    grouped by destination in ``node`` order."""
    row, col, edge = {}, {}, {}
    for et in graph.canonical_etypes:
        s, _, d = et
        src, dst_pos, eid = raw_layer(graph[et], node[d], -1, False, 0)
        ids = node[s].to(torch.int64)
        if ids.numel() == 0 or src.numel() == 0:
            row[et] = col[et] = edge[et] = torch.empty(0, dtype=torch.int64, device=src.device)
            continue
        srt, perm = torch.sort(ids)
        at = torch.searchsorted(srt, src.to(torch.int64)).clamp_(max=srt.numel() - 1)
        keep = srt[at] == src.to(torch.int64)
        row[et] = perm[at[keep]]
        col[et] = dst_pos[keep]
        edge[et] = eid[keep]
    return row, col, edge
