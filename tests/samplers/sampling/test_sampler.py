"""NeighborSampler: correctness of the sampled edges, uniformity, determinism, relabelling,
validation, CPU/GPU agreement and DGL semantics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samplers import Block, CSCGraph, NeighborSampler
from samplers.sampling._layer_cpu import draw_numba, draw_py
from testing import IDTYPES


def power_law_graph(n: int = 300, e: int = 3000, idtype=torch.int64, seed: int = 0) -> CSCGraph:
    """Random graph with heavy-tailed in-degrees (some nodes with none)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g) ** 4 + 1e-3
    dst = torch.multinomial(w, e, replacement=True, generator=g)
    src = torch.randint(0, n, (e,), generator=g)
    return CSCGraph.from_edge_index(torch.stack([src, dst]).to(idtype), num_nodes=n)


def edge_table(g: CSCGraph):
    """Map edge id -> (src, dst) and the set of (src, dst) pairs."""
    dst = torch.repeat_interleave(torch.arange(g.num_nodes), g.in_degrees())
    eids = torch.arange(g.num_edges) if g.edge_ids is None else g.edge_ids.long()
    by_id = {int(i): (int(s), int(d)) for i, s, d in zip(eids, g.indices.long(), dst)}
    return by_id


def check_blocks(g: CSCGraph, seeds, fanouts, replace, out):
    input_nodes, output_nodes, blocks = out
    by_id = edge_table(g)
    deg = g.in_degrees()
    assert len(blocks) == len(fanouts)
    assert torch.equal(output_nodes.long(), torch.as_tensor(seeds).long())
    assert torch.equal(blocks[-1].dstdata["_ID"], output_nodes)
    assert torch.equal(blocks[0].srcdata["_ID"], input_nodes)
    for i, (b, f) in enumerate(zip(blocks, fanouts)):
        assert isinstance(b, Block)
        src_ids, dst_ids = b.srcdata["_ID"], b.dstdata["_ID"]
        assert src_ids.dtype == g.idtype and dst_ids.dtype == g.idtype
        nd = b.num_dst_nodes()
        # DGL's convention: the dst nodes come first among the src nodes; src nodes unique.
        assert torch.equal(src_ids[:nd], dst_ids)
        assert src_ids.unique().numel() == src_ids.numel()
        if i + 1 < len(blocks):
            assert torch.equal(dst_ids, blocks[i + 1].srcdata["_ID"])
        u, v = b.edges()
        assert u.dtype == torch.int64 and v.dtype == torch.int64
        assert torch.equal(b.edge_index, torch.stack([u, v]))
        assert b.num_edges() == u.numel() == b.edata["_ID"].numel()
        if b.num_edges():
            assert int(u.min()) >= 0 and int(u.max()) < b.num_src_nodes()
            assert int(v.min()) >= 0 and int(v.max()) < nd
        gu, gv = src_ids.long()[u], dst_ids.long()[v]
        eids = b.edata["_ID"].long()
        # Every sampled edge exists, with its id.
        for a, c, e in zip(gu.tolist(), gv.tolist(), eids.tolist()):
            assert by_id[e] == (a, c)
        # Fanout respected / all neighbours for low degree or -1.
        got = torch.bincount(v, minlength=nd)
        d = deg[dst_ids.long()]
        if f == -1:
            want = d
        elif replace:
            want = torch.where(d > 0, torch.full_like(d, f), d)
        else:
            want = torch.clamp(d, max=f)
        assert torch.equal(got, want)
        if not replace:  # no duplicate edge per dst node
            pairs = v * (g.num_edges + 1) + eids
            assert pairs.unique().numel() == pairs.numel()
        if f == -1:  # exactly the in-edges of every dst node
            ip = g.indptr.long()
            all_ids = torch.arange(g.num_edges) if g.edge_ids is None else g.edge_ids.long()
            for j in range(nd):
                w = int(dst_ids[j])
                assert sorted(eids[v == j].tolist()) == sorted(all_ids[ip[w]:ip[w + 1]].tolist())


