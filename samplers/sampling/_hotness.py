"""Presampling: how often minibatches read each node's feature row, as a ``hotness`` for
:func:`unified_tensor.cache`.

Out-degree (:meth:`~samplers.CSCGraph.out_degrees`) predicts which rows neighbour sampling reads
most without sampling anything; counting the rows that a few real batches read (GNNLab's
presampling) measures it instead, for the actual seeds, fanouts and sampler, and also works where
out-degree is a poor guide (training seeds concentrated in one region of the graph, heterogeneous
graphs, weighted or temporal sampling).
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Dict, Iterable, Optional, Union

import numpy as np
import torch

__all__ = ["presample_hotness"]

Counts = Union[torch.Tensor, Dict[Any, torch.Tensor]]


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _batch_ids(batch: Any, i: int) -> Any:
    """The input-node ids of batch ``i``: a tensor, or a dict ``{ntype: tensor}``."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise TypeError(f"batch {i} is an empty {type(batch).__name__}; expected "
                            f"(input_nodes, ...) as samplers.DataLoader yields")
        return batch[0]
    if hasattr(batch, "n_id"):                      # PyG Data (NeighborLoader batch)
        return batch.n_id
    if hasattr(batch, "node_types"):                # PyG HeteroData: batch[nt].n_id per type
        out = {}
        for nt in batch.node_types:
            store = batch[nt]
            if not hasattr(store, "n_id"):
                raise ValueError(f"batch {i} (HeteroData-like): node type {nt!r} has no n_id "
                                 f"(the ids of the nodes the batch read)")
            out[nt] = store.n_id
        return out
    raise TypeError(f"batch {i}: unknown batch form {type(batch).__name__}; expected a tuple/list "
                    f"(input_nodes, ...) as samplers.DataLoader yields, or a PyG Data with n_id / "
                    f"HeteroData with [node_type].n_id")


