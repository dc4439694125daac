"""Uniform multi-layer neighbour sampler (DGL's ``NeighborSampler`` semantics) on CPU or GPU."""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..graph._block import Block
from ..graph._csc import CSCGraph, _plain
from ..graph._hetero_csc import HeteroCSCGraph
from ._hetero import sample_hetero_layers
from ._layer_cpu import mix64_py, sample_layer
from ._layer_cuda import sample_layer_cuda  # registers the sample.cu instances (no compile)

__all__ = ["NeighborSampler"]

_MASK = (1 << 64) - 1
# Largest fanout: seeds (< 2**31 per batch) x fanout stays far inside int64 in the kernels'
# counts and offsets; -1 (all neighbours) is the way to ask for more.
_MAX_FANOUT = (1 << 31) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _check_one_fanout(f: Any, where: str, allow_zero: bool) -> int:
    if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)):
        raise TypeError(f"{where} must be an int (positive, or -1 for all neighbours), "
                        f"got {f!r} of type {type(f).__name__}")
    if f < -1 or (f == 0 and not allow_zero):
        raise ValueError(f"{where} must be a positive int or -1 (all neighbours), got {f}")
    if f > _MAX_FANOUT:
        raise ValueError(f"{where} must be at most {_MAX_FANOUT} (-1 takes all neighbours), got {f}")
    return int(f)


def _check_fanouts(fanouts: Any) -> List[Union[int, Dict[Any, int]]]:
    if isinstance(fanouts, (str, bytes)) or not isinstance(fanouts, Sequence):
        raise TypeError(f"fanouts must be a list of ints, got {type(fanouts).__name__} (per-edge-type "
                        f"fanouts: a list of dicts {{edge_type: int}})")
    if len(fanouts) == 0:
        raise ValueError("fanouts must have at least one layer, got []")
    out: List[Union[int, Dict[Any, int]]] = []
    for i, f in enumerate(fanouts):
        if isinstance(f, Mapping):   # DGL's per-edge-type form; 0 skips an edge type
            if not f:
                raise ValueError(f"fanouts[{i}] is an empty dict")
            out.append({et: _check_one_fanout(v, f"fanouts[{i}][{et!r}]", True) for et, v in f.items()})
        else:
            out.append(_check_one_fanout(f, f"fanouts[{i}]", False))
    return out


def _check_seed(seed: Any) -> Optional[int]:
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    return int(seed) & _MASK


def batch_key(seed: int, batch: int) -> int:
    """The key of batch ``batch`` of a sampler seeded ``seed`` (every loader's draws)."""
    return mix64_py(mix64_py(seed) ^ ((int(batch) * _GOLDEN) & _MASK))