@pytest.mark.parametrize("idtype", IDTYPES)
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("fanouts", [[5, 3], [2, -1, 4]])
def test_sampled_edges_valid(idtype, replace, fanouts):
    g = power_law_graph(idtype=idtype)
    seeds = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(1))[:40]
    s = NeighborSampler(fanouts, replace=replace, seed=3)
    out = s.sample(g, seeds)
    check_blocks(g, seeds, fanouts, replace, out)
    assert out[1].dtype == idtype


def test_graph_without_edge_ids_and_mixed_widths():
    ref = power_law_graph(idtype=torch.int32)
    g = CSCGraph(ref.indptr.long(), ref.indices)  # no edge ids, int64 offsets
    seeds = torch.arange(0, 300, 7)
    out = NeighborSampler([4, 4], seed=0).sample(g, seeds)
    check_blocks(g, seeds, [4, 4], False, out)


def test_seed_inputs_and_empty():
    g = power_law_graph()
    s = NeighborSampler([3, 2], seed=0)
    for seeds in ([1, 5, 9], np.array([1, 5, 9], dtype=np.int32), torch.tensor([1, 5, 9], dtype=torch.int16)):
        s.set_seed(0)
        i, o, b = s.sample(g, seeds)
        assert o.tolist() == [1, 5, 9] and o.dtype == g.idtype
    i, o, b = s.sample(g, torch.tensor([], dtype=torch.int64))
    assert i.numel() == 0 and o.numel() == 0 and all(x.num_edges() == 0 for x in b)


def test_draws_match_cuda_reference():
    # Values from tests/cpp/test_sample_math.cpp (ut::draw): the Numba port must agree bit for bit.
    assert int(draw_numba(np.uint64(42), np.int64(7), np.int64(0))) == 11404588283923461343
    assert int(draw_numba(np.uint64(123456789), np.int32(1000000), np.int64(3))) == 2354254935084745847
    assert draw_py(42, 7, 0) == 11404588283923461343


def test_determinism():
    g = power_law_graph()
    seeds = torch.arange(0, 300, 3)

    def run(s, k=3):
        return [s.sample(g, seeds) for _ in range(k)]

    def same(a, b):
        return all(torch.equal(x.edge_index, y.edge_index) and torch.equal(x.edata["_ID"], y.edata["_ID"])
                   and torch.equal(x.srcdata["_ID"], y.srcdata["_ID"]) for x, y in zip(a[2], b[2]))

    a, b = run(NeighborSampler([5, 5], seed=11)), run(NeighborSampler([5, 5], seed=11))
    assert all(same(x, y) for x, y in zip(a, b))
    assert not same(a[0], a[1])  # successive batches differ
    c = run(NeighborSampler([5, 5], seed=12), 1)
    assert not same(a[0], c[0])
    s = NeighborSampler([5, 5], seed=11)
    s.sample(g, seeds)
    s.set_seed(11)
    assert same(s.sample(g, seeds), a[0])
    torch.manual_seed(5)
    d = NeighborSampler([5, 5]).sample(g, seeds)
    torch.manual_seed(5)
    assert same(NeighborSampler([5, 5]).sample(g, seeds), d)


def _position_histogram(replace: bool, deg: int = 12, fanout: int = 4, n: int = 3000):
    # n destination nodes, each with the same `deg` in-neighbours 0..deg-1 (dst ids shifted).
    src = torch.arange(deg).repeat(n)
    dst = torch.arange(n).repeat_interleave(deg) + deg
    g = CSCGraph.from_edge_index(torch.stack([src, dst]), num_nodes=n + deg)
    seeds = torch.arange(deg, n + deg)
    _, _, blocks = NeighborSampler([fanout], replace=replace, seed=7).sample(g, seeds)
    b = blocks[0]
    gsrc = b.srcdata["_ID"][b.edges()[0]]
    return torch.bincount(gsrc, minlength=deg).numpy(), n * fanout


