"""GPU neighbour sampling: ``cuda/sample.cu`` over a pinned (UVA) or GPU-resident CSC, then a
relabel with torch ops that reproduces the CPU sampler's first-appearance order exactly."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from unified_tensor import _kernels, _pinning

__all__ = ["sample_layer_cuda", "relabel_first_appearance", "sample_blocks_per_layer"]

_SOURCE = "sample.cu"
_CTYPE = {torch.int32: "int", torch.int64: "long long"}
_THREADS = 256
_MAX_BLOCKS = 65535


def _name(kernel: str, idtype: torch.dtype, ptrtype: torch.dtype) -> str:
    return f"ut::{kernel}<{_CTYPE[idtype]}, {_CTYPE[ptrtype]}>"


_kernels.register(_SOURCE, [_name(k, i, p) for k in ("sample_count", "sample_fill")
                            for i in _CTYPE for p in _CTYPE])


def _ptr(t: Optional[torch.Tensor]) -> np.uint64:
    """Device-visible address of a graph array (GPU memory, or pinned host memory over UVA)."""
    if t is None:
        return np.uint64(0)
    if t.is_cuda:
        return np.uint64(t.data_ptr())
    import unified_tensor as ut

    return np.uint64(ut.device_pointer(t))


def relabel_first_appearance(seeds: torch.Tensor, src: torch.Tensor
                             ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unique nodes of ``cat(seeds, src)`` in order of first appearance, with torch ops.

    Returns ``(src_nodes, src_local, seeds_local)``: the unique nodes (``seeds`` first when they are
    distinct), the local id of every entry of ``src`` and of ``seeds`` (``seeds_local`` equals
    ``arange(len(seeds))`` exactly when the seeds are distinct). All on the device of the inputs.
    """
    n = seeds.numel()
    allv = torch.cat([seeds, src.to(seeds.dtype)])
    uniq, inv = torch.unique(allv, return_inverse=True)
    m = uniq.numel()
    pos = torch.arange(allv.numel(), device=allv.device)
    first = torch.full((m,), allv.numel(), dtype=torch.int64, device=allv.device)
    first.scatter_reduce_(0, inv, pos, reduce="amin", include_self=True)
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(m, device=allv.device)
    local = rank[inv]
    return uniq[order], local[n:], local[:n]


