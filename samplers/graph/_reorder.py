"""Locality orders: renumber a graph and its node tables once, so that the feature rows a batch
reads share host pages (DESIGN.md, "Locality order").

:func:`reorder` computes a node permutation, and returns the renumbered :class:`CSCGraph`, the
node tables with their rows moved, id lists mapped, and both id maps (a :class:`Reordering`).
Orders:

* ``"degree"``: by hotness descending (default hotness: out-degree, how often uniform sampling draws
  a node), ties by old id: hot rows contiguous, no neighbourhood structure (DGL's degree sort);
* ``"community"`` (default): the hottest ``hot_fraction`` of the nodes first (by hotness), then the
  rest grouped by a multilevel, size-constrained label propagation on the undirected graph (the
  coarsening pass of multilevel partitioners: clusters of at most ``cluster_size`` nodes, then
  clusters of clusters up to ``cluster_size * 16 ** k``), hottest first inside a cluster: nodes
  that sample each other sit on the same pages, at several scales;
* a permutation tensor: ``order[new_id] = old_id`` (DGL's ``reorder_graph(permute_algo="custom")``).

What changes for the user: everything indexed by node is in the new ids. Seeds given to a sampler
must be new ids (``r.to_new(seeds)``, or pass the id lists as ``ids=`` and take ``r.ids``); node ids
that come out (``input_nodes``, ``output_nodes``, ``Block`` ``_ID`` data, predictions' row order)
are new ids, ``r.to_old(...)`` maps them back. Node tables passed here (features, labels, masks)
are permuted so that ``new_table[r.new_of_old[v]] == table[v]``; a table not passed must be
permuted with :meth:`Reordering.permute_rows` before it is gathered with new ids. Edge ids are not
renumbered: the new graph's ``edge_ids`` are the old ids, so edge tables and ``exclude_eids`` need
no change. The in-neighbour lists keep their order, so ``fanout=-1`` sampling of mapped seeds gives
exactly the mapped neighbourhoods; random draws give other (equally distributed) samples.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch

from unified_tensor import CompressedTensor

from ._csc import CSCGraph, _plain, _sampler_array

__all__ = ["reorder", "Reordering", "ORDERS"]

logger = logging.getLogger("samplers")

#: Named orders of :func:`reorder`.
ORDERS = ("community", "degree")
_LEVEL_GROWTH = 16          # each level's clusters may hold this many more nodes than the last

Table = Union[torch.Tensor, np.ndarray]


# ------------------------------------------------------------------------------------ kernels
def _symmetric_py(indptr, indices, n):
    """Undirected adjacency (CSR, int32 ``idx``) of a CSC graph: in- and out-neighbours of every
    node, self loops dropped, parallel edges kept (they weigh more)."""
    deg = np.zeros(n + 1, np.int64)
    for v in range(n):
        for j in range(indptr[v], indptr[v + 1]):
            u = indices[j]
            if u != v:
                deg[v + 1] += 1
                deg[u + 1] += 1
    for v in range(n):
        deg[v + 1] += deg[v]
    ptr = deg.copy()
    idx = np.empty(ptr[n], np.int32)
    for v in range(n):
        for j in range(indptr[v], indptr[v + 1]):
            u = indices[j]
            if u != v:
                idx[deg[v]] = u
                deg[v] += 1
                idx[deg[u]] = v
                deg[u] += 1
    return ptr, idx


def _propagate_py(ptr, idx, wt, node_w, label, size, max_size, visit, rounds):
    """Size-constrained label propagation, in place on ``label`` / ``size`` (Gauss-Seidel, in
    ``visit`` order): a node moves to the neighbour label of largest total edge weight (``wt``;
    empty = all 1) whose cluster stays within ``max_size``, if that beats its own label's weight.
    Stops after ``rounds`` sweeps or when under 0.1 % of the nodes move. Returns the sweeps run."""
    n = ptr.shape[0] - 1
    score = np.zeros(n, np.float64)
    touched = np.empty(n, np.int64)
    unweighted = wt.shape[0] == 0
    done = 0
    for _ in range(rounds):
        moved = 0
        for t in range(n):
            v = visit[t]
            cur = label[v]
            k = 0
            for j in range(ptr[v], ptr[v + 1]):
                lab = label[idx[j]]
                if score[lab] == 0.0:
                    touched[k] = lab
                    k += 1
                score[lab] += 1.0 if unweighted else wt[j]
            best = cur
            best_score = score[cur]
            w = node_w[v]
            for i in range(k):
                lab = touched[i]
                if lab != cur and score[lab] > best_score and size[lab] + w <= max_size:
                    best, best_score = lab, score[lab]
            for i in range(k):
                score[touched[i]] = 0.0
            if best != cur:
                size[cur] -= w
                size[best] += w
                label[v] = best
                moved += 1
        done += 1
        if moved * 1000 < n:
            break
    return done


def _contract_py(ptr, idx, wt, label, num_clusters):
    """The cluster graph (CSR, float64 weights) of ``label`` (``0..num_clusters-1``): one entry per
    pair of distinct adjacent clusters, weighing the sum of the edges between them."""
    n = ptr.shape[0] - 1
    first = np.zeros(num_clusters + 1, np.int64)
    for v in range(n):
        first[label[v] + 1] += 1
    for c in range(num_clusters):
        first[c + 1] += first[c]
    members = np.empty(n, np.int64)
    fill = first.copy()
    for v in range(n):
        members[fill[label[v]]] = v
        fill[label[v]] += 1
    score = np.zeros(num_clusters, np.float64)
    touched = np.empty(num_clusters, np.int64)
    cptr = np.zeros(num_clusters + 1, np.int64)
    cidx = np.empty(idx.shape[0], np.int32)
    cwt = np.empty(idx.shape[0], np.float64)
    unweighted = wt.shape[0] == 0
    e = 0
    for c in range(num_clusters):
        k = 0
        for m in range(first[c], first[c + 1]):
            v = members[m]
            for j in range(ptr[v], ptr[v + 1]):
                lab = label[idx[j]]
                if lab != c:
                    if score[lab] == 0.0:
                        touched[k] = lab
                        k += 1
                    score[lab] += 1.0 if unweighted else wt[j]
        for i in range(k):
            cidx[e] = touched[i]
            cwt[e] = score[touched[i]]
            score[touched[i]] = 0.0
            e += 1
        cptr[c + 1] = e
    return cptr, cidx[:e].copy(), cwt[:e].copy()


@functools.lru_cache(maxsize=None)
def _kernels():
    """(symmetric, propagate, contract), Numba-compiled on first use when Numba is there."""
    from unified_tensor._deps import has_numba

    if not has_numba():  # pragma: no cover - both environments ship numba
        return _symmetric_py, _propagate_py, _contract_py
    from numba import njit

    jit = njit(nogil=True, cache=True)
    return jit(_symmetric_py), jit(_propagate_py), jit(_contract_py)


# ------------------------------------------------------------------------------------ orders
def _degree_order(hot: np.ndarray) -> np.ndarray:
    return np.argsort(-hot, kind="stable")


def _community_order(indptr: np.ndarray, indices: np.ndarray, hot: np.ndarray, hot_fraction: float,
                     cluster_size: int, levels: int, rounds: int, seed: int) -> np.ndarray:
    """``old_of_new`` of the community order (module docstring)."""
    n = hot.shape[0]
    symmetric, propagate, contract = _kernels()
    rng = np.random.default_rng(seed)
    ptr, idx = symmetric(indptr, indices, n)
    wt = np.empty(0, np.float64)
    node_w = np.ones(n, np.int64)
    member = np.arange(n, dtype=np.int64)   # the current level's cluster of every node
    keys = []                               # cluster ids, finest level first
    cap = cluster_size
    for _ in range(levels):
        m = ptr.shape[0] - 1
        label = np.arange(m, dtype=np.int64)
        size = node_w.copy()
        propagate(ptr, idx, wt, node_w, label, size, cap, rng.permutation(m), rounds)
        uniq, label = np.unique(label, return_inverse=True)
        member = label[member]
        keys.append(member)
        if uniq.shape[0] * 2 > m or uniq.shape[0] <= 1:   # no longer coarsening
            break
        ptr, idx, wt = contract(ptr, idx, wt, label, uniq.shape[0])
        node_w = np.bincount(label, weights=node_w, minlength=uniq.shape[0]).astype(np.int64)
        cap *= _LEVEL_GROWTH
    return hot_first_order(hot, keys, hot_fraction)


def hot_first_order(hot: np.ndarray, keys: list, hot_fraction: float) -> np.ndarray:
    """``old_of_new``: the hottest ``hot_fraction`` of the nodes first, by hotness alone; then the
    rest grouped by ``keys`` (cluster ids per node, finest level first; changed in place), hottest
    first inside the finest group, ties by old id."""
    n = hot.shape[0]
    num_hot = int(round(hot_fraction * n))
    is_cold = np.ones(n, np.int8)
    if num_hot:
        top = np.argsort(-hot, kind="stable")[:num_hot]
        is_cold[top] = 0
        for k in keys:   # the hot prefix is ordered by hotness alone
            k[top] = -1
    # lexsort: last key is the primary one
    return np.lexsort([np.arange(n), -hot] + list(keys) + [is_cold])


# ------------------------------------------------------------------------------------ results
def _check_ids(ids: Any, n: int, name: str) -> None:
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype in (torch.bool, torch.complex64, torch.complex128):
            raise TypeError(f"{name} must hold integer node ids, got dtype {ids.dtype}")
        bad = ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n)
    elif isinstance(ids, np.ndarray):
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{name} must hold integer node ids, got numpy dtype {ids.dtype}")
        bad = ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray of node ids, got "
                        f"{type(ids).__name__}")
    if bad:
        lo, hi = int(ids.min()), int(ids.max())
        raise IndexError(f"{name} must hold node ids in [0, {n}), got values in [{lo}, {hi}]")


def _map(table: torch.Tensor, ids: Any, name: str) -> Any:
    """``table[ids]`` keeping ``ids``' type, dtype and device."""
    _check_ids(ids, table.numel(), name)
    if isinstance(ids, np.ndarray):
        return table.numpy()[ids].astype(ids.dtype, copy=False)
    return table.to(ids.device)[ids.long()].to(ids.dtype)


