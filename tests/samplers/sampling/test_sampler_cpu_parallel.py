"""The CPU layer kernel (one launch: count, fill, relabel; outputs in recycled buffers) returns
exactly what a plain-Python reference returns, with 1 and 2 Numba threads, and results stay
valid while the caller holds them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samplers import CSCGraph, HeteroCSCGraph, NeighborSampler
from samplers.sampling import _layer_cpu as cpu
from samplers.sampling._layer_cpu import relabel_cpu, relabel_rows_cpu, sample_layer
from testing import ref_sample_layer

NP_IDTYPES = [np.int32, np.int64]


# ------------------------------------------------------------------------ plain-Python reference
def ref_layer(indptr, indices, eids, seeds, fanout, replace, key):
    """``(src_global, dst_local, eid)`` of one layer, edge by edge in plain Python."""
    return ref_sample_layer(indptr, indices, eids, seeds, fanout, replace, key)


def ref_relabel(first, rest):
    """``(uniq, local)``: first-appearance order over ``first + rest``."""
    ids = {}
    for v in list(first) + list(rest):
        ids.setdefault(int(v), len(ids))
    return list(ids), [ids[int(u)] for u in rest]


def random_csc(n, e, idtype, with_eids, seed, isolated=0.2):
    """A CSC graph as NumPy arrays; about ``isolated`` of the nodes have no in-edges and the
    degrees are skewed (a few hubs above every fanout)."""
    rng = np.random.default_rng(seed)
    w = rng.pareto(1.5, n) + 1
    w[rng.random(n) < isolated] = 0
    dst = rng.choice(n, e, p=w / w.sum())
    src = rng.integers(0, n, e)
    order = np.argsort(dst, kind="stable")
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, dst + 1, 1)
    indptr = np.cumsum(indptr).astype(idtype)
    indices = src[order].astype(idtype)
    eids = rng.permutation(e).astype(idtype) if with_eids else None
    return indptr, indices, eids


@pytest.fixture(params=["serial", 1, 2], ids=["serial", "parallel-1thread", "parallel-2threads"])
def threads(request, monkeypatch):
    """The kernel's serial build (used for small layers), or its parallel build (forced for
    every layer) with 1 or 2 Numba threads."""
    numba = pytest.importorskip("numba")
    if request.param == "serial":
        monkeypatch.setattr(cpu, "_SERIAL_MAX_EDGES", 1 << 62)
        yield request.param
        return
    if numba.config.NUMBA_NUM_THREADS < request.param:
        pytest.skip(f"Numba has {numba.config.NUMBA_NUM_THREADS} threads")
    monkeypatch.setattr(cpu, "_SERIAL_MAX_EDGES", -1)
    old = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(old)


@pytest.mark.parametrize("idtype", NP_IDTYPES)
@pytest.mark.parametrize("with_eids", [True, False])
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("fanout", [3, 10, -1])
def test_layer_matches_reference(threads, idtype, with_eids, replace, fanout):
    n = 400
    indptr, indices, eids = random_csc(n, 5000, idtype, with_eids, seed=fanout + 2 + 7 * replace)
    scratch = np.full(n, -1, np.int32)
    rng = np.random.default_rng(1)
    for size in (0, 1, 37, 300):
        seeds = rng.permutation(n)[:size].astype(idtype)
        key = int(rng.integers(0, 2**63))
        src, dst, eid = ref_layer(indptr, indices, eids, seeds, fanout, replace, key)
        # raw (heterogeneous form): global sources
        nodes, ei, got_eid, dup = sample_layer(indptr, indices, eids, seeds, fanout, replace, key,
                                               None, relabel=False)
        assert dup == -1 and nodes.shape == (0,)
        assert ei.dtype == np.int64 and got_eid.dtype == np.int64 and ei.shape == (2, len(src))
        assert ei.flags.c_contiguous and got_eid.flags.c_contiguous
        assert ei[0].tolist() == src and ei[1].tolist() == dst and got_eid.tolist() == eid
        # relabelled (homogeneous form): first-appearance local ids, seeds first
        uniq, local = ref_relabel(seeds, src)
        nodes, ei, got_eid, dup = sample_layer(indptr, indices, eids, seeds, fanout, replace, key,
                                               scratch)
        assert dup == -1 and nodes.dtype == idtype
        assert nodes.tolist() == uniq
        assert ei[0].tolist() == local and ei[1].tolist() == dst and got_eid.tolist() == eid
        assert (scratch == -1).all()


def test_large_layer_counted_first_matches_reference(threads, monkeypatch):
    """Above the seeds x fanout bound the edges are counted in a launch of their own."""
    indptr, indices, eids = random_csc(300, 6000, np.int64, True, seed=3)
    seeds = np.random.default_rng(0).permutation(300)[:200]
    key = 12345
    want = sample_layer(indptr, indices, eids, seeds, 8, False, key, np.full(300, -1, np.int32))
    monkeypatch.setattr(cpu, "_BOUND_MAX_EDGES", 10)
    got = sample_layer(indptr, indices, eids, seeds, 8, False, key, np.full(300, -1, np.int32))
    for a, b in zip(want[:3], got[:3]):
        np.testing.assert_array_equal(a, b)
    src, dst, eid = ref_layer(indptr, indices, eids, seeds, 8, False, key)
    assert got[1][1].tolist() == dst and got[2].tolist() == eid


def test_repeated_seed_reports_first_repeat(threads):
    indptr, indices, eids = random_csc(50, 400, np.int64, False, seed=0)
    scratch = np.full(50, -1, np.int32)
    seeds = np.array([4, 9, 2, 9, 4])
    _, _, _, dup = sample_layer(indptr, indices, eids, seeds, 5, False, 1, scratch)
    assert dup == 3 and (scratch == -1).all()


@pytest.mark.parametrize("idtype", NP_IDTYPES)
def test_relabel_functions_match_reference(idtype):
    rng = np.random.default_rng(0)
    scratch = np.full(1000, -1, np.int32)
    first = rng.permutation(1000)[:50].astype(idtype)
    rows = [rng.integers(0, 1000, k) for k in (0, 700, 1, 3000)]
    uniq, local = ref_relabel(first, np.concatenate(rows))
    nodes, loc = relabel_cpu(first, np.concatenate(rows), scratch)
    assert nodes.tolist() == uniq and loc.tolist() == local
    in_place = [r.copy() for r in rows]
    nodes = relabel_rows_cpu(first, in_place, scratch)
    assert nodes.dtype == idtype and nodes.tolist() == uniq
    assert np.concatenate(in_place).tolist() == local
    assert relabel_rows_cpu(first[:0], [], scratch).shape == (0,)
    assert (scratch == -1).all()
    with pytest.raises(ValueError, match="first must be distinct"):
        relabel_rows_cpu(np.array([3, 5, 3], idtype), [rows[1].copy()], scratch)
    assert (scratch == -1).all()


def test_results_survive_buffer_recycling():
    """Held results are never handed out again; dropped ones are (no fresh pages)."""
    n = 2000
    indptr, indices, eids = random_csc(n, 100_000, np.int64, True, seed=5)
    scratch = np.full(n, -1, np.int32)
    seeds = np.random.default_rng(0).permutation(n)[:1500]
    held = []
    for key in range(40):
        out = sample_layer(indptr, indices, eids, seeds, 40, False, key, scratch)
        assert out[1].nbytes >= cpu._POOL.min_bytes   # the pooled path
        if key % 3 == 0:   # keep some as tensors (torch.from_numpy keeps the owner alive)
            held.append((key, [torch.from_numpy(a.copy()) for a in out[:3]],
                         [torch.from_numpy(a) for a in out[:3]]))
    for key, copies, views in held:
        for c, v in zip(copies, views):
            assert torch.equal(c, v), f"batch {key} was overwritten"
    held.clear()
    owners = len(cpu._POOL._owners)
    for key in range(10):
        sample_layer(indptr, indices, eids, seeds, 40, False, key, scratch)
    assert len(cpu._POOL._owners) == owners   # dropped buffers were reused


@pytest.mark.parametrize("idtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("replace", [False, True])
def test_neighbor_sampler_same_with_1_and_2_threads(idtype, replace, monkeypatch):
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    indptr, indices, eids = random_csc(3000, 40_000, np.int64, True, seed=2)
    g = CSCGraph(torch.from_numpy(indptr).to(idtype), torch.from_numpy(indices).to(idtype),
                 torch.from_numpy(eids).to(idtype))
    seeds = torch.randperm(3000, generator=torch.Generator().manual_seed(0))[:256].to(idtype)
    outs = [NeighborSampler([5, -1, 10], replace=replace, seed=3).sample(g, seeds)]  # defaults
    monkeypatch.setattr(cpu, "_SERIAL_MAX_EDGES", -1)   # every layer parallel
    old = numba.get_num_threads()
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            outs.append(NeighborSampler([5, -1, 10], replace=replace, seed=3).sample(g, seeds))
    finally:
        numba.set_num_threads(old)
    (in0, _, b0) = outs[0]
    for in1, _, b1 in outs[1:]:
        assert torch.equal(in0, in1)
        for x, y in zip(b0, b1):
            assert torch.equal(x.srcdata["_ID"], y.srcdata["_ID"])
            assert torch.equal(x.edge_index, y.edge_index)
            assert torch.equal(x.edata["_ID"], y.edata["_ID"])


def test_hetero_cpu_matches_reference(threads):
    """Heterogeneous layer: per edge type raw layers, then one relabel per source type over the
    edge types in order, against the plain-Python reference."""
    rng = np.random.default_rng(4)
    num = {"a": 300, "b": 200}
    eidx = {("a", "x", "b"): torch.stack([torch.from_numpy(rng.integers(0, 300, 3000)),
                                          torch.from_numpy(rng.integers(0, 200, 3000))]),
            ("b", "y", "a"): torch.stack([torch.from_numpy(rng.integers(0, 200, 2000)),
                                          torch.from_numpy(rng.integers(0, 300, 2000))]),
            ("a", "z", "a"): torch.stack([torch.from_numpy(rng.integers(0, 300, 1000)),
                                          torch.from_numpy(rng.integers(0, 300, 1000))])}
    hg = HeteroCSCGraph.from_edge_index_dict(eidx, num)
    seeds = {"b": torch.randperm(200, generator=torch.Generator().manual_seed(1))[:40]}
    sampler = NeighborSampler([4, 3], seed=9)
    _, _, blocks = sampler.sample(hg, seeds)
    from samplers.sampling._hetero import _etype_key

    key = sampler._batch_key(0)
    dst = {k: v.numpy() for k, v in seeds.items()}
    for layer, block in enumerate(reversed(blocks)):
        lkey = sampler._layer_key(key, layer)
        raw = {}
        for i, et in enumerate(hg.canonical_etypes):
            if et[2] in dst and len(dst[et[2]]):
                g = hg[et]
                raw[et] = ref_layer(g.indptr.numpy(), g.indices.numpy(), g.edge_ids.numpy(),
                                    dst[et[2]], [4, 3][-1 - layer], False, _etype_key(lkey, i))
        src = {}
        for s in dict.fromkeys(list(dst) + [et[0] for et in raw]):
            mine = [et for et in raw if et[0] == s]
            uniq, local = ref_relabel(dst.get(s, []), [u for et in mine for u in raw[et][0]])
            assert block.srcdata["_ID"][s].tolist() == uniq
            pos = 0
            for et in mine:
                k = len(raw[et][0])
                assert block.edge_index[et][0].tolist() == local[pos:pos + k]
                assert block.edge_index[et][1].tolist() == raw[et][1]
                assert block.edata["_ID"][et].tolist() == raw[et][2]
                pos += k
            src[s] = np.array(uniq, np.int64)
        dst = src


def test_recycler_bounds():
    pool = cpu._Recycler(max_buffers=2, max_bytes=1 << 30, min_bytes=1000)
    a = pool.take(5000)
    assert a.shape == (5000,) and a.ctypes.data % 64 == 0
    b = pool.take(5000)
    c = pool.take(5000)            # pool full and nothing unused: not pooled
    assert len(pool._owners) == 2
    a_owner = a.base.ctypes.data
    del a
    d = pool.take(4000)            # a's buffer is unused again: handed out
    assert d.base.ctypes.data == a_owner
    assert pool.take(100).base is not None and len(pool._owners) == 2   # small: never pooled
    del d
    e = pool.take(1000)            # a 4x larger unused buffer is not used for a small request
    assert e.base.ctypes.data != a_owner
    del b, c, e
    big = pool.take(50_000)        # full: the smallest unused buffer makes room
    assert len(pool._owners) == 2 and any(big.base is o for o in pool._owners)
    tight = cpu._Recycler(max_buffers=8, max_bytes=10_000, min_bytes=1000)
    x = tight.take(6000)
    y = tight.take(6000)           # would pass max_bytes with x in use: not pooled
    assert len(tight._owners) == 1 and x.base is tight._owners[0] and y.base is not x.base