class _Launch:
    """The two sampling kernels of one layer on one device (``sample_count`` / ``sample_fill``),
    with the argument lists both layer paths (per-layer and one-sync) share."""

    def __init__(self, graph, seeds: torch.Tensor, excl: Optional[torch.Tensor]) -> None:
        if seeds.dtype != graph.idtype:   # the kernels read seeds as the graph's id type
            raise TypeError(f"internal: seeds of dtype {seeds.dtype} for a graph of {graph.idtype}")
        seeds = seeds.contiguous()        # kept alive by self until launched
        self.graph, self.seeds = graph, seeds
        dev = seeds.device
        self.dev = dev
        self.device = dev.index if dev.index is not None else torch.cuda.current_device()
        self.n = seeds.numel()
        if graph.placement == "pinned":   # kernels read host memory: sync before unregistering
            _pinning.note_device_use(self.device)
        if excl is not None and excl.numel():
            self.excl = excl.to(dev, torch.int64).contiguous()   # kept alive until launched
            self.excl_args = (np.uint64(self.excl.data_ptr()), np.int64(self.excl.numel()))
        else:
            self.excl = None
            self.excl_args = (np.uint64(0), np.int64(0))

    def _fn(self, kernel: str):
        g = self.graph
        return _kernels.get_function(_SOURCE, _name(kernel, g.idtype, g.indptr.dtype), self.device)

    def count(self, fanout: int, replace: bool, pad_negative: bool, counts: torch.Tensor,
              err: torch.Tensor) -> None:
        g, n = self.graph, self.n
        grid = max(1, min(_MAX_BLOCKS, (n + _THREADS - 1) // _THREADS))
        _kernels.launch(self._fn("sample_count"), grid, _THREADS,
                        (_ptr(g.indptr), np.int64(g.num_nodes), np.uint64(self.seeds.data_ptr()),
                         np.int64(n), np.int64(fanout), np.int32(bool(replace)), *self.excl_args,
                         np.int32(bool(pad_negative)), np.uint64(counts.data_ptr()),
                         np.uint64(err.data_ptr())), self.device)

    def fill(self, offsets: torch.Tensor, fanout: int, replace: bool, key: int,
             out_src: torch.Tensor, out_eid: torch.Tensor, out_dst: torch.Tensor) -> None:
        g, n = self.graph, self.n
        warps_per_block = _THREADS // 32
        grid = max(1, min(_MAX_BLOCKS, (n + warps_per_block - 1) // warps_per_block))
        _kernels.launch(self._fn("sample_fill"), grid, _THREADS,
                        (_ptr(g.indptr), _ptr(g.indices), _ptr(g.edge_ids), np.int64(g.num_nodes),
                         np.uint64(self.seeds.data_ptr()), np.int64(n),
                         np.uint64(offsets.data_ptr()), np.int64(fanout),
                         np.int32(bool(replace)), np.uint64(key), *self.excl_args,
                         np.uint64(out_src.data_ptr()), np.uint64(out_eid.data_ptr()),
                         np.uint64(out_dst.data_ptr())), self.device)


def sample_layer_cuda(graph, seeds: torch.Tensor, fanout: int, replace: bool, key: int,
                      check: bool, relabel: bool = True, excl: Optional[torch.Tensor] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample one layer on the GPU of ``seeds`` (CUDA tensor of the graph's idtype).

    Returns ``(src_nodes, edge_index, edge_ids)`` on the seeds' device: the block's source nodes
    (seeds first), ``[2, E]`` int64 local edges and int64 global edge ids. With ``check``, raises
    IndexError for out-of-range seeds and ValueError for repeated seeds (one extra sync).
    ``excl``: ascending, distinct int64 CSC positions (on the seeds' device) removed before the
    draws (the seed edges of link prediction and their reverses), or ``None``.
    """
    launch = _Launch(graph, seeds, excl)
    dev, n, idtype = launch.dev, launch.n, graph.idtype
    counts = torch.empty(n, dtype=torch.int64, device=dev)
    err = torch.zeros(1, dtype=torch.int32, device=dev)
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    if n:
        launch.count(fanout, replace, False, counts, err)
        torch.cumsum(counts, 0, out=offsets[1:])
    total_err = torch.stack([offsets[-1], err[0].long()]).tolist()  # one sync
    total, bad = int(total_err[0]), int(total_err[1])
    if bad:
        v = seeds[(seeds < 0) | (seeds >= graph.num_nodes)][0].item()
        raise IndexError(f"seeds must be node ids in [0, {graph.num_nodes}), got {v}")
    out_src = torch.empty(total, dtype=idtype, device=dev)
    out_eid = torch.empty(total, dtype=torch.int64, device=dev)
    edge_index = torch.empty((2, total), dtype=torch.int64, device=dev)
    if n and total:
        launch.fill(offsets, fanout, replace, key, out_src, out_eid, edge_index[1])
    if not relabel:   # heterogeneous graphs relabel per node type: global sources, local dsts
        edge_index[0].copy_(out_src)
        return seeds[:0], edge_index, out_eid
    src_nodes, src_local, seeds_local = relabel_first_appearance(seeds, out_src)
    if check and n:
        expect = torch.arange(n, device=dev)
        if not bool(torch.equal(seeds_local, expect)):
            i = int(torch.nonzero(seeds_local != expect)[0, 0])
            raise ValueError(f"seeds must be distinct, got node {int(seeds[i])} twice "
                             f"(positions {int(seeds_local[i])} and {i})")
    edge_index[0].copy_(src_local)
    return src_nodes, edge_index, out_eid


def sample_blocks_per_layer(graph, seeds: torch.Tensor, fanouts, replace: bool, layer_key,
                            excl: Optional[torch.Tensor]):
    """Blocks of distinct CUDA ``seeds`` for ``fanouts`` (input layer first) one layer at a time
    (:func:`sample_layer_cuda`, about two host syncs per layer): ``(input_nodes, blocks)`` on the
    seeds' device, the blocks input layer first. The fallback of the one-sync path."""
    from ..graph._block import Block

    blocks = []
    dst = seeds
    for layer in range(len(fanouts)):
        src, edge_index, eid = sample_layer_cuda(graph, dst, fanouts[-1 - layer], replace,
                                                 layer_key(layer), check=False, excl=excl)
        blocks.append(Block._from_edge_index(src, dst, edge_index, eid))
        dst = src
    blocks.reverse()
    return dst, blocks