@dataclasses.dataclass(repr=False)
class Reordering:
    """The result of :func:`reorder`.

    Attributes
    ----------
    graph : CSCGraph
        The renumbered graph, on the CPU: node ``new_of_old[v]`` has the in-edges of ``v`` (same
        order), sources renumbered, and ``edge_ids`` the old edge ids.
    tables : tuple
        The node tables in the new row order (``new[new_of_old[v]] == old[v]``), same type, dtype
        and device as given.
    ids : tensor, dict, list or None
        The ``ids`` argument with every id mapped to its new id (same structure and types).
    new_of_old : torch.Tensor
        int64 ``[num_nodes]`` (CPU): the new id of every old id.
    old_of_new : torch.Tensor
        int64 ``[num_nodes]`` (CPU): the old id of every new id (the permutation).
    """

    graph: CSCGraph
    tables: Tuple[Table, ...]
    ids: Any
    new_of_old: torch.Tensor
    old_of_new: torch.Tensor

    def to_new(self, ids: Table) -> Table:
        """New ids of old node ids (seeds, id lists); same type, dtype and device as ``ids``."""
        return _map(self.new_of_old, ids, "ids")

    def to_old(self, ids: Table) -> Table:
        """Old ids of new node ids (``input_nodes``, ``Block`` ``_ID`` data); same type, dtype and
        device as ``ids``."""
        return _map(self.old_of_new, ids, "ids")

    def permute_rows(self, table: Table) -> Table:
        """``table`` (one row per node, in old ids) in the new row order: a new array of the same
        type, dtype and device."""
        return _permute(table, self.old_of_new, "table")

    def __repr__(self) -> str:
        return (f"Reordering(graph={self.graph!r}, tables={len(self.tables)}, "
                f"ids={'None' if self.ids is None else type(self.ids).__name__})")


