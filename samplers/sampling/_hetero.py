"""Sampling layers of a :class:`~samplers.HeteroCSCGraph`: :func:`sample_hetero_layers` samples with
the homogeneous per-edge-type primitives (Numba on the CPU, ``cuda/sample.cu`` on the GPU) and
relabels once per node type, destination nodes first, as DGL's ``to_block`` does."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..graph._csc import _plain
from ..graph._hetero_block import HeteroBlock
from ..graph._hetero_csc import EdgeType, HeteroCSCGraph

__all__ = ["sample_hetero_layers", "sample_hetero_one_sync", "hetero_one_sync_fits"]

Tensor = torch.Tensor
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _etype_key(layer_key: int, index: int) -> int:
    from ._layer_cpu import mix64_py

    return mix64_py(layer_key ^ (((index + 1) * _GOLDEN) & _MASK))


def sample_hetero_layers(graph: HeteroCSCGraph, seeds: Dict[str, Tensor],
                         fanouts: List[Dict[EdgeType, int]], replace: bool,
                         layer_key, exclude: Optional[Dict[EdgeType, Tensor]] = None,
                         one_sync: bool = False
                         ) -> Tuple[Dict[str, Tensor], List[HeteroBlock]]:
    """Sample ``len(fanouts)`` layers (``fanouts[i]`` for block ``i``, input layer first) of
    ``graph`` from ``seeds`` (``{ntype: distinct ids}`` of the graph's idtype, all on the CPU or
    all on one GPU). ``layer_key(layer)`` gives each layer's key; each edge type's draws are keyed
    by it and the edge type's position, so results are reproducible and the CPU and GPU agree.

    ``exclude``: ``{etype: ascending CSC positions}`` removed before the draws, or ``None``.

    ``one_sync``: CUDA seeds are sampled with one host sync for the whole batch
    (:func:`sample_hetero_one_sync`; the same blocks) when every fanout is ``>= 0`` and the
    padded arrays fit (:func:`hetero_one_sync_fits`).

    Returns ``(input_nodes, blocks)``: ``{ntype: ids}`` of the first block's source nodes and the
    blocks, input layer first.
    """
    from ._layer_cpu import relabel_rows_cpu, sample_layer
    from ._layer_cuda import relabel_first_appearance, sample_layer_cuda

    if one_sync and seeds and next(iter(seeds.values())).is_cuda:
        sizes = {nt: v.numel() for nt, v in seeds.items()}
        if hetero_one_sync_fits(graph, sizes, fanouts, next(iter(seeds.values())).device):
            input_nodes, blocks, _, _ = sample_hetero_one_sync(graph, seeds, None, fanouts, replace,
                                                               layer_key, exclude)
            return input_nodes, blocks
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


def _padded_plan(graph: HeteroCSCGraph, sizes: Dict[str, int], fanouts: List[Dict[EdgeType, int]]
                 ) -> Optional[Tuple[int, int]]:
    """``(total entries, largest relabel)`` of one-sync sampling from padded seed arrays of
    ``sizes`` per node type, or ``None`` when a fanout is -1 (no bound)."""
    etypes = graph.canonical_etypes
    dst = dict(sizes)
    total = largest = 0
    for layer in range(len(fanouts)):
        fan = fanouts[-1 - layer]
        edges: Dict[str, int] = {}
        for et in etypes:
            n = dst.get(et[2], 0)
            f = fan.get(et, 0)
            if n == 0 or f == 0:
                continue
            if f < 0:
                return None
            edges[et[0]] = edges.get(et[0], 0) + n * f
            total += n * f
        src = {}
        for s in dict.fromkeys(list(dst) + list(edges)):
            m = dst.get(s, 0) + edges.get(s, 0)
            largest = max(largest, m)
            src[s] = min(m, graph.num_nodes(s))
            total += src[s]
        dst = src
    return total, largest


def hetero_one_sync_fits(graph: HeteroCSCGraph, sizes: Dict[str, int],
                         fanouts: List[Dict[EdgeType, int]], device: torch.device) -> bool:
    """Whether :func:`sample_hetero_one_sync` from padded seed arrays of ``sizes`` per node type
    stays within ``MAX_PADDED_ENTRIES`` and the GPU memory bound (see ``_one_sync``)."""
    from ._one_sync import _KEPT_BYTES, _PEAK_BYTES, MAX_PADDED_ENTRIES, memory_fits

    plan = _padded_plan(graph, sizes, fanouts)
    if plan is None or plan[0] > MAX_PADDED_ENTRIES:
        return False
    return memory_fits(_KEPT_BYTES * plan[0] + _PEAK_BYTES * plan[1], device,
                       f"a heterogeneous batch of {sum(sizes.values())} seeds")


def sample_hetero_one_sync(graph: HeteroCSCGraph, seeds: Dict[str, Tensor],
                           counts: Optional[Dict[str, Tensor]], fanouts: List[Dict[EdgeType, int]],
                           replace: bool, layer_key, exclude: Optional[Dict[EdgeType, Tensor]] = None,
                           extra: Sequence[Tensor] = (), check_extra=None, read=None
                           ) -> Tuple[Dict[str, Tensor], List[HeteroBlock], Dict[str, int], List[int]]:
    """:func:`sample_hetero_layers` for CUDA seeds with one host read for the whole batch: every
    edge type's layer sampled into arrays sized by the bound (``samplers.sampling._one_sync``),
    relabelled per node type with fixed-size ops, and every edge count, node count and error flag
    read at the end (with the 0-d device tensors ``extra``, handed to ``check_extra`` before
    anything else is looked at). The caller checked :func:`hetero_one_sync_fits`.

    ``counts``: ``{ntype: 0-d device tensor}`` when ``seeds`` come padded (``-1`` past the count;
    link prediction's compacted node sets), else ``None``. The blocks, their node types and edge
    types are the per-layer path's: the types a layer has are decided from the counts read, as
    that path decides them from the arrays it has. Returns ``(input_nodes, blocks, seed counts,
    extra values)``."""
    from ._one_sync import layer_padded_cuda, read_values, relabel_padded

    etypes = graph.canonical_etypes
    padded = counts is not None
    any_ids = next(iter(seeds.values()))
    dev = any_ids.device
    dst = dict(seeds)
    layers = []
    for layer in range(len(fanouts)):
        fan = fanouts[-1 - layer]
        key = layer_key(layer)
        raw = {}
        for i, et in enumerate(etypes):
            ids = dst.get(et[2])
            if ids is None or ids.numel() == 0 or fan.get(et, 0) == 0:
                continue
            ex = None if exclude is None else exclude.get(et)
            raw[et] = layer_padded_cuda(graph[et], ids, fan[et], replace, _etype_key(key, i), ex,
                                        pad=padded or layer > 0)
        src_nodes, nums, locals_ = {}, {}, {}
        for s in dict.fromkeys(list(dst) + [et[0] for et in raw]):
            mine = [et for et in raw if et[0] == s]
            first = dst.get(s)
            if first is None:
                first = torch.empty(0, dtype=graph.idtype, device=dev)
            cat = torch.cat([raw[et][0] for et in mine]) if mine else first[:0]
            uniq, local, num = relabel_padded(first, cat)
            src_nodes[s] = uniq[:graph.num_nodes(s)]
            nums[s] = num
            locals_[s] = (local, mine)
        layers.append((dst, raw, src_nodes, nums, locals_))
        dst = src_nodes
    # The one read: per layer the edge count and error flag of each sampled edge type and the
    # node count of each source type; then the seed counts and the extras.
    vals = []
    for _, raw, _, nums, _ in layers:
        for et in raw:
            vals += [raw[et][3], raw[et][4]]
        vals += list(nums.values())
    seed_types = list(seeds)
    if padded:
        vals += [counts[nt] for nt in seed_types]
    vals += list(extra)
    got_list = read_values(vals) if read is None else read_values(vals, read)
    if check_extra is not None:
        check_extra(got_list[len(got_list) - len(extra):])
    got = iter(got_list)
    layer_sizes = []
    for _, raw, _, nums, _ in layers:
        tot = {}
        for et in raw:
            tot[et] = next(got)
            if next(got):   # an id the kernel could not read (error path: one more read)
                g, ids = graph[et], layers[0][0][et[2]]
                ids = ids[ids >= 0] if padded else ids
                v = ids[(ids < 0) | (ids >= g.num_nodes)]
                raise IndexError(f"seeds must be node ids in [0, {g.num_nodes}), got "
                                 f"{int(v[0]) if v.numel() else 'an id outside it'}")
        layer_sizes.append((tot, {s: next(got) for s in nums}))
    seed_counts = {nt: next(got) for nt in seed_types} if padded else \
        {nt: v.numel() for nt, v in seeds.items()}
    extra_values = list(got)
    # Cut to size, with the node and edge types the per-layer path gives those counts.
    empty = torch.empty((2, 0), dtype=torch.int64, device=dev)
    cur = {nt: seeds[nt][:seed_counts[nt]] for nt in seed_types}
    blocks: List[HeteroBlock] = []
    for layer, ((_, raw, src_pad, _, locals_), (tot, nums)) in enumerate(zip(layers, layer_sizes)):
        fan = fanouts[-1 - layer]
        real_raw = [et for et in etypes
                    if et[2] in cur and cur[et[2]].numel() and fan.get(et, 0) != 0]
        src_types = list(dict.fromkeys(list(cur) + [et[0] for et in real_raw]))
        src_nodes = {s: src_pad[s][:nums[s]].clone() for s in src_types}
        edge_index, edge_ids = {}, {}
        for s in src_types:
            local, mine = locals_[s]
            pos = 0
            for et in mine:
                bound = raw[et][0].numel()
                k = tot[et]
                if et in real_raw:
                    edge_index[et] = torch.stack([local[pos:pos + k], raw[et][1][:k]])
                    edge_ids[et] = raw[et][2][:k].clone()
                pos += bound
        full_index = {et: edge_index.get(et, empty) for et in etypes
                      if et[0] in src_nodes and et[2] in cur}
        ids = {et: edge_ids[et] if et in edge_ids else empty[0] for et in full_index}
        blocks.append(HeteroBlock(src_nodes, cur, full_index, ids))
        cur = src_nodes
    blocks.reverse()
    return cur, blocks, seed_counts, extra_values
