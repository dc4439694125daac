"""GPU neighbour sampling: ``cuda/sample.cu`` over a pinned (UVA) or GPU-resident CSC, then a
relabel with torch ops that reproduces the CPU sampler's first-appearance order exactly."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from unified_tensor import _kernels, _pinning

__all__ = ["sample_layer_cuda", "relabel_first_appearance"]

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
    dev = seeds.device
    device = dev.index if dev.index is not None else torch.cuda.current_device()
    idtype, ptrtype = graph.idtype, graph.indptr.dtype
    n = seeds.numel()
    ip, ix, ei = graph.indptr, graph.indices, graph.edge_ids
    if graph.placement == "pinned":   # the kernels read host memory: sync before it is unregistered
        _pinning.note_device_use(device)
    if excl is not None and excl.numel():
        excl = excl.to(dev, torch.int64).contiguous()
        excl_args = (np.uint64(excl.data_ptr()), np.int64(excl.numel()))
    else:
        excl_args = (np.uint64(0), np.int64(0))
    counts = torch.empty(n, dtype=torch.int64, device=dev)
    err = torch.zeros(1, dtype=torch.int32, device=dev)
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    if n:
        fn = _kernels.get_function(_SOURCE, _name("sample_count", idtype, ptrtype), device)
        grid = max(1, min(_MAX_BLOCKS, (n + _THREADS - 1) // _THREADS))
        _kernels.launch(fn, grid, _THREADS,
                        (_ptr(ip), np.int64(graph.num_nodes), np.uint64(seeds.data_ptr()),
                         np.int64(n), np.int64(fanout), np.int32(bool(replace)), *excl_args,
                         np.int32(0), np.uint64(counts.data_ptr()), np.uint64(err.data_ptr())),
                        device)
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
        fn = _kernels.get_function(_SOURCE, _name("sample_fill", idtype, ptrtype), device)
        warps_per_block = _THREADS // 32
        grid = max(1, min(_MAX_BLOCKS, (n + warps_per_block - 1) // warps_per_block))
        _kernels.launch(fn, grid, _THREADS,
                        (_ptr(ip), _ptr(ix), _ptr(ei), np.int64(graph.num_nodes),
                         np.uint64(seeds.data_ptr()), np.int64(n), np.uint64(offsets.data_ptr()),
                         np.int64(fanout), np.int32(bool(replace)), np.uint64(key), *excl_args,
                         np.uint64(out_src.data_ptr()), np.uint64(out_eid.data_ptr()),
                         np.uint64(edge_index[1].data_ptr())), device)
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