class NeighborSampler:
    """Uniform neighbour sampler: ``fanouts[i]`` in-neighbours per destination node for block
    ``i`` (blocks run from the input layer to the output layer, as DGL's).

    Parameters
    ----------
    fanouts : list of int, or of dict
        Neighbours per node per layer; ``-1`` takes all in-neighbours. For a
        :class:`~samplers.HeteroCSCGraph` a layer may be DGL's dict ``{edge_type: int}`` naming
        every edge type (relation name or canonical tuple; ``0`` skips one); an int applies to
        every edge type. Heterogeneous seeds are ``{node_type: ids}`` and the blocks are
        :class:`~samplers.HeteroBlock` (per-type ``srcdata`` / ``dstdata``, ``edge_index`` per
        canonical edge type); each edge type draws from its own key, on the CPU and the GPU alike.
    replace : bool
        Sample with replacement (always ``fanout`` draws for a node with neighbours). Without
        replacement (default) nodes with at most ``fanout`` neighbours take them all.
    seed : int, optional
        Base seed. Batch ``b`` (the ``b``-th call of :meth:`sample` since construction or
        :meth:`set_seed`) of layer ``l`` draws from a counter-based generator keyed by
        ``(seed, b, l, node)``, so a run is reproducible, does not depend on threading, and the
        CPU and GPU paths draw the same neighbours. ``None`` draws the seed from torch's global
        generator (so ``torch.manual_seed`` makes runs repeatable).
    prefetch_node_feats, prefetch_labels : list of str, optional
        Feature / label names the DataLoader puts into ``blocks[0].srcdata`` /
        ``blocks[-1].dstdata`` (DGL's arguments; the sampler itself only stores them).
    output_device : device, optional
        Move the result there before returning it.
    one_sync : bool
        GPU only: sample a batch with one host sync instead of about two per layer (outputs sized
        by upper bounds, see ``samplers.sampling._one_sync``); the blocks are identical. Used by
        :meth:`sample_distinct` (the DataLoader's call), heterogeneous graphs and link prediction
        too, when every fanout is ``>= 0``, the padded arrays stay under
        ``samplers.sampling._one_sync.MAX_PADDED_ENTRIES`` and their working memory under half of
        the GPU memory available (else the batch takes the per-layer path, same blocks, with a
        one-time warning). Off by default until it has been measured on a GPU (its logic is
        tested on the CPU).

    Seeds must be distinct (a repeated seed raises ``ValueError``; DGL's ``to_block`` does not
    support them either). Seeds on the CPU are sampled by the Numba path (graph ``"cpu"`` or
    ``"pinned"``); seeds on a GPU by ``cuda/sample.cu`` (graph ``"pinned"`` or ``"cuda"``).

    Examples
    --------
    >>> g = CSCGraph.from_edge_index(torch.tensor([[0, 1, 2, 2], [1, 2, 0, 1]]))
    >>> sampler = NeighborSampler([2, 2], seed=0)
    >>> input_nodes, output_nodes, blocks = sampler.sample(g, torch.tensor([1]))
    >>> blocks[-1].dstdata["_ID"].tolist()
    [1]
    """

    def __init__(self, fanouts: Sequence[int], replace: bool = False, seed: Optional[int] = None,
                 prefetch_node_feats: Optional[List[str]] = None,
                 prefetch_labels: Optional[List[str]] = None,
                 output_device: Optional[Union[str, torch.device]] = None,
                 one_sync: bool = False):
        self.fanouts = _check_fanouts(fanouts)
        if not isinstance(one_sync, (bool, np.bool_)):
            raise TypeError(f"one_sync must be a bool, got {type(one_sync).__name__}")
        self.one_sync = bool(one_sync)
        if not isinstance(replace, (bool, np.bool_)):
            raise TypeError(f"replace must be a bool, got {type(replace).__name__}")
        self.replace = bool(replace)
        self.prefetch_node_feats = list(prefetch_node_feats or [])
        self.prefetch_labels = list(prefetch_labels or [])
        self.output_device = None if output_device is None else torch.device(output_device)
        self._lock = threading.Lock()
        from unified_tensor._numba_guard import reset_locks_after_fork

        reset_locks_after_fork(self, "_lock")   # a forked child never inherits it held
        self.set_seed(seed)

    def set_seed(self, seed: Optional[int] = None) -> None:
        """Restart the batch sequence from ``seed`` (``None``: a fresh seed from torch's global
        generator)."""
        s = _check_seed(seed)
        if s is None:
            s = int(torch.randint(0, 2**62, (1,)).item())
        with self._lock:
            self._seed = s
            self._batch = 0

    @property
    def seed(self) -> int:
        """The base seed in use."""
        return self._seed

    def _next_batch(self) -> int:
        with self._lock:
            b = self._batch
            self._batch += 1
        return b

    def _next_key(self) -> int:
        return self._batch_key(self._next_batch())

    def _batch_key(self, batch: int) -> int:
        return batch_key(self._seed, batch)

    @staticmethod
    def _layer_key(batch_key: int, layer: int) -> int:
        return mix64_py(batch_key + (layer + 1) * 0xD1B54A32D192ED03)

    # ---------------------------------------------------------------- sampling
    def _check_seeds(self, graph: CSCGraph, seeds: Any) -> torch.Tensor:
        if isinstance(seeds, np.ndarray):
            if not np.issubdtype(seeds.dtype, np.integer):
                raise TypeError(f"seeds must hold integers, got numpy {seeds.dtype}")
            seeds = torch.from_numpy(np.ascontiguousarray(seeds))
        elif isinstance(seeds, (list, tuple)):
            seeds = torch.as_tensor(seeds) if len(seeds) else torch.empty(0, dtype=graph.idtype)
        if not isinstance(seeds, torch.Tensor):
            raise TypeError(f"seeds must be a torch.Tensor, numpy.ndarray or list of ints, got "
                            f"{type(seeds).__name__}")
        seeds = _plain(seeds)
        if seeds.dtype not in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"seeds must hold integers, got {seeds.dtype}")
        if seeds.dim() != 1:
            raise ValueError(f"seeds must be 1-D, got shape {tuple(seeds.shape)}")
        if seeds.is_cuda:
            if graph.placement == "cpu":
                raise ValueError("seeds are on a GPU but the graph is in pageable CPU memory; use "
                                 "graph.pin() (UVA) or graph.to('cuda'), or pass CPU seeds")
            if graph.placement == "cuda" and seeds.device != graph.device:
                raise ValueError(f"seeds are on {seeds.device} but the graph is on {graph.device}")
            # Range is checked by the count kernel (no extra sync); int64 -> int32 cast is safe
            # for in-range values and out-of-range ones are caught on the original values.
            if seeds.dtype != graph.idtype:
                if seeds.numel() and seeds.dtype == torch.int64 and graph.idtype == torch.int32:
                    lo_hi = torch.stack([seeds.min(), seeds.max()]).tolist()
                    self._check_range(lo_hi[0], lo_hi[1], graph)
                seeds = seeds.to(graph.idtype)
            return seeds.contiguous()
        if graph.placement == "cuda":
            raise ValueError(f"seeds are on the CPU but the graph is on {graph.device}; move the "
                             "seeds to that GPU")
        if seeds.numel():
            self._check_range(int(seeds.min()), int(seeds.max()), graph)
        return seeds.to(graph.idtype).contiguous()

    @staticmethod
    def _check_range(lo: int, hi: int, graph: CSCGraph) -> None:
        if lo < 0 or hi >= graph.num_nodes:
            raise IndexError(f"seeds must be node ids in [0, {graph.num_nodes}), got "
                             f"{lo if lo < 0 else hi}")

    def sample(self, graph: CSCGraph, seeds: Any, exclude_eids: Any = None
               ) -> Tuple[torch.Tensor, torch.Tensor, List[Block]]:
        """Sample the blocks of one minibatch (DGL's ``sample``: it calls :meth:`sample_blocks`,
        so a subclass may override either, and the DataLoader then runs the override).

        Parameters
        ----------
        graph : CSCGraph or HeteroCSCGraph
        seeds : torch.Tensor, numpy.ndarray or list of int
            Distinct output node ids (``{node_type: ids}`` for a heterogeneous graph). On the
            CPU: CPU sampler; on a GPU: GPU sampler.
        exclude_eids : torch.Tensor, dict or None
            Edge ids (``{etype: ids}`` for a heterogeneous graph) left out of every block, before
            the draws (DGL's ``exclude_eids``).

        Returns
        -------
        input_nodes : torch.Tensor
            ``blocks[0].srcdata["_ID"]``, on the seeds' device (or ``output_device``).
        output_nodes : torch.Tensor
            The seeds in the graph's idtype, ``blocks[-1].dstdata["_ID"]``.
        blocks : list of Block
            One per fanout, input layer first; all tensors on the seeds' device (or
            ``output_device``).
        """
        if exclude_eids is None:
            return self.sample_blocks(graph, seeds)
        return self.sample_blocks(graph, seeds, exclude_eids=exclude_eids)

    def sample_blocks(self, graph: CSCGraph, seed_nodes: Any, exclude_eids: Any = None
                      ) -> Tuple[torch.Tensor, torch.Tensor, List[Block]]:
        """What :meth:`sample` returns (DGL's ``BlockSampler.sample_blocks``, the method DGL's
        custom samplers override)."""
        exclude = None
        if exclude_eids is not None:
            exclude = _exclude_positions(graph, seed_nodes, exclude_eids)
        return self._sample(graph, seed_nodes, check_distinct=True, exclude=exclude)

    def sample_distinct(self, graph: CSCGraph, seeds: Any, batch: Optional[int] = None, *,
                        seeds_checked: bool = False
                        ) -> Tuple[torch.Tensor, torch.Tensor, List[Block]]:
        """:meth:`sample` for seeds the caller knows to be distinct (the DataLoader checks its
        indices once, at construction). On the GPU it skips the duplicate check, one host sync per
        batch (repeated seeds there give blocks with repeated destination nodes instead of an
        error); on the CPU the check costs nothing and stays.

        ``batch``: the batch's identity (the DataLoader passes ``(epoch << 32) + index``); the
        draws are keyed by ``(seed, batch, layer, node)``, so they do not depend on how many
        batches were sampled before (prefetch depth, a ``break`` in an earlier epoch). ``None``
        counts calls as :meth:`sample` does.

        ``seeds_checked``: the caller has checked that the seeds are in range (the DataLoader
        does, once); heterogeneous CUDA seeds then skip their range read (one host sync).
        """
        return self._sample(graph, seeds, check_distinct=False, batch=batch,
                            seeds_checked=seeds_checked)

    def _sample(self, graph: CSCGraph, seeds: Any, check_distinct: bool, batch: Optional[int] = None,
                exclude: Any = None, seeds_checked: bool = False):
        """``exclude``: CSC positions removed before the draws of every layer (ascending,
        distinct int64; a dict ``{etype: positions}`` for a heterogeneous graph), or ``None``."""
        if isinstance(graph, HeteroCSCGraph):
            return self._sample_hetero(graph, seeds, check_distinct, batch, exclude, seeds_checked)
        if not isinstance(graph, CSCGraph):
            raise TypeError(f"graph must be a samplers.CSCGraph or HeteroCSCGraph (see "
                            f"CSCGraph.from_dgl / from_edge_index), got {type(graph).__name__}")
        if any(isinstance(f, dict) for f in self.fanouts):
            raise ValueError("per-edge-type fanouts (dicts) need a heterogeneous graph "
                             "(samplers.HeteroCSCGraph)")
        seeds = self._check_seeds(graph, seeds)
        key = self._next_key() if batch is None else self._batch_key(batch)
        if seeds.is_cuda:
            input_nodes, blocks = self._sample_cuda(graph, seeds, key, check_distinct, exclude)
        else:
            input_nodes, blocks = self._sample_cpu(graph, seeds, key, exclude)
        output_nodes = seeds
        if self.output_device is not None:
            dev = self.output_device
            blocks = [b.to(dev) for b in blocks]
            input_nodes, output_nodes = input_nodes.to(dev), output_nodes.to(dev)
        return input_nodes, output_nodes, blocks

    def _hetero_fanouts(self, graph: HeteroCSCGraph) -> List[Dict[Any, int]]:
        out = []
        for i, f in enumerate(self.fanouts):
            if isinstance(f, dict):
                per = {graph.to_canonical_etype(et): v for et, v in f.items()}
                missing = [et for et in graph.canonical_etypes if et not in per]
                if missing:
                    raise ValueError(f"fanouts[{i}] gives no fanout for edge types {missing} "
                                     f"(DGL's dict form names every edge type; 0 skips one)")
                out.append(per)
            else:
                out.append({et: f for et in graph.canonical_etypes})
        return out

    def _sample_hetero(self, graph: HeteroCSCGraph, seeds: Any, check_distinct: bool,
                       batch: Optional[int], exclude: Optional[Dict[Any, torch.Tensor]] = None,
                       seeds_checked: bool = False):
        if not isinstance(seeds, Mapping) or not seeds:
            raise TypeError(f"seeds for a heterogeneous graph must be a non-empty dict "
                            f"{{node_type: ids}}, got {type(seeds).__name__}")
        fanouts = self._hetero_fanouts(graph)
        checked: Dict[str, torch.Tensor] = {}
        pending: Dict[str, torch.Tensor] = {}
        devices = set()
        for nt, ids in seeds.items():
            if nt not in graph.ntypes:
                raise KeyError(f"seeds has node type {nt!r}, which the graph lacks (has {graph.ntypes})")
            n = graph.num_nodes(nt)
            t = _plain(torch.as_tensor(ids) if not isinstance(ids, torch.Tensor) else ids)
            if t.dtype not in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8) or t.dim() != 1:
                raise TypeError(f"seeds[{nt!r}] must be a 1-D integer tensor, got {t.dtype} "
                                f"of shape {tuple(t.shape)}")
            # Range: checked here on the CPU and with distinct checks. Unchecked CUDA seeds are
            # read once for all types below (the count kernel cannot do it: a CSC is padded to
            # max(num_src, num_dst) nodes, and a type no relation points into has no kernel),
            # unless the caller (the DataLoader) checked them already.
            if t.numel() and (check_distinct or not t.is_cuda):
                lo, hi = torch.stack([t.min().long(), t.max().long()]).tolist()
                if lo < 0 or hi >= n:
                    raise IndexError(f"seeds[{nt!r}] must be node ids in [0, {n}), got "
                                     f"{lo if lo < 0 else hi}")
                if check_distinct and torch.unique(t).numel() != t.numel():
                    raise ValueError(f"seeds[{nt!r}] must be distinct")
            elif t.numel() and not seeds_checked:
                pending[nt] = torch.stack([t.min().long(), t.max().long()])
            if t.is_cuda and graph.placement == "cpu":
                raise ValueError("seeds are on a GPU but the graph is in pageable CPU memory; use "
                                 "graph.pin() (UVA) or graph.to('cuda'), or pass CPU seeds")
            if not t.is_cuda and graph.placement == "cuda":
                raise ValueError(f"seeds are on the CPU but the graph is on {graph.device}")
            if t.is_cuda and graph.placement == "cuda" and t.device != graph.device:
                raise ValueError(f"seeds[{nt!r}] are on {t.device} but the graph is on {graph.device}")
            devices.add(t.device)
            checked[nt] = t.to(graph.idtype).contiguous()
        if len(devices) != 1:
            raise ValueError(f"seeds of every node type must be on one device, got {sorted(map(str, devices))}")
        if pending:   # one host read for every unchecked type (CUDA seeds)
            ranges = torch.stack(list(pending.values())).tolist()
            for (nt, _), (lo, hi) in zip(pending.items(), ranges):
                n = graph.num_nodes(nt)
                if lo < 0 or hi >= n:
                    raise IndexError(f"seeds[{nt!r}] must be node ids in [0, {n}), got "
                                     f"{lo if lo < 0 else hi}")
        key = self._next_key() if batch is None else self._batch_key(batch)
        input_nodes, blocks = sample_hetero_layers(graph, checked, fanouts, self.replace,
                                                   lambda layer: self._layer_key(key, layer),
                                                   exclude, one_sync=self.one_sync)
        output_nodes = checked
        if self.output_device is not None:
            dev = self.output_device
            blocks = [b.to(dev) for b in blocks]
            input_nodes = {k: v.to(dev) for k, v in input_nodes.items()}
            output_nodes = {k: v.to(dev) for k, v in output_nodes.items()}
        return input_nodes, output_nodes, blocks

    def _sample_cpu(self, graph: CSCGraph, seeds: torch.Tensor, key: int,
                    exclude: Optional[torch.Tensor] = None):
        excl = None if exclude is None else exclude.cpu().numpy()
        ip = _plain(graph.indptr).numpy()
        ix = _plain(graph.indices).numpy()
        ei = None if graph.edge_ids is None else _plain(graph.edge_ids).numpy()
        blocks: List[Block] = []
        dst = seeds
        scratch = graph._take_scratch()
        try:
            for layer in range(len(self.fanouts)):
                fanout = self.fanouts[-1 - layer]
                src_np, edge_index, eid, dup = sample_layer(
                    ip, ix, ei, dst.numpy(), fanout, self.replace,
                    self._layer_key(key, layer), scratch, excl=excl)
                if dup >= 0:
                    v = int(dst[dup])
                    first = int(torch.nonzero(dst == v)[0, 0])
                    raise ValueError(f"seeds must be distinct, got node {v} twice (positions "
                                     f"{first} and {dup})")
                src = torch.from_numpy(src_np)
                blocks.append(Block._from_edge_index(src, dst, torch.from_numpy(edge_index),
                                                     torch.from_numpy(eid)))
                dst = src
        finally:
            graph._give_scratch(scratch)
        blocks.reverse()
        return dst, blocks

    def _sample_cuda(self, graph: CSCGraph, seeds: torch.Tensor, key: int, check_distinct: bool,
                     exclude: Optional[torch.Tensor] = None):
        from ._one_sync import padded_sizes_fit, sample_blocks_one_sync

        if self.one_sync and not check_distinct \
                and padded_sizes_fit(seeds.numel(), self.fanouts, graph.num_nodes):
            return sample_blocks_one_sync(graph, seeds, self.fanouts, self.replace,
                                          lambda layer: self._layer_key(key, layer), exclude)
        blocks: List[Block] = []
        dst = seeds
        for layer in range(len(self.fanouts)):
            fanout = self.fanouts[-1 - layer]
            src, edge_index, eid = sample_layer_cuda(graph, dst, fanout, self.replace,
                                                     self._layer_key(key, layer),
                                                     check=check_distinct and layer == 0,
                                                     excl=exclude)
            blocks.append(Block._from_edge_index(src, dst, edge_index, eid))
            dst = src
        blocks.reverse()
        return dst, blocks

    def __repr__(self) -> str:
        return f"NeighborSampler(fanouts={self.fanouts}, replace={self.replace}, seed={self._seed})"


