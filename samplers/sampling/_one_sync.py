"""GPU neighbour sampling with one host sync per batch (``NeighborSampler(one_sync=True)``).

The per-layer GPU path (:func:`~samplers.sampling._layer_cuda.sample_layer_cuda`) reads each layer's
edge count back to size its outputs, and its relabel (``torch.unique``) reads the number of unique
nodes: about two host syncs per layer, each of which stalls the producer until the GPU has caught
up. Here every size the host needs is an upper bound known in advance, so nothing is read back
until the batch is complete:

* a layer of ``n`` (padded) destination nodes and fanout ``f >= 0`` has at most ``n * f`` edges:
  the outputs are allocated at that size and filled with ``-1`` past the real edges, which
  ``sample_fill`` writes as a prefix (its offsets are a prefix sum over the seeds, padded seeds
  counting 0);
* :func:`relabel_padded` numbers the unique nodes in order of first appearance with fixed-size
  torch ops (sort, scans, scatters), ignoring the ``-1`` padding, and returns the count as a device
  scalar; the next layer's seeds are that fixed-size array, padding included (``sample_count`` is
  launched with ``pad_negative``);
* one read at the end (:func:`_read_sizes`) brings back every layer's edge count, node count and
  error flag, and the blocks are cut to size.

The draws are the kernels' own, keyed as in the per-layer path, and the relabel orders nodes the
same way (destination nodes first, then sources in edge order), so the blocks are identical to
the per-layer path's. Fanout ``-1`` has no bound: such samplers use the per-layer path.
The padded arrays grow as ``n * prod(1 + f)``: for 1024 seeds and fanouts [15, 10, 5], about 1.1M
entries in the last layer. Their working memory is bounded twice: by ``MAX_PADDED_ENTRIES`` and by
the GPU memory available when the batch starts (:func:`one_sync_fits`: at most
``MEMORY_FRACTION`` of what ``torch.cuda.mem_get_info`` reports free plus what PyTorch's allocator
holds unused); a batch past either bound is sampled on the per-layer path (the same blocks), with
a one-time warning. Only one batch is sampled at a time (the producer thread), and its padded
arrays are freed before the next: batches waiting in the prefetch queue hold only their cut
blocks, so the bound is per batch, whatever the prefetch depth.

Seeds may themselves be padded (``num_seeds``: their count as a device scalar, ``-1`` past it):
link prediction hands over the pair graphs' node set compacted without a sync, and other 0-d
device values (error flags) can ride along in the one read (``extra``).
"""
from __future__ import annotations

import logging
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..graph._block import Block

__all__ = ["relabel_padded", "sample_blocks_one_sync", "sample_padded_one_sync", "padded_sizes_fit",
           "padded_working_bytes", "one_sync_fits", "memory_fits", "available_bytes",
           "read_values"]

logger = logging.getLogger("samplers")

Tensor = torch.Tensor

# Entries (edges of a layer + its padded source nodes) the padded arrays may hold over a batch
# before the sampler keeps the per-layer path: relabel_padded keeps about ten int64 arrays of a
# layer's size alive at once, so up to ~5 GiB of GPU working memory at the bound.
MAX_PADDED_ENTRIES = 1 << 26
# Share of the available GPU memory one batch's padded working arrays may take.
MEMORY_FRACTION = 0.5
# GPU bytes per padded entry: kept until the batch is cut (a layer's src/eid/dst outputs, its
# relabel's uniq and local: about 4 int64), and the transient peak of relabel_padded over the
# largest layer (about 12 int64 arrays of its size).
_KEPT_BYTES = 32
_PEAK_BYTES = 96


def _padded_layers(num_seeds: int, fanouts: List[int], num_nodes: int) -> List[Tuple[int, int]]:
    """``(edges, source nodes)`` of each layer's padded arrays, seed layer first."""
    n, out = int(num_seeds), []
    for f in reversed(fanouts):
        edges = n * int(f)
        n = min(n + edges, int(num_nodes))
        out.append((edges, n))
    return out


def padded_working_bytes(num_seeds: int, fanouts: List[int], num_nodes: int) -> int:
    """An upper bound of the GPU memory one-sync sampling of ``num_seeds`` seeds needs at its
    peak (``fanouts`` all ``>= 0``, input layer first)."""
    layers = _padded_layers(num_seeds, fanouts, num_nodes)
    if not layers:
        return 0
    total = sum(e + v for e, v in layers)
    largest = max(e + v for e, v in layers)
    return _KEPT_BYTES * total + _PEAK_BYTES * largest


