"""Scenarios for the fake-CUDA harness: the GPU code paths of the samplers, loaders and gathers,
each compared with the CPU path on the same inputs.

Every scenario is a function decorated with ``@scenario("<group>")``; ``run.py <group>`` runs a
group in a child process after :func:`harness.install` (never import this module in a process
without the harness installed: it creates "CUDA" tensors). A scenario passes when the GPU path's
results equal the CPU path's (same dtypes, same values), every tensor of a GPU result is on the
device, loaders hand every CUDA tensor of a batch over to the consumer's stream, errors match the
CPU path's, and no device rule was broken (the runner checks :data:`harness.VIOLATIONS` after
each one, so a violation that library code caught still fails it).

The graphs are small and the neighbour draws are deterministic (counter-based, keyed by batch,
layer and node), so "GPU == CPU" is exact.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, List

import torch

import harness as fc

SCENARIOS: Dict[str, List[Callable[[], None]]] = {}


def scenario(group: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def deco(fn: Callable[[], None]) -> Callable[[], None]:
        SCENARIOS.setdefault(group, []).append(fn)
        return fn
    return deco


# ====================================================================================== helpers
def same(c: Any, g: Any, path: str = "result", device: bool = True) -> None:
    """``c`` (the CPU path's result) equals ``g`` (the GPU path's): same structure, tensors of
    the same dtype and values; with ``device`` every tensor of ``g`` is a CUDA tensor."""
    if isinstance(c, torch.Tensor):
        assert isinstance(g, torch.Tensor), f"{path}: {type(g).__name__}, expected a tensor"
        assert not fc.is_fc(c), f"{path}: the CPU path returned a CUDA tensor"
        if device:
            assert fc.is_fc(g), f"{path}: a CPU tensor in the GPU path's result"
        h = fc.to_host(g)
        assert c.dtype == h.dtype, f"{path}: dtype {h.dtype}, CPU path {c.dtype}"
        assert c.shape == h.shape, f"{path}: shape {tuple(h.shape)}, CPU path {tuple(c.shape)}"
        assert torch.equal(c, h), f"{path}: values differ\nCPU {c}\nGPU {h}"
    elif isinstance(c, dict):
        assert isinstance(g, dict) and list(c) == list(g), f"{path}: keys {list(g)} vs {list(c)}"
        for k in c:
            same(c[k], g[k], f"{path}[{k!r}]", device)
    elif isinstance(c, (list, tuple)):
        assert type(c) is type(g) and len(c) == len(g), f"{path}: {g!r} vs {c!r}"
        for i, (a, b) in enumerate(zip(c, g)):
            same(a, b, f"{path}[{i}]", device)
    elif type(c).__module__.startswith("torch_geometric"):
        same_pyg(c, g, path)
    elif hasattr(c, "__dict__") and not isinstance(c, type):
        assert type(c) is type(g), f"{path}: {type(g).__name__} vs {type(c).__name__}"
        vc, vg = vars(c), vars(g)
        assert sorted(vc) == sorted(vg), f"{path}: attributes {sorted(vg)} vs {sorted(vc)}"
        for k in vc:
            same(vc[k], vg[k], f"{path}.{k}", device)
    else:
        assert c == g, f"{path}: {g!r} vs {c!r}"


def _data_store(data: Any, store: Any) -> Any:
    """The store of ``data`` (the object a loader was given) that batch store ``store`` copies."""
    key = getattr(store, "_key", None)
    if key is None:
        return getattr(data, "_store", None) or getattr(data, "_global_store", None)
    return data[key]


def same_pyg(c: Any, g: Any, path: str, data: Any = None, device: bool = True) -> None:
    """PyG batches: every store's keys and values. With ``device``, every tensor of the GPU
    batch is on the device, except attributes the CPU batch holds untouched from ``data``
    (graph-level ones, which the loaders leave where the data keeps them)."""
    assert type(c) is type(g), f"{path}: {type(g).__name__} vs {type(c).__name__}"
    assert len(c.stores) == len(g.stores), f"{path}: stores differ"
    for sc, sg in zip(c.stores, g.stores):
        where = f"{path}[{getattr(sc, '_key', None)!r}]"
        assert sorted(sc.keys()) == sorted(sg.keys()), \
            f"{where}: keys {sorted(sg.keys())} vs {sorted(sc.keys())}"
        orig = None if data is None else _data_store(data, sc)
        for k in sc.keys():
            untouched = orig is not None and k in orig and orig[k] is sc[k]
            same(sc[k], sg[k], f"{where}.{k}", device=device and not untouched)
        oc, og = vars(sc).get("_orig_edge_index"), vars(sg).get("_orig_edge_index")
        assert (oc is None) == (og is None), f"{where}._orig_edge_index"
        if oc is not None:
            same(oc, og, f"{where}._orig_edge_index", device=device)


def expect_error(exc: type, fn: Callable[[], Any], match: str = "") -> str:
    try:
        fn()
    except exc as e:
        assert match in str(e), f"expected {exc.__name__} matching {match!r}, got: {e}"
        return str(e)
    except fc.DeviceError:
        raise
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"expected {exc.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {exc.__name__}, nothing raised")


def same_error(exc: type, cpu: Callable[[], Any], gpu: Callable[[], Any]) -> None:
    """Both paths raise ``exc`` with the same message."""
    m1 = expect_error(exc, cpu)
    m2 = expect_error(exc, gpu)
    assert m1 == m2, f"messages differ:\nCPU: {m1}\nGPU: {m2}"


def cuda(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: v.cuda() for k, v in x.items()}
    return x.cuda()


def iterate(loader: Any) -> List[Any]:
    """All batches of one epoch; for a CUDA loader, checks each batch's stream hand-over."""
    out = []
    cuda_loader = getattr(loader, "device", torch.device("cpu")).type == "cuda"
    it = iter(loader)
    while True:
        fc.RECORDED.clear()
        try:
            b = next(it)
        except StopIteration:
            break
        if cuda_loader:
            fc.assert_handed_over(b)
        out.append(b)
    assert len(out) == len(loader), f"{len(out)} batches, len(loader) = {len(loader)}"
    return out


def same_epochs(cpu_loader: Any, gpu_loader: Any, epochs: int = 1, pyg: Any = None) -> int:
    n = 0
    for e in range(epochs):
        cb, gb = iterate(cpu_loader), iterate(gpu_loader)
        assert len(cb) == len(gb)
        for i, (c, g) in enumerate(zip(cb, gb)):
            if pyg is not None:
                same_pyg(c, g, f"epoch {e} batch {i}", pyg)
            else:
                same(c, g, f"epoch {e} batch {i}")
            n += 1
    return n


# ========================================================================================= data
W = ("author", "writes", "paper")
C = ("paper", "cites", "paper")
R = ("paper", "rev_writes", "author")
NUM = {"author": 40, "paper": 60, "venue": 3}     # venue: a node type without edges
REV_TYPES = {"writes": "rev_writes", "rev_writes": "writes"}


def homo_edges(n: int = 50, e: int = 300, seed: int = 0) -> torch.Tensor:
    """A multigraph (self loops, parallel edges) whose last 5 nodes have no in-edges."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, n, (e,), generator=g),
                        torch.randint(0, n - 5, (e,), generator=g)])


def homo_graph(idtype: torch.dtype = torch.int64):
    from samplers import CSCGraph
    return CSCGraph.from_edge_index(homo_edges().to(idtype), 50)


def hetero_graph(idtype: torch.dtype = torch.int64):
    """author -writes-> paper, paper -cites-> paper, paper -rev_writes-> author; papers 55.. are
    never written (no in-edges of that type); the author CSC is padded to 60 nodes."""
    from samplers import HeteroCSCGraph
    g = torch.Generator().manual_seed(1)
    w = torch.stack([torch.randint(0, 40, (300,), generator=g), torch.randint(0, 55, (300,), generator=g)])
    ed = {W: w, C: torch.randint(0, 60, (2, 400), generator=g), R: w.flip(0)}
    return HeteroCSCGraph.from_edge_index_dict({k: v.to(idtype) for k, v in ed.items()}, NUM)


def placements(g: Any) -> List[Any]:
    """The graph pinned in place (UVA) and in GPU memory."""
    return [g.pin(), g.to("cuda")]


# ================================================================================ group: sampler
@scenario("sampler")
def homo_neighbor_sampler() -> None:
    """Homogeneous blocks: both placements and id types, fanouts with -1, replacement,
    sample() (with its distinct check) and sample_distinct() on the per-layer and one-sync paths,
    seeds of another integer dtype than the graph's."""
    from samplers import NeighborSampler
    seeds = torch.tensor([3, 0, 17, 44, 9, 46, 21])          # 46: no in-edges
    for idtype in (torch.int32, torch.int64):
        g = homo_graph(idtype)
        for gg in placements(g):
            for fanouts, replace in itertools.product(([3, 2], [-1, 2], [1, 4, 2]), (False, True)):
                mk = lambda one_sync=False: NeighborSampler(fanouts, replace=replace, seed=5,   # noqa: E731
                                                            one_sync=one_sync)
                same(mk().sample(g, seeds), mk().sample(gg, seeds.cuda()), "sample")
                for one_sync in (False, True):
                    cpu = mk().sample_distinct(g, seeds, batch=7)
                    gpu = mk(one_sync).sample_distinct(gg, seeds.cuda(), batch=7)
                    same(cpu, gpu, f"sample_distinct one_sync={one_sync}")
                    other = torch.int32 if idtype == torch.int64 else torch.int64
                    gpu = mk(one_sync).sample_distinct(gg, seeds.to(other).cuda(), batch=7)
                    same(cpu, gpu, f"sample_distinct {other} seeds")
            # an empty batch and a batch of nodes without in-edges
            for s in (torch.tensor([], dtype=idtype), torch.tensor([45, 47, 49])):
                for one_sync in (False, True):
                    mk = lambda: NeighborSampler([2, 2], seed=1, one_sync=one_sync)  # noqa: E731
                    same(mk().sample_distinct(g, s, batch=0), mk().sample_distinct(gg, s.cuda(), batch=0),
                         f"seeds {s.tolist()}")


@scenario("sampler")
def homo_one_sync_reads_once() -> None:
    """NeighborSampler(one_sync=True).sample_distinct: one host sync per batch (its contract);
    fanout -1 falls back to the per-layer path, with the same blocks."""
    from samplers import NeighborSampler
    g = homo_graph()
    seeds = torch.arange(0, 50, 3).cuda()
    for gg in placements(g):
        s = NeighborSampler([4, 3, 2], seed=3, one_sync=True)
        with fc.count_syncs() as syncs:
            s.sample_distinct(gg, seeds, batch=1)
        assert sum(syncs.values()) == 1, f"one-sync batch made {dict(syncs)}"
        per_layer = NeighborSampler([4, 3, 2], seed=3).sample_distinct(gg, seeds, batch=1)
        same(NeighborSampler([4, 3, 2], seed=3).sample_distinct(g, seeds.cpu(), batch=1), per_layer)
        cpu = NeighborSampler([-1, 2], seed=3).sample_distinct(g, seeds.cpu(), batch=1)
        same(cpu, NeighborSampler([-1, 2], seed=3, one_sync=True).sample_distinct(gg, seeds, batch=1))


@scenario("sampler")
def homo_exclusion() -> None:
    """Excluded CSC positions (what link prediction passes) on the device, both paths."""
    from samplers import NeighborSampler
    from samplers.sampling._edges import edge_endpoints as _edge_endpoints
    g = homo_graph()
    _, _, pos = _edge_endpoints(g)
    gen = torch.Generator().manual_seed(4)
    seeds = torch.tensor([1, 2, 3, 10, 20, 30])
    for excl in (torch.unique(pos[torch.randint(0, 300, (60,), generator=gen)]), pos[:0]):
        for gg in placements(g):
            for one_sync in (False, True):
                mk = lambda: NeighborSampler([3, 3], seed=2, one_sync=one_sync)  # noqa: E731
                cpu = mk()._sample(g, seeds, check_distinct=False, batch=3, exclude=excl)
                gpu = mk()._sample(gg, seeds.cuda(), check_distinct=False, batch=3,
                                   exclude=excl.cuda())
                same(cpu, gpu, f"exclude {excl.numel()} one_sync={one_sync}")


@scenario("sampler")
def homo_errors() -> None:
    """Out-of-range, negative and repeated seeds raise as on the CPU; seeds and graph on
    different devices are refused; output_device moves CPU-sampled blocks to the GPU."""
    from samplers import NeighborSampler
    g = homo_graph()
    for gg in placements(g):
        for seeds in (torch.tensor([1, 50]), torch.tensor([-1, 3])):
            same_error(IndexError, lambda: NeighborSampler([2]).sample(g, seeds),
                       lambda: NeighborSampler([2]).sample(gg, seeds.cuda()))
            for one_sync in (False, True):
                same_error(IndexError, lambda: NeighborSampler([2, 2]).sample_distinct(g, seeds),
                           lambda: NeighborSampler([2, 2], one_sync=one_sync).sample_distinct(
                               gg, seeds.cuda()))
        rep = torch.tensor([4, 7, 4])
        same_error(ValueError, lambda: NeighborSampler([2]).sample(g, rep),
                   lambda: NeighborSampler([2]).sample(gg, rep.cuda()))
    g32 = homo_graph(torch.int32)
    for gg in placements(g32):
        big = torch.tensor([1, 2**32 + 3])     # would wrap to 3 as int32
        for one_sync in (False, True):
            same_error(IndexError, lambda: NeighborSampler([2]).sample_distinct(g32, big),
                       lambda: NeighborSampler([2], one_sync=one_sync).sample_distinct(gg, big.cuda()))
    expect_error(ValueError, lambda: NeighborSampler([2]).sample(g, torch.tensor([1]).cuda()),
                 "pageable CPU memory")
    expect_error(ValueError, lambda: NeighborSampler([2]).sample(g.to("cuda"), torch.tensor([1])),
                 "seeds are on the CPU")
    seeds = torch.tensor([5, 6, 7])
    same(NeighborSampler([2, 2], seed=1).sample(g, seeds),
         NeighborSampler([2, 2], seed=1, output_device="cuda").sample(g, seeds), "output_device")


def _hetero_seeds() -> Dict[str, torch.Tensor]:
    return {"paper": torch.tensor([0, 5, 7, 59, 56]), "author": torch.tensor([3, 9, 39])}


@scenario("sampler")
def hetero_neighbor_sampler() -> None:
    """Heterogeneous blocks: int32/int64 graphs pinned and in GPU memory, per-type fanouts with 0,
    -1, replacement, sample() and sample_distinct(), int64 seeds for an int32 graph, seeds of one
    type only and of a type without edges."""
    from samplers import NeighborSampler
    for idtype in (torch.int32, torch.int64):
        g = hetero_graph(idtype)
        for gg in placements(g):
            assert gg.placement in ("pinned", "cuda")
            for fan, replace in itertools.product(
                    ([3, {"writes": 2, "cites": 1, "rev_writes": 2}], [-1, 2],
                     [{"writes": 0, "cites": 3, "rev_writes": 0}, 2]), (False, True)):
                mk = lambda: NeighborSampler(fan, replace=replace, seed=4)  # noqa: E731
                seeds = _hetero_seeds()
                same(mk().sample(g, seeds), mk().sample(gg, cuda(seeds)), f"sample {fan}")
                same(mk().sample_distinct(g, seeds, batch=2),
                     mk().sample_distinct(gg, cuda(seeds), batch=2), f"sample_distinct {fan}")
                same(mk().sample_distinct(g, seeds, batch=2),
                     mk().sample_distinct(gg, cuda(seeds), batch=2, seeds_checked=True),
                     "seeds_checked")
            for seeds in ({"venue": torch.tensor([0, 2])}, {"author": torch.tensor([1])},
                          {"paper": torch.tensor([], dtype=torch.int64), "author": torch.tensor([5])}):
                mk = lambda: NeighborSampler([2, 2], seed=1)  # noqa: E731
                same(mk().sample(g, seeds), mk().sample(gg, cuda(seeds)), f"seeds {seeds}")
                same(mk().sample_distinct(g, seeds, batch=1),
                     mk().sample_distinct(gg, cuda(seeds), batch=1), f"sample_distinct {seeds}")
        seeds = _hetero_seeds()
        same(NeighborSampler([2, 2], seed=3).sample(g, seeds),
             NeighborSampler([2, 2], seed=3, output_device="cuda").sample(g, seeds), "output_device")