def overrides_sample(sampler: Any) -> bool:
    """Whether ``sampler`` (a :class:`NeighborSampler` subclass instance) overrides
    :meth:`~NeighborSampler.sample` or :meth:`~NeighborSampler.sample_blocks`: then the user's
    method is what must run, not the fast paths that call :meth:`NeighborSampler._sample`."""
    cls = type(sampler)
    return (getattr(cls, "sample", None) is not NeighborSampler.sample
            or getattr(cls, "sample_blocks", None) is not NeighborSampler.sample_blocks)


def _exclude_positions(graph: Any, seeds: Any, exclude_eids: Any) -> Any:
    """``exclude_eids`` (ids, or ``{etype: ids}`` for a heterogeneous graph) -> the ascending CSC
    positions :meth:`NeighborSampler._sample` takes (a tensor, or ``{etype: positions}``)."""
    from ._edges import excluded_positions

    hetero = isinstance(graph, HeteroCSCGraph)
    if hetero != isinstance(exclude_eids, Mapping):
        raise TypeError("exclude_eids must be a dict {edge_type: ids} for a heterogeneous graph "
                        f"and a tensor of edge ids for a homogeneous one, got "
                        f"{type(exclude_eids).__name__}")

    def ids(v: Any, what: str) -> torch.Tensor:
        t = torch.as_tensor(v)
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(f"{what} must be integer edge ids, got dtype {t.dtype}")
        return t.reshape(-1).long()

    if hetero:
        first = next(iter(seeds.values()), None) if isinstance(seeds, Mapping) else None
        device = first.device if isinstance(first, torch.Tensor) else torch.device("cpu")
        ex = {graph.to_canonical_etype(et): ids(v, f"exclude_eids[{et!r}]")
              for et, v in exclude_eids.items()}
        return excluded_positions(graph, ex, True, device)
    device = seeds.device if isinstance(seeds, torch.Tensor) else torch.device("cpu")
    return excluded_positions(graph, {None: ids(exclude_eids, "exclude_eids")}, False, device)[None]