def _accumulate(counts: torch.Tensor, ids: Any, where: str) -> None:
    """``counts += bincount(ids)``, ``ids`` checked: a 1-D integer tensor in ``[0, len(counts))``."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{where}: node ids must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"{where}: node ids must be integers, got dtype {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(f"{where}: node ids must be 1-D, got shape {tuple(ids.shape)}")
    if ids.numel() == 0:
        return
    if type(ids) is not torch.Tensor:               # e.g. a UnifiedTensor: plain view, no copy
        ids = ids.as_subclass(torch.Tensor)
    ids = ids.to("cpu", torch.int64)
    n = counts.numel()
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= n:
        raise IndexError(f"{where}: node id {lo if lo < 0 else hi} outside [0, num_nodes={n})")
    counts += torch.bincount(ids, minlength=n)


def presample_hotness(batches: Iterable[Any], num_nodes: Union[int, Dict[Any, int]],
                      num_batches: Optional[int] = None) -> Counts:
    """How many times the first ``num_batches`` batches read each node's feature row.

    A batch reads the features of its input nodes (``blocks[0]``'s source nodes; the ``n_id`` of a
    PyG batch), so the count of a node is the number of batches it is an input node of. Used as
    ``hotness=`` of :func:`unified_tensor.cache` it caches the rows that training actually reads
    most (presampling, as GNNLab does); that can beat :meth:`CSCGraph.out_degrees` where the
    training seeds are a small or skewed part of the graph. On ``bench/cache_hits.py``'s synthetic
    power-law graph (1M nodes, fanouts 15,10,5, batch 1024) 40 presampled batches (other shuffling
    and sampler seeds than the 40 measured) gave 96-98% of the best static cache's hit rate, and
    out-degree did as well there (``bench/results/cache_hits_cpu.json``).

    Parameters
    ----------
    batches : iterable
        Batches, e.g. a :class:`samplers.DataLoader` or an iterator over one. Each batch is one of

        * a tuple or list whose first element is the input-node ids (what
          :class:`samplers.DataLoader` yields: ``(input_nodes, output_nodes, blocks)``): a 1-D
          integer tensor, or for a heterogeneous graph a dict ``{node_type: ids}``;
        * a PyG ``Data`` with ``n_id`` (homogeneous), or a ``HeteroData`` with
          ``batch[node_type].n_id`` for each of its node types (heterogeneous).

        Ids may be int8 to int64, on any device (counted on the CPU). A loader or other iterable
        that is not its own iterator is iterated afresh (one new epoch) and the iterator closed
        when done; an iterator is left positioned after the last batch read.
    num_nodes : int or dict
        Number of nodes (rows of the feature table), or ``{node_type: count}`` for heterogeneous
        batches; a node type absent from a batch counts nothing in it.
    num_batches : int, optional
        Count only the first ``num_batches`` batches (fewer if ``batches`` ends first); ``None``
        counts them all.

    Returns
    -------
    torch.Tensor or dict of torch.Tensor
        int64 CPU counts of length ``num_nodes``; a dict ``{node_type: counts}`` with every key of
        ``num_nodes`` when it is a dict.

    Raises
    ------
    TypeError
        ``num_nodes`` not an int (or a dict of ints), ``num_batches`` not an int, a batch of an
        unknown form, ids that are not an integer tensor (bool, float), or a batch whose form
        (tensor or dict of node types) does not match ``num_nodes``'s.
    ValueError
        A negative ``num_nodes`` or ``num_batches``, ids not 1-D, a batch node type missing
        from ``num_nodes``, a HeteroData node type without ``n_id``.
    IndexError
        An id outside ``[0, num_nodes)`` (of its node type).

    Examples
    --------
    >>> import unified_tensor as ut
    >>> from samplers import CSCGraph, DataLoader, NeighborSampler, presample_hotness
    >>> loader = DataLoader(graph, train_ids, NeighborSampler([15, 10, 5], seed=1),
    ...                     batch_size=1024, shuffle=True, seed=1)           # doctest: +SKIP
    >>> feats = ut.unified(feats)                                          # doctest: +SKIP
    >>> ut.cache(feats, hotness=presample_hotness(loader, graph.num_nodes, 50),
    ...          max_rows=graph.num_nodes // 10)    # the 10% most-read rows  # doctest: +SKIP
    """
    hetero = isinstance(num_nodes, Mapping)
    if hetero:
        if not num_nodes:
            raise ValueError("num_nodes is an empty dict; give {node_type: number of nodes}")
        counts: Dict[Any, torch.Tensor] = {
            nt: torch.zeros(_check_count(f"num_nodes[{nt!r}]", n), dtype=torch.int64)
            for nt, n in num_nodes.items()}
    else:
        counts_1 = torch.zeros(_check_count("num_nodes", num_nodes), dtype=torch.int64)
    if num_batches is not None:
        num_batches = _check_count("num_batches", num_batches)
    if isinstance(batches, (torch.Tensor, Mapping, str, bytes)) or not hasattr(batches, "__iter__"):
        raise TypeError(f"batches must be an iterable of batches (e.g. a samplers.DataLoader), "
                        f"got {type(batches).__name__}")

    it = iter(batches)
    owned = it is not batches                       # we started it (a new epoch): we close it
    try:
        for i, batch in enumerate(itertools.islice(it, num_batches)):
            ids = _batch_ids(batch, i)
            if hetero:
                if not isinstance(ids, Mapping):
                    raise TypeError(f"batch {i}: num_nodes is a dict of node types but the batch's "
                                    f"input nodes are a {type(ids).__name__}; pass num_nodes as an "
                                    f"int for homogeneous batches")
                unknown = [nt for nt in ids if nt not in counts]
                if unknown:
                    raise ValueError(f"batch {i}: node type(s) {unknown} not in num_nodes "
                                     f"(which has {list(counts)})")
                for nt, t in ids.items():
                    _accumulate(counts[nt], t, f"batch {i}, node type {nt!r}")
            else:
                if isinstance(ids, Mapping):
                    raise TypeError(f"batch {i}: the batch's input nodes are a dict of node types "
                                    f"{list(ids)} but num_nodes is an int; pass num_nodes as "
                                    f"{{node_type: number of nodes}} for heterogeneous batches")
                _accumulate(counts_1, ids, f"batch {i}")
    finally:
        if owned:
            close = getattr(it, "close", None)
            if callable(close):
                close()
    return counts if hetero else counts_1
