"""Link prediction without DGL: edge seeds, negative sampling, DGL's exclusion modes.

:class:`EdgePredictionSampler` wraps a :class:`~samplers.NeighborSampler` as DGL's
``as_edge_prediction_sampler`` does. Seeds are edge ids (``{edge_type: ids}`` for a
:class:`~samplers.HeteroCSCGraph`); every batch becomes DGL's
``(input_nodes, pair_graph, neg_pair_graph, blocks)`` (``neg_pair_graph`` left out without a
negative sampler), with the library's :class:`PairGraph`. The pair graphs hold the seed edges and
the negative edges over one compacted node set, and that node set is what the neighbour sampler
samples from, so ``blocks[-1]``'s destination nodes are the pair graph's nodes in its order.

Exclusion (``exclude``) drops, from every block, the edges that would leak the answer: the seed
edges themselves (``"self"``), also their reverse edges by id (``"reverse_id"`` with
``reverse_eids``) or by type (``"reverse_types"`` with ``reverse_etypes``), or whatever a callable
returns for the seed edges. They are removed before the neighbour draws, as DGL's
``sample_neighbors(exclude_edges=...)`` does: a node draws its fanout from the in-edges it keeps
(the sampling kernels take the excluded CSC positions, on the CPU and the GPU alike).

On the GPU (CUDA seed edges) nothing is read back before the blocks are: the seed edges'
endpoints, CSC positions and reverse ids are read zero-copy from tables pinned in place, uniform
negatives are drawn on the CPU (the CPU path's draws) and copied asynchronously from pinned
memory, the pair graphs' node sets are compacted with fixed-size ops, and the range checks
become device flags. With ``NeighborSampler(one_sync=True)`` all of it, the blocks' sizes
included, is read in one host read per batch; the per-layer path reads the flags and node counts
once, then its layers as usual.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import functools
import threading
import weakref

import numpy as np
import torch

from unified_tensor._streams import to_device_async

from ..graph._csc import CSCGraph, _plain
from ..graph._hetero_csc import HeteroCSCGraph
from ..graph._pair import PairGraph
from ._edges import edge_endpoints, excluded_positions
from ._layer_cpu import mix64_py
from ._neighbor import NeighborSampler, overrides_sample

__all__ = ["EdgePredictionSampler", "UniformNegativeSampler"]

Tensor = torch.Tensor
_MASK = (1 << 64) - 1


class UniformNegativeSampler:
    """``k`` negative edges per positive edge ``(u, v)``: ``(u, v')`` with ``v'`` drawn uniformly
    from the destination type's nodes (DGL's ``negative_sampler.Uniform``). Draws are keyed by
    the batch, so a run is reproducible.

    Parameters
    ----------
    k : int
        Negatives per positive edge.
    """

    def __init__(self, k: int):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.k = int(k)

    def __call__(self, src: Tensor, num_dst_nodes: int, key: int) -> Tuple[Tensor, Tensor]:
        """``(neg_src, neg_dst)`` for positive sources ``src`` (global ids, any device; drawn on
        the CPU and, for CUDA ``src``, copied without a host sync)."""
        gen = torch.Generator().manual_seed(key & ((1 << 63) - 1))
        n = src.numel() * self.k
        dst = to_device_async(torch.randint(0, max(num_dst_nodes, 1), (n,), generator=gen),
                               src.device)
        return src.repeat_interleave(self.k), dst.to(src.dtype)

    def __repr__(self) -> str:
        return f"UniformNegativeSampler(k={self.k})"


# Each graph's endpoint tables (edge_endpoints: src, dst, CSC position per edge id) pinned in place,
# so CUDA edge ids are looked up on the GPU, zero-copy, without a host sync.
_pinned_endpoints: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_pinned_lock = threading.Lock()


def _device_endpoints(g: CSCGraph, eids: Tensor, which=(0, 1, 2)) -> List[Tensor]:
    """The endpoint tables' entries (int64, ``eids``' device) of CUDA edge ids ``eids``; ids out
    of range read as 0 (the caller flags them)."""
    import unified_tensor as ut

    with _pinned_lock:
        tables = _pinned_endpoints.get(g)
    if tables is None:
        tables = tuple(ut.unified(t) for t in edge_endpoints(g))
        with _pinned_lock:
            _pinned_endpoints[g] = tables
    if tables[0].shape[0] == 0:   # no edges: every id is out of range (flagged)
        return [torch.zeros(eids.shape, dtype=torch.int64, device=eids.device) for _ in which]
    return [ut.gather(tables[i], eids, validate=False) for i in which]


def _sorted_distinct(p: Tensor) -> Tensor:
    """``p``'s values ascending and distinct without a host sync (``torch.unique`` reads its
    size): repeats become distinct values above every CSC position, sorted to the end, where the
    sampling kernels' bisection never looks."""
    v, _ = torch.sort(p.reshape(-1))
    if v.numel() < 2:
        return v
    dup = torch.zeros_like(v, dtype=torch.bool)
    dup[1:] = v[1:] == v[:-1]
    big = torch.iinfo(torch.int64).max - torch.arange(v.numel(), device=v.device)
    return torch.sort(torch.where(dup, big, v))[0]