@pytest.mark.parametrize("replace", [False, True])
def test_uniformity_chi_square(replace):
    stats = pytest.importorskip("scipy.stats")
    hist, total = _position_histogram(replace)
    assert hist.sum() == total
    p = stats.chisquare(hist).pvalue
    assert p > 1e-3, (hist, p)


def test_uniform_over_subsets():
    stats = pytest.importorskip("scipy.stats")
    # C(4, 2) = 6 possible neighbour pairs, each with probability 1/6.
    n, deg = 3000, 4
    src = torch.arange(deg).repeat(n)
    dst = torch.arange(n).repeat_interleave(deg) + deg
    g = CSCGraph.from_edge_index(torch.stack([src, dst]), num_nodes=n + deg)
    _, _, (b,) = NeighborSampler([2], seed=1).sample(g, torch.arange(deg, n + deg))
    u, v = b.edges()
    gs = b.srcdata["_ID"][u].view(n, 2).sort(dim=1).values
    code = (gs[:, 0] * deg + gs[:, 1]).numpy()
    _, counts = np.unique(code, return_counts=True)
    assert len(counts) == 6
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sage_mean_matches_dense():
    g = power_law_graph(60, 400, seed=4)
    x = torch.randn(g.num_nodes, 5, dtype=torch.float64)
    seeds = torch.tensor([3, 17, 42, 8])
    _, _, blocks = NeighborSampler([-1, -1], seed=0).sample(g, seeds)
    # Dense reference: A[d, s] = number of edges s -> d.
    dst = torch.repeat_interleave(torch.arange(g.num_nodes), g.in_degrees())
    A = torch.zeros(g.num_nodes, g.num_nodes, dtype=torch.float64)
    A.index_put_((dst, g.indices.long()), torch.ones(g.num_edges, dtype=torch.float64), accumulate=True)
    Amean = A / A.sum(1, keepdim=True).clamp(min=1)
    W1, W2 = torch.randn(10, 10, dtype=torch.float64), torch.randn(10, 20, dtype=torch.float64)

    def sage(h_src, block, W):
        u, v = block.edges()
        nd = block.num_dst_nodes()
        agg = torch.zeros(nd, h_src.shape[1], dtype=h_src.dtype).index_add_(0, v, h_src[u])
        agg = agg / torch.bincount(v, minlength=nd).clamp(min=1)[:, None].to(h_src.dtype)
        return torch.cat([h_src[:nd], agg], 1) @ W.T

    h = x[blocks[0].srcdata["_ID"].long()]
    h = torch.relu(sage(h, blocks[0], W1))
    h = sage(h, blocks[1], W2)
    ref = torch.relu(torch.cat([x, Amean @ x], 1) @ W1.T)
    ref = torch.cat([ref, Amean @ ref], 1) @ W2.T
    torch.testing.assert_close(h, ref[seeds])


def test_pyg_sageconv_on_blocks():
    pyg = pytest.importorskip("torch_geometric.nn")
    g = power_law_graph(60, 400, seed=5)
    x = torch.randn(g.num_nodes, 6)
    seeds = torch.tensor([1, 2, 30])
    _, _, (b,) = NeighborSampler([-1], seed=0).sample(g, seeds)
    conv = pyg.SAGEConv((6, 6), 4, aggr="mean")
    xs = x[b.srcdata["_ID"].long()]
    out = conv((xs, xs[:b.num_dst_nodes()]), b.edge_index, size=(b.num_src_nodes(), b.num_dst_nodes()))
    full = conv(x, torch.stack([g.indices.long(), torch.repeat_interleave(torch.arange(g.num_nodes), g.in_degrees())]))
    torch.testing.assert_close(out, full[seeds])


@pytest.mark.parametrize("fanouts, exc, match", [
    ([], ValueError, r"fanouts must have at least one layer"),
    ([5, 0], ValueError, r"fanouts\[1\] must be a positive int or -1 \(all neighbours\), got 0"),
    ([-2], ValueError, r"fanouts\[0\] must be a positive int or -1 .* got -2"),
    ([1.5], TypeError, r"fanouts\[0\] must be an int .* got 1.5 of type float"),
    ([True], TypeError, r"fanouts\[0\] must be an int"),
    (5, TypeError, r"fanouts must be a list of ints, got int"),
    ("15", TypeError, r"fanouts must be a list of ints, got str"),
])
def test_bad_fanouts(fanouts, exc, match):
    with pytest.raises(exc, match=match):
        NeighborSampler(fanouts)