def available_bytes(device: torch.device) -> int:
    """GPU memory a batch can use on ``device``: free memory (``torch.cuda.mem_get_info``) plus
    what PyTorch's caching allocator holds without using it (no host sync; asked in relaxed
    capture mode, so a producer thread may ask while another thread captures a CUDA graph)."""
    from unified_tensor._checks import relaxed_capture_mode

    with relaxed_capture_mode():
        free, _ = torch.cuda.mem_get_info(device)
    unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free) + max(0, int(unused))


_warned_memory = False


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def one_sync_fits(num_seeds: int, fanouts: List[int], num_nodes: int,
                  device: Optional[torch.device]) -> bool:
    """Whether one-sync sampling of a batch fits both bounds (``MAX_PADDED_ENTRIES``, and
    ``MEMORY_FRACTION`` of :func:`available_bytes` of ``device``; ``None``: no memory bound).
    The first time the memory bound refuses a batch, a ``UserWarning`` (and a log line) says
    so; such batches use the per-layer path."""
    if not padded_sizes_fit(num_seeds, fanouts, num_nodes):
        return False
    return memory_fits(padded_working_bytes(num_seeds, fanouts, num_nodes), device,
                       f"a batch of {num_seeds} seeds with fanouts {list(fanouts)}")


def memory_fits(need: int, device: Optional[torch.device], what: str) -> bool:
    """Whether ``need`` bytes of padded working memory are at most ``MEMORY_FRACTION`` of what
    is available on ``device`` (always, for ``None`` or a CPU device); warns once when not."""
    global _warned_memory
    if device is None or device.type != "cuda":
        return True
    avail = available_bytes(device)
    if need <= MEMORY_FRACTION * avail:
        return True
    if not _warned_memory:
        _warned_memory = True
        msg = (f"one_sync=True: {what} needs up to {_size(need)} of padded working memory, more "
               f"than {MEMORY_FRACTION:.0%} of the {_size(avail)} available on {device}; such batches are sampled on the per-layer path (same blocks, a few "
               f"host syncs per layer). Smaller batches or fanouts keep one sync per batch. "
               f"(Warned once.)")
        logger.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    return False


def padded_sizes_fit(num_seeds: int, fanouts: List[int], num_nodes: int,
                     limit: int = MAX_PADDED_ENTRIES) -> bool:
    """Whether one-sync sampling of ``num_seeds`` seeds for ``fanouts`` (input layer first) stays
    within ``limit`` padded entries. A layer of ``n`` padded nodes has ``n * f`` padded edges and
    ``min(n + n * f, num_nodes)`` padded source nodes (the unique nodes never exceed the graph)."""
    if any(f < 0 for f in fanouts):
        return False
    total = 0
    for edges, n in _padded_layers(num_seeds, fanouts, num_nodes):
        total += edges + n
        if total > limit:
            return False
    return True