def _raise_range(what: str, ids: Tensor, n: int) -> None:
    """The IndexError of a flagged range check (on the error path: one more read)."""
    bad = ids[(ids < 0) | (ids >= n)]
    v = int(bad.min()) if bool((bad < 0).any()) else int(bad.max())
    raise IndexError(what.format(bad=v, n=n))


def _edge_ids(v: Any, what: str) -> Tensor:
    """Edge ids a callable returned, as int64: integers only (no silent cast of floats)."""
    try:
        t = torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{what} must return edge ids (a tensor of integers), got "
                        f"{type(v).__name__}") from exc
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{what} must return integer edge ids, got dtype {t.dtype}")
    return t.reshape(-1).long()


def _check_negatives(pair: Any, num_src: int, num_dst: int) -> None:
    """A custom negative sampler's ``(src, dst)``: tensors of node ids in range."""
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, Tensor) for x in pair)):
        raise TypeError("negative_sampler(...) must return a tuple (src, dst) of id tensors")
    for x, n, what in ((pair[0], num_src, "source"), (pair[1], num_dst, "destination")):
        if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            raise TypeError(f"negative_sampler(...) returned {what} ids of dtype {x.dtype}")
        if x.numel():
            lo, hi = torch.stack([x.min(), x.max()]).tolist()
            if lo < 0 or hi >= n:
                raise IndexError(f"negative_sampler(...) returned {what} node "
                                 f"{lo if lo < 0 else hi}, outside [0, {n})")
    if pair[0].numel() != pair[1].numel():
        raise ValueError(f"negative_sampler(...) returned {pair[0].numel()} sources and "
                         f"{pair[1].numel()} destinations")


def _endpoint_pieces(seeds: Any, pos: Dict[Any, Any], neg: Dict[Any, Any],
                     hetero: bool) -> Dict[Any, List[Tensor]]:
    """The endpoint id tensors of the positive and negative pairs, listed per node type (``None``
    for a homogeneous graph), in the order both pair graphs number them."""
    pieces: Dict[Any, List[Tensor]] = {}
    for et in seeds:
        s_t, d_t = (et[0], et[2]) if hetero else (None, None)
        pieces.setdefault(s_t, []).append(pos[et][0])
        pieces.setdefault(d_t, []).append(pos[et][1])
        if et in neg:
            pieces.setdefault(s_t, []).append(neg[et][0])
            pieces.setdefault(d_t, []).append(neg[et][1])
    return pieces


def _pair_edge_indices(seeds: Any, neg: Dict[Any, Any], local: Dict[Any, Any],
                       hetero: bool) -> Tuple[Dict[Any, Tensor], Dict[Any, Tensor]]:
    """The positive and negative pair graphs' ``[2, n]`` local edge indices, taking the compacted
    endpoint pieces from ``local`` (an iterator per node type) in :func:`_endpoint_pieces`' order."""
    pos_ei, neg_ei = {}, {}
    for et in seeds:
        s_t, d_t = (et[0], et[2]) if hetero else (None, None)
        pos_ei[et] = torch.stack([next(local[s_t]), next(local[d_t])])
        if et in neg:
            neg_ei[et] = torch.stack([next(local[s_t]), next(local[d_t])])
    return pos_ei, neg_ei