@scenario("sampler")
def hetero_errors() -> None:
    """Heterogeneous seed errors: ids past a type's count (inside the padded CSC) raise
    IndexError on the GPU as on the CPU, also without the distinct check; repeated seeds;
    seeds of several devices; CUDA seeds of a pageable graph."""
    from samplers import NeighborSampler
    g = hetero_graph()
    for gg in placements(g):
        for bad in ({"author": torch.tensor([3, 50])}, {"paper": torch.tensor([-1, 2])},
                    {"venue": torch.tensor([3])}):
            same_error(IndexError, lambda: NeighborSampler([2, 2]).sample(g, bad),
                       lambda: NeighborSampler([2, 2]).sample(gg, cuda(bad)))
            same_error(IndexError, lambda: NeighborSampler([2, 2]).sample_distinct(g, bad),
                       lambda: NeighborSampler([2, 2]).sample_distinct(gg, cuda(bad)))
        rep = {"paper": torch.tensor([1, 1])}
        same_error(ValueError, lambda: NeighborSampler([2]).sample(g, rep),
                   lambda: NeighborSampler([2]).sample(gg, cuda(rep)))
    # int64 ids an int32 graph would wrap
    g32 = hetero_graph(torch.int32)
    for gg in placements(g32):
        big = {"paper": torch.tensor([1, 2**32 + 3])}
        same_error(IndexError, lambda: NeighborSampler([2]).sample(g32, big),
                   lambda: NeighborSampler([2]).sample(gg, cuda(big)))
        same_error(IndexError, lambda: NeighborSampler([2]).sample_distinct(g32, big),
                   lambda: NeighborSampler([2]).sample_distinct(gg, cuda(big)))
    gp = g.pin()
    expect_error(ValueError, lambda: NeighborSampler([2]).sample(
        gp, {"paper": torch.tensor([1]).cuda(), "author": torch.tensor([2])}), "one device")
    expect_error(ValueError, lambda: NeighborSampler([2]).sample(g, {"paper": torch.tensor([1]).cuda()}),
                 "pageable CPU memory")


# =================================================================================== group: link
def _det_negatives(src: torch.Tensor, n: int, key: int):
    """A custom negative sampler that draws the same on every device: 2 per positive."""
    s = src.repeat_interleave(2)
    return s, (s * 7 + 3 + key % 11) % n


def _cpu_negatives(src: torch.Tensor, n: int, key: int):
    """A custom negative sampler that builds its ids on the CPU whatever the seeds' device."""
    s = src.cpu()
    return s, (s * 5 + 1) % n


@scenario("link")
def link_homo() -> None:
    """EdgePredictionSampler on a homogeneous graph: every exclude mode (None, self, reverse_id,
    a callable), per-layer and one-sync, no / uniform / custom (device-agnostic, CPU-built)
    negatives, both placements and id types, sample() and sample_distinct()."""
    from samplers import EdgePredictionSampler, NeighborSampler
    ei = homo_edges(50, 150)
    ei = torch.cat([ei, ei.flip(0)], 1)                   # edge e and e + 150 are reverses
    rev = torch.cat([torch.arange(150, 300), torch.arange(0, 150)])
    for idtype in (torch.int32, torch.int64):
        from samplers import CSCGraph
        g = CSCGraph.from_edge_index(ei.to(idtype), 50)
        seeds = torch.arange(0, 300, 7)
        for gg in placements(g):
            for ex, one_sync, neg in itertools.product(
                    (None, "self", "reverse_id", "callable"), (False, True),
                    (None, 2, _det_negatives, _cpu_negatives)):
                kw = {"reverse_eids": rev} if ex == "reverse_id" else {}
                exf = (lambda e: torch.cat([e, (e + 1) % 300])) if ex == "callable" else ex
                mk = lambda: EdgePredictionSampler(   # noqa: E731
                    NeighborSampler([3, 2], seed=0, one_sync=one_sync), exclude=exf,
                    negative_sampler=neg, **kw)
                tag = f"{idtype} {gg.placement} exclude={ex} one_sync={one_sync} neg={neg}"
                same(mk().sample_distinct(g, seeds, batch=3),
                     mk().sample_distinct(gg, seeds.cuda(), batch=3), tag)
            same(EdgePredictionSampler(NeighborSampler([2], seed=1), exclude="self").sample(g, seeds),
                 EdgePredictionSampler(NeighborSampler([2], seed=1), exclude="self").sample(
                     gg, seeds.cuda()), "sample()")


@scenario("link")
def link_hetero() -> None:
    """EdgePredictionSampler on a heterogeneous graph: exclude None / self / reverse_types / a
    callable, uniform negatives, both placements and id types, seed edges of two types."""
    from samplers import EdgePredictionSampler, NeighborSampler
    for idtype in (torch.int32, torch.int64):
        g = hetero_graph(idtype)
        seeds = {"writes": torch.arange(0, 300, 5), C: torch.arange(0, 400, 9)}
        for gg in placements(g):
            for (ex, kw), neg in itertools.product(
                    ((None, {}), ("self", {}), ("reverse_types", {"reverse_etypes": REV_TYPES}),
                     (lambda s: {"cites": s[C][:3], R: s[W][:4]}, {})), (None, 1, 3)):
                mk = lambda: EdgePredictionSampler(   # noqa: E731
                    NeighborSampler([2, {"writes": 2, "cites": -1, "rev_writes": 1}], seed=1),
                    exclude=ex, negative_sampler=neg, **kw)
                tag = f"{idtype} {gg.placement} exclude={ex} neg={neg}"
                same(mk().sample_distinct(g, seeds, batch=2),
                     mk().sample_distinct(gg, cuda(seeds), batch=2), tag)
            both = {"writes": torch.arange(0, 300, 4), "rev_writes": torch.arange(1, 300, 6)}
            mk = lambda: EdgePredictionSampler(NeighborSampler([2, 2], seed=2),   # noqa: E731
                                               exclude="reverse_types", reverse_etypes=REV_TYPES,
                                               negative_sampler=2)
            same(mk().sample_distinct(g, both, batch=4), mk().sample_distinct(gg, cuda(both), batch=4),
                 "both directions")


@scenario("link")
def link_errors() -> None:
    """Seed edges out of range, and a custom negative sampler's ids out of range, raise as on
    the CPU."""
    from samplers import EdgePredictionSampler, NeighborSampler
    g = homo_graph()
    for gg in placements(g):
        bad = torch.tensor([0, 300])
        same_error(IndexError, lambda: EdgePredictionSampler(NeighborSampler([2])).sample(g, bad),
                   lambda: EdgePredictionSampler(NeighborSampler([2])).sample(gg, bad.cuda()))
        wild = lambda s, n, k: (s, s + n)   # noqa: E731
        seeds = torch.tensor([1, 2])
        same_error(IndexError,
                   lambda: EdgePredictionSampler(NeighborSampler([2]), negative_sampler=wild).sample(g, seeds),
                   lambda: EdgePredictionSampler(NeighborSampler([2]), negative_sampler=wild).sample(
                       gg, seeds.cuda()))


# ============================================================================= group: dataloader
def _tables(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=gen), torch.randint(0, 7, (n,), generator=gen)


