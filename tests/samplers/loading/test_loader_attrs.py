"""The loaders read like torch's ``DataLoader``: ``dataset``, ``batch_size``, ``drop_last``,
``sampler``, ``batch_sampler``, ``collate_fn``, the worker options and ``len()`` hold what PyG's
and DGL's own loaders hold, checked against the real ones where they can be built (PyG 2.8's
``NeighborLoader`` / ``LinkNeighborLoader`` build without pyg-lib, they only cannot sample; DGL's
``DataLoader`` in the dgl environment), and torch's frozen attributes refuse to be set. Reading
them changes no epoch. Also runs the pattern of PyG's ``examples/reddit.py``
(``tqdm(total=len(loader.dataset))``) and DGL's ``len(dataloader)`` loops.
"""
from __future__ import annotations

import copy
import io
import multiprocessing
import warnings

import pytest
import torch
from torch.utils.data import BatchSampler, IterableDataset, RandomSampler, Sampler

import samplers
from samplers import CSCGraph, NeighborSampler

FROZEN = ["batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers"]
# Attributes torch's DataLoader.__init__ sets from its arguments, compared one to one.
PLAIN = ["batch_size", "drop_last", "num_workers", "pin_memory", "timeout", "prefetch_factor",
         "persistent_workers", "pin_memory_device"]
N = 60


def _edge_index(n: int = N, e: int = 400, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g)


@pytest.fixture(autouse=True)
def _quiet():
    # num_workers > 0 is said once with a UserWarning; DGL suggests enable_cpu_affinity()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*num_workers.*")
        warnings.filterwarnings("ignore", message=".*CPU affinity.*")
        yield