def _compact(pieces: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
    """Unique nodes of the concatenated ``pieces`` in order of first appearance, and each
    piece's local ids."""
    from ._layer_cuda import relabel_first_appearance

    allv = torch.cat(pieces)
    nodes, local, _ = relabel_first_appearance(allv[:0], allv)
    out, pos = [], 0
    for p in pieces:
        out.append(local[pos:pos + p.numel()])
        pos += p.numel()
    return nodes, out


class EdgePredictionSampler:
    """A neighbour sampler for link prediction (DGL's ``as_edge_prediction_sampler``).

    Parameters
    ----------
    sampler : NeighborSampler
        Samples the blocks of the pair graphs' nodes.
    exclude : None, "self", "reverse_id", "reverse_types" or callable
        Edges removed from the blocks: none; the seed edges; the seed edges and their reverses
        ``reverse_eids[e]`` (homogeneous); the seed edges and the same ids of the reverse edge
        types ``reverse_etypes[etype]`` (heterogeneous); or ``exclude(seed_edges)`` (ids, or a
        dict ``{etype: ids}``).
    reverse_eids : Tensor, optional
        Reverse edge id of every edge (``"reverse_id"``).
    reverse_etypes : dict, optional
        ``{etype: reverse etype}`` (``"reverse_types"``).
    negative_sampler : callable, optional
        ``UniformNegativeSampler(k)`` or any callable ``(src, num_dst_nodes, key) -> (src, dst)``;
        an int ``k`` means ``UniformNegativeSampler(k)``.

    Examples
    --------
    >>> g = CSCGraph.from_edge_index(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]), 4)
    >>> s = EdgePredictionSampler(NeighborSampler([2], seed=0), exclude="self", negative_sampler=1)
    >>> input_nodes, pair, neg, blocks = s.sample(g, torch.tensor([0, 2]))
    >>> pair.num_edges(), neg.num_edges()
    (2, 2)
    """

    seed_kind = "edge"

    def __init__(self, sampler: NeighborSampler, exclude: Union[None, str, Callable] = None,
                 reverse_eids: Optional[Tensor] = None, reverse_etypes: Optional[Mapping] = None,
                 negative_sampler: Union[None, int, Callable] = None):
        if not isinstance(sampler, NeighborSampler):
            raise TypeError(f"sampler must be a samplers.NeighborSampler, got {type(sampler).__name__}")
        if exclude not in (None, "self", "reverse_id", "reverse_types") and not callable(exclude):
            raise ValueError(f"exclude must be None, 'self', 'reverse_id', 'reverse_types' or a "
                             f"callable, got {exclude!r}")
        if exclude == "reverse_id" and reverse_eids is None:
            raise ValueError("exclude='reverse_id' needs reverse_eids")
        if exclude == "reverse_types" and not isinstance(reverse_etypes, Mapping):
            raise ValueError("exclude='reverse_types' needs reverse_etypes, a dict {etype: reverse etype}")
        if isinstance(negative_sampler, (int, np.integer)) and not isinstance(negative_sampler, bool):
            negative_sampler = UniformNegativeSampler(int(negative_sampler))
        if negative_sampler is not None and not callable(negative_sampler):
            raise TypeError(f"negative_sampler must be callable or an int, got {negative_sampler!r}")
        self.sampler = sampler
        self.exclude = exclude
        # kept on the CPU: looked up with CPU ids per batch (never copied whole to a GPU)
        self.reverse_eids = None if reverse_eids is None else \
            torch.as_tensor(reverse_eids).long().cpu()
        self.reverse_etypes = dict(reverse_etypes or {})
        self.negative_sampler = negative_sampler

    def sample(self, graph: Union[CSCGraph, HeteroCSCGraph], seed_edges: Any):
        """One batch from seed edge ids (a tensor, or ``{etype: ids}`` for a heterogeneous graph):
        ``(input_nodes, pair_graph, neg_pair_graph, blocks)``, or without a negative sampler
        ``(input_nodes, pair_graph, blocks)``."""
        return self._sample(graph, seed_edges, None)

    def sample_distinct(self, graph: Any, seed_edges: Any, batch: Optional[int] = None, *,
                        seeds_checked: bool = False):
        """:meth:`sample` with the draws keyed by ``batch`` (the DataLoader's batch identity).
        ``seeds_checked`` is accepted for the DataLoader's sake; the seed edges' ids are checked
        per batch anyway (their endpoints are read from the graph)."""
        return self._sample(graph, seed_edges, batch)

    # ------------------------------------------------------------------------------------------
    def _sample(self, graph: Any, seed_edges: Any, batch: Optional[int]):
        hetero = isinstance(graph, HeteroCSCGraph)
        if not hetero and not isinstance(graph, CSCGraph):
            raise TypeError(f"graph must be a CSCGraph or HeteroCSCGraph, got {type(graph).__name__}")
        if hetero != isinstance(seed_edges, Mapping):
            raise TypeError("seed edges must be a dict {edge_type: ids} for a heterogeneous graph "
                            "and a tensor of ids for a homogeneous one")
        b = self.sampler._next_batch() if batch is None else batch   # one identity for the batch
        key = self.sampler._batch_key(b)
        seeds = ({graph.to_canonical_etype(et): _plain(torch.as_tensor(v)).long() for et, v in seed_edges.items()}
                 if hetero else {None: _plain(torch.as_tensor(seed_edges)).long()})
        device = next(iter(seeds.values())).device
        if device.type == "cuda" and not overrides_sample(self.sampler):
            return self._sample_cuda(graph, seeds, b, key, hetero, device)
        # Endpoints of the positive and negative edges, per edge type, in global ids.
        pos, neg = {}, {}
        for i, (et, eids) in enumerate(seeds.items()):
            g = graph[et] if hetero else graph
            src_all, dst_all, _ = edge_endpoints(g)
            n_e = src_all.numel()
            e = eids.cpu()   # one copy (a sync for CUDA ids); the range is checked on the CPU
            if e.numel() and (int(e.min()) < 0 or int(e.max()) >= n_e):
                raise IndexError(f"seed edges{'' if et is None else f'[{et!r}]'} must be edge ids in "
                                 f"[0, {n_e}), got {int(e.max()) if int(e.min()) >= 0 else int(e.min())}")
            pos[et] = (src_all[e].to(device), dst_all[e].to(device))
            if self.negative_sampler is not None:
                num_dst = graph.num_nodes(et[2]) if hetero else graph.num_nodes
                nkey = mix64_py(key ^ (((i + 1) * 0xD6E8FEB86659FD93) & _MASK))
                neg[et] = self.negative_sampler(pos[et][0], num_dst, nkey)
                if not isinstance(self.negative_sampler, UniformNegativeSampler):
                    _check_negatives(neg[et], graph.num_nodes(et[0]) if hetero else graph.num_nodes,
                                     num_dst)
                    # a user's sampler may build its ids on the CPU (torch.randint without device=)
                    neg[et] = tuple(x.to(device) for x in neg[et])
        # One compacted node set per node type for both pair graphs.
        pieces = _endpoint_pieces(seeds, pos, neg, hetero)
        nodes, local = {}, {}
        for nt, ps in pieces.items():
            nodes[nt], loc = _compact(ps)
            local[nt] = iter(loc)
        pos_ei, neg_ei = _pair_edge_indices(seeds, neg, local, hetero)
        idtype = graph.idtype
        if hetero:
            node_ids = {nt: v.to(idtype) for nt, v in nodes.items()}
            pair = PairGraph(node_ids, pos_ei, {et: seeds[et] for et in seeds})
            neg_pair = PairGraph(node_ids, neg_ei) if self.negative_sampler is not None else None
            seed_nodes: Any = node_ids
        else:
            node_ids = nodes[None].to(idtype)
            pair = PairGraph(node_ids, pos_ei[None], seeds[None])
            neg_pair = PairGraph(node_ids, neg_ei[None]) if self.negative_sampler is not None else None
            seed_nodes = node_ids
        # Excluded edges are removed before the draws, as DGL's sample_neighbors(exclude_edges=)
        # does: a node draws its fanout from the in-edges it keeps.
        if overrides_sample(self.sampler):   # a subclass's sample / sample_blocks is what runs
            input_nodes, blocks = self._sample_with_override(graph, seeds, seed_nodes, hetero)
        else:
            excluded = excluded_positions(graph, self._excluded(graph, seeds, hetero), hetero, device)
            input_nodes, _, blocks = self.sampler._sample(   # endpoints of checked edges: in range
                graph, seed_nodes, check_distinct=False, batch=b,
                exclude=excluded if hetero else excluded.get(None), seeds_checked=True)
        if neg_pair is None:
            return input_nodes, pair, blocks
        return input_nodes, pair, neg_pair, blocks

    def _sample_cuda(self, graph: Any, seeds: Dict[Any, Tensor], b: int, key: int, hetero: bool,
                     device: torch.device):
        """:meth:`_sample` for CUDA seed edges without a host sync before the sampling (see the
        module docstring); the sampler's own sampling, as ``_sample`` runs it, or the one-sync
        pipelines with every check and count in their one read."""
        from ._hetero import hetero_one_sync_fits, sample_hetero_one_sync
        from ._one_sync import one_sync_fits, read_values, relabel_padded, sample_padded_one_sync

        flags: List[Tuple[Tensor, Callable[[], None]]] = []   # (0-d device bool, raise it)
        pos, neg = {}, {}
        for i, (et, eids) in enumerate(seeds.items()):
            g = graph[et] if hetero else graph
            n_e = g.num_edges
            where = '' if et is None else f'[{et!r}]'
            flags.append((((eids < 0) | (eids >= n_e)).any(), functools.partial(
                _raise_range, f"seed edges{where} must be edge ids in [0, {{n}}), got {{bad}}",
                eids, n_e)))
            pos[et] = tuple(_device_endpoints(g, eids, (0, 1)))
            if self.negative_sampler is not None:
                num_dst = graph.num_nodes(et[2]) if hetero else graph.num_nodes
                nkey = mix64_py(key ^ (((i + 1) * 0xD6E8FEB86659FD93) & _MASK))
                pair = self.negative_sampler(pos[et][0], num_dst, nkey)
                if not isinstance(self.negative_sampler, UniformNegativeSampler):
                    num_src = graph.num_nodes(et[0]) if hetero else graph.num_nodes
                    pair = _device_negatives(pair, num_src, num_dst, device, flags)
                neg[et] = pair
        pieces = _endpoint_pieces(seeds, pos, neg, hetero)
        # One compacted node set per node type, padded (-1 past its count, a device scalar).
        idtype = graph.idtype
        nodes_pad, counts, local = {}, {}, {}
        for nt, ps in pieces.items():
            cap = graph.num_nodes(nt) if hetero else graph.num_nodes
            uniq, loc, num = relabel_padded(torch.empty(0, dtype=idtype, device=device),
                                            torch.cat([p.to(torch.int64) for p in ps]))
            nodes_pad[nt], counts[nt] = uniq[:cap], num
            parts, at = [], 0
            for p in ps:
                parts.append(loc[at:at + p.numel()])
                at += p.numel()
            local[nt] = iter(parts)
        pos_ei, neg_ei = _pair_edge_indices(seeds, neg, local, hetero)
        excluded = self._excluded_positions_cuda(graph, self._excluded(graph, seeds, hetero),
                                                 hetero, device, flags)
        sampler = self.sampler
        lk = lambda layer: sampler._layer_key(key, layer)   # noqa: E731 - the sampler's keys
        one_sync = sampler.one_sync and sampler.output_device is None
        if one_sync and hetero:
            fanouts = sampler._hetero_fanouts(graph)
            sizes = {nt: v.numel() for nt, v in nodes_pad.items()}
            if hetero_one_sync_fits(graph, sizes, fanouts, device):
                input_nodes, blocks, num, vals = sample_hetero_one_sync(
                    graph, nodes_pad, counts, fanouts, sampler.replace, lk, excluded,
                    extra=[f for f, _ in flags],
                    check_extra=functools.partial(self._raise_flagged, flags))
                return self._finish(graph, seeds, hetero, nodes_pad, num, vals, flags, pos_ei,
                                    neg_ei, input_nodes, blocks)
        elif one_sync and not any(isinstance(f, dict) for f in sampler.fanouts):
            m = nodes_pad[None].numel()
            if one_sync_fits(m, sampler.fanouts, graph.num_nodes, device):
                input_nodes, blocks, num, vals = sample_padded_one_sync(
                    graph, nodes_pad[None], sampler.fanouts, sampler.replace, lk,
                    excluded.get(None), num_seeds=counts[None], extra=[f for f, _ in flags],
                    check_extra=functools.partial(self._raise_flagged, flags))
                return self._finish(graph, seeds, hetero, nodes_pad, {None: num}, vals, flags,
                                    pos_ei, neg_ei, input_nodes, blocks)
        # The per-layer path: the checks and node counts in one read, then its layers.
        vals = read_values([f for f, _ in flags] + list(counts.values()))
        num = dict(zip(counts, vals[len(flags):]))
        self._raise_flagged(flags, vals[:len(flags)])
        seed_nodes: Any = {nt: v[:num[nt]] for nt, v in nodes_pad.items()}
        if not hetero:
            seed_nodes = seed_nodes[None]
        input_nodes, _, blocks = sampler._sample(
            graph, seed_nodes, check_distinct=False, batch=b,
            exclude=excluded if hetero else excluded.get(None), seeds_checked=True)
        return self._finish(graph, seeds, hetero, nodes_pad, num, [], [], pos_ei, neg_ei,
                            input_nodes, blocks)

    @staticmethod
    def _raise_flagged(flags, values) -> None:
        for (_, raise_it), v in zip(flags, values):
            if v:
                raise_it()

    def _finish(self, graph, seeds, hetero, nodes_pad, num, flag_values, flags, pos_ei, neg_ei,
                input_nodes, blocks):
        """Raise a flagged check, cut the node sets to their counts and package the batch as
        :meth:`_sample` does."""
        self._raise_flagged(flags, flag_values)
        if hetero:
            node_ids = {nt: v[:num[nt]] for nt, v in nodes_pad.items()}
            pair = PairGraph(node_ids, pos_ei, {et: seeds[et] for et in seeds})
            neg_pair = PairGraph(node_ids, neg_ei) if self.negative_sampler is not None else None
        else:
            node_ids = nodes_pad[None][:num[None]]
            pair = PairGraph(node_ids, pos_ei[None], seeds[None])
            neg_pair = PairGraph(node_ids, neg_ei[None]) if self.negative_sampler is not None else None
        if neg_pair is None:
            return input_nodes, pair, blocks
        return input_nodes, pair, neg_pair, blocks

    def _excluded_positions_cuda(self, graph: Any, excluded: Dict[Any, Tensor], hetero: bool,
                                 device: torch.device, flags: list) -> Dict[Any, Tensor]:
        """``excluded_positions`` on the GPU: the CSC positions (ascending, distinct, see
        :func:`_sorted_distinct`) of excluded edge ids, with their range check as a flag."""
        out = {}
        for et, eids in excluded.items():
            g = graph[et] if hetero else graph
            n_e = g.num_edges
            e = to_device_async(eids.reshape(-1).long(), device)
            where = '' if et is None else f' of {et!r}'
            flags.append((((e < 0) | (e >= n_e)).any(), functools.partial(
                _raise_range, f"excluded edge id {{bad}}{where} is outside [0, {{n}})", e, n_e)))
            out[et] = _sorted_distinct(_device_endpoints(g, e, (2,))[0])
        return out

    def _sample_with_override(self, graph: Any, seeds: Dict[Any, Tensor], seed_nodes: Any,
                              hetero: bool) -> Tuple[Any, Any]:
        """The blocks from the wrapped sampler's own ``sample`` (a subclass overrides it, or
        ``sample_blocks``), with the excluded edge ids passed as DGL does (``exclude_eids``)."""
        import inspect

        excluded = self._excluded(graph, seeds, hetero)
        kw: Dict[str, Any] = {}
        if excluded:
            try:
                params = inspect.signature(self.sampler.sample).parameters
            except (TypeError, ValueError):
                params = {}
            if "exclude_eids" not in params and not any(
                    p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                raise TypeError(f"EdgePredictionSampler(exclude={self.exclude!r}): the wrapped "
                                f"{type(self.sampler).__name__}.sample() must accept "
                                f"exclude_eids= (DGL's signature sample(g, seed_nodes, "
                                f"exclude_eids=None)) to leave the excluded edges out")
            kw["exclude_eids"] = excluded if hetero else excluded[None]
        result = self.sampler.sample(graph, seed_nodes, **kw)
        if not (isinstance(result, (tuple, list)) and len(result) == 3):
            raise TypeError(f"{type(self.sampler).__name__}.sample() must return (input_nodes, "
                            f"output_nodes, blocks), got {type(result).__name__}")
        return result[0], result[2]

    def _reverse_on_device(self, s: Tensor) -> Tensor:
        """``reverse_eids[s]`` for CUDA edge ids ``s`` (in range: out-of-range ones are flagged
        and read as 0), from the table pinned in place."""
        import unified_tensor as ut

        rev = getattr(self, "_reverse_pinned", None)
        if rev is None:   # a copy: the caller's tensor is left as it is (unpinned)
            rev = self._reverse_pinned = ut.unified(self.reverse_eids.contiguous().clone())
        return ut.gather(rev, s, validate=False)

    def _excluded(self, graph: Any, seeds: Dict[Any, Tensor], hetero: bool) -> Dict[Any, Tensor]:
        ex = self.exclude
        if ex is None:
            return {}
        if callable(ex):
            got = ex({et: v for et, v in seeds.items()} if hetero else seeds[None])
            if hetero:
                if not isinstance(got, Mapping):
                    raise TypeError("exclude(...) must return a dict {etype: ids} for a heterogeneous graph")
                return {graph.to_canonical_etype(et): _edge_ids(v, f"exclude(...)[{et!r}]")
                        for et, v in got.items()}
            return {None: _edge_ids(got, "exclude(...)")}
        out = {et: v for et, v in seeds.items()}
        if ex == "reverse_id":
            if hetero:
                raise ValueError("exclude='reverse_id' is for homogeneous graphs; use 'reverse_types'")
            if self.reverse_eids.numel() != graph.num_edges:
                raise ValueError(f"reverse_eids has {self.reverse_eids.numel()} entries but the "
                                 f"graph has {graph.num_edges} edges (one reverse id per edge)")
            s = seeds[None]
            if s.is_cuda:   # the table pinned in place, read zero-copy on the GPU (no sync)
                out[None] = torch.cat([s, self._reverse_on_device(s)])
            else:
                # On the CPU: the table stays where it is (no copy of all E entries per batch);
                # the positions are computed on the CPU anyway.
                out[None] = torch.cat([s, self.reverse_eids[s]])
        elif ex == "reverse_types":
            if not hetero:
                raise ValueError("exclude='reverse_types' is for heterogeneous graphs; use 'reverse_id'")
            for et, v in seeds.items():
                r = self.reverse_etypes.get(et, self.reverse_etypes.get(et[1]))
                if r is None:
                    continue
                r = graph.to_canonical_etype(r)
                out[r] = torch.cat([out[r], v]) if r in out else v
        return out


def _device_negatives(pair: Any, num_src: int, num_dst: int, device: torch.device,
                      flags: list) -> Tuple[Tensor, Tensor]:
    """A custom negative sampler's ``(src, dst)`` checked as :func:`_check_negatives` does, on
    ``device`` without a host sync: the range checks become flags read with the batch."""
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, Tensor) for x in pair)):
        raise TypeError("negative_sampler(...) must return a tuple (src, dst) of id tensors")
    out = []
    for x, n, what in ((pair[0], num_src, "source"), (pair[1], num_dst, "destination")):
        if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            raise TypeError(f"negative_sampler(...) returned {what} ids of dtype {x.dtype}")
        # a user's sampler may build its ids on the CPU (torch.randint without device=)
        x = to_device_async(x, device)
        if x.numel():
            flags.append((((x < 0) | (x >= n)).any(), functools.partial(
                _raise_range, f"negative_sampler(...) returned {what} node {{bad}}, outside "
                f"[0, {{n}})", x, n)))
        out.append(x)
    if pair[0].numel() != pair[1].numel():
        raise ValueError(f"negative_sampler(...) returned {pair[0].numel()} sources and "
                         f"{pair[1].numel()} destinations")
    return out[0], out[1]