@scenario("dataloader")
def dl_host_syncs_per_batch() -> None:
    """Host syncs the GPU paths make, counted here as gpu_probe counts them on a GPU: none for
    feats[idx] with its default (deferred) range check, one with validate="sync"; per loader
    batch (2 layers, features and labels, producer in this thread): 4 on the per-layer path
    (edge count and relabel per layer), exactly 1 with one_sync=True."""
    import unified_tensor as ut
    from samplers import CSCGraph, DataLoader, NeighborSampler

    g = torch.Generator().manual_seed(0)
    n, e = 3000, 30000
    ei = torch.stack([torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)])
    feats = ut.unified(torch.randn(n, 16, generator=g))
    labels = ut.unified(torch.randint(0, 10, (n,), generator=g))
    graph = CSCGraph.from_edge_index(ei, n).pin()
    idx = torch.randint(0, n, (2048,), generator=g).cuda()
    feats[idx]
    ut.synchronize()
    with fc.count_syncs() as c:
        feats[idx]
    assert sum(c.values()) == 0, f"feats[idx] synced: {dict(c)}"
    with fc.count_syncs() as c:
        ut.gather(feats, idx, validate="sync")
    assert sum(c.values()) == 1, f"validate='sync': {dict(c)}"
    ut.synchronize()
    for one_sync, want in ((False, 4), (True, 1)):
        loader = DataLoader(graph, torch.arange(n // 2), NeighborSampler([10, 5], one_sync=one_sync),
                            batch_size=256, device="cuda", features=feats, labels=labels,
                            prefetch=0, seed=0)
        it = iter(loader)
        next(it)
        with fc.count_syncs() as c:
            for _ in range(3):
                next(it)
        assert sum(c.values()) == 3 * want, f"one_sync={one_sync}: {dict(c)} over 3 batches"
        del it


@scenario("dataloader")
def dl_node_homo() -> None:
    """samplers.DataLoader, node seeds, homogeneous: graph pageable + use_uva, pinned, in GPU
    memory, and pageable with CPU sampling (pinned copy to the GPU); host, unified and
    GPU-resident feature tables, labels; per-layer and one-sync; with and without the producer
    thread; CPU and CUDA indices; two epochs."""
    import unified_tensor as ut
    from samplers import DataLoader, NeighborSampler
    g = homo_graph()
    x, y = _tables(50, 0)
    idx = torch.arange(0, 45, 2)
    cases = [(g, True), (g.pin(), False), (g.to("cuda"), False), (g, False)]
    for (gg, uva), one_sync, prefetch in itertools.product(cases, (False, True), (0, None)):
        for feats in (x, ut.unified(x.clone()), x.cuda()):
            kw = dict(batch_size=6, shuffle=True, seed=3, labels=y, prefetch=prefetch)
            cpu = DataLoader(g, idx, NeighborSampler([3, 2], seed=1), features=x, **kw)
            gi = idx.cuda() if gg.placement == "cuda" else idx
            gpu = DataLoader(gg, gi, NeighborSampler([3, 2], seed=1, one_sync=one_sync),
                             device="cuda", use_uva=uva, features=feats, **kw)
            expect = "cpu" if gg.placement == "cpu" and not uva else "cuda"
            assert gpu._sample_device.type == expect, (gpu._sample_device, expect)
            same_epochs(cpu, gpu, epochs=2)
    # CUDA indices for a pinned graph, CPU indices for a GPU graph; the producer's work on the
    # user's stream
    for gg, gi, kw in ((g.pin(), idx.cuda(), {}), (g.to("cuda"), idx, {}),
                       (g.pin(), idx, {"use_alternate_streams": False})):
        cpu = DataLoader(g, idx, NeighborSampler([2, 2], seed=4), batch_size=8, features=x, labels=y)
        gpu = DataLoader(gg, gi, NeighborSampler([2, 2], seed=4), batch_size=8,
                         features=x, labels=y, device="cuda", **kw)
        same_epochs(cpu, gpu)
    # presampled hotness counts the same batches on either device
    from samplers import presample_hotness
    mk = lambda dev, gg: DataLoader(gg, idx, NeighborSampler([3, 2], seed=6), batch_size=7,   # noqa: E731
                                    shuffle=True, seed=2, device=dev)
    same(presample_hotness(mk(None, g), 50), presample_hotness(mk("cuda", g.pin()), 50),
         "presample_hotness", device=False)


@scenario("dataloader")
def dl_node_hetero() -> None:
    """samplers.DataLoader on a HeteroCSCGraph: per-type indices, features and labels; graph
    pageable + use_uva, pinned, in GPU memory, pageable with CPU sampling."""
    from samplers import DataLoader, NeighborSampler
    for idtype in (torch.int32, torch.int64):
        g = hetero_graph(idtype)
        feats = {"author": torch.randn(40, 4), "paper": torch.randn(60, 4), "venue": torch.randn(3, 4)}
        labels = {"paper": torch.arange(60), "author": torch.arange(40)}
        idx = {"paper": torch.arange(0, 60, 3), "author": torch.arange(0, 40, 4)}
        for gg, uva in ((g, True), (g.pin(), False), (g.to("cuda"), False), (g, False)):
            for prefetch in (0, None):
                kw = dict(batch_size=7, shuffle=True, seed=3, features=feats, labels=labels,
                          prefetch=prefetch)
                cpu = DataLoader(g, idx, NeighborSampler([2, 3], seed=1), **kw)
                gi = cuda(idx) if gg.placement == "cuda" else idx
                gpu = DataLoader(gg, gi, NeighborSampler([2, 3], seed=1), device="cuda",
                                 use_uva=uva, **kw)
                same_epochs(cpu, gpu)
        # CUDA indices for a pinned graph; GPU-resident feature and label tables
        kw = dict(batch_size=9, shuffle=True, seed=5)
        cpu = DataLoader(g, idx, NeighborSampler([2, 2], seed=2), features=feats, labels=labels, **kw)
        gpu = DataLoader(g.pin(), cuda(idx), NeighborSampler([2, 2], seed=2), device="cuda",
                         features=cuda(feats), labels=cuda(labels), **kw)
        same_epochs(cpu, gpu)


@scenario("dataloader")
def dl_link() -> None:
    """samplers.DataLoader with an EdgePredictionSampler: homogeneous (reverse_id exclusion,
    per-layer and one-sync) and heterogeneous (reverse_types), with features, both placements."""
    from samplers import CSCGraph, DataLoader, EdgePredictionSampler, NeighborSampler
    h = CSCGraph.from_edge_index(homo_edges(50, 400, seed=2), 50)
    rev = torch.randperm(400, generator=torch.Generator().manual_seed(1))
    x = torch.randn(50, 3)
    for gg, one_sync in itertools.product(placements(h), (False, True)):
        mk = lambda: EdgePredictionSampler(   # noqa: E731
            NeighborSampler([3, 2], seed=1, one_sync=one_sync), exclude="reverse_id",
            reverse_eids=rev, negative_sampler=1)
        kw = dict(batch_size=64, shuffle=True, seed=3, features=x)
        same_epochs(DataLoader(h, torch.arange(400), mk(), **kw),
                    DataLoader(gg, torch.arange(400).cuda() if gg.placement == "cuda" else torch.arange(400),
                               mk(), device="cuda", **kw))
    g = hetero_graph(torch.int32)
    feats = {"author": torch.randn(40, 4), "paper": torch.randn(60, 4)}
    eidx = {"writes": torch.arange(0, 300, 2), C: torch.arange(0, 400, 3)}
    for gg in placements(g):
        mk = lambda: EdgePredictionSampler(NeighborSampler([2, 2], seed=1),   # noqa: E731
                                           exclude="reverse_types", reverse_etypes=REV_TYPES,
                                           negative_sampler=2)
        kw = dict(batch_size=16, shuffle=True, seed=3, features=feats, prefetch=0)
        same_epochs(DataLoader(g, eidx, mk(), **kw), DataLoader(gg, eidx, mk(), device="cuda", **kw))


@scenario("dataloader")
def dl_output_device() -> None:
    """NeighborSampler(output_device="cuda") in a CPU DataLoader over a pinned graph (device
    None: the CPU): blocks land on the GPU, features and labels are gathered for the loader's
    device from the blocks' ids, and must equal the CPU loader's."""
    from samplers import DataLoader, NeighborSampler
    g = homo_graph()
    x, y = _tables(50, 2)
    kw = dict(batch_size=8, features=x, labels=y, prefetch=0)
    cpu = DataLoader(g, torch.arange(40), NeighborSampler([2, 2], seed=3), **kw)
    gpu = DataLoader(g.pin(), torch.arange(40), NeighborSampler([2, 2], seed=3, output_device="cuda"), **kw)
    assert gpu.device.type == "cpu"
    for c, b in zip(iterate(cpu), iterate(gpu)):
        same(c[2][0].srcdata["feat"], b[2][0].srcdata["feat"], "features", device=False)
        same(c[2][-1].dstdata["label"], b[2][-1].dstdata["label"], "labels", device=False)
        same(c[2][0].edge_index, b[2][0].edge_index, "blocks on the GPU")


@scenario("dataloader")
def dl_break_and_restart() -> None:
    """A break out of a threaded CUDA epoch (the consumer's stream waits for the side stream,
    the producer stops), then a full epoch that matches the CPU loader's second epoch."""
    from samplers import DataLoader, NeighborSampler
    g = homo_graph()
    x, y = _tables(50, 1)
    kw = dict(batch_size=5, shuffle=True, seed=9, features=x, labels=y)
    cpu = DataLoader(g, torch.arange(45), NeighborSampler([2, 2], seed=2), **kw)
    gpu = DataLoader(g.pin(), torch.arange(45), NeighborSampler([2, 2], seed=2), device="cuda",
                     prefetch=2, **kw)
    for i, (c, b) in enumerate(zip(cpu, gpu)):
        same(c, b, "first epoch")
        if i == 2:
            break
    same_epochs(cpu, gpu)


# =================================================================================== group: pyg
def make_pyg_data(idtype: torch.dtype = torch.int64, n: int = 120, e: int = 700, seed: int = 0):
    """A multigraph with node attributes of several dtypes and ranks, edge attributes, a
    graph-level tensor and string, and nodes without in-edges / without edges."""
    from torch_geometric.data import Data
    g = torch.Generator().manual_seed(seed)
    d = Data(edge_index=torch.stack([torch.randint(0, n - 4, (e,), generator=g),
                                     torch.randint(0, n - 10, (e,), generator=g)]).to(idtype))
    d.x = torch.randn(n, 5, generator=g)
    d.y = torch.randint(0, 4, (n,), generator=g)
    d.train_mask = torch.rand(n, generator=g) < 0.4
    d.x_half = torch.randn(n, 3, generator=g).half()
    d.x_bf16 = torch.randn(n, 2, generator=g).bfloat16()
    d.pos3 = torch.randn(n, 3, 2, generator=g)
    d.edge_attr = torch.randn(e, 2, generator=g)
    d.edge_flag = torch.rand(e, generator=g) < 0.5
    d.graph_feat = torch.randn(1, 6, generator=g)          # graph-level: stays where it is
    d.name = "toy"
    return d


def with_odd_attributes(d: Any) -> Any:
    """``d`` plus node attributes that take the loaders' other slicing paths: a NumPy array, a
    list, a tensor that requires grad, a column slice (copied contiguous once)."""
    import numpy as np
    n = d.num_nodes
    g = torch.Generator().manual_seed(5)
    d.x_np = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    d.tags = [f"node{i}" for i in range(n)]
    d.x_grad = torch.randn(n, 2, generator=g).requires_grad_()
    d.x_cols = torch.randn(n, 6, generator=g)[:, ::2]
    return d


AP, PA, CI = ("author", "writes", "paper"), ("paper", "rev_writes", "author"), ("paper", "cites", "paper")


def make_pyg_hetero(seed: int = 0):
    from torch_geometric.data import HeteroData
    g = torch.Generator().manual_seed(seed)
    h = HeteroData()
    h["author"].x = torch.randn(50, 4, generator=g)
    h["paper"].x = torch.randn(70, 6, generator=g)
    h["paper"].y = torch.randint(0, 3, (70,), generator=g)
    h["paper"].emb = torch.randn(70, 2, 3, generator=g).half()
    h["topic"].x = torch.randn(5, 3, generator=g)           # a node type without edges
    w = torch.stack([torch.randint(0, 50, (300,), generator=g), torch.randint(0, 65, (300,), generator=g)])
    h[AP].edge_index = w
    h[AP].edge_attr = torch.randn(300, 3, generator=g)
    h[PA].edge_index = w.flip(0)
    h[CI].edge_index = torch.randint(0, 70, (2, 350), generator=g)
    h[CI].edge_weight = torch.rand(350, generator=g)
    return h


def _pyg_pairs(make: Callable[[Any], Any], data: Any, tag: str, epochs: int = 1) -> None:
    cpu, gpu = make(None), make("cuda")
    assert gpu._sample_device.type == "cuda", gpu._sample_device
    n = same_epochs(cpu, gpu, epochs, pyg=data)
    assert n, tag


def _keep_orig(out: Any) -> Any:
    """A transform_sampler_output that keeps the sampled edges as orig_row / orig_col (batches
    then carry ``_orig_edge_index``, which the hand-over must include)."""
    out.orig_row, out.orig_col = out.row, out.col
    return out


@scenario("pyg")
def pyg_neighbor_homo() -> None:
    """samplers.pyg.NeighborLoader(device="cuda") on Data: directional / induced subgraphs,
    disjoint, fanout -1, replacement, int32 edges, the producer thread, _orig_edge_index,
    odd attributes, loader(index), seeds on the GPU, CPU sampling (bidirectional: below)."""
    from samplers.pyg import NeighborLoader
    for idtype in (torch.int64, torch.int32):
        data = make_pyg_data(idtype)
        for st, disjoint, fan, replace in itertools.product(
                ("directional", "induced"), (False, True), ([4, 3], [-1, 2]),
                (False,) if idtype == torch.int32 else (False, True)):
            if disjoint and st == "induced":
                continue
            _pyg_pairs(lambda d: NeighborLoader(
                data, fan, input_nodes=data.train_mask, batch_size=24, shuffle=True, seed=21,
                replace=replace, disjoint=disjoint, subgraph_type=st, device=d, prefetch=0),
                data, f"{idtype} {st} disjoint={disjoint} {fan} replace={replace}")
    data = make_pyg_data()
    _pyg_pairs(lambda d: NeighborLoader(data, [3, 2], batch_size=40, shuffle=True, seed=2, device=d),
               data, "producer thread", epochs=2)
    # transform_sampler_output keeping the directional edges: batches carry _orig_edge_index
    _pyg_pairs(lambda d: NeighborLoader(data, [3, 2], batch_size=40, seed=2, device=d,
                                        transform_sampler_output=_keep_orig),
               data, "_orig_edge_index")
    cpu = NeighborLoader(data, [3, 2], batch_size=40, seed=2)
    gpu = NeighborLoader(data, [3, 2], batch_size=40, seed=2, device="cuda")
    same_pyg(cpu(torch.tensor([5, 1, 9])), gpu(torch.tensor([5, 1, 9])), "loader(index)", data)
    # seeds given on the GPU: ids, and a mask
    ids = torch.nonzero(data.train_mask).view(-1)
    for seeds in (ids.cuda(), data.train_mask.cuda()):
        _pyg_pairs(lambda d: NeighborLoader(data, [3, 2], input_nodes=seeds if d else seeds.cpu(),
                                            batch_size=16, seed=7, device=d, prefetch=0),
                   data, f"CUDA input_nodes {seeds.dtype}")
    odd = with_odd_attributes(make_pyg_data(seed=3))
    _pyg_pairs(lambda d: NeighborLoader(odd, [3, 2], batch_size=30, seed=1, device=d, prefetch=0),
               odd, "NumPy / list / grad / strided attributes")
    # use_uva=False: sampled on the CPU, batches moved (pinned) to the GPU
    cpu = NeighborLoader(data, [3, 2], batch_size=33, seed=8, prefetch=0)
    gpu = NeighborLoader(data, [3, 2], batch_size=33, seed=8, prefetch=0, device="cuda",
                         use_uva=False)
    assert gpu._sample_device.type == "cpu"
    same_epochs(cpu, gpu, pyg=data)


@scenario("pyg")
def pyg_neighbor_hetero() -> None:
    """NeighborLoader(device="cuda") on HeteroData: every subgraph type, disjoint, per-type
    seeds given as a node type and as (type, mask)."""
    from samplers.pyg import NeighborLoader
    data = make_pyg_hetero()
    mask = torch.rand(70, generator=torch.Generator().manual_seed(3)) < 0.5
    for st, disjoint, fan in itertools.product(("directional", "induced"),
                                               (False, True), ([3, 2], [-1, 1])):
        if disjoint and st == "induced":
            continue
        _pyg_pairs(lambda d: NeighborLoader(data, fan, input_nodes="paper", batch_size=16, seed=6,
                                            disjoint=disjoint, subgraph_type=st, device=d,
                                            prefetch=0),
                   data, f"{st} disjoint={disjoint} {fan}")
    _pyg_pairs(lambda d: NeighborLoader(data, {AP: [2, 2], PA: [1, 1], CI: [3, 0]},
                                        input_nodes=("paper", mask), batch_size=10, shuffle=True,
                                        seed=6, device=d), data, "dict fanouts, mask, thread")
    _pyg_pairs(lambda d: NeighborLoader(data, [2, 2], input_nodes="paper", batch_size=20, seed=2,
                                        device=d, transform_sampler_output=_keep_orig),
               data, "_orig_edge_index")
    ids = torch.nonzero(mask).view(-1)
    _pyg_pairs(lambda d: NeighborLoader(data, [2, 2], input_nodes=("paper", ids.cuda() if d else ids),
                                        batch_size=10, seed=6, device=d, prefetch=0),
               data, "CUDA input ids")
    cpu = NeighborLoader(data, [2, 2], input_nodes="author", batch_size=12, seed=6, prefetch=0)
    gpu = NeighborLoader(data, [2, 2], input_nodes="author", batch_size=12, seed=6, prefetch=0,
                         device="cuda", use_uva=False)
    same_epochs(cpu, gpu, pyg=data)


@scenario("pyg")
def pyg_link_homo() -> None:
    """LinkNeighborLoader(device="cuda") on Data: no / binary / triplet negatives, disjoint,
    edge labels, weighted negatives, seeds and labels on the GPU, CPU sampling, loader(index)
    (bidirectional: below)."""
    from samplers.pyg import LinkNeighborLoader
    data = make_pyg_data(n=90, e=500)
    eli = data.edge_index[:, :160]
    label = torch.randint(0, 3, (160,), generator=torch.Generator().manual_seed(2))
    for neg, disjoint, st in itertools.product((None, "binary", "triplet"), (False, True),
                                               ("directional",)):
        lab = None if neg == "triplet" else label
        _pyg_pairs(lambda d: LinkNeighborLoader(
            data, [3, 2], edge_label_index=eli, edge_label=lab, neg_sampling=neg, batch_size=48,
            shuffle=True, seed=9, disjoint=disjoint, subgraph_type=st, device=d, prefetch=0),
            data, f"neg={neg} disjoint={disjoint} {st}")
    # labels and seed edges given on the GPU; CPU sampling with GPU batches
    _pyg_pairs(lambda d: LinkNeighborLoader(
        data, [2, 2], edge_label_index=eli.cuda() if d else eli,
        edge_label=label.cuda() if d else label, neg_sampling="binary", batch_size=40, seed=3,
        device=d), data, "CUDA edge_label_index / edge_label, thread")
    # weighted negatives, the weights given on the GPU
    from torch_geometric.sampler import NegativeSampling
    w = torch.rand(data.num_nodes, generator=torch.Generator().manual_seed(4))
    for kind in ("binary", "triplet"):
        _pyg_pairs(lambda d: LinkNeighborLoader(
            data, [2], edge_label_index=eli, batch_size=40, seed=3, device=d, prefetch=0,
            neg_sampling=NegativeSampling(kind, 2, dst_weight=w.cuda() if d else w)),
            data, f"weighted {kind} negatives")
    cpu = LinkNeighborLoader(data, [2, 2], edge_label_index=eli, neg_sampling="binary", seed=3)
    gpu = LinkNeighborLoader(data, [2, 2], edge_label_index=eli, neg_sampling="binary", seed=3,
                             device="cuda")
    same_pyg(cpu(torch.tensor([4, 0, 4, 9])), gpu(torch.tensor([4, 0, 4, 9])), "loader(index)", data)
    for neg in (None, "triplet"):
        cpu = LinkNeighborLoader(data, [2, 2], edge_label_index=eli, neg_sampling=neg,
                                 batch_size=40, seed=3, prefetch=0)
        gpu = LinkNeighborLoader(data, [2, 2], edge_label_index=eli, neg_sampling=neg,
                                 batch_size=40, seed=3, prefetch=0, device="cuda", use_uva=False)
        assert gpu._sample_device.type == "cpu"
        same_epochs(cpu, gpu, pyg=data)


@scenario("pyg")
def pyg_link_hetero() -> None:
    """LinkNeighborLoader(device="cuda") on HeteroData, seed edges of a relation between two
    node types and of one within a type."""
    from samplers.pyg import LinkNeighborLoader
    data = make_pyg_hetero()
    for et, neg, disjoint in itertools.product((AP, CI), (None, "binary", "triplet"), (False, True)):
        _pyg_pairs(lambda d: LinkNeighborLoader(
            data, [3, 2], edge_label_index=(et, data[et].edge_index[:, :90]), neg_sampling=neg,
            batch_size=32, shuffle=True, seed=9, disjoint=disjoint, device=d, prefetch=0),
            data, f"{et} neg={neg} disjoint={disjoint}")


def _bidirectional_cases() -> None:
    from samplers.pyg import LinkNeighborLoader, NeighborLoader
    h = make_pyg_hetero()
    for disjoint in (False, True):
        _pyg_pairs(lambda d: NeighborLoader(h, [3, 2], input_nodes="paper", batch_size=16, seed=6,
                                            disjoint=disjoint, subgraph_type="bidirectional",
                                            device=d, prefetch=0), h, f"hetero disjoint={disjoint}")
    data = make_pyg_data()
    for disjoint, fan in itertools.product((False, True), ([4, 3], [-1, 2])):
        _pyg_pairs(lambda d: NeighborLoader(
            data, fan, input_nodes=data.train_mask, batch_size=24, shuffle=True, seed=21,
            disjoint=disjoint, subgraph_type="bidirectional", device=d, prefetch=0),
            data, f"homo disjoint={disjoint} {fan}")
    ld = make_pyg_data(n=90, e=500)
    for neg, disjoint in itertools.product((None, "binary", "triplet"), (False, True)):
        _pyg_pairs(lambda d: LinkNeighborLoader(
            ld, [3, 2], edge_label_index=ld.edge_index[:, :160], neg_sampling=neg, batch_size=48,
            shuffle=True, seed=9, disjoint=disjoint, subgraph_type="bidirectional", device=d,
            prefetch=0), ld, f"link neg={neg} disjoint={disjoint}")


@scenario("pyg")
def pyg_bidirectional() -> None:
    """subgraph_type="bidirectional" on the GPU (NeighborLoader on HeteroData and Data,
    LinkNeighborLoader on Data): the batches equal the CPU's, reproducibly. PyG's
    to_bidirectional merges an edge sampled in both directions with coalesce(reduce="any"), a
    scatter_ with repeated indices: on a GPU which edge id (and so which edge attributes) the
    merged edge gets is undefined, while the CPU's is the last one."""
    _bidirectional_cases()


@scenario("pyg")
def pyg_bidirectional_devices() -> None:
    """The same bidirectional batches with the repeated-write check off: devices, dtypes, sizes,
    values (the fake picks the CPU's winner) and the stream hand-over. The undefined winner on a
    real GPU stays asserted by pyg_bidirectional; this keeps the rest of the path covered."""
    fc.CHECK_REPEATED_WRITES = False
    try:
        _bidirectional_cases()
    finally:
        fc.CHECK_REPEATED_WRITES = True


@scenario("pyg")
def pyg_cpu_loader_gpu_attribute() -> None:
    """A CPU loader (device None: the graph is on the CPU) over data with one attribute in GPU
    memory (and one that requires grad there): its rows come back to the CPU, readable as soon
    as the batch is yielded, equal to the rows of the same data kept on the CPU."""
    from samplers.pyg import NeighborLoader
    ref = make_pyg_data(seed=6)
    mixed = ref.clone()
    mixed.x = mixed.x.cuda()
    mixed.x_grad = torch.randn(ref.num_nodes, 2, generator=torch.Generator().manual_seed(1))
    ref.x_grad = mixed.x_grad.clone().requires_grad_()
    mixed.x_grad = mixed.x_grad.cuda().requires_grad_()
    cpu = NeighborLoader(ref, [2, 2], batch_size=40, seed=3, prefetch=0)
    mix = NeighborLoader(mixed, [2, 2], batch_size=40, seed=3, prefetch=0)
    assert mix.device.type == "cpu"
    for c, b in zip(iterate(cpu), iterate(mix)):
        same_pyg(c, b, "CPU loader, a GPU attribute", ref, device=False)


@scenario("pyg")
def pyg_gpu_resident_data() -> None:
    """Data / HeteroData already in GPU memory: the loaders sample it there (device follows the
    data) and match the CPU; a relation without edge_index; temporal and weighted sampling refuse
    GPU data, and run on the CPU sampler with device="cuda" for host data."""
    from samplers.pyg import LinkNeighborLoader, NeighborLoader
    data = make_pyg_data()
    dg = data.clone().to("cuda")
    assert fc.is_fc(dg.edge_index) and fc.is_fc(dg.x)
    cpu = NeighborLoader(data, [3, 2], batch_size=30, seed=4, prefetch=0)
    gpu = NeighborLoader(dg, [3, 2], batch_size=30, seed=4, prefetch=0)
    assert gpu.device.type == "cuda" and gpu.graph.placement == "cuda"
    for c, g in zip(iterate(cpu), iterate(gpu)):
        same_pyg(c, g, "GPU Data", data)
    h = make_pyg_hetero()
    hg = h.clone().to("cuda")
    eli = (AP, h[AP].edge_index[:, :40])
    cpu = LinkNeighborLoader(h, [2, 2], edge_label_index=eli, neg_sampling="binary", batch_size=16,
                             seed=4, prefetch=0)
    gpu = LinkNeighborLoader(hg, [2, 2], edge_label_index=(AP, eli[1].cuda()), neg_sampling="binary",
                             batch_size=16, seed=4, prefetch=0)
    for c, g in zip(iterate(cpu), iterate(gpu)):
        same_pyg(c, g, "GPU HeteroData link", h)
    # one attribute already in GPU memory next to host ones (gathered with index_select there)
    mixed = make_pyg_data(seed=4)
    ref = mixed.clone()
    mixed.x = mixed.x.cuda()
    cpu = NeighborLoader(ref, [2, 2], batch_size=32, seed=3, prefetch=0)
    gpu = NeighborLoader(mixed, [2, 2], batch_size=32, seed=3, prefetch=0, device="cuda")
    assert gpu._sample_device.type == "cuda"
    for c, g in zip(iterate(cpu), iterate(gpu)):
        same_pyg(c, g, "a GPU attribute in host data", ref)
    for idtype in (torch.int64, torch.int32):
        h2 = h.clone()
        for et in h2.edge_types:
            h2[et].edge_index = h2[et].edge_index.to(idtype)
        del h2[CI].edge_index
        hg2 = h2.clone().to("cuda")
        cpu = NeighborLoader(h2, [2], input_nodes="author", batch_size=8, seed=1, prefetch=0)
        gpu = NeighborLoader(hg2, [2], input_nodes="author", batch_size=8, seed=1, prefetch=0)
        assert gpu.graph.placement == "cuda"
        for c, g in zip(iterate(cpu), iterate(gpu)):
            same_pyg(c, g, f"relation without edge_index {idtype}", h2)
    # temporal / weighted: the CPU sampler; GPU data refused, host data + device="cuda" matches
    data.t = torch.arange(data.num_nodes)
    data.ew = torch.rand(data.num_edges, generator=torch.Generator().manual_seed(0))
    dg = data.clone().to("cuda")
    expect_error(NotImplementedError, lambda: NeighborLoader(dg, [2], time_attr="t", batch_size=4))
    expect_error(NotImplementedError, lambda: NeighborLoader(dg, [2], weight_attr="ew", batch_size=4))
    it = torch.randint(0, 200, (data.num_nodes,), generator=torch.Generator().manual_seed(6))
    for kw in ({"time_attr": "t"}, {"weight_attr": "ew"}, {"time_attr": "t", "input_time": it}):
        cpu = NeighborLoader(data, [3, 2], batch_size=25, seed=5, prefetch=0, **kw)
        gpu = NeighborLoader(data, [3, 2], batch_size=25, seed=5, prefetch=0, device="cuda", **kw)
        assert gpu._sample_device.type == "cpu"
        for c, g in zip(iterate(cpu), iterate(gpu)):
            same_pyg(c, g, f"CPU-sampled {kw}", data)
    eli = data.edge_index[:, :60]
    elt = torch.randint(0, data.num_nodes, (60,), generator=torch.Generator().manual_seed(1))
    for neg in ("binary", "triplet"):
        mk = lambda d: LinkNeighborLoader(data, [2, 2], edge_label_index=eli,   # noqa: E731
                                          edge_label_time=elt, time_attr="t", neg_sampling=neg,
                                          batch_size=20, seed=5, prefetch=0, device=d)
        for c, g in zip(iterate(mk(None)), iterate(mk("cuda"))):
            same_pyg(c, g, f"temporal link {neg}", data)


# ================================================================================ group: gather
@scenario("gather")
def gather_zero_copy() -> None:
    """ut.unified tables gathered with CUDA indices (t[idx], index_select, F.embedding,
    ut.gather with out=): rows of many dtypes and shapes, int32/int64 and negative ids, empty
    indices, sorted and unsorted reads, tables pinned by PyTorch and in GPU memory."""
    import torch.nn.functional as F
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(0)
    for dtype, row in itertools.product((torch.float32, torch.float16, torch.bfloat16, torch.int8,
                                         torch.bool, torch.int64), ((), (3,), (4, 5))):
        base = (torch.randn((300,) + row, generator=gen) * 50).to(dtype)
        t = ut.unified(base.clone())
        assert t.is_registered
        for idtype in (torch.int32, torch.int64):
            idx = torch.randint(-300, 300, (2000,), generator=gen).to(idtype)   # >= SORT_MIN_ROWS
            for i in (idx, idx[:17], idx[:0], idx.view(40, 50)):
                same(base[i.long()], t[i.cuda()], f"t[idx] {dtype} {row} {idtype}")
                same(ut.gather(base, i), ut.gather(t, i.cuda(), sorted_order=False), "unsorted")
            i1 = idx[:33].cuda()
            same(base[idx[:33].long()], torch.index_select(t, 0, i1), "index_select (ids wrap)")
            out = torch.empty((33,) + row, dtype=dtype, device="cuda")
            r = ut.gather(t, i1, out=out)
            assert r is out
            same(base[idx[:33].long()], out, "out=")
    emb = torch.randn(20, 6, generator=gen)
    te = ut.unified(emb.clone())
    i = torch.tensor([[1, 2], [19, 0]])
    same(F.embedding(i, emb), F.embedding(i.cuda(), te), "F.embedding")
    i8 = torch.tensor([3, -1, 0], dtype=torch.int8)
    same(emb[i8.long()], te[i8.cuda()], "int8 ids")
    # a NumPy source (read-only too), a second table over part of a registered one
    import numpy as np
    arr = np.arange(60, dtype=np.float32).reshape(20, 3)
    ro = arr.copy()
    ro.flags.writeable = False
    for src in (arr, ro):
        same(torch.from_numpy(arr)[i], ut.unified(src)[i.cuda()], f"NumPy table writeable={src.flags.writeable}")
    whole = torch.randn(30, 2, generator=gen)
    tw = ut.unified(whole)
    part = ut.unified(whole[10:])
    same(whole[10:][i], part[i.cuda()], "a table inside a registered one")
    same(whole[i], tw[i.cuda()], "the registered one")
    # out= for a table in GPU memory
    gt = emb.cuda()
    out = torch.empty(2, 2, 6, device="cuda")
    assert ut.gather(gt, i.cuda(), out=out) is out
    same(emb[i], out, "GPU table, out=")
    pinned = emb.clone().pin_memory()
    assert pinned.is_pinned()
    same(emb[i], ut.gather(pinned, i.cuda()), "table pinned by PyTorch")
    same(emb[i], ut.gather(emb.cuda(), i.cuda()), "table in GPU memory")


@scenario("gather")
def gather_errors() -> None:
    """Out-of-range CUDA ids: zeros and a deferred IndexError (raised by ut.synchronize(), or by
    the next CUDA gather), validate="sync" raises at once; unpinned, pageable and
    not-registered tables are refused."""
    import unified_tensor as ut
    base = torch.arange(40.).view(10, 4)
    t = ut.unified(base.clone())
    r = t[torch.tensor([1, 12, -11, 2]).cuda()]             # no host sync, no error yet
    h = fc.to_host(r)
    assert torch.equal(h[0], base[1]) and torch.equal(h[3], base[2]) and not h[1:3].any()
    # the record keeps the smallest and largest bad id; the smallest is reported when below -n
    expect_error(IndexError, ut.synchronize, "index -11 is out of range for a table of 10 rows")
    t[torch.tensor([10]).cuda()]
    expect_error(IndexError, lambda: t[torch.tensor([0]).cuda()], "index 10 is out of range")
    expect_error(IndexError, lambda: ut.gather(t, torch.tensor([0, -11]).cuda(), validate="sync"),
                 "index -11 is out of range")
    g = base.cuda()                                           # a table in GPU memory
    r = ut.gather(g, torch.tensor([3, 99]).cuda())
    assert not fc.to_host(r)[1].any()
    expect_error(IndexError, ut.synchronize, "index 99 is out of range")
    ut.synchronize()                                          # nothing left
    expect_error(ValueError, lambda: ut.gather(base, torch.tensor([1]).cuda()), "not pinned")
    u = ut.unified(base.clone())
    ut.unpin(u)
    expect_error(RuntimeError, lambda: u[torch.tensor([1]).cuda()], "unpinned")


# ================================================================================= group: cache
# The GPU hot-row cache (ut.cache): the fake gather kernel reads a row r from the cache's device
# memory when its slot map says so, as cuda/gather.cu does. To show a row really came from the
# cache, the host table's cached rows are overwritten behind the library's back (through the plain
# tensor the UnifiedTensor wraps, which no cache follows): a gather that still returns the old
# values read them from the cache.
def _poisoned(x: torch.Tensor) -> torch.Tensor:
    """Values that differ from ``x`` in every element."""
    if x.dtype == torch.bool:
        return ~x
    return torch.where(x == 99, torch.tensor(98, dtype=x.dtype), torch.tensor(99, dtype=x.dtype))


def poison(t: Any, ids: torch.Tensor) -> None:
    """Overwrite rows ``ids`` of UnifiedTensor ``t``'s host memory without telling its caches."""
    p = t._ut_plain.data   # .data: a write torch does not count for t (the caches' version)
    p[ids] = _poisoned(p[ids])


def cache_of(t: Any) -> Any:
    c = t._ut_caches.get(0)
    assert c is not None, f"no cache on cuda:0: {t._ut_caches}"
    return c


def cache_reads() -> int:
    """Rows the fake gather kernel has read from a GPU row cache so far."""
    return fc.LAUNCHES["gather_cache_rows"]


CACHE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.bool, torch.int64)


