"""CSC graph: in-edges grouped by destination, on the CPU, in pinned host memory or on a GPU."""
from __future__ import annotations

import threading
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["CSCGraph", "PLACEMENTS"]

PLACEMENTS = ("cpu", "pinned", "cuda")
_ID_DTYPES = (torch.int32, torch.int64)
_INT32_MAX = 2**31 - 1

ArrayLike = Union[torch.Tensor, np.ndarray]


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    """A 1-D contiguous int32/int64 tensor sharing memory with ``x`` where possible."""
    if isinstance(x, np.ndarray):
        if x.dtype not in (np.int32, np.int64):
            raise TypeError(f"{name} must have dtype int32 or int64, got numpy {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in _ID_DTYPES:
        raise TypeError(f"{name} must have dtype torch.int32 or torch.int64, got {x.dtype}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(x.shape)}")
    return x if x.is_contiguous() else x.contiguous()


_NP_DTYPE = {torch.int32: np.int32, torch.int64: np.int64}
_THP_MIN_BYTES = 4 << 20


def _sampler_array(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised 1-D array for a CSC the library builds itself. On the CPU a large one is
    allocated by NumPy, which advises the kernel to back it with transparent huge pages (torch's
    allocator does not): the sampler's random reads of indptr / indices then miss the TLB far
    less (7% faster batches measured at 1M nodes / 20M edges on the CPU). Elsewhere torch.empty."""
    if device.type != "cpu" or n * np.dtype(_NP_DTYPE[dtype]).itemsize < _THP_MIN_BYTES:
        return torch.empty(n, dtype=dtype, device=device)
    return torch.from_numpy(np.empty(n, dtype=_NP_DTYPE[dtype]))


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a plain ``torch.Tensor`` (a UnifiedTensor's storage, without the subclass)."""
    return t if type(t) is torch.Tensor else t.as_subclass(torch.Tensor)


def _placement_of(t: torch.Tensor) -> str:
    if t.is_cuda:
        return "cuda"
    if type(t) is not torch.Tensor and type(t).__name__ == "UnifiedTensor":
        # registered, or pinned by PyTorch; one made while the CUDA path was off is plain memory
        return "pinned" if (t.is_registered or t._ut_external_pin) else "cpu"
    if torch.cuda.is_available() and t.is_pinned():
        # Memory registered by unified_tensor answers is_pinned() too, but only a UnifiedTensor
        # holds that registration: a plain tensor over it (e.g. pinned.to_placement("cpu")) is a
        # CPU array that must not be read over UVA once the UnifiedTensor is gone.
        from unified_tensor import _pinning

        if _pinning.registry().overlaps(t.data_ptr(), max(1, t.numel() * t.element_size())):
            return "cpu"
        return "pinned"
    return "cpu"


class CSCGraph:
    """A directed graph stored as CSC: the in-edges of node ``v`` are the positions
    ``indptr[v]:indptr[v + 1]`` of ``indices`` (their source nodes) and ``edge_ids`` (their ids).

    Parameters
    ----------
    indptr : torch.Tensor or numpy.ndarray
        ``num_nodes + 1`` offsets, int32 or int64; int64 when there are 2^31 edges or more.
    indices : torch.Tensor or numpy.ndarray
        Source node of every edge, int32 or int64 (the graph's ``idtype``), in ``[0, num_nodes)``.
    edge_ids : torch.Tensor or numpy.ndarray, optional
        Id of every edge, same dtype and length as ``indices``. ``None`` means the CSC position.
    num_nodes : int, optional
        Must equal ``len(indptr) - 1`` when given.
    validate : bool
        Check the arrays (default). Turning it off is for arrays known to be consistent.

    The arrays are used as they are (no copy) and must be on one device: CPU (plain or pinned, e.g.
    a :class:`unified_tensor.UnifiedTensor`) or CUDA; this sets :attr:`placement`.

    Examples
    --------
    >>> g = CSCGraph.from_edge_index(torch.tensor([[0, 1, 2], [1, 2, 0]]))
    >>> g.num_nodes, g.num_edges, g.in_degrees().tolist()
    (3, 3, [1, 1, 1])
    """

    def __init__(self, indptr: ArrayLike, indices: ArrayLike, edge_ids: Optional[ArrayLike] = None,
                 num_nodes: Optional[int] = None, *, validate: bool = True):
        indptr = _as_tensor(indptr, "indptr")
        indices = _as_tensor(indices, "indices")
        if edge_ids is not None:
            edge_ids = _as_tensor(edge_ids, "edge_ids")
        if indptr.numel() < 1:
            raise ValueError("indptr must have num_nodes + 1 >= 1 entries, got an empty array")
        n = indptr.numel() - 1
        if num_nodes is not None:
            if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
                raise TypeError(f"num_nodes must be an int, got {type(num_nodes).__name__}")
            if int(num_nodes) != n:
                raise ValueError(f"num_nodes={num_nodes} does not match len(indptr) - 1 = {n}")
        devices = {t.device for t in (indptr, indices, edge_ids) if t is not None}
        if len(devices) != 1:
            raise ValueError(f"indptr, indices and edge_ids must be on one device, got {sorted(map(str, devices))}")
        e = indices.numel()
        if e > _INT32_MAX and indptr.dtype != torch.int64:
            raise TypeError(f"indptr must be int64 for a graph with {e} >= 2^31 edges, got {indptr.dtype}")
        if n > _INT32_MAX + 1 and indices.dtype != torch.int64:
            raise TypeError(f"indices must be int64 for a graph with {n} > 2^31 nodes, got {indices.dtype}")
        if edge_ids is not None:
            if edge_ids.numel() != e:
                raise ValueError(f"edge_ids must have len(indices) = {e} entries, got {edge_ids.numel()}")
            if edge_ids.dtype != indices.dtype:
                raise TypeError(f"edge_ids must have the dtype of indices ({indices.dtype}), got {edge_ids.dtype}")
        self._indptr, self._indices, self._edge_ids = indptr, indices, edge_ids
        self._num_nodes = n
        self._placement = _placement_of(indptr)
        self._scratch: List[np.ndarray] = []
        self._scratch_lock = threading.Lock()
        from unified_tensor._numba_guard import reset_locks_after_fork

        reset_locks_after_fork(self, "_scratch_lock")   # a forked child never inherits it held
        if validate:
            self._validate()

    def _validate(self) -> None:
        ip, ix = _plain(self._indptr), _plain(self._indices)
        n, e = self._num_nodes, ix.numel()
        first, last = int(ip[0]), int(ip[-1])
        if first != 0:
            raise ValueError(f"indptr must start at 0, got indptr[0] = {first}")
        if last != e:
            raise ValueError(f"indptr must end at len(indices) = {e}, got indptr[-1] = {last}")
        if n > 0:
            bad = torch.nonzero(ip[1:] < ip[:-1])
            if bad.numel():
                i = int(bad[0, 0])
                raise ValueError(f"indptr must be non-decreasing, got indptr[{i}] = {int(ip[i])} > "
                                 f"indptr[{i + 1}] = {int(ip[i + 1])}")
        if e:
            lo, hi = int(ix.min()), int(ix.max())
            if lo < 0 or hi >= n:
                v = lo if lo < 0 else hi
                i = int(torch.nonzero(ix == v)[0, 0])
                raise ValueError(f"indices must be in [0, num_nodes={n}), got indices[{i}] = {v}")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_csc(cls, indptr: ArrayLike, indices: ArrayLike, edge_ids: Optional[ArrayLike] = None) -> "CSCGraph":
        """The graph of CSC arrays (see the class docstring); tensors stay where they are."""
        return cls(indptr, indices, edge_ids)

    @classmethod
    def from_edge_index(cls, edge_index: ArrayLike, num_nodes: Optional[int] = None) -> "CSCGraph":
        """The graph of a ``[2, E]`` edge list (row 0 = source, row 1 = destination, PyG layout).

        Edge ``j`` of ``edge_index`` gets edge id ``j``; the id dtype is ``edge_index``'s
        (int32 or int64). ``num_nodes`` defaults to ``max(edge_index) + 1``. The arrays are built
        on the device of ``edge_index``.
        """
        if isinstance(edge_index, np.ndarray):
            if edge_index.dtype not in (np.int32, np.int64):
                raise TypeError(f"edge_index must have dtype int32 or int64, got numpy {edge_index.dtype}")
            edge_index = torch.from_numpy(np.ascontiguousarray(edge_index))
        if not isinstance(edge_index, torch.Tensor):
            raise TypeError(f"edge_index must be a torch.Tensor or numpy.ndarray, got {type(edge_index).__name__}")
        edge_index = _plain(edge_index)
        if edge_index.dtype not in _ID_DTYPES:
            raise TypeError(f"edge_index must have dtype torch.int32 or torch.int64, got {edge_index.dtype}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        e = edge_index.shape[1]
        idtype, dev = edge_index.dtype, edge_index.device
        if e and int(edge_index.min()) < 0:
            raise ValueError(f"edge_index must hold node ids >= 0, got {int(edge_index.min())}")
        top = int(edge_index.max()) + 1 if e else 0
        if num_nodes is None:
            num_nodes = top
        elif isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
            raise TypeError(f"num_nodes must be an int, got {type(num_nodes).__name__}")
        elif num_nodes < top:
            raise ValueError(f"edge_index holds node id {top - 1} >= num_nodes={num_nodes}")
        num_nodes = int(num_nodes)
        if idtype == torch.int32 and e > _INT32_MAX:
            raise TypeError(f"edge_index must be int64 for {e} >= 2^31 edges (edge ids), got int32")
        src, dst = edge_index[0], edge_index[1]
        perm = torch.argsort(dst, stable=True)
        counts = torch.bincount(dst.long(), minlength=num_nodes)
        ptr_dtype = torch.int64 if e > _INT32_MAX else idtype
        indptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=dev)
        torch.cumsum(counts, 0, out=indptr[1:])
        indices = _sampler_array(e, idtype, dev)
        torch.index_select(src, 0, perm, out=indices)
        return cls(_sampler_array(num_nodes + 1, ptr_dtype, dev).copy_(indptr), indices,
                   _sampler_array(e, idtype, dev).copy_(perm), validate=False)

    @classmethod
    def from_scipy(cls, m: Any, idtype: torch.dtype = torch.int64) -> "CSCGraph":
        """The graph of a square SciPy sparse matrix: an entry at ``(i, j)`` is an edge ``i -> j``
        (``dgl.from_scipy``'s convention). Edge ids follow ``m.tocoo()``'s entry order; values
        (explicit zeros included) are ignored. Arrays are on the CPU.
        """
        try:
            import scipy.sparse as sp
        except ImportError as exc:  # pragma: no cover - scipy is a test dependency
            raise ImportError("CSCGraph.from_scipy needs SciPy") from exc
        if not sp.issparse(m):
            raise TypeError(f"m must be a SciPy sparse matrix, got {type(m).__name__}")
        if m.shape[0] != m.shape[1]:
            raise ValueError(f"m must be square (num_nodes x num_nodes), got shape {m.shape}")
        if idtype not in _ID_DTYPES:
            raise TypeError(f"idtype must be torch.int32 or torch.int64, got {idtype}")
        coo = m.tocoo()
        np_dtype = np.int32 if idtype == torch.int32 else np.int64
        ei = np.stack([coo.row.astype(np.int64), coo.col.astype(np.int64)])
        if idtype == torch.int32 and m.shape[0] > _INT32_MAX:
            raise TypeError(f"idtype int32 cannot hold {m.shape[0]} nodes")
        return cls.from_edge_index(torch.from_numpy(ei.astype(np_dtype)), num_nodes=int(m.shape[0]))

    @classmethod
    def from_dgl(cls, g: Any) -> "CSCGraph":
        """The graph of a homogeneous ``dgl.DGLGraph`` (its CSC from ``g.adj_tensors('csc')``, with
        DGL's edge ids and idtype), on the graph's device."""
        if not hasattr(g, "adj_tensors") or not hasattr(g, "canonical_etypes"):
            raise TypeError(f"g must be a dgl.DGLGraph, got {type(g).__name__}")
        if len(g.ntypes) != 1 or len(g.canonical_etypes) != 1:
            raise ValueError(f"g must be homogeneous (one node and one edge type), got node types "
                             f"{g.ntypes} and edge types {g.canonical_etypes}")
        indptr, indices, eids = g.adj_tensors("csc")
        if eids is not None and eids.numel() == 0:
            eids = None  # DGL's way of saying "edge id = CSC position"
        return cls(indptr, indices, eids, num_nodes=g.num_nodes(), validate=False)

    # ---------------------------------------------------------------- properties
    @property
    def num_nodes(self) -> int:
        """Number of nodes."""
        return self._num_nodes

    @property
    def num_edges(self) -> int:
        """Number of edges."""
        return self._indices.numel()

    @property
    def indptr(self) -> torch.Tensor:
        """CSC offsets, ``num_nodes + 1`` entries, on the graph's placement."""
        return self._indptr

    @property
    def indices(self) -> torch.Tensor:
        """Source node of every edge (CSC order), on the graph's placement."""
        return self._indices

    @property
    def edge_ids(self) -> Optional[torch.Tensor]:
        """Edge ids in CSC order, or ``None`` when the id of an edge is its CSC position."""
        return self._edge_ids

    @property
    def idtype(self) -> torch.dtype:
        """dtype of node and edge ids (``indices``'s dtype)."""
        return self._indices.dtype

    @property
    def placement(self) -> str:
        """``"cpu"``, ``"pinned"`` (host memory the GPU reads over UVA) or ``"cuda"``."""
        return self._placement

    @property
    def device(self) -> torch.device:
        """The device of the arrays (``cpu`` for both ``"cpu"`` and ``"pinned"``)."""
        return self._indptr.device

    def in_degrees(self) -> torch.Tensor:
        """In-degree of every node (int64), on the device of the arrays."""
        ip = _plain(self._indptr)
        return (ip[1:] - ip[:-1]).long()

    def out_degrees(self) -> torch.Tensor:
        """Out-degree of every node (int64), on the device of the arrays: how many in-edge lists
        name it, so how often uniform neighbour sampling tends to draw it. A good ``hotness`` for
        :func:`unified_tensor.cache`."""
        return torch.bincount(_plain(self._indices).long(), minlength=self.num_nodes)

    # ---------------------------------------------------------------- placement
    def _arrays(self) -> Tuple[torch.Tensor, ...]:
        return tuple(t for t in (self._indptr, self._indices, self._edge_ids) if t is not None)

    def _rebuild(self, fn) -> "CSCGraph":
        eids = None if self._edge_ids is None else fn(self._edge_ids)
        return CSCGraph(fn(self._indptr), fn(self._indices), eids, validate=False)

    def to_placement(self, placement: str, device: Optional[Union[int, str, torch.device]] = None) -> "CSCGraph":
        """A graph with the same arrays on ``placement``.

        ``"pinned"`` pins the host arrays in place with :func:`unified_tensor.unified` (no copy
        when they already are on the CPU); ``"cpu"`` returns plain CPU tensors (the same memory for
        a pinned graph); ``"cuda"`` copies to ``device`` (default: the current CUDA device).
        """
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        if placement == "cpu":
            return self._rebuild(lambda t: _plain(t).cpu())
        if placement == "pinned":
            import unified_tensor as ut

            return self._rebuild(lambda t: ut.unified(_plain(t).cpu()))
        dev = torch.device("cuda") if device is None else torch.device(device)
        if dev.type != "cuda":
            raise ValueError(f"device must be a CUDA device for placement 'cuda', got {dev}")
        return self._rebuild(lambda t: _plain(t).to(dev))

    def pin(self) -> "CSCGraph":
        """``to_placement("pinned")``: the GPU sampler reads the arrays over UVA, in place."""
        return self.to_placement("pinned")

    def to(self, device: Union[str, torch.device]) -> "CSCGraph":
        """The graph on ``device`` (``"cpu"`` or a CUDA device); copies only when it changes."""
        dev = torch.device(device)
        if dev.type == "cpu":
            return self if self._placement == "cpu" else self.to_placement("cpu")
        if dev.type == "cuda":
            if self._placement == "cuda" and (dev.index is None or dev.index == self.device.index):
                return self
            return self.to_placement("cuda", dev)
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {device!r}")

    # ---------------------------------------------------------------- sampler scratch
    def _take_scratch(self) -> np.ndarray:
        """A node-sized int32 array filled with -1 (CPU relabel map); give it back when done."""
        with self._scratch_lock:
            if self._scratch:
                return self._scratch.pop()
        return np.full(self._num_nodes, -1, dtype=np.int32)

    def _give_scratch(self, s: np.ndarray) -> None:
        with self._scratch_lock:
            self._scratch.append(s)

    def __repr__(self) -> str:
        return (f"CSCGraph(num_nodes={self._num_nodes}, num_edges={self.num_edges}, "
                f"idtype={self.idtype}, placement={self._placement!r})")