def test_bad_options():
    with pytest.raises(TypeError, match=r"replace must be a bool, got str"):
        NeighborSampler([2], replace="yes")
    with pytest.raises(TypeError, match=r"seed must be an int or None, got float"):
        NeighborSampler([2], seed=1.0)
    assert NeighborSampler([np.int64(3), -1]).fanouts == [3, -1]


def test_bad_seeds():
    g = power_law_graph(50, 200)
    s = NeighborSampler([2])
    with pytest.raises(IndexError, match=r"seeds must be node ids in \[0, 50\), got 50"):
        s.sample(g, torch.tensor([1, 50]))
    with pytest.raises(IndexError, match=r"seeds must be node ids in \[0, 50\), got -1"):
        s.sample(g, torch.tensor([-1, 3]))
    with pytest.raises(TypeError, match=r"seeds must hold integers, got torch.float32"):
        s.sample(g, torch.tensor([1.0]))
    with pytest.raises(TypeError, match=r"seeds must hold integers, got numpy float64"):
        s.sample(g, np.array([1.0]))
    with pytest.raises(TypeError, match=r"seeds must hold integers, got torch.bool"):
        s.sample(g, torch.tensor([True]))
    with pytest.raises(ValueError, match=r"seeds must be 1-D, got shape \(1, 2\)"):
        s.sample(g, torch.tensor([[1, 2]]))
    with pytest.raises(TypeError, match=r"seeds must be a torch.Tensor, numpy.ndarray or list of ints, got str"):
        s.sample(g, "1")
    with pytest.raises(ValueError, match=r"seeds must be distinct, got node 4 twice \(positions 1 and 3\)"):
        s.sample(g, torch.tensor([0, 4, 2, 4]))
    with pytest.raises(TypeError, match=r"graph must be a samplers.CSCGraph .* got Tensor"):
        s.sample(torch.tensor([0]), torch.tensor([0]))
    # The scratch map is left clean after an error: a valid call still works.
    check_blocks(g, [0, 4, 2], [2], False, s.sample(g, torch.tensor([0, 4, 2])))


def test_output_device_and_repr():
    g = power_law_graph(50, 200)
    s = NeighborSampler([2, 2], seed=0, output_device="cpu", prefetch_node_feats=["feat"],
                        prefetch_labels=["label"])
    i, o, b = s.sample(g, [1, 2])
    assert i.device.type == "cpu" and all(x.device.type == "cpu" for x in b)
    assert s.prefetch_node_feats == ["feat"] and s.prefetch_labels == ["label"]
    assert "fanouts=[2, 2]" in repr(s)