@scenario("cache")
def cache_gather() -> None:
    """Gathers through a cache (ids= in unsorted order) equal gathers without it and the CPU
    result: rows of many dtypes and shapes, int32/int64 and negative ids, sorted and unsorted
    reads, 2-D and empty indices, index_select and out=; with the host's cached rows poisoned
    they still do (the cached rows come from the cache), while uncached rows come from the host."""
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(0)
    for dtype, row in itertools.product(CACHE_DTYPES, ((), (3,), (4, 5))):
        base = (torch.randn((300,) + row, generator=gen) * 50).to(dtype)
        t = ut.unified(base.clone())
        perm = torch.randperm(300, generator=gen)
        ids, rest = perm[:90], perm[90:]                     # cached: 90 rows, unsorted
        idx = {d: torch.randint(-300, 300, (1500,), generator=gen).to(d)   # >= SORT_MIN_ROWS
               for d in (torch.int32, torch.int64)}
        cases = [(i, so) for d in idx for i in (idx[d], idx[d][:17], idx[d].view(30, 50), idx[d][:0])
                 for so in (None, False)]
        uncached = [ut.gather(t, i.cuda(), sorted_order=so) for i, so in cases]
        ut.cache(t, ids=ids)
        c = cache_of(t)
        same(base[ids], c.rows, f"cached rows {dtype} {row}")
        reads = cache_reads()
        tag = f"{dtype} {row}"
        for (i, so), u in zip(cases, uncached):
            g = ut.gather(t, i.cuda(), sorted_order=so)
            same(base[i.long()], g, f"cached gather {tag} {i.dtype} {tuple(i.shape)} sorted={so}")
            same(fc.to_host(u), g, f"cached == uncached {tag}")
        assert cache_reads() > reads, "no row was read from the cache"
        poison(t, ids)
        assert not torch.equal(t._ut_plain[ids], base[ids])
        for i, so in cases:
            same(base[i.long()], ut.gather(t, i.cuda(), sorted_order=so),
                 f"poisoned host, cached gather {tag} {i.dtype} {tuple(i.shape)} sorted={so}")
            same(base[i.long()], t[i.cuda()], f"t[idx] {tag}")
        i1 = idx[torch.int64][:33]
        same(base[i1], torch.index_select(t, 0, i1.cuda()), f"index_select {tag}")
        out = torch.empty((33,) + row, dtype=dtype, device="cuda")
        assert ut.gather(t, i1.cuda(), out=out) is out
        same(base[i1], out, f"out= {tag}")
        # rows outside the cache still come from the host
        poison(t, rest[:7])
        same(t._ut_plain[rest[:7]].clone(), t[rest[:7].cuda()], f"uncached rows {tag}")
        same(base[ids[:7]], t[ids[:7].cuda()], f"cached rows {tag}")
    import torch.nn.functional as F
    emb = torch.randn(20, 6, generator=gen)
    te = ut.unified(emb.clone())
    ut.cache(te, ids=[19, 0, 7])
    poison(te, torch.tensor([19, 0, 7]))
    i = torch.tensor([[1, 19], [7, 0]])
    same(F.embedding(i, emb), F.embedding(i.cuda(), te), "F.embedding through a cache")
    # a table pinned by PyTorch (not registered by the library) caches too
    pinned = emb.clone().pin_memory()
    tp = ut.unified(pinned)
    assert tp._ut_external_pin
    ut.cache(tp, ids=torch.tensor([3, 4]))
    poison(tp, torch.tensor([3, 4]))
    same(emb[[4, 3, 5]], tp[torch.tensor([4, 3, 5]).cuda()], "table pinned by PyTorch")
    # zero-width rows: a cache of no bytes per row; no kernel runs, ids still checked
    tz = ut.unified(torch.empty(30, 0))
    ut.cache(tz, ids=[1, 2])
    assert ut.cache_info(tz) == {"cuda:0": {"rows": 2, "bytes": 4 * 30}}
    same(torch.empty(3, 0), tz[torch.tensor([1, 2, -1]).cuda()], "zero-width rows")
    tz[torch.tensor([30]).cuda()]
    expect_error(IndexError, ut.synchronize, "index 30 is out of range for a table of 30 rows")


@scenario("cache")
def cache_selection() -> None:
    """ut.cache(t, hotness=..., max_rows= / max_bytes=): the hottest rows (ties: lower id
    first), as many as the budget holds (the slot map counted); hotness on the GPU; ids as a
    list, NumPy array or CUDA tensor; caching again replaces the cache, an empty choice drops it;
    cache_info; a refill staged in several chunks; device arguments."""
    import numpy as np
    import unified_tensor as ut
    from unified_tensor import _cache
    gen = torch.Generator().manual_seed(1)
    n, rb = 200, 6 * 4
    base = torch.randn(n, 6, generator=gen)
    t = ut.unified(base.clone())
    hot = torch.randint(0, 20, (n,), generator=gen).float()
    order = torch.argsort(hot, descending=True, stable=True)
    info = lambda k: {"cuda:0": {"rows": k, "bytes": k * rb + 4 * n}}   # noqa: E731
    for kw, k in ((dict(max_rows=37), 37), (dict(max_bytes=4 * n + 50 * rb + rb - 1), 50),
                  (dict(max_rows=10, max_bytes=1 << 30), 10), (dict(max_rows=10**6), n),
                  (dict(max_bytes=4 * n + 3 * rb, max_rows=5), 3)):
        for h in (hot, hot.cuda(), hot.long()):
            ut.cache(t, hotness=h, **kw)
            assert torch.equal(cache_of(t).ids, order[:k]), (kw, cache_of(t).ids[:8], order[:8])
            assert ut.cache_info(t) == info(k), (kw, ut.cache_info(t))
            same(base[order[:k]], cache_of(t).rows, f"cached rows {kw}")
    poison(t, order[:3])
    same(base, t[torch.arange(n).cuda()], "hotness-chosen cache")
    t = ut.unified(base.clone())
    for ids in ([5, 1, 199], np.array([5, 1, 199], dtype=np.int32), torch.tensor([5, 1, 199]).cuda(),
                torch.tensor([5, 1, 199], dtype=torch.int32).cuda()):
        ut.cache(t, ids=ids)
        assert cache_of(t).ids.tolist() == [5, 1, 199] and ut.cache_info(t) == info(3)
    ut.cache(t, ids=[7])
    assert ut.cache_info(t) == info(1) and cache_of(t).ids.tolist() == [7]
    for empty in (dict(ids=[]), dict(hotness=hot, max_rows=0), dict(hotness=hot, max_bytes=4 * n)):
        ut.cache(t, ids=[7])
        ut.cache(t, **empty)
        assert ut.cache_info(t) == {}, empty
    same(base, t[torch.arange(n).cuda()], "no cache")
    for dev in ("cuda", "cuda:0", 0, torch.device("cuda", 0), None):
        ut.cache(t, ids=[2, 3], device=dev)
        assert ut.cache_info(t) == info(2), dev
    expect_error(ValueError, lambda: ut.cache(t, ids=[1], device="cpu"), "device must be CUDA")
    expect_error(ValueError, lambda: ut.cache(t, ids=[1], device="cuda:1"), "only 1 CUDA device")
    expect_error(IndexError, lambda: ut.cache(t, ids=torch.tensor([1, n]).cuda()), f"got {n}")
    expect_error(ValueError, lambda: ut.cache(t, ids=torch.tensor([4, 4]).cuda()), "distinct")
    expect_error(TypeError, lambda: ut.cache(torch.zeros(3, 2), ids=[0]), "UnifiedTensor")
    assert ut.cache_info(t) == info(2), "a refused cache call dropped the cache"
    # a refill staged in chunks of a few rows
    chunk = _cache._CHUNK_BYTES
    _cache._CHUNK_BYTES = 3 * rb
    try:
        ids = torch.randperm(n, generator=gen)[:40]
        ut.cache(t, ids=ids)
        same(base[ids], cache_of(t).rows, "chunked fill")
        t.mul_(3)
        same(base[ids] * 3, cache_of(t).rows, "chunked refresh")
    finally:
        _cache._CHUNK_BYTES = chunk


