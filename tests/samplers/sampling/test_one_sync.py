"""The one-sync GPU sampling pipeline (samplers.sampling._one_sync): its relabel against the reference
relabel, and the whole pipeline, with the CUDA layer replaced by a CPU layer of the same padded
contract, against the CPU sampler: identical blocks, and exactly one host read per batch. The GPU
itself under `gpu` (identical to the per-layer GPU path, one sync under torch's sync debug mode)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samplers import CSCGraph, DataLoader, EdgePredictionSampler, NeighborSampler
from samplers.graph._csc import _plain
from samplers.sampling._one_sync import relabel_padded, sample_blocks_one_sync
from samplers.sampling._layer_cpu import sample_layer
from samplers.sampling._layer_cuda import relabel_first_appearance


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("seed", range(6))
def test_relabel_padded_matches_first_appearance(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n_first = int(torch.randint(0, 30, (1,), generator=g))
    first = torch.randperm(200, generator=g)[:n_first].to(dtype)
    rest = torch.randint(0, 60, (int(torch.randint(0, 300, (1,), generator=g)),), generator=g).to(dtype)
    pad_first = torch.cat([first, torch.full((7,), -1, dtype=dtype)])
    pad_rest = rest.clone()
    holes = torch.rand(rest.numel(), generator=g) < 0.3
    pad_rest[holes] = -1
    pad_rest = torch.cat([pad_rest, torch.full((11,), -1, dtype=dtype)])
    uniq, local, num = relabel_padded(pad_first, pad_rest)
    want_nodes, want_local, _ = relabel_first_appearance(first, rest[~holes])
    k = int(num)
    assert uniq.dtype == dtype and uniq.numel() == pad_first.numel() + pad_rest.numel()
    assert torch.equal(uniq[:k], want_nodes) and bool((uniq[k:] == -1).all())
    got = local[:rest.numel()]
    assert bool((got[holes] == -1).all()) and bool((local[rest.numel():] == -1).all())
    assert torch.equal(got[~holes], want_local)


def test_relabel_padded_all_padding_and_empty():
    uniq, local, num = relabel_padded(torch.full((3,), -1), torch.full((4,), -1))
    assert int(num) == 0 and bool((uniq == -1).all()) and bool((local == -1).all())
    uniq, local, num = relabel_padded(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64))
    assert int(num) == 0 and uniq.numel() == 0 and local.numel() == 0


def layer_padded_cpu(graph, dst, fanout, replace, key, excl, pad=True):
    """The CUDA layer's contract on the CPU: padded outputs of len(dst) * fanout entries; with
    ``pad`` negative entries are padding, without it they (like ids >= n) set the error flag."""
    if not pad and bool((dst < 0).any()):
        bound = dst.numel() * fanout
        empty = torch.full((bound,), -1, dtype=torch.int64)
        return (empty.to(graph.idtype), empty, empty.clone(), torch.tensor(0),
                torch.tensor(1, dtype=torch.int32))
    valid = dst[dst >= 0]
    assert torch.equal(dst[: valid.numel()], valid), "padding is a tail"
    ip, ix = _plain(graph.indptr).numpy(), _plain(graph.indices).numpy()
    eids = None if graph.edge_ids is None else _plain(graph.edge_ids).numpy()
    _, ei, eid, _ = sample_layer(ip, ix, eids, valid.numpy(), fanout, replace, key, None,
                                 relabel=False, excl=None if excl is None else excl.numpy())
    bound = dst.numel() * fanout
    total = ei.shape[1]
    assert total <= bound
    src = torch.full((bound,), -1, dtype=graph.idtype)
    pos = torch.full((bound,), -1, dtype=torch.int64)
    out_eid = torch.full((bound,), -1, dtype=torch.int64)
    src[:total] = torch.from_numpy(ei[0].copy()).to(graph.idtype)
    pos[:total] = torch.from_numpy(ei[1].copy())
    out_eid[:total] = torch.from_numpy(eid.copy())
    return src, pos, out_eid, torch.tensor(total), torch.tensor(0, dtype=torch.int32)


def _graph(idtype, with_eids=True):
    ei = torch.randint(0, 400, (2, 5000), generator=torch.Generator().manual_seed(1)).to(idtype)
    g = CSCGraph.from_edge_index(ei, 400)
    return g if with_eids else CSCGraph(g.indptr, g.indices)


@pytest.mark.parametrize("idtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("fanouts", [[3, 2], [15, 10, 5], [4, 1], [1]])
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("with_excl", [False, True])
def test_pipeline_equals_the_cpu_sampler_with_one_read(idtype, fanouts, replace, with_excl):
    g = _graph(idtype)
    sampler = NeighborSampler(fanouts, replace=replace, seed=5)
    seeds = torch.randperm(400, generator=torch.Generator().manual_seed(2))[:37].to(idtype)
    excl = torch.unique(torch.randint(0, 5000, (600,))) if with_excl else None
    key = sampler._batch_key(3)
    want_inputs, want_blocks = sampler._sample_cpu(g, seeds, key, excl)
    reads = []

    def read(t):
        reads.append(t.shape)
        return t.tolist()

    inputs, blocks = sample_blocks_one_sync(g, seeds, sampler.fanouts, replace,
                                            lambda layer: sampler._layer_key(key, layer), excl,
                                            layer_fn=layer_padded_cpu, read=read)
    assert len(reads) == 1 and reads[0] == (len(fanouts), 3)
    assert torch.equal(inputs, want_inputs)
    assert len(blocks) == len(want_blocks)
    for b, w in zip(blocks, want_blocks):
        assert torch.equal(b.srcdata["_ID"], w.srcdata["_ID"])
        assert torch.equal(b.dstdata["_ID"], w.dstdata["_ID"])
        assert torch.equal(b.edge_index, w.edge_index)
        assert torch.equal(b.edata["_ID"], w.edata["_ID"])


def test_out_of_range_seed_reported_after_the_read():
    g = _graph(torch.int64)

    def flagging(graph, dst, fanout, replace, key, excl, pad=True):
        out = layer_padded_cpu(graph, dst.clamp(max=graph.num_nodes - 1), fanout, replace, key, excl)
        return out[:4] + (torch.tensor(1, dtype=torch.int32),)

    with pytest.raises(IndexError, match=r"seeds must be node ids in \[0, 400\), got 400"):
        sample_blocks_one_sync(g, torch.tensor([3, 400]), [2], False, lambda layer: 1, None,
                               layer_fn=flagging)


def test_option_checks():
    with pytest.raises(TypeError, match="one_sync"):
        NeighborSampler([2], one_sync="yes")
    with pytest.raises(ValueError, match="fanouts >= 0"):
        sample_blocks_one_sync(_graph(torch.int64), torch.tensor([1]), [-1], False, lambda l: 1,
                               None, layer_fn=layer_padded_cpu)


# --------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("idtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("placement", ["pinned", "cuda"])
@pytest.mark.parametrize("replace", [False, True])
def test_gpu_one_sync_blocks_equal_the_per_layer_path(idtype, placement, replace):
    g = _graph(idtype).to_placement(placement)
    seeds = torch.randperm(400)[:64].to(idtype).cuda()
    a = NeighborSampler([10, 5, 3], replace=replace, seed=9)
    b = NeighborSampler([10, 5, 3], replace=replace, seed=9, one_sync=True)
    ia, _, ba = a.sample_distinct(g, seeds, batch=4)
    ib, _, bb = b.sample_distinct(g, seeds, batch=4)
    assert torch.equal(ia, ib)
    for x, y in zip(ba, bb):
        assert torch.equal(x.edge_index, y.edge_index)
        assert torch.equal(x.srcdata["_ID"], y.srcdata["_ID"])
        assert torch.equal(x.edata["_ID"], y.edata["_ID"])


@pytest.mark.gpu
def test_gpu_one_sync_exclusion_equals_the_per_layer_path():
    g = _graph(torch.int64).pin()
    seeds = torch.arange(0, 120, 3)
    outs = []
    for one in (False, True):
        s = EdgePredictionSampler(NeighborSampler([4, 3], seed=2, one_sync=one), exclude="self")
        outs.append(s.sample_distinct(g, seeds.cuda(), batch=1)[-1])
    for x, y in zip(*outs):
        assert torch.equal(x.edge_index, y.edge_index) and torch.equal(x.edata["_ID"], y.edata["_ID"])


@pytest.mark.gpu
def test_gpu_one_sync_loader_syncs_once_per_batch():
    """Under torch's sync debug mode ("warn"), the producer's work for one batch (sampling, the
    feature and label gathers) syncs exactly once."""
    import warnings

    g = _graph(torch.int64)
    feats = torch.randn(400, 16)
    labels = torch.randint(0, 4, (400,))
    loader = DataLoader(g, torch.arange(200), NeighborSampler([10, 5], seed=0, one_sync=True),
                        batch_size=50, device="cuda", use_uva=True, features=feats, labels=labels,
                        prefetch=0)
    it = iter(loader)
    next(it)   # warm-up: kernel compilation, first allocations
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            next(it)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(syncs) <= 1, [str(w.message) for w in syncs]


@pytest.mark.parametrize("idtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("with_excl", [False, True])
def test_cuda_layer_launch_arguments_match_kernel_signatures(monkeypatch, idtype, with_excl):
    """layer_padded_cuda passes exactly sample_count's / sample_fill's parameter types, with
    pad_negative=1 and outputs sized by the bound (CPU: launches faked; signatures from NVRTC)."""
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    import unified_tensor
    from samplers.sampling import _one_sync
    from samplers.sampling import _layer_cuda as _sampler_cuda
    from testing import kernel_arg_dtypes
    from unified_tensor import _kernels

    g = CSCGraph(torch.tensor([0, 2, 3, 3, 5], dtype=idtype), torch.tensor([1, 2, 0, 3, 1], dtype=idtype))
    dst = torch.tensor([3, 0, -1], dtype=idtype)
    launches = []
    monkeypatch.setattr(_kernels, "get_function", lambda source, name, device: (source, name))
    monkeypatch.setattr(_kernels, "launch", lambda fn, grid, block, args, device, stream=None:
                        launches.append((fn, args)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(unified_tensor, "device_pointer", lambda t: t.data_ptr())
    excl = torch.tensor([1], dtype=torch.int64) if with_excl else None
    src, pos, eid, total, err = _one_sync.layer_padded_cuda(g, dst, 2, False, 77, excl)
    assert src.numel() == pos.numel() == eid.numel() == 6 and src.dtype == idtype
    ((s1, count), a1), ((s2, fill), a2) = launches
    assert count == _sampler_cuda._name("sample_count", idtype, g.indptr.dtype)
    assert fill == _sampler_cuda._name("sample_fill", idtype, g.indptr.dtype)
    assert [type(a) for a in a1] == kernel_arg_dtypes(s1, count)
    assert [type(a) for a in a2] == kernel_arg_dtypes(s2, fill)
    assert int(a1[8]) == 1                                       # pad_negative
    assert [int(a) for a in a1[6:8]] == ([excl.data_ptr(), 1] if with_excl else [0, 0])
    assert int(a2[12]) == src.data_ptr() and int(a2[13]) == eid.data_ptr() and int(a2[14]) == pos.data_ptr()


def test_padded_sizes_bound_the_working_arrays():
    from samplers.sampling._one_sync import padded_sizes_fit

    assert padded_sizes_fit(1024, [15, 10, 5], 10**6)
    assert not padded_sizes_fit(1024, [-1, 10], 10**6)            # fanout -1: no bound
    # Node arrays are capped by the graph: a small graph keeps even huge fanouts in bounds...
    assert padded_sizes_fit(4096, [100, 100, 100], 1000)
    # ...a big one does not: the per-layer path is used.
    assert not padded_sizes_fit(4096, [100, 100, 100], 10**8)
    assert not padded_sizes_fit(10, [5], 100, limit=50) and padded_sizes_fit(10, [5], 100, limit=110)


def test_negative_seed_is_an_error_not_padding():
    """Layer 0's destination nodes are the caller's seeds: a negative one must raise (the CUDA
    count kernel runs without pad_negative there), never be taken for padding."""
    g = _graph(torch.int64)
    pads = []

    def recording(graph, dst, fanout, replace, key, excl, pad=True):
        pads.append(pad)
        return layer_padded_cpu(graph, dst, fanout, replace, key, excl, pad=pad)

    sample_blocks_one_sync(g, torch.tensor([0, 5, 9]), [2, 2, 2], False, lambda layer: 1, None,
                           layer_fn=recording)
    assert pads == [False, True, True]
    with pytest.raises(IndexError, match=r"seeds must be node ids in \[0, 400\), got -1"):
        sample_blocks_one_sync(g, torch.tensor([0, -1, 2]), [2], False, lambda layer: 1, None,
                               layer_fn=layer_padded_cpu)


@pytest.mark.parametrize("idtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("fanouts", [[3, 2], [4, 1, 2], []])
def test_padded_seeds_and_extra_values_ride_in_the_one_read(idtype, fanouts):
    """Seeds handed over padded (link prediction's compacted node set: -1 past a device count)
    give the blocks of the real seeds; extra device values come back from the same read, and
    check_extra sees them before the seeds' own check."""
    from samplers.sampling._one_sync import sample_padded_one_sync

    g = _graph(idtype)
    sampler = NeighborSampler(fanouts or [1], seed=5)
    real = torch.randperm(400, generator=torch.Generator().manual_seed(3))[:23].to(idtype)
    padded = torch.cat([real, torch.full((9,), -1, dtype=idtype)])
    key = sampler._batch_key(4)
    want_inputs, want_blocks = sampler._sample_cpu(g, real, key, None) if fanouts else (real, [])
    reads, seen = [], []

    def read(t):
        reads.append(tuple(t.shape))
        return t.tolist()

    inputs, blocks, num, extra = sample_padded_one_sync(
        g, padded, fanouts, False, lambda layer: sampler._layer_key(key, layer), None,
        num_seeds=torch.tensor(23), extra=[torch.tensor(True), torch.tensor(7)],
        check_extra=seen.append, layer_fn=layer_padded_cpu, read=read)
    assert len(reads) == 1 and num == 23 and extra == [1, 7] and seen == [[1, 7]]
    assert torch.equal(inputs, want_inputs)
    for b, w in zip(blocks, want_blocks):
        assert torch.equal(b.srcdata["_ID"], w.srcdata["_ID"])
        assert torch.equal(b.dstdata["_ID"], w.dstdata["_ID"])
        assert torch.equal(b.edge_index, w.edge_index)
        assert torch.equal(b.edata["_ID"], w.edata["_ID"])

    def refuse(values):
        if values[0]:
            raise KeyError("the caller's flag")

    def flagging(graph, dst, fanout, replace, key, excl, pad=True):   # a seed out of range
        out = layer_padded_cpu(graph, dst, fanout, replace, key, excl, pad=pad)
        return out[:4] + (torch.tensor(1, dtype=torch.int32),)

    with pytest.raises(KeyError):   # the caller's error first, not the seeds' IndexError
        sample_padded_one_sync(g, torch.tensor([3, 9, -1]).to(idtype), [2], False, lambda l: 1,
                               None, num_seeds=torch.tensor(2), extra=[torch.tensor(True)],
                               check_extra=refuse, layer_fn=flagging)
    with pytest.raises(IndexError, match="seeds must be node ids"):
        sample_padded_one_sync(g, torch.tensor([3, 9, -1]).to(idtype), [2], False, lambda l: 1,
                               None, num_seeds=torch.tensor(2), extra=[torch.tensor(False)],
                               check_extra=refuse, layer_fn=flagging)


def test_memory_bound_sends_a_cuda_batch_to_the_per_layer_path(monkeypatch):
    """sample_blocks_one_sync with the CUDA layers checks the memory bound first and, past it,
    samples layer by layer (the fallback is sample_blocks_per_layer)."""
    from samplers.sampling import _layer_cuda, _one_sync

    calls = []
    monkeypatch.setattr(_one_sync, "one_sync_fits", lambda *a: False)
    monkeypatch.setattr(_layer_cuda, "sample_blocks_per_layer",
                        lambda *a: calls.append(a) or ("inputs", ["blocks"]))

    class Seeds(torch.Tensor):   # a "CUDA" tensor as far as the check goes
        is_cuda = True

    seeds = torch.tensor([1, 2]).as_subclass(Seeds)
    assert _one_sync.sample_blocks_one_sync(_graph(torch.int64), seeds, [2], False,
                                            lambda l: 1, None) == ("inputs", ["blocks"])
    assert len(calls) == 1