def _permute(table: Table, old_of_new: torch.Tensor, name: str) -> Table:
    n = old_of_new.numel()
    if isinstance(table, np.ndarray):
        if table.ndim < 1 or table.shape[0] != n:
            raise ValueError(f"{name} must have one row per node ({n}), got shape {table.shape}")
        return np.take(table, old_of_new.numpy(), axis=0)
    if not isinstance(table, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray with one row per node, "
                        f"got {type(table).__name__}")
    if table.dim() < 1 or table.shape[0] != n:
        raise ValueError(f"{name} must have one row per node ({n}), got shape {tuple(table.shape)}")
    return torch.index_select(_plain(table), 0, old_of_new.to(table.device))


def _map_ids(ids: Any, new_of_old: torch.Tensor) -> Any:
    if ids is None:
        return None
    if isinstance(ids, Mapping):
        return {k: _map(new_of_old, v, f"ids[{k!r}]") for k, v in ids.items()}
    if isinstance(ids, (list, tuple)):
        return type(ids)(_map(new_of_old, v, f"ids[{i}]") for i, v in enumerate(ids))
    return _map(new_of_old, ids, "ids")


def _renumber(graph: CSCGraph, old_of_new: np.ndarray, new_of_old: np.ndarray) -> CSCGraph:
    """The CSC of ``graph`` with node ``v`` renamed ``new_of_old[v]`` (CPU)."""
    ip = _plain(graph.indptr).cpu().numpy()
    ix = _plain(graph.indices).cpu().numpy()
    n, e = graph.num_nodes, ix.shape[0]
    deg = np.diff(ip)[old_of_new]
    new_ip = np.zeros(n + 1, np.int64)
    np.cumsum(deg, out=new_ip[1:])
    # CSC position (old) of every new position: start of the old list + rank inside it
    pos = np.repeat(ip[:-1][old_of_new].astype(np.int64) - new_ip[:-1], deg)
    pos += np.arange(e, dtype=np.int64)
    idt = graph.idtype
    np_idt = np.int32 if idt == torch.int32 else np.int64
    indices = _sampler_array(e, idt, torch.device("cpu"))
    indices.numpy()[:] = new_of_old.astype(np_idt, copy=False)[ix[pos]]
    eids = _sampler_array(e, idt, torch.device("cpu"))
    if graph.edge_ids is None:
        eids.numpy()[:] = pos
    else:
        eids.numpy()[:] = _plain(graph.edge_ids).cpu().numpy()[pos]
    indptr = _sampler_array(n + 1, graph.indptr.dtype, torch.device("cpu"))
    indptr.numpy()[:] = new_ip
    return CSCGraph(indptr, indices, eids, validate=False)