# ---------------------------------------------------------------------------------- GPU
@pytest.mark.parametrize("idtype", IDTYPES)
@pytest.mark.parametrize("ptrtype", IDTYPES)
@pytest.mark.parametrize("with_eids", [False, True])
@pytest.mark.parametrize("with_excl", [False, True])
def test_cuda_launch_arguments_match_kernel_signatures(monkeypatch, idtype, ptrtype, with_eids,
                                                       with_excl):
    """sample_layer_cuda passes exactly the parameter types of sample_count / sample_fill, in
    order, with the right pointers (CPU: launches faked; signatures from NVRTC's mangled names)."""
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    import ctypes

    import unified_tensor
    from samplers.sampling import _layer_cuda as _sampler_cuda
    from unified_tensor import _kernels
    from testing import kernel_arg_dtypes

    indptr = torch.tensor([0, 2, 3, 3, 5], dtype=ptrtype)
    indices = torch.tensor([1, 2, 0, 3, 1], dtype=idtype)
    eids = torch.tensor([10, 11, 12, 13, 14], dtype=idtype) if with_eids else None
    g = CSCGraph(indptr, indices, eids)
    seeds = torch.tensor([3, 0, 1], dtype=idtype)
    launches = []

    def fake_launch(fn, grid, block, args, device, stream=None):
        source, name = fn
        launches.append((source, name, grid, block, args, device))
        if "sample_count" in name:   # every seed gets one edge
            (ctypes.c_int64 * 3).from_address(int(args[9]))[:] = [1, 1, 1]
        else:                        # every edge comes from node 2
            width = 4 if idtype == torch.int32 else 8
            ctypes.memset(int(args[12]), 0, 3 * width)
            (ctypes.c_uint8 * 1).from_address(int(args[12]))[0] = 2

    monkeypatch.setattr(_kernels, "get_function", lambda source, name, device: (source, name))
    monkeypatch.setattr(_kernels, "launch", fake_launch)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(unified_tensor, "device_pointer", lambda t: t.data_ptr())
    key = 0xF000_0000_0000_0001
    excl = torch.tensor([1, 4], dtype=torch.int64) if with_excl else None
    src_nodes, edge_index, _ = _sampler_cuda.sample_layer_cuda(g, seeds, -1, True, key, check=True,
                                                               excl=excl)
    assert src_nodes.tolist()[:3] == [3, 0, 1]
    (s1, count, g1, b1, a1, d1), (s2, fill, g2, b2, a2, d2) = launches
    assert count == _sampler_cuda._name("sample_count", idtype, ptrtype)
    assert fill == _sampler_cuda._name("sample_fill", idtype, ptrtype)
    assert [type(a) for a in a1] == kernel_arg_dtypes(s1, count)
    assert [type(a) for a in a2] == kernel_arg_dtypes(s2, fill)
    assert [int(a) for a in a1[:6]] == [indptr.data_ptr(), 4, seeds.data_ptr(), 3, -1, 1]
    assert [int(a) for a in a2[:6]] == [indptr.data_ptr(), indices.data_ptr(),
                                        eids.data_ptr() if with_eids else 0, 4, seeds.data_ptr(), 3]
    assert [int(a) for a in a2[7:10]] == [-1, 1, key]
    want_excl = [excl.data_ptr(), 2] if with_excl else [0, 0]
    assert [int(a) for a in a1[6:8]] == want_excl and [int(a) for a in a2[10:12]] == want_excl
    assert int(a2[14]) == edge_index[1].data_ptr()
    assert b1 % 32 == 0 and b2 % 32 == 0 and g1 >= 1 and g2 * (b2 // 32) >= 3   # a warp per seed
    assert d1 == d2 == 0


def _assert_same(a, b):
    for x, y in zip(a[2], b[2]):
        for k in ("_ID",):
            assert torch.equal(x.srcdata[k].cpu(), y.srcdata[k].cpu())
            assert torch.equal(x.dstdata[k].cpu(), y.dstdata[k].cpu())
            assert torch.equal(x.edata[k].cpu(), y.edata[k].cpu())
        assert torch.equal(x.edge_index.cpu(), y.edge_index.cpu())
    assert torch.equal(a[0].cpu(), b[0].cpu()) and torch.equal(a[1].cpu(), b[1].cpu())


@pytest.mark.gpu
@pytest.mark.parametrize("idtype", IDTYPES)
@pytest.mark.parametrize("placement", ["pinned", "cuda"])
@pytest.mark.parametrize("replace", [False, True])
def test_gpu_matches_cpu(idtype, placement, replace):
    g = power_law_graph(2000, 30000, idtype=idtype)
    gg = g.to_placement(placement)
    seeds = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(0))[:300]
    fanouts = [5, -1, 10] if not replace else [5, 3, 10]
    cpu = NeighborSampler(fanouts, replace=replace, seed=9).sample(g, seeds)
    gpu = NeighborSampler(fanouts, replace=replace, seed=9).sample(gg, seeds.cuda())
    assert gpu[0].is_cuda and all(b.device.type == "cuda" for b in gpu[2])
    # Same draws and same relabel order: the CUDA path returns exactly the CPU path's blocks.
    _assert_same(cpu, gpu)
    check_blocks(g, seeds, fanouts, replace, tuple(
        [gpu[0].cpu(), gpu[1].cpu(), [b.to("cpu") for b in gpu[2]]]))