@scenario("cache")
def cache_in_place_refresh() -> None:
    """In-place changes made through the UnifiedTensor (t[i] = v, t[ids] = v,
    t.mul_(2), t += 1, torch.add(..., out=t), t.copy_(...), t[a:b] = CUDA values) reach the
    cached rows; so does a change through the tensor it wraps (torch counts it)."""
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(100, 4, generator=gen)
    t = ut.unified(base.clone())
    ref = base.clone()
    ids = torch.randperm(100, generator=gen)[:40]
    ut.cache(t, ids=ids)
    every = torch.arange(100).cuda()

    def check(tag: str) -> None:
        same(ref[ids], cache_of(t).rows, f"{tag}: the cached rows")
        same(ref, t[every], f"{tag}: a gather through the cache")

    r = int(ids[0])
    t[r] = 7.0
    ref[r] = 7.0
    check("t[i] = v")
    two = ids[1:3]
    t[two] = torch.tensor([[1.0] * 4, [2.0] * 4])
    ref[two] = torch.tensor([[1.0] * 4, [2.0] * 4])
    check("t[ids] = v")
    t.mul_(2)
    ref.mul_(2)
    check("t.mul_(2)")
    t += 1
    ref += 1
    assert ut.is_unified(t)
    check("t += 1")
    assert torch.add(base, 5, out=t) is t
    ref = base + 5
    check("torch.add(..., out=t)")
    src = torch.randn(100, 4, generator=gen)
    t.copy_(src)
    ref = src.clone()
    check("t.copy_(host)")
    v = torch.randn(30, 4, generator=gen)
    t[10:40] = v.cuda()                      # a blocking device-to-host copy into the table
    ref[10:40] = v
    check("t[a:b] = CUDA values")
    # through the tensor it wraps (torch counts that write too): seen at the next gather
    t._ut_plain[ids[:5]] = -1.0
    ref[ids[:5]] = -1.0
    same(ref[ids[:5]], t[ids[:5].cuda()], "a change through the wrapped tensor is seen")
    check("the wrapped tensor written")
    ut.cache(t, ids=ids)
    check("ut.cache again")


@scenario("cache")
def cache_every_write_route_refreshes() -> None:
    """Issue 19.1: writes that no list of op names covers (the table passed by keyword to
    torch.nn.init, functionals with inplace=True, out= tuples, views, .data, detach(), the tensor
    ut.unified wrapped) all reach the cached rows before the next gather reads them."""
    import torch.nn.functional as F

    import unified_tensor as ut
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(50, 3, generator=gen)
    t = ut.unified(base)
    ids = torch.arange(0, 50, 3)
    ut.cache(t, ids=ids)
    every = torch.arange(50).cuda()
    routes = [
        ("init.normal_(tensor=t)", lambda: torch.nn.init.normal_(tensor=t)),
        ("init.uniform_", lambda: torch.nn.init.uniform_(t)),
        ("init.constant_", lambda: torch.nn.init.constant_(t, 2.5)),
        ("init.kaiming_uniform_", lambda: torch.nn.init.kaiming_uniform_(t)),
        ("F.relu(inplace=True)", lambda: (t.sub_(0.5), F.relu(t, inplace=True))),
        ("F.dropout(inplace=True)", lambda: F.dropout(t, 0.5, training=True, inplace=True)),
        ("F.leaky_relu(inplace=True)", lambda: (t.sub_(1.0), F.leaky_relu(t, inplace=True))),
        ("F.hardtanh(inplace=True)", lambda: (t.mul_(5.0), F.hardtanh(t, inplace=True))),
        ("sort out=(t, idx)", lambda: torch.sort(torch.randn(50, 3, generator=gen), dim=0,
                                                 out=(t, torch.empty(50, 3, dtype=torch.long)))),
        ("max out=(t, idx)", lambda: torch.max(torch.randn(4, 50, 3, generator=gen), dim=0,
                                               out=(t, torch.empty(50, 3, dtype=torch.long)))),
        ("t[0:2].mul_(2)", lambda: t[0:7].mul_(2)),
        ("t[0].fill_(-1)", lambda: t[0].fill_(-1)),
        ("t.T.zero_()", lambda: t.T[1].zero_()),
        ("t.data.add_(1)", lambda: t.data.add_(1)),
        ("t.detach().add_(1)", lambda: t.detach().add_(1)),
        ("the wrapped tensor", lambda: base[3:9].mul_(-3)),
        ("unbind(0)[3].zero_()", lambda: t.unbind(0)[3].zero_()),
    ]
    for name, write in routes:
        write()
        want = t._ut_plain.clone()
        same(want, t[every], f"{name}: a gather through the cache")
        same(want[ids], cache_of(t).rows, f"{name}: the cached rows")
    assert ut.is_unified(t)


@scenario("cache")
def cache_refresh_after_gather_into_table() -> None:
    """An out= gather that writes into a cached UnifiedTensor (torch.index_select(src, 0, i,
    out=t), ut.gather(src, i, out=t), with a CPU index) is an in-place change made through it:
    the cached rows follow."""
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(60, 4, generator=gen)
    src = ut.unified(torch.randn(60, 4, generator=gen))
    t = ut.unified(base.clone())
    ids = torch.arange(0, 60, 2)
    ut.cache(t, ids=ids)
    every = torch.arange(60).cuda()
    perm = torch.randperm(60, generator=gen)
    want = src._ut_plain[perm]
    assert torch.index_select(src, 0, perm, out=t) is t
    same(want, t._ut_plain.clone(), "the host table", device=False)
    same(want, t[every], "torch.index_select(src, 0, i, out=t), then a gather through the cache")
    perm = torch.randperm(60, generator=gen)
    want = src._ut_plain[perm]
    assert ut.gather(src, perm, out=t) is t
    same(want, t[every], "ut.gather(src, i, out=t), then a gather through the cache")


@scenario("cache")
def cache_refresh_after_async_copy_into_table() -> None:
    """t.copy_(cuda_src, non_blocking=True) into a cached UnifiedTensor (pinned: PyTorch returns
    before the device-to-host copy has landed): the cache must get the new rows, not the ones
    the host holds until the copy lands."""
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(50, 4, generator=gen)
    t = ut.unified(base.clone())
    ids = torch.arange(0, 50, 5)
    ut.cache(t, ids=ids)
    new = torch.randn(50, 4, generator=gen)
    t.copy_(new.cuda(), non_blocking=True)
    torch.cuda.synchronize()
    same(new, t[torch.arange(50).cuda()], "gather through the cache after an async copy into t")


@scenario("cache")
def cache_uncache_unpin() -> None:
    """ut.uncache (all devices, one device) drops the cache and frees its memory (gathers read
    the host again); ut.unpin and the end of a with-block drop it too."""
    import gc
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(80, 3, generator=gen)
    ids = torch.arange(0, 80, 4)
    every = torch.arange(80).cuda()
    for how in (lambda t: ut.uncache(t), lambda t: ut.uncache(t, "cuda:0"),
                lambda t: ut.uncache(t, 0), lambda t: ut.uncache(t, "cuda")):
        t = ut.unified(base.clone())
        ut.cache(t, ids=ids)
        poison(t, ids)
        same(base, t[every], "cached")
        rows_ptr, slot_ptr = cache_of(t).rows.data_ptr(), cache_of(t).slot_of.data_ptr()
        how(t)
        assert ut.cache_info(t) == {} and not t._ut_caches
        gc.collect()
        assert fc.DEVICE_MEMORY.find(rows_ptr) is None and fc.DEVICE_MEMORY.find(slot_ptr) is None, \
            "the cache's GPU memory outlived ut.uncache"
        same(t._ut_plain.clone(), t[every], "after uncache: the host's rows")
    ut.uncache(t)                            # nothing cached: a no-op
    t = ut.unified(base.clone())
    ut.cache(t, ids=ids)
    ut.unpin(t)
    assert ut.cache_info(t) == {}, f"ut.unpin left the cache: {ut.cache_info(t)}"
    expect_error(RuntimeError, lambda: t[every], "unpinned")
    with ut.unified(base.clone()) as t2:
        ut.cache(t2, ids=ids)
        poison(t2, ids)
        same(base, t2[every], "in a with-block")
    assert ut.cache_info(t2) == {}, f"the with-block left the cache: {ut.cache_info(t2)}"
    expect_error(RuntimeError, lambda: t2[every], "unpinned")


@scenario("cache")
def cache_hit_rate_syncs_errors() -> None:
    """cache.hit_rate: the share of ids the cache serves (out-of-range ids are misses; negative
    ids wrap), one host sync; a cached gather makes no host sync; out-of-range ids in a cached
    gather give zero rows and a deferred IndexError (validate="sync": at once)."""
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(6)
    n = 500
    base = torch.randn(n, 8, generator=gen)
    t = ut.unified(base.clone())
    ids = torch.randperm(n, generator=gen)[:125]
    ut.cache(t, ids=ids)
    c = cache_of(t)
    poison(t, ids)
    cached = torch.zeros(n, dtype=torch.bool)
    cached[ids] = True
    idx = torch.randint(-n - 100, n + 100, (3000,), generator=gen)
    valid = (idx >= -n) & (idx < n)
    want = float((cached[torch.where(valid, idx % n, 0)] & valid).float().mean())
    for i in (idx.cuda(), idx, idx.to(torch.int32).cuda(), idx.view(30, 100).cuda()):
        assert abs(c.hit_rate(i) - want) < 1e-6, (c.hit_rate(i), want)
    di = idx.cuda()
    with fc.count_syncs() as s:
        c.hit_rate(di)
    assert sum(s.values()) == 1, f"hit_rate made {dict(s)}"
    assert c.hit_rate(torch.empty(0, dtype=torch.int64).cuda()) == 0.0
    assert c.hit_rate(ids.cuda()) == 1.0
    # no host sync in a cached gather (warm: queues and streams exist)
    ok = torch.randint(-n, n, (3000,), generator=gen).cuda()
    t[ok]
    ut.synchronize()
    out = torch.empty(3000, 8, device="cuda")
    s2 = torch.cuda.Stream()
    with fc.count_syncs() as s:
        r1 = t[ok]
        r2 = ut.gather(t, ok, sorted_order=False)
        ut.gather(t, ok[:100], out=out[:100])
        r3 = torch.index_select(t, 0, ok)
        with torch.cuda.stream(s2):
            r4 = t[ok]
    assert not s, f"a cached gather synced: {dict(s)}"
    for r in (r1, r2, r3, r4):
        same(base[ok.cpu()], r, "cached gathers")
    same(base[ok.cpu()[:100]], out[:100], "out=")
    # out-of-range ids: zeros, the IndexError deferred
    cid = ids[:2].tolist()
    bad = torch.tensor([cid[0], n, -n - 1, cid[1]]).cuda()
    with fc.count_syncs() as s:
        r = t[bad]
    assert not s, f"a cached gather with bad ids synced: {dict(s)}"
    h = fc.to_host(r)
    assert torch.equal(h[0], base[cid[0]]) and torch.equal(h[3], base[cid[1]]) and not h[1:3].any()
    expect_error(IndexError, ut.synchronize, f"index {-n - 1} is out of range for a table of {n} rows")
    t[torch.tensor([n + 5]).cuda()]
    expect_error(IndexError, lambda: t[torch.tensor([0]).cuda()], f"index {n + 5} is out of range")
    expect_error(IndexError, lambda: ut.gather(t, torch.tensor([cid[0], n]).cuda(), validate="sync"),
                 f"index {n} is out of range")
    ut.synchronize()
    r = ut.gather(t, torch.tensor([cid[0], n]).cuda(), validate=False)
    assert not fc.to_host(r)[1].any()
    ut.synchronize()                          # validate=False: nothing recorded


@scenario("cache")
def cache_side_stream() -> None:
    """A cached gather on a stream other than the one the cache was made on hands the cache's
    memory to that stream (record_stream on its rows and slot map), so the allocator does not
    reuse it while the gather may run."""
    import unified_tensor as ut
    base = torch.randn(40, 5, generator=torch.Generator().manual_seed(7))
    ids = torch.arange(0, 40, 3)
    idx = torch.arange(39, -1, -1).cuda()
    t = ut.unified(base.clone())
    ut.cache(t, ids=ids)
    poison(t, ids)
    c = cache_of(t)
    mine = {fc._storage_ptr(c.rows), fc._storage_ptr(c.slot_of)}
    s = torch.cuda.Stream()
    fc.RECORDED.clear()
    with torch.cuda.stream(s):
        r = t[idx]
    assert mine <= fc.RECORDED, "a gather on a side stream did not record_stream the cache's memory"
    same(base[idx.cpu()], r, "side-stream gather")
    fc.RECORDED.clear()
    with torch.cuda.stream(torch.cuda.Stream()):
        ut.gather(t, idx, sorted_order=False)
    assert mine <= fc.RECORDED, "a second side stream"
    # a cache made on a side stream, read on the default stream
    t = ut.unified(base.clone())
    with torch.cuda.stream(s):
        ut.cache(t, ids=ids)
    poison(t, ids)
    c = cache_of(t)
    mine = {fc._storage_ptr(c.rows), fc._storage_ptr(c.slot_of)}
    fc.RECORDED.clear()
    same(base[idx.cpu()], t[idx], "default-stream gather of a side-stream cache")
    assert mine <= fc.RECORDED, "the default stream did not record_stream a side-stream cache"


@scenario("cache")
def cache_dataloader() -> None:
    """samplers.DataLoader(device="cuda", features=t) reads a cached UnifiedTensor through its
    cache (poisoned host rows never show): homogeneous with a hotness cache (out-degrees, and
    presampled counts) with and without the producer thread; heterogeneous with one type's table
    cached."""
    import unified_tensor as ut
    from samplers import DataLoader, NeighborSampler, presample_hotness
    g = homo_graph()
    x, y = _tables(50, 0)
    idx = torch.arange(0, 45, 2)
    kw = dict(batch_size=6, shuffle=True, seed=3, labels=y)
    mk = lambda gg, feats, dev=None, prefetch=0: DataLoader(   # noqa: E731
        gg, idx, NeighborSampler([3, 2], seed=1), features=feats, device=dev, prefetch=prefetch, **kw)
    hots = [g.out_degrees(), presample_hotness(mk(g, None), 50)]
    for hot, prefetch in itertools.product(hots, (0, None)):
        t = ut.unified(x.clone())
        ut.cache(t, hotness=hot, max_rows=20)
        poison(t, cache_of(t).ids)
        reads = cache_reads()
        same_epochs(mk(g, x), mk(g.pin(), t, "cuda", prefetch), epochs=2)
        assert cache_reads() > reads, "the loader never read the cache"
    # use_uva over a pageable graph, and a graph in GPU memory
    for gg, uva in ((g, True), (g.to("cuda"), False)):
        t = ut.unified(x.clone())
        ut.cache(t, ids=torch.arange(0, 50, 2))
        poison(t, torch.arange(0, 50, 2))
        gi = idx.cuda() if gg.placement == "cuda" else idx
        gpu = DataLoader(gg, gi, NeighborSampler([3, 2], seed=1), features=t, device="cuda",
                         use_uva=uva, **kw)
        same_epochs(mk(g, x), gpu)
    hg = hetero_graph()
    feats = {"author": torch.randn(40, 4), "paper": torch.randn(60, 4)}
    tp = ut.unified(feats["paper"].clone())
    ut.cache(tp, ids=torch.arange(0, 60, 3))
    poison(tp, torch.arange(0, 60, 3))
    hidx = {"paper": torch.arange(0, 60, 3), "author": torch.arange(0, 40, 4)}
    hkw = dict(batch_size=7, shuffle=True, seed=3)
    same_epochs(DataLoader(hg, hidx, NeighborSampler([2, 3], seed=1), features=feats, **hkw),
                DataLoader(hg.pin(), hidx, NeighborSampler([2, 3], seed=1), device="cuda",
                           features={"author": feats["author"], "paper": tp}, **hkw))


@scenario("pyg")
def pyg_cache() -> None:
    """samplers.pyg.NeighborLoader(device="cuda") over data whose x is a cached UnifiedTensor
    (Data and HeteroData) reads x through the cache (poisoned host rows never show)."""
    import unified_tensor as ut
    from samplers.pyg import NeighborLoader
    data = make_pyg_data()
    gdata = make_pyg_data()
    t = ut.unified(data.x.clone())
    ut.cache(t, hotness=torch.bincount(data.edge_index[0], minlength=data.num_nodes), max_rows=40)
    poison(t, cache_of(t).ids)
    gdata.x = t
    assert gdata.x is t
    for prefetch in (0, None):
        reads = cache_reads()
        cpu = NeighborLoader(data, [3, 2], batch_size=30, shuffle=True, seed=4, prefetch=prefetch)
        gpu = NeighborLoader(gdata, [3, 2], batch_size=30, shuffle=True, seed=4, prefetch=prefetch,
                             device="cuda")
        assert gpu._sample_device.type == "cuda"
        same_epochs(cpu, gpu, pyg=data)
        assert cache_reads() > reads, "the loader never read the cache"
    h = make_pyg_hetero()
    gh = make_pyg_hetero()
    tp = ut.unified(h["paper"].x.clone())
    ut.cache(tp, ids=torch.arange(0, 70, 2))
    poison(tp, torch.arange(0, 70, 2))
    gh["paper"].x = tp
    reads = cache_reads()
    same_epochs(NeighborLoader(h, [2, 2], input_nodes="paper", batch_size=16, seed=6, prefetch=0),
                NeighborLoader(gh, [2, 2], input_nodes="paper", batch_size=16, seed=6, prefetch=0,
                               device="cuda"), pyg=h)
    assert cache_reads() > reads, "the hetero loader never read the cache"