def relabel_padded(first: Tensor, rest: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """First-appearance relabel of ``cat(first, rest)`` ignoring negative (padding) entries, with
    fixed-size torch ops only (no host sync), on the inputs' device.

    ``first``'s non-negative entries must be distinct. Returns ``(uniq, local, num)``: ``uniq``
    (``first``'s dtype, ``len(first) + len(rest)`` long) holds the unique nodes, ``first``'s first,
    then new ones in order of first appearance in ``rest``, then ``-1``; ``local`` (int64, like
    ``rest``) the position in ``uniq`` of every entry of ``rest`` (``-1`` for padding); ``num`` the
    number of unique nodes, a 0-d int64 tensor on the device.
    """
    allv = torch.cat([first, rest.to(first.dtype)]).to(torch.int64)
    m = allv.numel()
    dev = allv.device
    if m == 0:
        return (torch.empty(0, dtype=first.dtype, device=dev),
                torch.empty(0, dtype=torch.int64, device=dev), torch.zeros((), dtype=torch.int64, device=dev))
    big = torch.iinfo(torch.int64).max
    valid = allv >= 0
    keys, order = torch.sort(torch.where(valid, allv, big), stable=True)
    starts = torch.ones(m, dtype=torch.bool, device=dev)
    starts[1:] = keys[1:] != keys[:-1]
    group = torch.cumsum(starts, 0) - 1                       # group of each sorted entry
    # First appearance (original position) of each group; padding's group and unused slots: m.
    first_pos = torch.full((m,), m, dtype=torch.int64, device=dev)
    first_pos.scatter_reduce_(0, group, order, reduce="amin", include_self=True)
    group_valid = torch.zeros(m, dtype=torch.bool, device=dev)
    group_valid.scatter_(0, group, keys != big)
    first_pos = torch.where(group_valid, first_pos, torch.full_like(first_pos, m))
    rank = torch.empty(m, dtype=torch.int64, device=dev)
    rank[torch.argsort(first_pos, stable=True)] = torch.arange(m, device=dev)
    sorted_local = rank[group]
    sorted_valid = keys != big
    local_all = torch.empty(m, dtype=torch.int64, device=dev)
    local_all[order] = torch.where(sorted_valid, sorted_local, torch.full_like(sorted_local, -1))
    # Unique nodes by rank; padding writes -1 into a spare slot m that is dropped.
    uniq = torch.full((m + 1,), -1, dtype=torch.int64, device=dev)
    slot = torch.where(sorted_valid, sorted_local, torch.full_like(sorted_local, m))
    uniq.scatter_(0, slot, torch.where(sorted_valid, keys, torch.full_like(keys, -1)))
    num = group_valid.sum()
    return uniq[:m].to(first.dtype), local_all[first.numel():], num


# A layer function: (graph, padded dst, fanout, replace, key, excl, pad=) -> (with pad, negative
#   dst entries are padding; without, out-of-range in either direction sets the error flag)
#   (src, dst_pos, eid, total, err): padded outputs of at least total entries whose first `total`
#   are the edges (src: global ids; dst_pos: index into dst; eid: edge ids; -1 past them), the
#   edge count and an error flag (0-d device tensors).
LayerFn = Callable[..., Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]


def _read_sizes(t: Tensor) -> List[int]:
    """The one host read of a batch (a sync on a GPU)."""
    return t.tolist()


def read_values(values: Sequence[Tensor], read: Callable[[Tensor], List] = _read_sizes) -> List[int]:
    """0-d device tensors (sizes, counts, error flags) read back in one host read, as ints."""
    if not values:
        return []
    return [int(v) for v in read(torch.stack([v.reshape(()).to(torch.int64) for v in values]))]


def sample_blocks_one_sync(graph, seeds: Tensor, fanouts: List[int], replace: bool,
                           layer_key: Callable[[int], int], excl: Optional[Tensor],
                           layer_fn: Optional[LayerFn] = None,
                           read: Callable[[Tensor], List[int]] = _read_sizes
                           ) -> Tuple[Tensor, List[Block]]:
    """Blocks of ``seeds`` (distinct, the graph's idtype) for ``fanouts`` (input layer first, all
    ``>= 0``) with one call of ``read`` (one host sync). ``layer_fn`` defaults to the CUDA kernels
    (:func:`layer_padded_cuda`); with them, a batch whose padded arrays would take more than
    ``MEMORY_FRACTION`` of the GPU memory available is sampled on the per-layer path instead
    (:func:`one_sync_fits`). Returns ``(input_nodes, blocks)`` on ``seeds``' device; raises
    ``IndexError`` for out-of-range seeds (found by the kernels, reported after the read)."""
    if any(f < 0 for f in fanouts):
        raise ValueError("one-sync sampling needs fanouts >= 0 (fanout -1 has no size bound)")
    if layer_fn is None and seeds.is_cuda \
            and not one_sync_fits(seeds.numel(), fanouts, graph.num_nodes, seeds.device):
        from ._layer_cuda import sample_blocks_per_layer

        return sample_blocks_per_layer(graph, seeds, fanouts, replace, layer_key, excl)
    input_nodes, blocks, _, _ = sample_padded_one_sync(graph, seeds, fanouts, replace, layer_key,
                                                       excl, layer_fn=layer_fn, read=read)
    return input_nodes, blocks


def sample_padded_one_sync(graph, seeds: Tensor, fanouts: List[int], replace: bool,
                           layer_key: Callable[[int], int], excl: Optional[Tensor],
                           num_seeds: Optional[Tensor] = None, extra: Sequence[Tensor] = (),
                           check_extra: Optional[Callable[[List[int]], None]] = None,
                           layer_fn: Optional[LayerFn] = None,
                           read: Callable[[Tensor], List[int]] = _read_sizes
                           ) -> Tuple[Tensor, List[Block], int, List[int]]:
    """:func:`sample_blocks_one_sync` without the memory fallback (the caller checked
    :func:`one_sync_fits`), for seeds that may be padded: with ``num_seeds`` (a 0-d device
    tensor) only ``seeds[:num_seeds]`` are seeds and the rest is ``-1``. The 0-d device tensors
    ``extra`` are read in the same read and handed to ``check_extra`` first (the caller's error
    flags, which may explain a bad seed). Returns ``(input_nodes, blocks, number of seeds, extra
    values)``; the blocks' destination nodes of the last layer are ``seeds[:number of seeds]``."""
    if any(f < 0 for f in fanouts):
        raise ValueError("one-sync sampling needs fanouts >= 0 (fanout -1 has no size bound)")
    layer_fn = layer_fn or layer_padded_cuda
    padded = num_seeds is not None
    dst = seeds
    layers = []
    for layer in range(len(fanouts)):
        fanout = fanouts[-1 - layer]
        # Layer 0's destination nodes are the user's seeds: a negative one is an error there,
        # not padding (padding exists only from layer 1 on), unless the seeds come padded.
        src, dst_pos, eid, total, err = layer_fn(graph, dst, fanout, replace, layer_key(layer), excl,
                                                 pad=padded or layer > 0)
        uniq, local, num = relabel_padded(dst, src)
        layers.append((dst, uniq, local, dst_pos, eid, total, num, err))
        dst = uniq[:graph.num_nodes]   # never more unique nodes than the graph has
    rows = [torch.stack([x[5].reshape(()), x[6].reshape(()), x[7].reshape(()).to(torch.int64)])
            for x in layers]
    tail = [t.reshape(()).to(torch.int64) for t in extra]
    if padded:
        tail.append(num_seeds.reshape(()).to(torch.int64))
    if tail:   # the extra values ride in one more row of three, padded with zeros
        flat = torch.stack(tail)
        pad = (-flat.numel()) % 3
        if pad:
            flat = torch.cat([flat, flat.new_zeros(pad)])
        rows.extend(flat.view(-1, 3))
    values = read(torch.stack(rows)) if rows else []
    sizes = values[:len(layers)]
    tail_values = [v for row in values[len(layers):] for v in row][:len(tail)]
    num_dst = tail_values.pop() if padded else seeds.numel()
    if check_extra is not None:
        check_extra(tail_values)
    if any(s[2] for s in sizes):
        n = graph.num_nodes
        real = seeds[:num_dst]
        bad = real[(real < 0) | (real >= n)]
        raise IndexError(f"seeds must be node ids in [0, {n}), got "
                         f"{int(bad[0]) if bad.numel() else 'an id outside it'}")
    blocks: List[Block] = []
    first_dst = num_dst
    for (d, uniq, local, dst_pos, eid, _, _, _), (total, num, _) in zip(layers, sizes):
        edge_index = torch.stack([local[:total], dst_pos[:total]])
        # Copies, not views: a view would keep each padded buffer (sized by the bound) alive as
        # long as the batch (the prefetch queue holds several).
        blocks.append(Block._from_edge_index(uniq[:num].clone(), d[:num_dst].clone(), edge_index,
                                             eid[:total].clone()))
        num_dst = num
    blocks.reverse()
    input_nodes = blocks[0].srcdata["_ID"] if blocks else seeds[:first_dst]
    return input_nodes, blocks, first_dst, tail_values


def layer_padded_cuda(graph, dst: Tensor, fanout: int, replace: bool, key: int,
                      excl: Optional[Tensor], pad: bool = True
                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One layer on the GPU with outputs sized by the bound ``len(dst) * fanout`` (no sync):
    ``sample_count`` (with ``pad``, negative seeds are padding; without, an error), an on-device
    prefix sum, ``sample_fill``."""
    from ._layer_cuda import _Launch

    launch = _Launch(graph, dst, excl)
    dev, n = launch.dev, launch.n
    bound = n * int(fanout)
    counts = torch.zeros(n, dtype=torch.int64, device=dev)
    err = torch.zeros(1, dtype=torch.int32, device=dev)
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    out_src = torch.full((bound,), -1, dtype=graph.idtype, device=dev)
    out_eid = torch.full((bound,), -1, dtype=torch.int64, device=dev)
    out_dst = torch.full((bound,), -1, dtype=torch.int64, device=dev)
    if n:
        launch.count(fanout, replace, pad, counts, err)
        torch.cumsum(counts, 0, out=offsets[1:])
        if bound:
            launch.fill(offsets, fanout, replace, key, out_src, out_eid, out_dst)
    return out_src, out_dst, out_eid, offsets[-1], err[0]