@pytest.mark.gpu
def test_gpu_large_degree_and_errors():
    n = 5000
    src = torch.arange(n)
    dst = torch.zeros(n, dtype=torch.int64)  # node 0 has n in-neighbours
    g = CSCGraph.from_edge_index(torch.stack([src, dst]), num_nodes=n).pin()
    s = NeighborSampler([100], seed=0)
    _, _, (b,) = s.sample(g, torch.tensor([0, 7], device="cuda"))
    assert b.num_edges() == 100
    assert b.edata["_ID"].unique().numel() == 100
    with pytest.raises(IndexError, match=r"seeds must be node ids in \[0, 5000\), got 5000"):
        s.sample(g, torch.tensor([1, 5000], device="cuda"))
    with pytest.raises(ValueError, match=r"seeds must be distinct, got node 3 twice"):
        s.sample(g, torch.tensor([3, 3], device="cuda"))
    with pytest.raises(ValueError, match=r"graph is in pageable CPU memory"):
        s.sample(g.to_placement("cpu"), torch.tensor([1], device="cuda"))
    with pytest.raises(ValueError, match=r"seeds are on the CPU but the graph is on cuda"):
        s.sample(g.to("cuda"), torch.tensor([1]))
    # Still healthy afterwards.
    assert s.sample(g, torch.tensor([0], device="cuda"))[2][0].num_edges() == 100


# ---------------------------------------------------------------------------------- DGL
@pytest.mark.dgl
@pytest.mark.parametrize("idtype", IDTYPES)
def test_same_semantics_as_dgl(idtype):
    import dgl

    g = power_law_graph(200, 1500, idtype=idtype, seed=2)
    u = g.indices.long()
    v = torch.repeat_interleave(torch.arange(g.num_nodes), g.in_degrees())
    eid = g.edge_ids.long()
    order = torch.argsort(eid)
    dg = dgl.graph((u[order], v[order]), num_nodes=g.num_nodes, idtype=idtype)
    assert CSCGraph.from_dgl(dg).num_edges == g.num_edges
    seeds = torch.tensor([5, 0, 77, 150], dtype=idtype)
    # fanout -1 is deterministic: DGL's blocks and ours have the same node sets and edge sets.
    di, do, db = dgl.dataloading.NeighborSampler([-1, -1]).sample(dg, seeds)
    oi, oo, ob = NeighborSampler([-1, -1], seed=0).sample(g, seeds)
    assert torch.equal(do, oo) and torch.equal(db[-1].dstdata[dgl.NID], ob[-1].dstdata["_ID"])
    assert set(di.tolist()) == set(oi.tolist())
    for d, o in zip(db, ob):
        assert (d.num_src_nodes(), d.num_dst_nodes(), d.num_edges()) == \
            (o.num_src_nodes(), o.num_dst_nodes(), o.num_edges())
        # Same node sets; the order of new source nodes is an implementation detail, but in both
        # the dst nodes come first, in the dst order.
        assert set(d.dstdata[dgl.NID].tolist()) == set(o.dstdata["_ID"].tolist())
        assert set(d.srcdata[dgl.NID].tolist()) == set(o.srcdata["_ID"].tolist())
        assert torch.equal(d.srcdata[dgl.NID][:d.num_dst_nodes()], d.dstdata[dgl.NID])
        assert torch.equal(o.srcdata["_ID"][:o.num_dst_nodes()], o.dstdata["_ID"])
        assert sorted(d.edata[dgl.EID].tolist()) == sorted(o.edata["_ID"].tolist())
        ob_dgl = o.to_dgl()
        assert ob_dgl.is_block and ob_dgl.idtype == idtype
        assert torch.equal(ob_dgl.srcdata[dgl.NID], o.srcdata["_ID"])
        su, sv = ob_dgl.edges()
        assert torch.equal(su.long(), o.edges()[0]) and torch.equal(sv.long(), o.edges()[1])
    # Sampled fanouts: same shapes rules (per-dst in-degree = min(deg, fanout)).
    _, _, db = dgl.dataloading.NeighborSampler([3, 2]).sample(dg, seeds)
    _, _, ob = NeighborSampler([3, 2], seed=0).sample(g, seeds)
    assert db[-1].num_edges() == ob[-1].num_edges()
    assert torch.equal(db[-1].in_degrees().long(), ob[-1].in_degrees())