# ================================================================================ group: harness
# The harness checking itself: a harness that quietly stops catching things would let every
# scenario above pass for nothing.
def _caught(fn: Callable[[], Any], what: str, match: str = "") -> None:
    """``fn`` breaks a device rule: DeviceError, and a violation recorded (then forgotten); with
    ``match``, the first violation's message contains it (caught for the right reason)."""
    n0 = len(fc.VIOLATIONS)
    try:
        fn()
    except fc.DeviceError:
        pass
    else:
        raise AssertionError(f"the harness let through: {what}")
    assert len(fc.VIOLATIONS) > n0, what
    msg = fc.VIOLATIONS[n0][0]
    del fc.VIOLATIONS[n0:]
    assert match in msg, f"{what}: caught as {msg!r}, expected {match!r}"


@scenario("harness")
def harness_device_rules() -> None:
    """The device rules and CUDA-tensor semantics the scenarios rely on."""
    import numpy as np
    a, c = torch.arange(5).cuda(), torch.arange(5)
    assert fc.is_fc(a) and a.is_cuda and a.device == torch.device("cuda", 0)
    assert not c.is_cuda and c.device.type == "cpu"
    for fn, what in ((lambda: c[a], "CPU tensor indexed with a CUDA index"),
                     (lambda: torch.cat([a, c]), "cat of CUDA and CPU"),
                     (lambda: torch.stack([a[0], c[0]]), "stack of CUDA and a 0-d CPU tensor"),
                     (lambda: a + c, "CUDA + CPU"),
                     (lambda: torch.index_select(a, 0, c), "index_select with a CPU index"),
                     (lambda: a.numpy(), ".numpy() of CUDA"),
                     (lambda: np.asarray(a), "np.asarray of CUDA"),
                     (lambda: c.record_stream(torch.cuda.current_stream()), "record_stream on CPU"),
                     (lambda: a.pin_memory(), "pin_memory of CUDA"),
                     (lambda: torch.randint(0, 5, (3,), generator=torch.Generator(), device="cuda"),
                      "CPU generator for a CUDA op"),
                     (lambda: a.index_put_((a,), c), "index_put_ of CPU values into CUDA"),
                     (lambda: c.index_put_((a,), a), "index_put_ into a CPU tensor"),
                     (lambda: torch.empty(2, device="cuda:1"), "a second GPU"),
                     (lambda: torch.randint(0, 5, (3,), device="cuda"), "device RNG"),
                     (lambda: torch.rand_like(a.float()), "device RNG on a CUDA tensor"),
                     (lambda: a.clone().index_put_((torch.tensor([0, 0]).cuda(),), a[:2].clone()),
                      "repeated indices writing different values"),
                     (lambda: a.clone().scatter_(0, torch.tensor([1, 1]).cuda(), a[3:5].clone()),
                      "scatter_ with repeated indices and different values")):
        _caught(fn, what)
    # what PyTorch allows
    assert fc.is_fc(a[c]) and fc.is_fc(a + torch.tensor(1)) and fc.is_fc(a.view_as(c))
    assert fc.is_fc(torch.where(a > 2, a, torch.tensor(0)))
    a[c[:2]] = 7
    a.clone()[torch.tensor([1, 1, 2]).cuda()] = torch.tensor([5, 5, 6]).cuda()   # equal repeats
    a.clone().scatter_(0, torch.tensor([0, 0]).cuda(), torch.tensor([2, 2]).cuda())
    d = torch.zeros(5, dtype=torch.int64)
    d.copy_(a)
    d[:] = a
    assert torch.equal(d, fc.to_host(a))
    # conversions: copies, devices, dtypes
    h = a.cpu()
    assert not fc.is_fc(h) and torch.equal(h, fc.to_host(a))
    h += 1
    assert not torch.equal(h, fc.to_host(a)), ".cpu() must copy"
    assert fc.is_fc(c.to("cuda")) and not fc.is_fc(a.to("cpu")) and fc.is_fc(a.to(torch.int32))
    assert fc.is_fc(c.to(a)) and not fc.is_fc(a.to(c)) and a.to("cuda") is a
    assert fc.is_fc(torch.empty(3, device="cuda")) and fc.is_fc(torch.arange(3, device=a.device))
    assert not fc.is_fc(torch.zeros_like(a, device="cpu")) and fc.is_fc(torch.zeros_like(a))
    assert fc.is_fc(a.new_zeros(3)) and fc.is_fc(torch.tensor([1], device=a.device))
    assert fc.is_fc(torch.sort(a).values) and fc.is_fc(torch.unique(a, return_inverse=True)[1])
    # pinned memory: registrations and torch's own pinned allocations report pinned
    import unified_tensor as ut
    assert not c.is_pinned() and not a.is_pinned()
    assert c.pin_memory().is_pinned() and torch.empty(4, pin_memory=True).is_pinned()
    u = ut.unified(torch.randn(8, 2))
    assert u.is_registered and u.is_pinned() and torch.Tensor.as_subclass(u, torch.Tensor).is_pinned()


@scenario("harness")
def harness_syncs_and_hand_over() -> None:
    """The sync counter and the record_stream bookkeeping."""
    a = torch.arange(6).cuda()
    with fc.count_syncs() as s:
        a.tolist()
        int(a[0])
        a[a > 2]
        torch.unique(a)
        a.cpu()
        a.to("cpu", non_blocking=True)            # async: no sync
        torch.arange(3).cuda(non_blocking=True)   # async: no sync
        torch.arange(3).cuda()                    # a blocking H2D copy synchronises
        a.sum(), torch.cumsum(a, 0), a.max()       # no sync
    kinds = sorted(k for k, _ in s.elements())
    assert kinds == sorted(["tolist", "__int__", "bool-mask indexing", "unique", "d2h (.cpu())",
                            "h2d (blocking)"]), kinds
    fc._complete()
    # async device-to-host copies: reading before a sync is a race; after a sync or an event, not
    h = a.to("cpu", non_blocking=True)
    assert h.is_pinned()
    _caught(lambda: h.tolist(), "reading an async D2H copy")
    _caught(lambda: h + 1, "computing with an async D2H copy")
    _caught(lambda: fc.to_host(h), "a result read by the user")
    ev = torch.cuda.Event()
    ev.record()
    ev.synchronize()
    assert h.tolist() == list(range(6))
    buf = torch.zeros(2, 6, dtype=torch.int64)
    buf[0].copy_(a, non_blocking=True)
    ev = torch.cuda.Event()
    ev.record()
    buf[1].fill_(1)                                   # other bytes: fine
    _caught(lambda: buf[0].sum(), "the copied row")
    assert ev.query() and int(buf[0].sum()) == 15
    g = a.to("cpu", non_blocking=True)
    a.sum().item()                                     # any sync lands every copy
    assert g.tolist() == list(range(6))
    batch = {"x": torch.arange(3).cuda(), "e": torch.empty(0, device="cuda"), "y": [a[1:]]}
    fc.RECORDED.clear()
    expect_error(AssertionError, lambda: fc.assert_handed_over(batch), "never got record_stream")
    batch["x"].record_stream(torch.cuda.current_stream())
    expect_error(AssertionError, lambda: fc.assert_handed_over(batch), "['y'][0]")
    a.record_stream(torch.cuda.current_stream())   # a[1:] shares a's storage
    fc.assert_handed_over(batch)
    expect_error(AssertionError, lambda: fc.assert_all_on_device({"x": torch.arange(2)}), "CPU tensors")


@scenario("harness")
def harness_fake_kernels() -> None:
    """The fake kernels refuse what the real ones could not read; real kernels never run."""
    import unified_tensor as ut
    from unified_tensor import _gather_cuda, _kernels
    from samplers.sampling import _layer_cuda as _sampler_cuda
    g = homo_graph()
    gp = g.pin()
    _caught(lambda: _sampler_cuda.sample_layer_cuda(gp, torch.tensor([1, 2]), 2, False, 0, False),
            "sampling kernel with CPU seeds")
    _caught(lambda: _sampler_cuda.sample_layer_cuda(g, torch.tensor([1, 2]).cuda(), 2, False, 0, False),
            "sampling kernel over a pageable graph")
    plain = torch.randn(10, 4)
    out = torch.empty(2, 4, device="cuda")
    idx = torch.tensor([1, 2]).cuda()
    _caught(lambda: _gather_cuda.gather_rows_cuda(plain.data_ptr(), 10, 16, idx, out),
            "gather from pageable memory")
    t = ut.unified(torch.randn(10, 4))
    _caught(lambda: _gather_cuda.gather_rows_cuda(t.data_ptr(), 10, 16, idx, out),
            "gather given a host address")
    _gather_cuda.gather_rows_cuda(ut.device_pointer(t), 10, 16, idx, out)
    same(torch.Tensor.as_subclass(t, torch.Tensor)[[1, 2]], out, "fake gather")
    _caught(lambda: _gather_cuda.gather_rows_cuda(ut.device_pointer(t), 11, 16, idx, out),
            "gather past the registration")
    ptr = ut.device_pointer(t)
    ut.unpin(t)
    _caught(lambda: _gather_cuda.gather_rows_cuda(ptr, 10, 16, idx, out), "gather after unpin")
    _caught(lambda: _kernels.get_function("gather.cu", "x", 0), "a real kernel")


@scenario("harness")
def harness_fake_cache_kernel() -> None:
    """The fake gather kernel reads cached rows from the cache's device memory, as the real one,
    and refuses a slot map or cache rows that are not device memory, a slot map of another dtype
    or length, slots past the cache, and freed memory."""
    import gc
    import unified_tensor as ut
    from unified_tensor import _gather_cuda
    base = torch.randn(10, 4)
    t = ut.unified(base.clone())
    ptr = ut.device_pointer(t)
    idx = torch.tensor([1, 2, -1, 12]).cuda()
    out = torch.empty(4, 4, device="cuda")
    rows = torch.full((2, 4), 7.0, device="cuda")            # slot 0: row 2, slot 1: row 9
    slots = torch.full((10,), -1, dtype=torch.int32)
    slots[2], slots[9] = 0, 1
    slot_of = slots.cuda()
    rows[1] = 8.0
    gather = _gather_cuda.gather_rows_cuda
    gather(ptr, 10, 16, idx, out, cache_ptr=rows.data_ptr(), slot_ptr=slot_of.data_ptr())
    want = torch.stack([base[1], torch.full((4,), 7.0), torch.full((4,), 8.0), torch.zeros(4)])
    same(want, out, "rows 2 and 9 read from the cache")
    # a cache_ptr without slot_ptr is ignored, as the launch passes 0 for it
    gather(ptr, 10, 16, idx, out, cache_ptr=rows.data_ptr())
    same(torch.stack([base[1], base[2], base[9], torch.zeros(4)]), out, "no slot map: no cache")
    kw = dict(cache_ptr=rows.data_ptr())
    wide, long_ = torch.full((11,), -1, dtype=torch.int32, device="cuda"), slot_of.long()
    for sp, what, match in ((slots.data_ptr(), "a slot map in host memory", "not in a live CUDA"),
                            (long_.data_ptr(), "an int64 slot map", "there are [(torch.int64"),
                            (wide.data_ptr(), "a slot map of 11 entries for 10 rows", "(11,)"),
                            (slot_of[1:].data_ptr(), "a slot map past its allocation", "run 4 bytes past"),
                            (0x1234, "a wild pointer", "not in a live CUDA")):
        _caught(lambda: gather(ptr, 10, 16, idx, out, slot_ptr=sp, **kw), what, match)
    sp = slot_of.data_ptr()
    host_rows, narrow = torch.full((2, 4), 7.0), torch.zeros(2, 3, device="cuda")
    tu = ut.unified(torch.full((2, 4), 7.0))
    for cp, what, match in ((0, "no cache rows", "cache_ptr is 0"),
                            (host_rows.data_ptr(), "cache rows in host memory", "not in a live CUDA"),
                            (ut.device_pointer(tu), "cache rows in mapped pinned memory",
                             "mapped pinned host memory"),
                            (tu.data_ptr(), "a host address of pinned cache rows", "host address of pinned"),
                            (narrow.data_ptr(), "cache rows of another width", "[12] bytes each")):
        _caught(lambda: gather(ptr, 10, 16, idx, out, slot_ptr=sp, cache_ptr=cp), what, match)
    slot_of[9] = 2                                            # past the 2 cached rows
    _caught(lambda: gather(ptr, 10, 16, idx, out, slot_ptr=sp, cache_ptr=rows.data_ptr()),
            "a slot past the cache rows", "cache slot 2 is past the cache rows")
    slot_of[9] = 1
    big = torch.zeros(1 << 16, 4, device="cuda")
    gone = big.data_ptr()
    del big
    gc.collect()
    _caught(lambda: gather(ptr, 10, 16, idx, out, slot_ptr=sp, cache_ptr=gone), "freed cache rows",
            "not in a live CUDA")
    # the CUDA copy of a CPU tensor made by as_tensor is a copy, not an alias of host memory
    h = torch.arange(4)
    d = torch.as_tensor(h, device="cuda")
    assert fc._storage_ptr(d) != fc._storage_ptr(h)


# ================================================================================ compressed
def _compressed_tables(gen: torch.Generator):
    """(name, table) for every storage kind and output dtype, over one float table whose columns
    have very different scales."""
    import unified_tensor as ut
    x = torch.randn(200, 12, generator=gen) * torch.logspace(-2, 2, 12)
    out = []
    for kind, per in (("bf16", "column"), ("fp16", "column"), ("int8", "column"), ("int8", "row")):
        for dt in (torch.float32, torch.bfloat16, torch.float16):
            out.append((f"{kind}/{per}->{dt}", ut.compress(x, kind, per=per, dtype=dt)))
    return out


@scenario("compressed")
def compressed_gather() -> None:
    """A compressed table gathered with a CUDA index (the fused convert kernel) equals the CPU
    gather (the Numba one) for every kind, output dtype, id dtype and shape, sorted and unsorted
    reads, out=, index_select and F.embedding; an out-of-range id is reported by the deferred
    check, with zeros in its row."""
    import torch.nn.functional as F

    import unified_tensor as ut
    gen = torch.Generator().manual_seed(11)
    for name, t in _compressed_tables(gen):
        idx = torch.randint(-200, 200, (1500,), generator=gen)
        for i in (idx, idx.int(), idx[:17], idx.view(30, 50), idx[:0]):
            for so in (None, False):
                same(t[i], ut.gather(t, i.cuda(), sorted_order=so), f"{name} {i.dtype} {tuple(i.shape)}")
        j = idx[:33]
        same(t[j], torch.index_select(t, 0, j.cuda()), f"{name} index_select")
        same(t[j], F.embedding(j.cuda(), t), f"{name} embedding")
        out = torch.empty((33, 12), dtype=t.dtype, device="cuda")
        assert ut.gather(t, j.cuda(), out=out) is out
        same(t[j], out, f"{name} out=")
    t = _compressed_tables(gen)[6][1]   # int8 per column -> float32
    res = ut.gather(t, torch.tensor([3, 200, 4]).cuda())
    try:
        ut.synchronize()
        raise AssertionError("no IndexError for id 200 of 200 rows")
    except IndexError as exc:
        assert "200" in str(exc), exc
    assert torch.equal(fc.to_host(res)[1], torch.zeros(12))
    same(t[torch.tensor([3, 4])], res[[0, 2]], "the valid rows of a gather with a bad id")


@scenario("compressed")
def compressed_cache() -> None:
    """ut.cache on a compressed table holds compressed rows (bytes counted compressed); gathers
    read cached rows from the cache and equal the CPU gather; a write t[i] = v reaches them."""
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(200, 12, generator=gen)
    for kind in ("int8", "bf16"):
        t = ut.compress(x, kind)
        ids = torch.randperm(200, generator=gen)[:60]
        ut.cache(t, ids=ids)
        c = t._ut_values._ut_caches[0]
        assert c.rows.dtype == t._ut_values._ut_plain.dtype, c.rows.dtype   # compressed rows
        info = ut.cache_info(t)["cuda:0"]
        assert info["bytes"] == 60 * 12 * (1 if kind == "int8" else 2) + 200 * 4, info
        every = torch.arange(200)
        reads = cache_reads()
        same(t[every], t[every.cuda()], f"{kind}: gather through the cache")
        assert cache_reads() > reads, "no row was read from the cache"
        r = int(ids[0])
        t[torch.tensor([r])] = x[r:r + 1] * 0.5
        same(t[every], t[every.cuda()], f"{kind}: after a write")
        ut.uncache(t)
        assert ut.cache_info(t) == {}


