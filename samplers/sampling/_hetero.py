"""Sampling layers of a :class:`~samplers.HeteroCSCGraph`: :func:`sample_hetero_layers` samples with
the homogeneous per-edge-type primitives (Numba on the CPU, ``cuda/sample.cu`` on the GPU) and
relabels once per node type, destination nodes first, as DGL's ``to_block`` does."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from ..graph._csc import _plain
from ..graph._hetero_block import HeteroBlock
from ..graph._hetero_csc import EdgeType, HeteroCSCGraph

__all__ = ["sample_hetero_layers"]

Tensor = torch.Tensor
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _etype_key(layer_key: int, index: int) -> int:
    from ._layer_cpu import mix64_py

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
    from ._layer_cpu import relabel_rows_cpu, sample_layer
    from ._layer_cuda import relabel_first_appearance, sample_layer_cuda

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