class Reversed(Sampler):
    """A user's index sampler: positions last to first."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        return iter(range(self.n - 1, -1, -1))

    def __len__(self) -> int:
        return self.n


def _same_context(a, b) -> bool:
    return (a is None and b is None) or (type(a) is type(b) and a.get_start_method()
                                         == b.get_start_method())


# ============================================================================================
# PyG: NeighborLoader / LinkNeighborLoader against PyG's own
@pytest.fixture(scope="module")
def pyg():
    tg = pytest.importorskip("torch_geometric")
    pytest.importorskip("torch_geometric.loader")   # tg.loader below
    import samplers.pyg
    return tg, samplers.pyg


def _data(pyg, n: int = N):
    tg, _ = pyg
    g = torch.Generator().manual_seed(1)
    data = tg.data.Data(x=torch.randn(n, 4, generator=g), edge_index=_edge_index(n),
                        y=torch.randint(0, 3, (n,), generator=g), num_nodes=n)
    data.train_mask = torch.rand(n, generator=g) < 0.4
    return data


def _check_like_pyg(ours, theirs) -> None:
    for attr in PLAIN:
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert ours.generator is theirs.generator
    assert ours.worker_init_fn is theirs.worker_init_fn
    assert _same_context(ours.multiprocessing_context, theirs.multiprocessing_context)
    if hasattr(theirs, "in_order"):   # torch >= 2.6
        assert ours.in_order == theirs.in_order
    # dataset: the seed positions, as PyG gives them to torch
    assert type(ours.dataset) is type(theirs.dataset) is range
    assert ours.dataset == theirs.dataset
    assert len(ours.dataset) == len(theirs.dataset)
    # the index sampler and batch sampler torch builds from shuffle / sampler / generator
    assert type(ours.sampler) is type(theirs.sampler)
    if isinstance(theirs.sampler, RandomSampler):
        assert ours.sampler.generator is theirs.sampler.generator
        assert ours.sampler.data_source == theirs.sampler.data_source
    else:
        assert list(ours.sampler) == list(theirs.sampler)
    assert isinstance(ours.batch_sampler, BatchSampler)
    assert type(ours.batch_sampler) is type(theirs.batch_sampler)
    assert ours.batch_sampler.batch_size == theirs.batch_sampler.batch_size
    assert ours.batch_sampler.drop_last == theirs.batch_sampler.drop_last
    assert len(ours.batch_sampler) == len(theirs.batch_sampler)
    if not isinstance(theirs.sampler, RandomSampler):
        assert list(ours.batch_sampler) == list(theirs.batch_sampler)
    # collate_fn: a bound method of the loader, as PyG's
    assert callable(ours.collate_fn) and ours.collate_fn.__self__ is ours
    assert ours.collate_fn.__name__ == theirs.collate_fn.__name__ == "collate_fn"
    assert len(ours) == len(theirs)


NODE_KWARGS = [
    dict(batch_size=16, shuffle=True, drop_last=True),
    dict(batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3)),
    dict(batch_size=7, pin_memory=True),
    dict(batch_size=7, num_workers=2, prefetch_factor=3, persistent_workers=True,
         multiprocessing_context="spawn", timeout=5, worker_init_fn=print,
         pin_memory_device="cuda"),
    dict(batch_size=5, sampler="reversed"),
    dict(batch_size=3),
]


@pytest.mark.parametrize("kwargs", NODE_KWARGS, ids=lambda kw: "-".join(sorted(kw)))
@pytest.mark.parametrize("input_nodes", ["mask", "ids", None], ids=str)
def test_neighbor_loader_attributes_match_pyg(pyg, kwargs, input_nodes):
    tg, ours_mod = pyg
    data = _data(pyg)
    seeds = {"mask": data.train_mask, "ids": torch.arange(5, 45), None: None}[input_nodes]
    n = N if seeds is None else int(seeds.sum()) if seeds.dtype == torch.bool else seeds.numel()
    kw = dict(kwargs)
    if kw.get("sampler") == "reversed":
        kw["sampler"] = Reversed(n)
    theirs = tg.loader.NeighborLoader(data, [3, 2], input_nodes=seeds, **kw)
    ours = ours_mod.NeighborLoader(data, [3, 2], input_nodes=seeds, **kw)
    _check_like_pyg(ours, theirs)
    assert ours.dataset == range(n)
    if "sampler" in kw:
        assert ours.sampler is kw["sampler"] is theirs.sampler
    # every batch the loader yields has the batch sampler's size, and len() counts them
    sizes = [b.batch_size for b in ours]
    assert sizes == [len(idx) for idx in ours.batch_sampler]
    assert len(sizes) == len(ours) and sum(sizes) <= len(ours.dataset)


def test_hetero_neighbor_loader_dataset(pyg):
    tg, ours_mod = pyg
    data = tg.data.HeteroData()
    data["a"].x = torch.randn(20, 2)
    data["b"].x = torch.randn(30, 2)
    data["a", "to", "b"].edge_index = torch.stack([torch.randint(0, 20, (80,)),
                                                   torch.randint(0, 30, (80,))])
    data["b", "to", "a"].edge_index = data["a", "to", "b"].edge_index.flip(0)
    for seeds in ["b", ("b", torch.arange(30) % 3 == 0), ("a", torch.tensor([4, 1, 7]))]:
        theirs = tg.loader.NeighborLoader(data, [2], input_nodes=seeds, batch_size=4)
        ours = ours_mod.NeighborLoader(data, [2], input_nodes=seeds, batch_size=4)
        _check_like_pyg(ours, theirs)


@pytest.mark.parametrize("kwargs", [dict(batch_size=16), dict(batch_size=8, shuffle=True,
                                                              drop_last=True, num_workers=1)],
                         ids=["plain", "shuffle"])
def test_link_neighbor_loader_attributes_match_pyg(pyg, kwargs):
    tg, ours_mod = pyg
    data = _data(pyg)
    eli = data.edge_index[:, :100]
    for extra in (dict(neg_sampling_ratio=1.0), dict(edge_label_index=eli),
                  dict(edge_label_index=eli, neg_sampling="triplet")):
        theirs = tg.loader.LinkNeighborLoader(data, [2], **extra, **kwargs)
        ours = ours_mod.LinkNeighborLoader(data, [2], **extra, **kwargs)
        _check_like_pyg(ours, theirs)
        assert len(ours.dataset) == (100 if "edge_label_index" in extra else data.num_edges)


@pytest.mark.parametrize("which", ["node", "link"])
def test_pyg_frozen_attributes(pyg, which):
    tg, ours_mod = pyg
    data = _data(pyg)
    make = (lambda m: m.NeighborLoader(data, [2], batch_size=16)) if which == "node" else \
        (lambda m: m.LinkNeighborLoader(data, [2], batch_size=64))
    theirs, ours = make(tg.loader), make(ours_mod)
    for attr in FROZEN:
        before = getattr(ours, attr)
        with pytest.raises(ValueError) as theirs_exc:
            setattr(theirs, attr, None)
        with pytest.raises(ValueError) as ours_exc:
            setattr(ours, attr, None)
        assert str(ours_exc.value) == str(theirs_exc.value)
        assert getattr(ours, attr) is before
    # what torch lets change, changes (and is not used: there are no workers)
    for attr, value in [("num_workers", 3), ("pin_memory", True), ("timeout", 2.0)]:
        setattr(theirs, attr, value)
        setattr(ours, attr, value)
        assert getattr(ours, attr) == getattr(theirs, attr) == value
    ours.multiprocessing_context = "spawn"   # torch would refuse it with num_workers == 0 only
    assert ours.multiprocessing_context.get_start_method() == "spawn"
    assert sum(b.input_id.numel() for b in ours) == len(ours.dataset)


def test_pyg_collate_fn_makes_the_batch_of_its_positions(pyg):
    _, ours_mod = pyg
    data = _data(pyg)
    seeds = torch.arange(10, 50)
    loader = ours_mod.NeighborLoader(data, [3, 2], input_nodes=seeds, batch_size=6, seed=0)
    made = 0
    for index in loader.batch_sampler:
        batch = loader.collate_fn(index)
        assert batch.batch_size == len(index)
        assert torch.equal(batch.input_id, torch.tensor(index))
        assert torch.equal(batch.n_id[:batch.batch_size], seeds[index])
        assert torch.equal(batch.x, data.x[batch.n_id])
        made += batch.batch_size
    assert made == len(loader.dataset)
    link = ours_mod.LinkNeighborLoader(data, [2], batch_size=8, neg_sampling_ratio=1.0, seed=0)
    index = next(iter(link.batch_sampler))
    batch = link.collate_fn(index)
    assert torch.equal(batch.input_id, torch.tensor(index))
    pos = batch.n_id[batch.edge_label_index[:, :len(index)]]
    assert torch.equal(pos, data.edge_index[:, index])


@pytest.mark.parametrize("shuffle", [False, True])
def test_pyg_reading_attributes_changes_no_epoch(pyg, shuffle):
    _, ours_mod = pyg
    data = _data(pyg)

    def make():
        return ours_mod.NeighborLoader(data, [3, 2], input_nodes=data.train_mask, batch_size=5,
                                       shuffle=shuffle, seed=11)

    def epochs(loader):
        return [[b.n_id.tolist() for b in loader] for _ in range(2)]

    plain, touched = make(), make()
    for attr in PLAIN + ["dataset", "sampler", "batch_sampler", "collate_fn", "generator",
                         "worker_init_fn", "multiprocessing_context", "in_order"]:
        getattr(touched, attr)
    len(touched), len(touched.dataset), list(touched.dataset)
    if not shuffle:   # a RandomSampler shares `generator`: iterating it draws, as in torch
        list(touched.sampler), list(touched.batch_sampler)
    assert epochs(touched) == epochs(plain)


def test_pyg_reddit_example_pattern(pyg):
    """PyG's examples/reddit.py, on a small generated graph: progress bars sized by
    ``len(loader.dataset)``, advanced by ``batch.batch_size``, and the layer-wise inference over a
    ``subgraph_loader`` whose ``data`` is edited after construction."""
    tg, ours_mod = pyg
    from tqdm import tqdm
    from torch_geometric.nn import SAGEConv
    import torch.nn.functional as F

    torch.manual_seed(0)
    data = _data(pyg, n=300)
    data.edge_index = _edge_index(300, 3000, seed=4)
    data.val_mask = ~data.train_mask
    NeighborLoader = ours_mod.NeighborLoader   # the one line a user changes
    kwargs = {'batch_size': 32, 'num_workers': 6, 'persistent_workers': True}
    train_loader = NeighborLoader(data, input_nodes=data.train_mask,
                                  num_neighbors=[25, 10], shuffle=True, **kwargs)
    subgraph_loader = NeighborLoader(copy.copy(data), input_nodes=None,
                                     num_neighbors=[-1], shuffle=False, **kwargs)
    del subgraph_loader.data.x, subgraph_loader.data.y
    subgraph_loader.data.num_nodes = data.num_nodes
    subgraph_loader.data.n_id = torch.arange(data.num_nodes)

    class SAGE(torch.nn.Module):
        def __init__(self, in_channels, hidden_channels, out_channels):
            super().__init__()
            self.convs = torch.nn.ModuleList([SAGEConv(in_channels, hidden_channels),
                                              SAGEConv(hidden_channels, out_channels)])

        def forward(self, x, edge_index):
            for i, conv in enumerate(self.convs):
                x = conv(x, edge_index)
                if i < len(self.convs) - 1:
                    x = F.dropout(x.relu_(), p=0.5, training=self.training)
            return x

        @torch.no_grad()
        def inference(self, x_all, subgraph_loader):
            pbar = tqdm(total=len(subgraph_loader.dataset) * len(self.convs), file=io.StringIO())
            for i, conv in enumerate(self.convs):
                xs = []
                for batch in subgraph_loader:
                    x = conv(x_all[batch.n_id], batch.edge_index)
                    if i < len(self.convs) - 1:
                        x = x.relu_()
                    xs.append(x[:batch.batch_size])
                    pbar.update(batch.batch_size)
                x_all = torch.cat(xs, dim=0)
            assert pbar.n == pbar.total == data.num_nodes * len(self.convs)
            pbar.close()
            return x_all

    model = SAGE(4, 16, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        model.train()
        pbar = tqdm(total=int(len(train_loader.dataset)), file=io.StringIO())
        total_examples = 0
        for batch in train_loader:
            optimizer.zero_grad()
            y = batch.y[:batch.batch_size]
            y_hat = model(batch.x, batch.edge_index)[:batch.batch_size]
            F.cross_entropy(y_hat, y).backward()
            optimizer.step()
            total_examples += batch.batch_size
            pbar.update(batch.batch_size)
        assert pbar.n == pbar.total == total_examples == int(data.train_mask.sum())
        pbar.close()
    model.eval()
    y_hat = model.inference(data.x, subgraph_loader)
    assert y_hat.shape == (data.num_nodes, 3)
    # the layer-wise inference equals the full-graph forward (all neighbours, every layer)
    torch.testing.assert_close(y_hat, model(data.x, data.edge_index), rtol=1e-4, atol=1e-4)


# ============================================================================================
# The DGL-style DataLoader on the library's own graph (any environment)
def _ours(indices=None, **kw) -> samplers.DataLoader:
    g = CSCGraph.from_edge_index(_edge_index(), N)
    indices = torch.arange(3, 53) if indices is None else indices
    return samplers.DataLoader(g, indices, NeighborSampler([3, 2], seed=0), **kw)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 50, 64])
def test_dataloader_attributes(batch_size, drop_last):
    gen = torch.Generator()
    loader = _ours(batch_size=batch_size, drop_last=drop_last, shuffle=True, generator=gen)
    batches = 50 // batch_size if drop_last else -(-50 // batch_size)
    assert len(loader) == len(loader.dataset) == batches
    assert isinstance(loader.dataset, IterableDataset)
    assert loader.batch_size == batch_size and loader.drop_last is drop_last
    assert loader.batch_sampler is None
    assert type(loader.sampler).__name__ == "_InfiniteConstantSampler"
    assert loader.generator is gen
    assert (loader.num_workers, loader.timeout, loader.prefetch_factor, loader.pin_memory,
            loader.persistent_workers, loader.worker_init_fn, loader.multiprocessing_context,
            loader.pin_memory_device, loader.in_order) == (0, 0, None, False, False, None, None,
                                                           "", True)
    assert (loader.pin_prefetcher, loader.use_prefetch_thread,
            loader.use_alternate_streams) == (False, True, False)
    # the dataset: the seed batches in their given order (not shuffled), drop_last applied
    seen = list(loader.dataset)
    assert len(seen) == batches
    flat = torch.cat(seen) if seen else torch.empty(0, dtype=torch.int64)
    assert torch.equal(flat, torch.arange(3, 3 + batches * batch_size)[:50])
    assert sum(1 for _ in loader) == len(loader)


def test_dataloader_worker_options_as_given():
    def init(worker_id):
        return None

    ctx = multiprocessing.get_context("spawn")
    loader = _ours(batch_size=4, num_workers=3, persistent_workers=True, timeout=1.5,
                   worker_init_fn=init, multiprocessing_context=ctx, pin_memory_device="cuda",
                   prefetch_factor=4, in_order=False)
    assert (loader.num_workers, loader.persistent_workers, loader.timeout, loader.prefetch_factor,
            loader.pin_memory_device, loader.in_order) == (3, True, 1.5, 4, "cuda", False)
    assert loader.worker_init_fn is init and loader.multiprocessing_context is ctx
    assert _ours(batch_size=4, num_workers=2).prefetch_factor == 2   # torch's default
    assert _ours(multiprocessing_context="spawn").multiprocessing_context.get_start_method() \
        == "spawn"
    assert sum(len(b[1]) for b in loader) == 50


@pytest.mark.parametrize("kw, exc, match", [
    (dict(timeout=-1), ValueError, "timeout option should be non-negative"),
    (dict(timeout="5"), TypeError, "timeout must be a number"),
    (dict(multiprocessing_context="nope"), ValueError, "valid start method"),
    (dict(multiprocessing_context=3), TypeError, "context object"),
])
@pytest.mark.parametrize("which", ["DataLoader", "NeighborLoader"])
def test_bad_torch_options(kw, exc, match, which):
    if which == "DataLoader":
        with pytest.raises(exc, match=match):
            _ours(**kw)
        return
    pytest.importorskip("torch_geometric")
    import samplers.pyg as pyg
    from torch_geometric.data import Data
    data = Data(edge_index=_edge_index(), num_nodes=N)
    with pytest.raises(exc, match=match):
        pyg.NeighborLoader(data, [2], **kw)


def test_dataloader_frozen_attributes():
    loader = _ours(batch_size=8)
    for attr in FROZEN:
        before = getattr(loader, attr)
        with pytest.raises(ValueError, match=f"^{attr} attribute should not be set after "
                                             f"DataLoader is initialized$"):
            setattr(loader, attr, 3)
        assert getattr(loader, attr) is before
    with pytest.raises(AttributeError):
        loader.pin_prefetcher = True
    loader.shuffle = True   # as DGL's: a plain attribute, read at every epoch
    loader.num_workers = 2
    assert len(loader) == sum(1 for _ in loader) == 7


def test_dataloader_collate_fn():
    loader = _ours(batch_size=8)
    for ids in loader.dataset:
        input_nodes, output_nodes, blocks = loader.collate_fn(ids)
        assert torch.equal(output_nodes, ids)
        assert torch.equal(input_nodes[:ids.numel()], ids)
        assert blocks[-1].num_dst_nodes() == ids.numel()
    with pytest.raises(IndexError, match="items"):
        loader.collate_fn(torch.tensor([0, N]))
    with pytest.raises(ValueError, match="distinct"):
        loader.collate_fn([1, 1])


def test_dataloader_hetero_dataset_and_collate_fn():
    from samplers import HeteroCSCGraph

    g = torch.Generator().manual_seed(2)
    graph = HeteroCSCGraph.from_edge_index_dict({
        ("a", "ab", "b"): torch.stack([torch.randint(0, 20, (60,), generator=g),
                                       torch.randint(0, 30, (60,), generator=g)]),
        ("b", "ba", "a"): torch.stack([torch.randint(0, 30, (60,), generator=g),
                                       torch.randint(0, 20, (60,), generator=g)])},
        {"a": 20, "b": 30})
    loader = samplers.DataLoader(graph, {"a": torch.arange(5), "b": torch.arange(10, 17)},
                                 NeighborSampler([2]), batch_size=4)
    seen = list(loader.dataset)
    assert [{k: v.tolist() for k, v in b.items()} for b in seen] == [
        {"a": [0, 1, 2, 3]}, {"a": [4], "b": [10, 11, 12]}, {"b": [13, 14, 15, 16]}]
    assert len(loader) == len(loader.dataset) == 3
    _, output_nodes, _ = loader.collate_fn(seen[1])
    assert {k: v.tolist() for k, v in output_nodes.items()} == {"a": [4], "b": [10, 11, 12]}


def test_dataloader_reading_attributes_changes_no_epoch():
    def make():
        return _ours(batch_size=6, shuffle=True, seed=5)

    def epochs(loader):
        return [[b[0].tolist() for b in loader] for _ in range(2)]

    plain, touched = make(), make()
    for attr in PLAIN + ["dataset", "sampler", "batch_sampler", "collate_fn", "generator",
                         "worker_init_fn", "multiprocessing_context", "in_order"]:
        getattr(touched, attr)
    list(touched.dataset), len(touched), len(touched.dataset)
    touched.collate_fn(torch.tensor([4, 5]))
    assert epochs(touched) == epochs(plain)


# ============================================================================================
# DGL: the DataLoader against DGL's own (dgl environment)
@pytest.fixture
def dgl():
    return pytest.importorskip("dgl")


def _dgl_pair(dgl, indices, **kw):
    graph = dgl.graph(tuple(_edge_index()), num_nodes=N)
    sampler = dgl.dataloading.NeighborSampler([-1])
    return (samplers.DataLoader(graph, indices, sampler, **kw),
            dgl.dataloading.DataLoader(graph, indices, sampler, **kw))


@pytest.mark.dgl
@pytest.mark.parametrize("kw", [
    dict(batch_size=7),
    dict(batch_size=7, drop_last=True, shuffle=True),
    dict(batch_size=16, generator=torch.Generator(), num_workers=0, timeout=3),
    dict(batch_size=64),
], ids=["plain", "drop_last", "generator", "one-batch"])
def test_dgl_dataloader_attributes_match_dgl(dgl, kw):
    ours, theirs = _dgl_pair(dgl, torch.arange(5, 55), **kw)
    for attr in ["num_workers", "pin_memory", "timeout", "prefetch_factor", "persistent_workers",
                 "pin_memory_device", "batch_sampler", "generator", "multiprocessing_context",
                 "shuffle", "use_uva", "use_ddp", "ddp_seed", "device", "pin_prefetcher"]:
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert ours.graph_sampler is theirs.graph_sampler and ours.graph is theirs.graph
    assert torch.equal(ours.indices, theirs.indices)
    assert isinstance(ours.dataset, IterableDataset) and isinstance(theirs.dataset,
                                                                    IterableDataset)
    assert type(ours.sampler) is type(theirs.sampler)
    assert len(ours) == len(theirs) == len(ours.dataset) == len(theirs.dataset)
    assert callable(ours.collate_fn)
    # DGL hands torch batch_size=None (its dataset batches); ours keeps the values given
    assert ours.batch_size == kw["batch_size"] and ours.drop_last == kw.get("drop_last", False)
    # unshuffled, both datasets yield the same id batches
    if not kw.get("shuffle"):
        assert [b.tolist() for b in ours.dataset] == [b.tolist() for b in theirs.dataset]
    else:
        assert [b.numel() for b in ours.dataset] == [b.numel() for b in theirs.dataset]
    # collate_fn: DGL's turns seed ids into (input_nodes, output_nodes, blocks); so does ours
    ids = torch.tensor([8, 3, 21])
    (oi, oo, ob), (ti, to, tb) = ours.collate_fn(ids), theirs.collate_fn(ids)
    assert torch.equal(oo, to) and torch.equal(oo, ids)
    assert sorted(oi.tolist()) == sorted(ti.tolist())   # fanout -1: the same neighbourhood
    assert ob[0].num_edges() == tb[0].num_edges()


@pytest.mark.dgl
def test_dgl_dataloader_hetero_dataset_matches_dgl(dgl):
    g = torch.Generator().manual_seed(2)
    graph = dgl.heterograph({
        ("a", "ab", "b"): (torch.randint(0, 20, (60,), generator=g),
                           torch.randint(0, 30, (60,), generator=g)),
        ("b", "ba", "a"): (torch.randint(0, 30, (60,), generator=g),
                           torch.randint(0, 20, (60,), generator=g))},
        num_nodes_dict={"a": 20, "b": 30})
    idx = {"a": torch.arange(5), "b": torch.arange(10, 17)}
    sampler = dgl.dataloading.NeighborSampler([-1])
    ours = samplers.DataLoader(graph, idx, sampler, batch_size=4)
    theirs = dgl.dataloading.DataLoader(graph, idx, sampler, batch_size=4)

    def plain(batches):
        return [{k: v.tolist() for k, v in b.items()} for b in batches]

    assert plain(ours.dataset) == plain(theirs.dataset)
    assert len(ours.dataset) == len(theirs.dataset) == len(ours) == len(theirs) == 3
    items = {"a": torch.tensor([1, 2]), "b": torch.tensor([3])}
    (oi, oo, _), (ti, to, _) = ours.collate_fn(items), theirs.collate_fn(items)
    assert plain([oo]) == plain([to])
    assert {k: sorted(v.tolist()) for k, v in oi.items()} == \
        {k: sorted(v.tolist()) for k, v in ti.items()}


@pytest.mark.dgl
def test_dgl_dataloader_frozen_attributes_match_dgl(dgl):
    ours, theirs = _dgl_pair(dgl, torch.arange(10), batch_size=3)
    for attr in FROZEN:
        with pytest.raises(ValueError) as theirs_exc:
            setattr(theirs, attr, 2)
        with pytest.raises(ValueError) as ours_exc:
            setattr(ours, attr, 2)
        assert str(ours_exc.value) == str(theirs_exc.value)
    for loader in (ours, theirs):   # plain attributes in both
        loader.shuffle = True
        loader.num_workers = 0
        assert loader.shuffle is True


@pytest.mark.dgl
@pytest.mark.parametrize("drop_last", [False, True])
def test_dgl_len_dataloader_pattern(dgl, drop_last):
    """DGL's examples: ``tqdm(dataloader)`` sized by ``len(dataloader)``, the mean loss over
    ``it + 1`` batches, and ``len(dataloader)`` batches per epoch, identical for both loaders."""
    from tqdm import tqdm

    counts = {}
    for Loader in (dgl.dataloading.DataLoader, samplers.DataLoader):
        graph = dgl.graph(tuple(_edge_index()), num_nodes=N)
        graph.ndata["feat"] = torch.randn(N, 4)
        loader = Loader(graph, torch.arange(N - 3), dgl.dataloading.NeighborSampler([4, 4]),
                        batch_size=8, shuffle=True, drop_last=drop_last)
        per_epoch = []
        for _ in range(2):
            seeds = 0
            bar = tqdm(loader, file=io.StringIO())
            assert bar.total == len(loader)
            for it, (input_nodes, output_nodes, blocks) in enumerate(bar):
                seeds += blocks[-1].num_dst_nodes()
            assert seeds == (N - 3) // 8 * 8 if drop_last else seeds == N - 3
            per_epoch.append(it + 1)
            assert it + 1 == len(loader) == len(loader.dataset)
        counts[Loader.__module__] = (len(loader), per_epoch)
    ours, theirs = counts["samplers.loading._dataloader"], counts["dgl.dataloading.dataloader"]
    assert ours == theirs