def test_pinned_graph_on_cpu_path():
    g = power_law_graph()
    p = g.pin()  # without the CUDA path nothing is registered: placement says "cpu"
    import unified_tensor as ut
    assert p.placement == ("pinned" if ut.cuda_available() else "cpu")
    assert p.indices.data_ptr() == g.indices.data_ptr()
    seeds = torch.arange(0, 300, 11)
    _assert_same(NeighborSampler([4, 3], seed=2).sample(g, seeds),
                 NeighborSampler([4, 3], seed=2).sample(p, seeds))


@pytest.mark.parametrize("idtype", IDTYPES)
def test_torch_relabel_matches_cpu_relabel(idtype):
    # The GPU path relabels with torch ops; on CPU tensors they must give the Numba relabel.
    from samplers.sampling._layer_cuda import relabel_first_appearance

    g = power_law_graph(idtype=idtype)
    seeds = torch.randperm(300, generator=torch.Generator().manual_seed(4))[:50].to(idtype)
    _, _, blocks = NeighborSampler([6, 6], seed=1).sample(g, seeds)
    for b in blocks:
        gsrc = b.srcdata["_ID"][b.edges()[0]]
        src_nodes, src_local, seeds_local = relabel_first_appearance(b.dstdata["_ID"], gsrc)
        assert torch.equal(src_nodes, b.srcdata["_ID"])
        assert torch.equal(src_local, b.edges()[0])
        assert torch.equal(seeds_local, torch.arange(b.num_dst_nodes()))
    _, _, dup_local = relabel_first_appearance(torch.tensor([3, 5, 3], dtype=idtype),
                                               torch.tensor([5, 9], dtype=idtype))
    assert dup_local.tolist() == [0, 1, 0]


@pytest.mark.parametrize("fanout", [2**31, 2**62 + 1, 2**63, 2**64])
def test_huge_fanouts_rejected_at_construction(fanout):
    """seeds x fanout must fit the kernels' int64 counts: bounded at construction, never a
    segfault or an OverflowError mid-training."""
    with pytest.raises(ValueError, match="at most"):
        NeighborSampler([fanout], replace=True)
    with pytest.raises(ValueError, match="at most"):
        NeighborSampler([5, fanout])


@pytest.mark.parametrize("idtype", IDTYPES)
def test_cpu_relabel_matches_torch_relabel(idtype):
    """The heterogeneous CPU path relabels with relabel_cpu; the GPU path with torch ops: same
    first-appearance order, same local ids, scratch left as found."""
    from samplers.sampling._layer_cpu import relabel_cpu
    from samplers.sampling._layer_cuda import relabel_first_appearance

    g = torch.Generator().manual_seed(7)
    first = torch.randperm(500, generator=g)[:40].to(idtype)
    rest = torch.randint(0, 500, (3000,), generator=g).to(idtype)
    scratch = np.full(500, -1, dtype=np.int32)
    nodes, local = relabel_cpu(first.numpy(), rest.numpy(), scratch)
    want_nodes, want_local, _ = relabel_first_appearance(first, rest)
    assert torch.equal(torch.from_numpy(nodes), want_nodes) and torch.equal(torch.from_numpy(local), want_local)
    assert (scratch == -1).all()
    empty = relabel_cpu(first.numpy()[:0], rest.numpy()[:0], scratch)
    assert empty[0].size == 0 and empty[1].size == 0