@scenario("compressed")
def compressed_loader() -> None:
    """DataLoader(device="cuda", features=compressed) and the PyG loader gather the same rows as
    their CPU paths."""
    import unified_tensor as ut
    from samplers import DataLoader, NeighborSampler
    g = homo_graph()
    x, y = _tables(50, 0)
    t = ut.compress(x, "int8")
    idx = torch.arange(0, 45, 2)
    kw = dict(batch_size=6, shuffle=True, seed=3, labels=y)
    cpu = DataLoader(g, idx, NeighborSampler([3, 2], seed=1), features=t, **kw)
    gpu = DataLoader(g.pin(), idx, NeighborSampler([3, 2], seed=1), features=t, device="cuda", **kw)
    same_epochs(cpu, gpu)


# ============================================================================== group: hardening
def _log_since(n: int) -> List[tuple]:
    return fc.STREAM_LOG[n:]


@scenario("hardening")
def hardening_cache_refresh_only_written_rows() -> None:
    """Issue 18, 3.1: a write through a cached table re-copies only the cached rows it touched
    (an indexed write's rows, a slice's or a row's range; a column write touches every row),
    with no host sync; a write torch counts but the watch never saw (through the wrapped tensor)
    refreshes every cached row at the next gather, also without a sync."""
    import unified_tensor as ut
    gen = torch.Generator().manual_seed(11)
    base = torch.randn(2000, 8, generator=gen)
    ref = base.clone()
    t = ut.unified(base)
    ids = torch.arange(0, 2000, 2)[torch.randperm(1000, generator=gen)]   # even rows, any order
    ut.cache(t, ids=ids)
    every = torch.arange(2000).cuda()
    same(ref, t[every], "initial fill")

    def write(tag: str, fn, want_rows: int) -> None:
        rows0 = fc.LAUNCHES["gather_rows"]
        with fc.count_syncs() as c:
            fn(t)
        fn(ref)
        copied = fc.LAUNCHES["gather_rows"] - rows0
        assert sum(c.values()) == 0, f"{tag}: the refresh synced: {dict(c)}"
        assert copied == want_rows, f"{tag}: re-copied {copied} rows, the write touched {want_rows}"
        same(ref[ids], cache_of(t).rows, f"{tag}: the cached rows")
        same(ref, t[every], f"{tag}: a gather through the cache")

    write("an uncached row", lambda x: x.__setitem__(5, 1.0), 0)
    write("a cached row", lambda x: x.__setitem__(4, 2.0), 1)
    write("t[ids] = v", lambda x: x.__setitem__(torch.tensor([10, 11, 12, -2]), 3.0), 3)
    write("t[a:b].mul_(2)", lambda x: x[100:140].mul_(2), 20)
    write("t[a:b][ids] = v", lambda x: x[100:140].__setitem__(torch.tensor([0, 1, 2]), 4.0), 2)
    write("t.index_fill_(0, ids)", lambda x: x.index_fill_(0, torch.tensor([20, 21, 22, 24]), -1.0), 3)
    write("a bool mask", lambda x: x.__setitem__(torch.arange(2000) % 500 == 0, 5.0), 4)
    write("a column (every row)", lambda x: x[:, 1].zero_(), 1000)
    write("t.mul_ (every row)", lambda x: x.mul_(0.5), 1000)
    # through the tensor ut.unified wrapped: torch counts it, the watch never sees it
    base[30:40] = 7.0
    ref[30:40] = 7.0
    rows0 = fc.LAUNCHES["gather_rows"]
    with fc.count_syncs() as c:
        got = t[every]
    assert sum(c.values()) == 0, f"the version refresh synced: {dict(c)}"
    assert fc.LAUNCHES["gather_rows"] - rows0 == 1000 + 2000, "a full refresh, then the gather"
    same(ref, got, "a write through the wrapped tensor, seen at the next gather")


@scenario("hardening")
def hardening_cache_refresh_is_stream_ordered() -> None:
    """The refresh runs on the writer's current stream after it has waited for every stream a
    gather read the cache on, and those streams then wait for it (gathers see the old rows or
    the new ones, never a mix); a stream that first reads the cache later waits for the last
    refresh; no stream ever waits on itself."""
    import unified_tensor as ut
    base = torch.randn(300, 4, generator=torch.Generator().manual_seed(12))
    t = ut.unified(base.clone())
    ids = torch.arange(0, 300, 3)
    ut.cache(t, ids=ids)
    c = cache_of(t)
    side = torch.cuda.Stream()
    idx = torch.arange(299, -1, -1).cuda()
    with torch.cuda.stream(side):
        t[idx]
    cur = torch.cuda.current_stream()
    n = len(fc.STREAM_LOG)
    t[3] = 9.0
    log = _log_since(n)
    kinds = [(k, a) for k, a, _ in log]
    assert ("wait_stream", cur.cuda_stream) in kinds, f"the refresh did not wait for the readers: {log}"
    w = kinds.index(("wait_stream", cur.cuda_stream))
    assert log[w][2] == side.cuda_stream, log
    g = kinds.index(("gather", cur.cuda_stream))
    r = kinds.index(("record", cur.cuda_stream))
    ev = log[r][2]
    assert w < g < r, f"wait, copy, record out of order: {log}"
    assert ("wait_event", side.cuda_stream, ev) in log[r:], f"the reader stream never waited for the refresh: {log}"
    # a new reader stream waits for the last refresh before its first gather
    other = torch.cuda.Stream()
    n = len(fc.STREAM_LOG)
    with torch.cuda.stream(other):
        r2 = t[idx]
    log = _log_since(n)
    assert ("wait_event", other.cuda_stream, c._ready.id) in log, log
    want = base.clone()
    want[3] = 9.0
    same(want[idx.cpu()], r2, "a new stream's gather after the refresh")


@scenario("hardening")
def hardening_cache_refresh_and_gather_serialise() -> None:
    """Enqueueing a gather that reads the cache and a refresh exclude each other (the cache's
    lock): a write from one thread waits while another thread holds the lock, and so does a
    gather."""
    import threading
    import time

    import unified_tensor as ut
    t = ut.unified(torch.randn(100, 4, generator=torch.Generator().manual_seed(13)))
    ut.cache(t, ids=torch.arange(0, 100, 2))
    c = cache_of(t)
    for action in ("write", "gather"):
        held, released = threading.Event(), threading.Event()

        def hold() -> None:
            with c.lock:
                held.set()
                time.sleep(0.3)
                released.set()

        th = threading.Thread(target=hold)
        th.start()
        assert held.wait(30), "the cache has no lock to hold"
        if action == "write":
            t[2] = 1.0
        else:
            t[torch.arange(100).cuda()]
        assert released.is_set(), f"a {action} went ahead while another thread held the cache's lock"
        th.join()


@scenario("hardening")
def hardening_capture_producer_poll() -> None:
    """Issue 18, 3.2: while one thread captures a CUDA graph in global mode, a producer thread's
    gathers (deferred checks, a table pinned by PyTorch, a cached table) query their events in
    relaxed capture mode, which does not break the capture; the capturing thread's own gather
    from a PyTorch-pinned table records and queries nothing (the table is kept for the graph)."""
    import threading

    import unified_tensor as ut
    from unified_tensor import _gather
    gen = torch.Generator().manual_seed(14)
    pinned = torch.randn(80, 4, generator=gen).pin_memory()      # registered by PyTorch
    t = ut.unified(torch.randn(80, 4, generator=gen))
    ut.cache(t, ids=torch.arange(0, 80, 4))
    idx = torch.arange(79, -1, -1).cuda()
    ut.gather(pinned, idx)
    ut.synchronize()
    capturing, done = threading.Event(), threading.Event()
    errors: List[BaseException] = []

    def capture() -> None:
        try:
            with fc.capture("global"):
                capturing.set()
                done.wait(30)
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    th = threading.Thread(target=capture)
    th.start()
    capturing.wait()
    try:
        for _ in range(3):           # the producer: polls, in-flight queries, a cached gather
            same(pinned[idx.cpu()], ut.gather(pinned, idx), "producer gather of a pinned table")
            same(t._ut_plain[idx.cpu()], t[idx], "producer gather through a cache")
    finally:
        done.set()
        th.join()
    assert not errors, errors
    # the capturing thread itself: nothing recorded or queried for a PyTorch-pinned table
    n = len(fc.STREAM_LOG)
    with fc.capture("global"):
        out = ut.gather(pinned, idx)
        cached = t[idx]              # a stream new to the cache: no wait on the fill's event
    assert not [e for e in _log_since(n) if e[0] in ("record", "wait_event")], _log_since(n)
    same(t._ut_plain[idx.cpu()], cached, "a captured gather through a cache")
    assert any(v is pinned for v in _gather._kept_for_graphs.values()), "table not kept for the graph"
    same(pinned[idx.cpu()], out, "a captured gather")
    ut.gather(pinned, idx)          # after the capture: polls again, nothing from the capture queried
    ut.synchronize()


@scenario("hardening")
def hardening_close_on_the_producer_thread() -> None:
    """Issue 18, 3.3: the last reference to a DataLoader iterator dropped on its own producer
    thread (as the garbage collector may do) closes it there: no join of itself, no stream
    waiting on itself, and the consumer's stream (not the producer's current one) waits for the
    side stream once the producer has issued its last work."""
    import threading

    from samplers import DataLoader, NeighborSampler
    g = homo_graph().pin()
    holder: List[Any] = []
    go = threading.Event()
    closed_on: List[str] = []

    class Dropping(NeighborSampler):
        def sample(self, graph, seeds, exclude_eids=None):
            if go.wait(30) and holder:
                holder.clear()   # the last reference: __del__ -> close() on this thread
            return super().sample(graph, seeds)

    from samplers.loading import _core
    orig = _core._LoaderIter.close

    def close(self) -> None:
        closed_on.append(threading.current_thread().name)
        orig(self)

    loader = DataLoader(g, torch.arange(40), Dropping([2, 2], seed=0), batch_size=8,
                        device="cuda", prefetch=2)
    consumer = torch.cuda.current_stream()
    it = iter(loader)
    thread = it._thread
    side = it._side
    n = len(fc.STREAM_LOG)
    holder.append(it)
    del it
    _core._LoaderIter.close = close
    try:
        go.set()
        thread.join(30)
    finally:
        _core._LoaderIter.close = orig
    assert not thread.is_alive(), "the producer thread did not exit"
    assert closed_on and closed_on[0] == thread.name, f"close() ran on {closed_on}"
    log = _log_since(n)
    assert ("wait_stream", consumer.cuda_stream, side.cuda_stream) in log, \
        f"the consumer's stream never waited for the side stream: {log}"


@scenario("hardening")
def hardening_link_and_hetero_one_sync() -> None:
    """Issue 18, 3.4: with one_sync=True, link prediction (homogeneous and heterogeneous, every
    exclusion mode, negatives) and heterogeneous node sampling read the host once per batch, with
    the CPU path's blocks; the per-layer link path reads its checks and node counts once."""
    from samplers import EdgePredictionSampler, NeighborSampler
    from samplers.sampling._hetero import sample_hetero_layers
    ei = homo_edges(50, 150)
    ei = torch.cat([ei, ei.flip(0)], 1)
    rev = torch.cat([torch.arange(150, 300), torch.arange(0, 150)])
    from samplers import CSCGraph
    g = CSCGraph.from_edge_index(ei, 50)
    seeds = torch.arange(0, 300, 7)
    for gg in placements(g):
        s_dev = seeds.cuda()
        for ex, neg in itertools.product((None, "self", "reverse_id", "callable"), (None, 2, _det_negatives)):
            kw = {"reverse_eids": rev} if ex == "reverse_id" else {}
            exf = (lambda e: torch.cat([e, (e + 1) % 300])) if ex == "callable" else ex
            for one_sync, want in ((True, 1), (False, 5)):
                mk = lambda: EdgePredictionSampler(   # noqa: E731
                    NeighborSampler([3, 2], seed=0, one_sync=one_sync), exclude=exf,
                    negative_sampler=neg, **kw)
                cpu = mk().sample_distinct(g, seeds, batch=3)
                mk().sample_distinct(gg, s_dev, batch=3)   # once per graph: its endpoint tables
                with fc.count_syncs() as c:
                    gpu = mk().sample_distinct(gg, s_dev, batch=3)
                same(cpu, gpu, f"{gg.placement} exclude={ex} neg={neg} one_sync={one_sync}")
                assert sum(c.values()) == want, f"exclude={ex} one_sync={one_sync}: {dict(c)}"
    hg = hetero_graph()
    hseeds = {"writes": torch.arange(0, 300, 5), C: torch.arange(0, 400, 9)}
    for gg in placements(hg):
        dev_seeds = cuda(hseeds)
        for ex, kw in ((None, {}), ("self", {}), ("reverse_types", {"reverse_etypes": REV_TYPES})):
            mk = lambda: EdgePredictionSampler(   # noqa: E731
                NeighborSampler([2, {"writes": 2, "cites": 1, "rev_writes": 1}], seed=1, one_sync=True),
                exclude=ex, negative_sampler=1, **kw)
            cpu = mk().sample_distinct(hg, hseeds, batch=2)
            mk().sample_distinct(gg, dev_seeds, batch=2)   # once per graph: its endpoint tables
            with fc.count_syncs() as c:
                gpu = mk().sample_distinct(gg, dev_seeds, batch=2)
            same(cpu, gpu, f"hetero link {gg.placement} exclude={ex}")
            assert sum(c.values()) == 1, f"hetero link exclude={ex}: {dict(c)}"
        ns = NeighborSampler([2, {"writes": 2, "cites": 1, "rev_writes": 0}], seed=4)
        fans = ns._hetero_fanouts(hg)
        lk = lambda layer: ns._layer_key(ns._batch_key(2), layer)   # noqa: E731
        node_seeds = _hetero_seeds()
        dev_nodes = cuda(node_seeds)
        cpu = sample_hetero_layers(hg, node_seeds, fans, False, lk)
        with fc.count_syncs() as c:
            gpu = sample_hetero_layers(gg, dev_nodes, fans, False, lk, one_sync=True)
        same(cpu, gpu, "hetero nodes one_sync")
        assert sum(c.values()) == 1, f"hetero nodes one_sync: {dict(c)}"
        # the same through the public sampler as the DataLoader calls it (seeds range-checked by
        # the loader's deferred check); a direct call adds one read for the seeds' range
        pub = lambda: NeighborSampler([2, {"writes": 2, "cites": 1, "rev_writes": 0}], seed=4,  # noqa: E731
                                      one_sync=True)
        cpu = pub().sample_distinct(hg, node_seeds, batch=2)
        for checked, want in ((True, 1), (False, 2)):
            with fc.count_syncs() as c:
                gpu = pub().sample_distinct(gg, dev_nodes, batch=2, seeds_checked=checked)
            same(cpu, gpu, f"hetero nodes NeighborSampler(one_sync=True) seeds_checked={checked}")
            assert sum(c.values()) == want, \
                f"hetero nodes NeighborSampler(one_sync=True) seeds_checked={checked}: {dict(c)}"
    # errors keep the CPU path's messages
    bad = torch.tensor([0, 300])
    for one_sync in (False, True):
        same_error(IndexError,
                   lambda: EdgePredictionSampler(NeighborSampler([2], one_sync=one_sync)).sample(g, bad),
                   lambda: EdgePredictionSampler(NeighborSampler([2], one_sync=one_sync)).sample(
                       g.pin(), bad.cuda()))
        wild = lambda s, n, k: (s, s + n)   # noqa: E731
        same_error(IndexError,
                   lambda: EdgePredictionSampler(NeighborSampler([2], one_sync=one_sync),
                                                 exclude=lambda e: e + 1000).sample(g, seeds),
                   lambda: EdgePredictionSampler(NeighborSampler([2], one_sync=one_sync),
                                                 exclude=lambda e: e + 1000).sample(g.pin(), seeds.cuda()))
        same_error(IndexError,
                   lambda: EdgePredictionSampler(NeighborSampler([2], one_sync=one_sync),
                                                 negative_sampler=wild).sample(g, seeds),
                   lambda: EdgePredictionSampler(NeighborSampler([2], one_sync=one_sync),
                                                 negative_sampler=wild).sample(g.pin(), seeds.cuda()))


@scenario("hardening")
def hardening_link_loader_one_sync_per_batch() -> None:
    """A link-prediction DataLoader with one_sync=True (features, labels-free, negatives,
    exclusion): one host sync per batch in the producer, as the node loader."""
    import unified_tensor as ut
    from samplers import CSCGraph, DataLoader, EdgePredictionSampler, NeighborSampler
    gen = torch.Generator().manual_seed(0)
    n, e = 2000, 20000
    ei = torch.stack([torch.randint(0, n, (e,), generator=gen), torch.randint(0, n, (e,), generator=gen)])
    graph = CSCGraph.from_edge_index(ei, n).pin()
    feats = ut.unified(torch.randn(n, 8, generator=gen))
    loader = DataLoader(graph, torch.arange(e // 2), EdgePredictionSampler(
        NeighborSampler([5, 3], one_sync=True), exclude="self", negative_sampler=2),
        batch_size=256, device="cuda", features=feats, prefetch=0, seed=0)
    it = iter(loader)
    next(it)
    with fc.count_syncs() as c:
        for _ in range(3):
            next(it)
    assert sum(c.values()) == 3, f"{dict(c)} over 3 batches"
    del it