# ------------------------------------------------------------------------------------ public
def reorder(graph: CSCGraph, *tables: Table, order: Union[str, Table] = "community",
            ids: Any = None, hotness: Optional[Table] = None, hot_fraction: float = 0.01,
            cluster_size: int = 256, levels: int = 3, rounds: int = 8,
            seed: int = 0) -> Reordering:
    """Renumber ``graph`` and its node tables once for locality (module docstring: the orders and
    exactly what changes for the user).

    Parameters
    ----------
    graph : CSCGraph
        The graph (any placement; read on the CPU).
    *tables : torch.Tensor or numpy.ndarray
        Node tables, one row per node (features, labels, masks, ...): returned with rows permuted,
        same type, dtype and device.
    order : str or permutation
        ``"community"`` (default), ``"degree"``, or ``old_of_new`` as a 1-D integer tensor/array
        holding each of ``0..num_nodes-1`` once.
    ids : tensor, numpy array, dict or list/tuple of them, optional
        Node-id lists in old ids (train/val/test seeds): returned in :attr:`Reordering.ids`, mapped.
    hotness : tensor or numpy array, optional
        How often each node's row is read, ``[num_nodes]`` (e.g. :func:`samplers.presample_hotness`);
        ``None``: ``graph.out_degrees()``.
    hot_fraction : float
        ``"community"``: share of the nodes, hottest first, put before the clusters.
    cluster_size : int
        ``"community"``: most nodes in a finest-level cluster (256 float32 rows of width 128 are 32
        pages of 4 KiB); each next level allows 16x more.
    levels : int
        ``"community"``: cluster levels (>= 1).
    rounds : int
        ``"community"``: most label-propagation sweeps per level.
    seed : int
        ``"community"``: seed of the sweep order (the result is deterministic).

    Returns
    -------
    Reordering
        ``graph`` (CPU), ``tables``, ``ids``, ``new_of_old``, ``old_of_new``; ``to_new`` / ``to_old``
        map ids, ``permute_rows`` permutes a further table.

    Examples
    --------
    >>> g = CSCGraph.from_edge_index(torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]]))
    >>> x = torch.arange(4.0).unsqueeze(1)
    >>> r = reorder(g, x, order=torch.tensor([2, 3, 0, 1]))
    >>> r.tables[0].flatten().tolist(), r.to_new(torch.tensor([0])).tolist()
    ([2.0, 3.0, 0.0, 1.0], [2])
    """
    if not isinstance(graph, CSCGraph):
        raise TypeError(f"graph must be a samplers.CSCGraph, got {type(graph).__name__}")
    n = graph.num_nodes
    if graph.edge_ids is None and graph.idtype == torch.int32 and graph.num_edges > 2**31 - 1:
        raise ValueError(f"graph has {graph.num_edges} >= 2^31 edges and int32 ids: the renumbered "
                         f"graph's edge ids (old CSC positions) need int64 indices")
    for i, t in enumerate(tables):
        if isinstance(t, CompressedTensor):
            raise TypeError(f"tables[{i}] is a compressed table ({t.kind}): reorder the float "
                            f"table first, then compress the reordered one (ut.compress("
                            f"r.tables[{i}], ...)); a compressed table's rows cannot be moved")
        if not isinstance(t, (torch.Tensor, np.ndarray)):
            raise TypeError(f"tables[{i}] must be a torch.Tensor or numpy.ndarray with one row per "
                            f"node, got {type(t).__name__}")
        if t.ndim < 1 or t.shape[0] != n:
            raise ValueError(f"tables[{i}] must have one row per node ({n}), got shape "
                             f"{tuple(t.shape)}")
    for name, value, lo in (("cluster_size", cluster_size, 1), ("levels", levels, 1),
                            ("rounds", rounds, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < lo:
            raise ValueError(f"{name} must be >= {lo}, got {value}")
    if isinstance(hot_fraction, bool) or not isinstance(hot_fraction, (int, float, np.floating)):
        raise TypeError(f"hot_fraction must be a number, got {type(hot_fraction).__name__}")
    if not 0.0 <= float(hot_fraction) <= 1.0:
        raise ValueError(f"hot_fraction must be in [0, 1], got {hot_fraction}")

    if isinstance(order, str):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS} or a permutation, got {order!r}")
        if hotness is None:
            hot = graph.out_degrees().cpu().numpy()
        else:
            if not isinstance(hotness, (torch.Tensor, np.ndarray)):
                raise TypeError(f"hotness must be a torch.Tensor or numpy.ndarray, got "
                                f"{type(hotness).__name__}")
            if tuple(hotness.shape) != (n,):
                raise ValueError(f"hotness must have shape ({n},), got {tuple(hotness.shape)}")
            hot = (hotness.cpu().numpy() if isinstance(hotness, torch.Tensor)
                   else np.asarray(hotness)).astype(np.float64)
        if order == "degree":
            old_of_new = _degree_order(hot)
        else:
            ip = _plain(graph.indptr).cpu().numpy()
            ix = _plain(graph.indices).cpu().numpy()
            old_of_new = _community_order(ip, ix, hot.astype(np.float64), float(hot_fraction),
                                          int(cluster_size), int(levels), int(rounds), int(seed))
    elif isinstance(order, (torch.Tensor, np.ndarray)):
        perm = order.cpu().numpy() if isinstance(order, torch.Tensor) else np.asarray(order)
        if perm.ndim != 1 or perm.shape[0] != n or not np.issubdtype(perm.dtype, np.integer):
            raise ValueError(f"order must be a permutation of 0..{n - 1} (1-D integer, {n} "
                             f"entries), got shape {perm.shape} dtype {perm.dtype}")
        if n and (perm.min() < 0 or perm.max() >= n):
            raise ValueError(f"order must be a permutation of 0..{n - 1}, got values in "
                             f"[{perm.min()}, {perm.max()}]")
        seen = np.bincount(perm, minlength=n)
        if n and seen.max() != 1:
            v = int(np.argmax(seen != 1))
            raise ValueError(f"order must be a permutation of 0..{n - 1}, but node {v} appears "
                             f"{int(seen[v])} times")
        old_of_new = perm.astype(np.int64)
    else:
        raise TypeError(f"order must be a str or a permutation tensor, got {type(order).__name__}")

    old_of_new = np.ascontiguousarray(old_of_new, dtype=np.int64)
    new_of_old = np.empty(n, np.int64)
    new_of_old[old_of_new] = np.arange(n, dtype=np.int64)
    o2n, n2o = torch.from_numpy(old_of_new), torch.from_numpy(new_of_old)
    new_graph = _renumber(graph, old_of_new, new_of_old)
    new_tables = tuple(_permute(t, o2n, f"tables[{i}]") for i, t in enumerate(tables))
    return Reordering(graph=new_graph, tables=new_tables, ids=_map_ids(ids, n2o),
                      new_of_old=n2o, old_of_new=o2n)
