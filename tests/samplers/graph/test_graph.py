"""CSCGraph: constructors, validation, placement."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samplers import CSCGraph
from testing import IDTYPES


def random_edge_index(n: int, e: int, idtype=torch.int64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g).to(idtype)


def check_matches_edge_index(g: CSCGraph, edge_index: torch.Tensor) -> None:
    """Every CSC position p is the edge (indices[p] -> its column) of edge_index[:, eid[p]]."""
    dst = torch.repeat_interleave(torch.arange(g.num_nodes), g.in_degrees())
    eid = g.edge_ids.long()
    assert sorted(eid.tolist()) == list(range(edge_index.shape[1]))
    assert torch.equal(edge_index[0, eid].long(), g.indices.long())
    assert torch.equal(edge_index[1, eid].long(), dst)


@pytest.mark.parametrize("idtype", IDTYPES)
def test_from_edge_index(idtype):
    ei = random_edge_index(50, 300, idtype)
    g = CSCGraph.from_edge_index(ei, num_nodes=60)
    assert g.num_nodes == 60 and g.num_edges == 300
    assert g.idtype == idtype and g.indptr.dtype == idtype and g.edge_ids.dtype == idtype
    assert g.placement == "cpu" and g.device == torch.device("cpu")
    check_matches_edge_index(g, ei)
    assert torch.equal(g.in_degrees(), torch.bincount(ei[1].long(), minlength=60))
    assert CSCGraph.from_edge_index(ei).num_nodes == int(ei.max()) + 1


@pytest.mark.parametrize("idtype", IDTYPES)
def test_constructors_agree(idtype):
    sp = pytest.importorskip("scipy.sparse")
    ei = random_edge_index(40, 200, torch.int64, seed=1)
    ei = torch.unique(ei, dim=1)  # scipy sums duplicates in tocsc; keep the edge set simple
    a = CSCGraph.from_edge_index(ei.to(idtype), num_nodes=40)
    m = sp.coo_matrix((np.ones(ei.shape[1]), (ei[0].numpy(), ei[1].numpy())), shape=(40, 40))
    b = CSCGraph.from_scipy(m, idtype=idtype)
    c = CSCGraph.from_csc(a.indptr, a.indices, a.edge_ids)
    for other in (b, c):
        assert other.idtype == idtype
        assert torch.equal(other.indptr, a.indptr)
        assert torch.equal(other.indices, a.indices)
    # scipy's column view of the same matrix: CSC with rows = sources.
    csc = m.tocsc()
    csc.sort_indices()
    assert np.array_equal(csc.indptr, a.indptr.numpy())
    for v in range(40):
        lo, hi = int(a.indptr[v]), int(a.indptr[v + 1])
        assert sorted(a.indices[lo:hi].tolist()) == csc.indices[csc.indptr[v]:csc.indptr[v + 1]].tolist()


def test_from_csc_numpy_zero_copy_and_no_edge_ids():
    indptr = np.array([0, 2, 3, 3], dtype=np.int64)
    indices = np.array([1, 2, 0], dtype=np.int64)
    g = CSCGraph.from_csc(indptr, indices)
    assert g.edge_ids is None
    assert g.indptr.data_ptr() == indptr.ctypes.data
    assert g.indices.data_ptr() == indices.ctypes.data
    assert g.in_degrees().tolist() == [2, 1, 0]
    assert "num_nodes=3" in repr(g) and "placement='cpu'" in repr(g)


def test_mixed_widths_and_empty():
    g = CSCGraph(torch.tensor([0, 1, 2], dtype=torch.int64), torch.tensor([1, 0], dtype=torch.int32))
    assert g.idtype == torch.int32 and g.indptr.dtype == torch.int64
    e = CSCGraph(torch.zeros(5, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    assert e.num_nodes == 4 and e.num_edges == 0
    z = CSCGraph.from_edge_index(torch.zeros((2, 0), dtype=torch.int64), num_nodes=3)
    assert z.num_nodes == 3 and z.in_degrees().tolist() == [0, 0, 0]


@pytest.mark.parametrize("indptr, indices, exc, match", [
    ([1, 2, 3], [0, 1, 0], ValueError, r"indptr must start at 0, got indptr\[0\] = 1"),
    ([0, 2, 2], [0, 1, 0], ValueError, r"indptr must end at len\(indices\) = 3, got indptr\[-1\] = 2"),
    ([0, 3, 2, 3], [0, 1, 0], ValueError, r"non-decreasing, got indptr\[1\] = 3 > indptr\[2\] = 2"),
    ([0, 1, 3], [0, 2, 1], ValueError, r"indices must be in \[0, num_nodes=2\), got indices\[1\] = 2"),
    ([0, 1, 3], [0, -1, 1], ValueError, r"got indices\[1\] = -1"),
])
def test_validation_values(indptr, indices, exc, match):
    with pytest.raises(exc, match=match):
        CSCGraph(torch.tensor(indptr), torch.tensor(indices))


def test_validation_types():
    ip, ix = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
    with pytest.raises(TypeError, match=r"indptr must have dtype torch.int32 or torch.int64, got torch.float32"):
        CSCGraph(ip.float(), ix)
    with pytest.raises(TypeError, match=r"indices must have dtype .* got numpy float64"):
        CSCGraph(ip, np.array([1.0, 0.0]))
    with pytest.raises(TypeError, match=r"indices must be a torch.Tensor or numpy.ndarray, got list"):
        CSCGraph(ip, [1, 0])
    with pytest.raises(ValueError, match=r"indices must be 1-D, got shape \(1, 2\)"):
        CSCGraph(ip, ix[None])
    with pytest.raises(ValueError, match=r"indptr must have num_nodes \+ 1 >= 1 entries"):
        CSCGraph(torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match=r"num_nodes=5 does not match len\(indptr\) - 1 = 2"):
        CSCGraph(ip, ix, num_nodes=5)
    with pytest.raises(TypeError, match=r"num_nodes must be an int, got float"):
        CSCGraph(ip, ix, num_nodes=2.0)
    with pytest.raises(ValueError, match=r"edge_ids must have len\(indices\) = 2 entries, got 3"):
        CSCGraph(ip, ix, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"edge_ids must have the dtype of indices \(torch.int64\), got torch.int32"):
        CSCGraph(ip, ix, torch.tensor([0, 1], dtype=torch.int32))


def test_from_edge_index_validation():
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, E\], got \(3, 2\)"):
        CSCGraph.from_edge_index(torch.zeros((3, 2), dtype=torch.int64))
    with pytest.raises(TypeError, match=r"edge_index must have dtype .* got torch.float32"):
        CSCGraph.from_edge_index(torch.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"edge_index must hold node ids >= 0, got -1"):
        CSCGraph.from_edge_index(torch.tensor([[0, -1], [1, 1]]))
    with pytest.raises(ValueError, match=r"edge_index holds node id 4 >= num_nodes=3"):
        CSCGraph.from_edge_index(torch.tensor([[0, 4], [1, 1]]), num_nodes=3)
    with pytest.raises(TypeError, match=r"edge_index must be a torch.Tensor or numpy.ndarray, got list"):
        CSCGraph.from_edge_index([[0, 1], [1, 0]])


def test_from_scipy_validation():
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match=r"m must be square"):
        CSCGraph.from_scipy(sp.coo_matrix((2, 3)))
    with pytest.raises(TypeError, match=r"m must be a SciPy sparse matrix, got ndarray"):
        CSCGraph.from_scipy(np.eye(3))


def test_placement_cpu():
    g = CSCGraph.from_edge_index(random_edge_index(10, 30))
    assert g.to("cpu") is g
    h = g.to_placement("cpu")
    assert h.placement == "cpu" and torch.equal(h.indices, g.indices)
    with pytest.raises(ValueError, match=r"placement must be one of .* got 'gpu'"):
        g.to_placement("gpu")
    with pytest.raises(ValueError, match=r"device must be 'cpu' or a CUDA device, got 'meta'"):
        g.to("meta")


@pytest.mark.gpu
@pytest.mark.parametrize("idtype", IDTYPES)
def test_placement_gpu(idtype):
    ei = random_edge_index(100, 500, idtype)
    g = CSCGraph.from_edge_index(ei)
    c = g.to("cuda")
    assert c.placement == "cuda" and c.indices.is_cuda and c.idtype == idtype
    assert torch.equal(c.indices.cpu(), g.indices)
    p = g.pin()
    assert p.placement == "pinned" and not p.indices.is_cuda
    assert p.indices.data_ptr() == g.indices.data_ptr()  # pinned in place
    back = c.to("cpu")
    assert back.placement == "cpu" and torch.equal(back.indptr, g.indptr)


@pytest.mark.dgl
@pytest.mark.parametrize("idtype", IDTYPES)
def test_from_dgl(idtype):
    import dgl

    ei = random_edge_index(30, 120, torch.int64, seed=3)
    dg = dgl.graph((ei[0], ei[1]), num_nodes=30, idtype=idtype)
    g = CSCGraph.from_dgl(dg)
    assert g.num_nodes == 30 and g.num_edges == 120 and g.idtype == idtype
    check_matches_edge_index(g, ei)
    assert torch.equal(g.in_degrees(), dg.in_degrees().long())
    # A graph built from CSC without edge ids: DGL returns an empty eid array (= identity).
    csc = dgl.graph(("csc", (g.indptr, g.indices, torch.tensor([], dtype=idtype))), num_nodes=30)
    h = CSCGraph.from_dgl(csc)
    assert h.edge_ids is None and torch.equal(h.indices, g.indices)
    with pytest.raises(TypeError, match=r"g must be a dgl.DGLGraph, got Tensor"):
        CSCGraph.from_dgl(ei)
    hg = dgl.heterograph({("a", "x", "b"): (torch.tensor([0]), torch.tensor([0]))})
    with pytest.raises(ValueError, match=r"g must be homogeneous"):
        CSCGraph.from_dgl(hg)


def test_plain_view_of_registered_memory_is_placed_on_the_cpu(monkeypatch):
    """pinned.to_placement("cpu") hands out plain tensors over memory that a UnifiedTensor registered;
    they answer is_pinned(), but hold no registration: the graph must sample on the CPU, not over
    UVA (it would read unregistered memory once the pinned graph is collected)."""
    from unified_tensor import _pinning
    from samplers.graph import _csc as _graph

    g = CSCGraph.from_edge_index(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]), 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self, *a, **k: True)
    ip = g.indptr
    monkeypatch.setattr(_pinning.registry(), "overlaps",
                        lambda ptr, n: ptr == ip.data_ptr())
    assert _graph._placement_of(ip) == "cpu"        # registered by us, not held: CPU
    other = torch.arange(5)
    assert _graph._placement_of(other) == "pinned"  # pinned by PyTorch itself


def test_pin_without_the_cuda_path_reports_cpu(monkeypatch):
    """With the CUDA path off nothing is registered: pin() must not claim 'pinned'."""
    monkeypatch.setenv("UNIFIED_TENSOR_DISABLE_CUDA", "1")
    g = CSCGraph.from_edge_index(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3).pin()
    assert g.placement == "cpu"


@pytest.mark.parametrize("idtype", [torch.int32, torch.int64])
def test_from_edge_index_large_arrays_are_numpy_backed_and_exact(idtype):
    """Large CSC arrays (NumPy-allocated, for transparent huge pages) hold exactly the CSC of the
    edge list."""
    n, e = 50_000, 1_200_000
    ei = torch.randint(0, n, (2, e), generator=torch.Generator().manual_seed(0)).to(idtype)
    g = CSCGraph.from_edge_index(ei, n)
    perm = torch.argsort(ei[1], stable=True)
    assert torch.equal(g.indices, ei[0][perm]) and torch.equal(g.edge_ids.long(), perm)
    assert torch.equal(g.indptr.long()[1:], torch.cumsum(torch.bincount(ei[1].long(), minlength=n), 0))
    assert g.indices.dtype == g.edge_ids.dtype == idtype
    assert g.indices.is_contiguous() and g.edge_ids.is_contiguous() and g.indptr.is_contiguous()