@scenario("hardening")
def hardening_one_sync_memory_bound() -> None:
    """Issue 18, 3.5: a one-sync batch whose padded working arrays would take more than the
    allowed share of the free GPU memory is sampled on the per-layer path (the same blocks),
    with one warning for the process."""
    import warnings

    from samplers import EdgePredictionSampler, NeighborSampler
    from samplers.sampling import _one_sync
    g = homo_graph()
    seeds = torch.arange(0, 50, 3)
    free = fc.FREE_MEMORY
    _one_sync._warned_memory = False
    try:
        fc.FREE_MEMORY = 1 << 10    # 1 KiB free
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for gg in placements(g):
                cpu = NeighborSampler([4, 3], seed=3).sample_distinct(g, seeds, batch=1)
                with fc.count_syncs() as c:
                    gpu = NeighborSampler([4, 3], seed=3, one_sync=True).sample_distinct(
                        gg, seeds.cuda(), batch=1)
                same(cpu, gpu, "per-layer fallback")
                assert sum(c.values()) > 1, "the bound did not send the batch to the per-layer path"
                mk = lambda: EdgePredictionSampler(NeighborSampler([2, 2], seed=1, one_sync=True),  # noqa: E731
                                                   exclude="self", negative_sampler=1)
                same(mk().sample_distinct(g, seeds, batch=2), mk().sample_distinct(gg, seeds.cuda(), batch=2),
                     "link fallback")
        notes = [w for w in caught if "padded working memory" in str(w.message)]
        assert len(notes) == 1, [str(w.message) for w in caught]
        fc.FREE_MEMORY = 64 << 30
        gp, sd = g.pin(), seeds.cuda()
        with fc.count_syncs() as c:
            NeighborSampler([4, 3], seed=3, one_sync=True).sample_distinct(gp, sd, batch=1)
        assert sum(c.values()) == 1, f"with memory: {dict(c)}"
    finally:
        fc.FREE_MEMORY = free


# ===================================================================== distdgl (DistRowReader)
# samplers/loading/_distdgl.py's CUDA path, without DGL: a stand-in for the DistTensor and its
# partition policy / RangePartitionBook, registered as ``dgl.distributed`` in sys.modules for the
# scenario only (the adapter finds DGL's classes there, never importing DGL itself).
class _FakePartitionBook:
    """DistDGL's RangePartitionBook, as far as the reader uses it: contiguous id ranges."""

    def __init__(self, bounds: List[int]) -> None:
        self.bounds = bounds

    def partid2nids(self, partid: int, ntype: str = "_N") -> torch.Tensor:
        assert ntype == "_N", ntype
        return torch.arange(self.bounds[partid], self.bounds[partid + 1])


class _FakePolicy:
    def __init__(self, book: Any, part_id: int, is_node: bool = True) -> None:
        self.partition_book, self.part_id, self.is_node = book, part_id, is_node
        self.type_name = "_N"


class _FakeDistTensor:
    """A node table of a DistGraph: the whole table (what the servers hold), this machine's
    partition mapped as a separate tensor (the KVStore's shared memory), and ``__getitem__``
    standing for DistDGL's pull, which records the ids it was asked for: local ones would be
    served by the fast pull, the others by RPC."""

    def __init__(self, full: torch.Tensor, bounds: List[int], part_id: int, name: str = "feat",
                 is_node: bool = True) -> None:
        self.full, self.name = full, name
        self.shape, self.dtype = tuple(full.shape), full.dtype
        self.part_policy = _FakePolicy(_FakePartitionBook(bounds), part_id, is_node)
        self.start, self.end = bounds[part_id], bounds[part_id + 1]
        local = torch.empty((self.end - self.start,) + tuple(full.shape[1:]), dtype=full.dtype)
        local.copy_(full[self.start:self.end])
        self.local_partition = local
        self.pulls: List[torch.Tensor] = []

    def __getitem__(self, ids: Any) -> torch.Tensor:
        assert isinstance(ids, torch.Tensor) and not fc.is_fc(ids), \
            "DistTensor pulls take host ids (DistDGL's KVStore is CPU-only)"
        assert ids.dtype == torch.int64 and ids.dim() == 1, (ids.dtype, ids.shape)
        self.pulls.append(ids.clone())
        return self.full[ids].clone()

    def pulled(self) -> torch.Tensor:
        return torch.cat(self.pulls) if self.pulls else torch.empty(0, dtype=torch.int64)

    def rpc_rows(self) -> int:
        p = self.pulled()
        return int(((p < self.start) | (p >= self.end)).sum())

    def local_pulled(self) -> int:
        p = self.pulled()
        return int(((p >= self.start) & (p < self.end)).sum())


class _FakeDistGraph:
    pass


def _fake_dgl():
    """``with _fake_dgl():`` the stand-in classes are ``dgl.distributed``'s."""
    import contextlib
    import sys
    import types

    @contextlib.contextmanager
    def cm():
        assert "dgl.distributed" not in sys.modules, "real DGL in the fake-CUDA child"
        mod = types.ModuleType("dgl.distributed")
        mod.DistTensor, mod.DistGraph = _FakeDistTensor, _FakeDistGraph
        sys.modules["dgl.distributed"] = mod
        try:
            yield
        finally:
            del sys.modules["dgl.distributed"]
    return cm()


# 3 partitions of 60 nodes; this machine holds partition 1: ids [20, 45)
_DD_BOUNDS = [0, 20, 45, 60]
_DD_N = 60


def _dd_table(dtype: torch.dtype = torch.float32, cols: Any = (5,), seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (_DD_N,) + tuple(cols)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    return torch.randint(-50, 50, shape, generator=gen).to(dtype)


def _dd_id_sets() -> Dict[str, torch.Tensor]:
    return {
        "local-only": torch.tensor([20, 44, 30, 21, 33]),
        "remote-only": torch.tensor([0, 59, 19, 45, 7, 50]),
        "mixed": torch.tensor([3, 20, 44, 45, 19, 25, 59, 0, 31]),
        "repeated": torch.tensor([25, 25, 3, 3, 25, 50, 50, 20, 44, 44, 3]),
        "empty": torch.empty(0, dtype=torch.int64),
        "all": torch.randperm(_DD_N, generator=torch.Generator().manual_seed(3)),
    }


@scenario("distdgl")
def distdgl_reader_rows() -> None:
    """DistRowReader on CUDA: rows equal the table's (and the CPU-device reader's) for local-only,
    remote-only, mixed, repeated and empty id sets, int32 / int64 / CUDA ids, with and without the
    row cache; the result is on the device; local rows never go through the DistTensor pull (RPC):
    the GPU gathers them zero-copy from the mapped partition, which is registered in place."""
    import unified_tensor as ut
    from samplers.loading._distdgl import DistRowReader
    with _fake_dgl():
        for dtype, cols in ((torch.float32, (5,)), (torch.float16, (3, 2)), (torch.int64, ())):
            full = _dd_table(dtype, cols)
            cache_ids = torch.tensor([0, 45, 21, 59, 30])      # remote and local rows
            for cached in (False, True):
                ci = cache_ids if cached else None
                dt_cpu = _FakeDistTensor(full, _DD_BOUNDS, 1)
                dt = _FakeDistTensor(full, _DD_BOUNDS, 1)
                r_cpu = DistRowReader(dt_cpu, torch.device("cpu"), cache_ids=ci)
                r = DistRowReader(dt, torch.device("cuda"), cache_ids=ci)
                what = f"{dtype} {cols} cached={cached}"
                local = dt.local_partition
                assert r.local_data_ptr == local.data_ptr(), f"{what}: the partition was copied"
                assert isinstance(r.local, ut.UnifiedTensor) and r.local.is_registered, \
                    f"{what}: the local partition is not pinned in place"
                assert fc.RUNTIME.is_pinned(local), f"{what}: no registration covers the partition"
                assert r.cache_size == (5 if cached else 0)
                if cached:
                    # filling the cache pulled only its remote rows, once
                    assert sorted(dt.pulled().tolist()) == [0, 45, 59], f"{what}: {dt.pulled()}"
                    assert r.cache_fill_rpc_bytes == 3 * r.row_bytes
                    assert fc.is_fc(r._cache_rows), f"{what}: the cache rows are not on the device"
                    assert not fc.is_fc(r._slot_of), \
                        f"{what}: the slot map is on the device (looked up with host ids)"
                    dt.pulls.clear()
                for name, ids in _dd_id_sets().items():
                    for idt in (torch.int64, torch.int32):
                        for on_dev in (False, True):
                            q = ids.to(idt)
                            q = q.cuda() if on_dev else q
                            w = f"{what} {name} {idt} ids on {'cuda' if on_dev else 'cpu'}"
                            before_stats = dict(r.stats)
                            before_local = dt.local_pulled()
                            before_rpc = dt.rpc_rows()
                            gathered = fc.LAUNCHES["gather_rows"]
                            got = r[q]
                            want = full[ids]
                            same(want, got, w)
                            same(want, r_cpu[ids.to(idt)], w + " (CPU-device reader)", device=False)
                            assert dt.local_pulled() == before_local, \
                                f"{w}: local rows were pulled through the DistTensor (RPC)"
                            hit = torch.isin(ids, cache_ids) if cached else \
                                torch.zeros_like(ids, dtype=torch.bool)
                            is_local = (ids >= 20) & (ids < 45)
                            n_rpc = int((~hit & ~is_local).sum())
                            n_local = int((~hit & is_local).sum())
                            assert dt.rpc_rows() - before_rpc == n_rpc, \
                                f"{w}: {dt.rpc_rows() - before_rpc} rows over RPC, expected {n_rpc}"
                            assert fc.LAUNCHES["gather_rows"] - gathered == n_local, \
                                f"{w}: {fc.LAUNCHES['gather_rows'] - gathered} rows gathered " \
                                f"zero-copy, expected {n_local}"
                            d = {k: r.stats[k] - before_stats[k] for k in r.stats}
                            assert d == {"rows_local": n_local, "rows_cached": int(hit.sum()),
                                         "rows_rpc": n_rpc, "rpc_bytes": n_rpc * r.row_bytes}, \
                                f"{w}: stats {d}"
                # the cache changes the route, never the rows: fewer remote rows than uncached
                if cached:
                    assert r.stats["rows_cached"] > 0
                r.reset_stats()
                assert r.stats == {"rows_local": 0, "rows_cached": 0, "rows_rpc": 0,
                                   "rpc_bytes": 0}
            # the same ids with and without the cache: same rows, fewer over RPC
            ids = _dd_id_sets()["mixed"]
            plain = DistRowReader(_FakeDistTensor(full, _DD_BOUNDS, 1), torch.device("cuda"))
            dtc = _FakeDistTensor(full, _DD_BOUNDS, 1)
            withc = DistRowReader(dtc, torch.device("cuda"), cache_ids=cache_ids)
            dtc.pulls.clear()
            same(fc.to_host(plain[ids]), withc[ids], f"{dtype}: cached vs uncached")
            assert withc.stats["rows_rpc"] < plain.stats["rows_rpc"], (withc.stats, plain.stats)
            assert dtc.rpc_rows() == withc.stats["rows_rpc"]
        # a partition at the start and at the end of the id space, and one holding every node
        full = _dd_table()
        for bounds, part in (([0, 20, 60], 0), ([0, 20, 60], 1), ([0, 60], 0)):
            for ids in _dd_id_sets().values():
                dt = _FakeDistTensor(full, bounds, part)
                r = DistRowReader(dt, torch.device("cuda"), cache_ids=torch.tensor([1, 40]))
                dt.pulls.clear()
                same(full[ids], r[ids], f"partition {part} of {bounds}")
                assert dt.local_pulled() == 0, f"partition {part} of {bounds}: local rows pulled"


# Host syncs of one DistRowReader call on CUDA, per route: none with host ids (what DistDGL's
# sampler returns: split on the host, indices and RPC rows staged in pinned memory and copied
# with non_blocking); one with CUDA ids (``__getitem__`` reads them back to split them). Before
# the fix the reader made 1-3 per uncached call and 3-7 per cached one (blocking H2D copies,
# nonzero and .cpu() on the device slot map).
DISTDGL_SYNCS = {
    # (cached, id set, ids on the device): syncs
    **{(c, n, False): 0 for c in (False, True)
       for n in ("local-only", "remote-only", "mixed", "empty", "all-hits")},
    **{(c, n, True): 1 for c in (False, True)
       for n in ("local-only", "remote-only", "mixed", "empty", "all-hits")},
}


@scenario("distdgl")
def distdgl_reader_syncs() -> None:
    """Host syncs per DistRowReader call on CUDA (host ids, as the loader passes them), with and
    without the cache, through ``rows`` (the loader's route) and ``__getitem__``."""
    from samplers.loading._distdgl import DistRowReader
    full = _dd_table()
    sets = _dd_id_sets()
    sets["all-hits"] = torch.tensor([0, 45, 21])
    seen = {}
    with _fake_dgl():
        for cached in (False, True):
            ci = torch.tensor([0, 45, 21, 59, 30]) if cached else None
            r = DistRowReader(_FakeDistTensor(full, _DD_BOUNDS, 1), torch.device("cuda"),
                              cache_ids=ci)
            for name in ("local-only", "remote-only", "mixed", "empty", "all-hits"):
                ids = sets[name]
                dev_ids = ids.cuda()
                for route in ("rows", "getitem", "getitem-cuda-ids"):
                    with fc.count_syncs() as c:
                        got = r.rows(ids) if route == "rows" else \
                            r[ids] if route == "getitem" else r[dev_ids]
                    same(full[ids], got, f"cached={cached} {name} {route}")
                    seen[(cached, name, route == "getitem-cuda-ids", route)] = \
                        (sum(c.values()), dict(c))
    print("DistRowReader host syncs per call:")
    for k, (n, detail) in seen.items():
        print(f"   {k}: {n}  {detail}")
    bad = {k: v for k, v in seen.items() if v[0] != DISTDGL_SYNCS[k[:3]]}
    assert not bad, f"host syncs per call differ from DISTDGL_SYNCS: {bad}"


@scenario("distdgl")
def distdgl_reader_errors() -> None:
    """Clear errors, raised before any device work: ids out of range (negative, past the end, as
    int32 and on the device), ids that are not 1-D integers, bad cache ids, and tables the
    reader cannot serve zero-copy."""
    from samplers.loading._distdgl import DistRowReader
    full = _dd_table()
    with _fake_dgl():
        for ci in (None, torch.tensor([0, 30])):
            dt = _FakeDistTensor(full, _DD_BOUNDS, 1)
            r = DistRowReader(dt, torch.device("cuda"), cache_ids=ci)
            dt.pulls.clear()
            for bad in ([0, 60], [-1, 3], [25, 1000]):
                for q in (torch.tensor(bad), torch.tensor(bad, dtype=torch.int32),
                          torch.tensor(bad).cuda()):
                    expect_error(IndexError, lambda: r[q], "node ids out of range [0, 60)")
            assert not dt.pulls, "an out-of-range call pulled rows before failing"
            expect_error(TypeError, lambda: r[torch.tensor([1.0, 2.0])], "1-D integer tensor")
            expect_error(TypeError, lambda: r[torch.tensor([True, False])], "1-D integer tensor")
            expect_error(TypeError, lambda: r[torch.tensor([[1, 2]])], "1-D integer tensor")
            # the reader still works after the errors
            same(full[torch.tensor([1, 30, 50])], r[[1, 30, 50]], "after errors")
        expect_error(IndexError, lambda: DistRowReader(_FakeDistTensor(full, _DD_BOUNDS, 1),
                                                       torch.device("cuda"),
                                                       cache_ids=torch.tensor([0, 60])),
                     "cache ids out of range")
        expect_error(ValueError, lambda: DistRowReader(_FakeDistTensor(full, _DD_BOUNDS, 1),
                                                       torch.device("cuda"),
                                                       cache_ids=torch.tensor([3, 3])),
                     "cache ids must be distinct")
        expect_error(TypeError, lambda: DistRowReader(full, torch.device("cuda")),
                     "expected a dgl.distributed.DistTensor")
        expect_error(ValueError, lambda: DistRowReader(
            _FakeDistTensor(full, _DD_BOUNDS, 1, is_node=False), torch.device("cuda")),
            "edge table")
        unmapped = _FakeDistTensor(full, _DD_BOUNDS, 1)
        unmapped.local_partition = None
        expect_error(RuntimeError, lambda: DistRowReader(unmapped, torch.device("cuda")),
                     "is not mapped in this process")
        holes = _FakeDistTensor(full, _DD_BOUNDS, 1)
        holes.part_policy.partition_book.partid2nids = \
            lambda p, t="_N": torch.tensor([20, 21, 23])
        expect_error(ValueError, lambda: DistRowReader(holes, torch.device("cuda")),
                     "not one contiguous range")
