"""samplers.presample_hotness: exact counts over DataLoader batches (hand-computed on a tiny graph
and against a bincount loop over the same batches), heterogeneous dicts, PyG-like batches (fakes;
real PyG classes only where installed), num_batches, iterator handling, every argument error."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from samplers import CSCGraph, DataLoader, HeteroCSCGraph, NeighborSampler, presample_hotness

PRODUCER = "samplers-DataLoader-producer"


def producers() -> list:
    return [t for t in threading.enumerate() if t.name.startswith(PRODUCER) and t.is_alive()]


# ------------------------------------------------------------------------------ graphs, loaders
# Tiny graph, in-neighbours: in(0) = {3, 4}, in(1) = {0}, in(2) = {0, 1}, in(3) = {2},
# in(4) = {}, in(5) = {0}. With fanouts above every degree the sampler takes all in-edges, so the
# input nodes of a batch are its seeds plus their (multi-hop) in-neighbours: countable by hand.
TINY_EDGES = torch.tensor([[3, 4, 0, 0, 1, 2, 0],
                           [0, 0, 1, 2, 2, 3, 5]])
# seeds 0..5, batch_size 2, no shuffle: batches {0,1}, {2,3}, {4,5}
#   one layer:  {0,1,3,4}, {0,1,2,3}, {0,4,5}
#   two layers: {0,1,2,3,4}, {0,1,2,3,4}, {0,3,4,5}
TINY_EXPECTED = {1: [3, 2, 1, 2, 2, 1], 2: [3, 2, 2, 3, 3, 1]}


@pytest.fixture(scope="module")
def tiny():
    return CSCGraph.from_edge_index(TINY_EDGES, 6)


@pytest.mark.parametrize("layers", [1, 2])
def test_hand_computed_counts(tiny, layers):
    loader = DataLoader(tiny, torch.arange(6), NeighborSampler([10] * layers, seed=0),
                        batch_size=2, device="cpu")
    got = presample_hotness(loader, tiny.num_nodes)
    assert got.dtype == torch.int64 and got.device.type == "cpu" and got.shape == (6,)
    assert got.tolist() == TINY_EXPECTED[layers]
    # a third of the batches: the first one only
    assert presample_hotness(loader, 6, 1).tolist() == \
        ([1, 1, 0, 1, 1, 0] if layers == 1 else [1, 1, 1, 1, 1, 0])


N = 400


@pytest.fixture(scope="module")
def graph():
    g = torch.Generator().manual_seed(0)
    return CSCGraph.from_edge_index(torch.randint(0, N, (2, 6 * N), generator=g), N)


def make_loader(graph, seed=3, batch_size=32, **kw):
    """Fresh loader and sampler: the same seed gives the same batches (shuffle and draws)."""
    seeds = torch.arange(0, N, 2)
    return DataLoader(graph, seeds, NeighborSampler([4, 3], seed=seed), batch_size=batch_size,
                      shuffle=True, seed=seed, device="cpu", **kw)


def reference(loader, num_nodes, num_batches=None):
    counts = torch.zeros(num_nodes, dtype=torch.int64)
    for i, (input_nodes, _, _) in enumerate(loader):
        if num_batches is not None and i >= num_batches:
            break
        counts += torch.bincount(input_nodes.long(), minlength=num_nodes)
    return counts


def test_same_seed_same_batches(graph):
    a = [inp for inp, _, _ in make_loader(graph)]
    b = [inp for inp, _, _ in make_loader(graph)]
    assert len(a) == len(b) == 7
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = [inp for inp, _, _ in make_loader(graph, seed=4)]
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_counts_match_bincount_loop(graph, prefetch):
    ref = reference(make_loader(graph), N)
    got = presample_hotness(make_loader(graph, prefetch=prefetch), N)
    assert torch.equal(got, ref)
    assert int(got.sum()) == sum(inp.numel() for inp, _, _ in make_loader(graph))
    assert int(got.max()) <= 7                     # at most once per batch (inputs are distinct)
    # multiplicity: some nodes are read by several batches
    assert int(got.max()) > 1


@pytest.mark.parametrize("k", [0, 1, 3, 7, 100])
def test_num_batches_limits(graph, k):
    got = presample_hotness(make_loader(graph), N, k)
    assert torch.equal(got, reference(make_loader(graph), N, k))
    if k == 0:
        assert int(got.sum()) == 0
    if k >= 7:
        assert torch.equal(got, presample_hotness(make_loader(graph), N))


def test_iterator_is_left_after_the_batches_read(graph):
    batches = [inp for inp, _, _ in make_loader(graph)]
    it = iter(make_loader(graph))
    got = presample_hotness(it, N, 2)
    assert torch.equal(got, torch.bincount(torch.cat(batches[:2]).long(), minlength=N))
    inp, _, _ = next(it)                           # not closed, nothing skipped
    assert torch.equal(inp, batches[2])
    it.close()


def test_owned_epoch_is_closed_early(graph):
    loader = make_loader(graph, batch_size=8)      # 25 batches, a producer thread
    presample_hotness(loader, N, 2)
    assert producers() == []                        # stopped and joined, not left to GC


class Epochs:
    """An iterable whose iterators record ``close()`` (as the DataLoader's epoch iterators have)."""

    def __init__(self, batches):
        self.batches, self.iters = batches, []

    def __iter__(self):
        it = EpochIter(self.batches)
        self.iters.append(it)
        return it


class EpochIter:
    def __init__(self, batches):
        self._it, self.closed, self.pulled = iter(batches), 0, 0

    def __iter__(self):
        return self

    def __next__(self):
        b = next(self._it)
        self.pulled += 1
        return b

    def close(self):
        self.closed += 1


@pytest.mark.parametrize("k", [None, 1, 5])
def test_owned_iterator_closed_passed_iterator_not(k):
    batches = [(torch.tensor([i]),) for i in range(3)]
    ep = Epochs(batches)
    presample_hotness(ep, 3, k)
    assert len(ep.iters) == 1 and ep.iters[0].closed == 1
    assert ep.iters[0].pulled == (3 if k is None else min(k, 3))   # no batch pulled past k
    it = iter(Epochs(batches))
    presample_hotness(it, 3, k)
    assert it.closed == 0
    ep = Epochs([(torch.tensor([5]),)])
    with pytest.raises(IndexError):
        presample_hotness(ep, 3, k)
    assert ep.iters[0].closed == 1                                # closed on error too


def test_plain_lists_and_generators(graph):
    ids = [torch.tensor([0, 1, 2]), torch.tensor([2, 3]), torch.tensor([], dtype=torch.int64)]
    batches = [(t, None, None) for t in ids]
    want = [1, 1, 2, 1, 0]
    assert presample_hotness(batches, 5).tolist() == want
    assert presample_hotness(iter(batches), 5).tolist() == want
    assert presample_hotness(([t] for t in ids), 5).tolist() == want   # list batches
    assert presample_hotness([], 3).tolist() == [0, 0, 0]
    assert presample_hotness(batches, 4).tolist() == want[:4]
    assert presample_hotness([], 0).shape == (0,)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_id_dtypes(dtype):
    t = torch.tensor([4, 0, 4, 1], dtype=dtype)
    assert presample_hotness([(t,)], 5).tolist() == [1, 1, 0, 0, 2]


def test_numpy_count_arguments():
    got = presample_hotness([(torch.tensor([1, 1]),)] * 3, np.int64(3), np.int32(2))
    assert got.tolist() == [0, 4, 0]


@pytest.mark.gpu
def test_cuda_ids():
    ids = torch.tensor([0, 2, 2], device="cuda", dtype=torch.int32)
    got = presample_hotness([(ids, None, None)], 3)
    assert got.device.type == "cpu" and got.tolist() == [1, 0, 2]
    got = presample_hotness([({"a": ids},)], {"a": 3})
    assert got["a"].device.type == "cpu" and got["a"].tolist() == [1, 0, 2]


# ------------------------------------------------------------------------------ heterogeneous
NUM = {"paper": 5, "author": 3, "venue": 2}


def test_hetero_dict_batches():
    batches = [({"paper": torch.tensor([0, 4]), "author": torch.tensor([1], dtype=torch.int32)}, "o", []),
               ({"paper": torch.tensor([4, 2, 0])},),                  # author/venue absent
               [{"author": torch.tensor([1, 2]), "venue": torch.tensor([], dtype=torch.int64)}]]
    got = presample_hotness(batches, NUM)
    assert set(got) == set(NUM)
    assert got["paper"].tolist() == [2, 0, 1, 0, 2]
    assert got["author"].tolist() == [0, 2, 1]
    assert got["venue"].tolist() == [0, 0]
    assert all(t.dtype == torch.int64 and t.device.type == "cpu" for t in got.values())
    got1 = presample_hotness(batches, NUM, 1)
    assert got1["paper"].tolist() == [1, 0, 0, 0, 1] and got1["author"].tolist() == [0, 1, 0]


def test_hetero_dataloader_matches_loop():
    g = torch.Generator().manual_seed(0)
    num = {"paper": 60, "author": 40}
    ei = {("author", "writes", "paper"): torch.stack([torch.randint(0, 40, (200,), generator=g),
                                                     torch.randint(0, 60, (200,), generator=g)]),
          ("paper", "cites", "paper"): torch.randint(0, 60, (2, 240), generator=g),
          ("paper", "written_by", "author"): torch.stack([torch.randint(0, 60, (200,), generator=g),
                                                          torch.randint(0, 40, (200,), generator=g)])}
    hg = HeteroCSCGraph.from_edge_index_dict(ei, num)

    def loader():
        return DataLoader(hg, {"paper": torch.arange(60)}, NeighborSampler([3, 2], seed=1),
                          batch_size=16, shuffle=True, seed=1, device="cpu")
    ref = {nt: torch.zeros(n, dtype=torch.int64) for nt, n in num.items()}
    for inp, _, _ in loader():
        for nt, t in inp.items():
            ref[nt] += torch.bincount(t.long(), minlength=num[nt])
    got = presample_hotness(loader(), num)
    assert set(got) == set(num)
    assert all(torch.equal(got[nt], ref[nt]) for nt in num)
    assert int(got["author"].sum()) > 0


# ------------------------------------------------------------------------------ PyG-like
class FakeData:
    """Duck-typed ``torch_geometric.data.Data`` batch: only ``n_id``."""

    def __init__(self, n_id):
        self.n_id = n_id


class FakeStore:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeHeteroData:
    """Duck-typed ``HeteroData`` batch: ``node_types`` and ``batch[nt].n_id``."""

    def __init__(self, **n_ids):
        self._stores = {nt: FakeStore(n_id=t) if t is not None else FakeStore(x=1)
                        for nt, t in n_ids.items()}

    @property
    def node_types(self):
        return list(self._stores)

    def __getitem__(self, nt):
        return self._stores[nt]


def test_pyg_like_data():
    batches = [FakeData(torch.tensor([3, 0])), FakeData(torch.tensor([0, 1], dtype=torch.int32))]
    assert presample_hotness(batches, 4).tolist() == [2, 1, 0, 1]
    assert presample_hotness(batches, 4, 1).tolist() == [1, 0, 0, 1]


def test_pyg_like_hetero_data():
    batches = [FakeHeteroData(paper=torch.tensor([0, 4]), author=torch.tensor([2])),
               FakeHeteroData(paper=torch.tensor([4]))]
    got = presample_hotness(batches, NUM)
    assert got["paper"].tolist() == [1, 0, 0, 0, 2]
    assert got["author"].tolist() == [0, 0, 1] and got["venue"].tolist() == [0, 0]


def test_real_pyg_objects():
    pyg_data = pytest.importorskip("torch_geometric.data")
    d = pyg_data.Data(n_id=torch.tensor([1, 2, 2]), x=torch.ones(3, 1))
    assert presample_hotness([d], 3).tolist() == [0, 1, 2]
    h = pyg_data.HeteroData()
    h["paper"].n_id = torch.tensor([0, 4])
    h["author"].n_id = torch.tensor([1])
    got = presample_hotness([h, h], NUM)
    assert got["paper"].tolist() == [2, 0, 0, 0, 2] and got["author"].tolist() == [0, 2, 0]


# ------------------------------------------------------------------------------ errors
def one(t):
    return [(t, None, None)]


@pytest.mark.parametrize("batch", [5, "abc", torch.tensor([0, 1]), {"paper": torch.tensor([0])},
                                   object(), (), []])
def test_unknown_batch_form(batch):
    with pytest.raises(TypeError, match=r"batch 0"):
        presample_hotness([batch], 3)


@pytest.mark.parametrize("batches", [5, None, torch.arange(3), {"a": 1}])
def test_batches_not_an_iterable_of_batches(batches):
    with pytest.raises(TypeError, match="batches must be an iterable"):
        presample_hotness(batches, 3)


@pytest.mark.parametrize("bad", [-1, 3, 100])
def test_ids_out_of_range(bad):
    with pytest.raises(IndexError, match=rf"batch 1: node id {bad} outside \[0, num_nodes=3\)"):
        presample_hotness(one(torch.tensor([0])) + one(torch.tensor([1, bad])), 3)


def test_ids_out_of_range_hetero_and_pyg():
    with pytest.raises(IndexError, match=r"batch 0, node type 'venue': node id 2 outside"):
        presample_hotness([({"venue": torch.tensor([2])},)], NUM)
    with pytest.raises(IndexError, match=r"batch 0, node type 'author': node id -1"):
        presample_hotness([FakeHeteroData(author=torch.tensor([-1]))], NUM)
    with pytest.raises(IndexError, match="node id 4 outside"):
        presample_hotness([FakeData(torch.tensor([4]))], 4)


@pytest.mark.parametrize("ids", [torch.tensor([True, False]), torch.tensor([0.0, 1.0]),
                                 torch.tensor([0, 1], dtype=torch.float16),
                                 torch.tensor([1 + 0j])])
def test_non_integer_ids(ids):
    with pytest.raises(TypeError, match=rf"batch 0: node ids must be integers, got dtype {ids.dtype}"):
        presample_hotness(one(ids), 3)


def test_ids_not_a_1d_tensor():
    with pytest.raises(TypeError, match="node ids must be a torch.Tensor, got list"):
        presample_hotness(one([0, 1]), 3)
    with pytest.raises(TypeError, match="node ids must be a torch.Tensor, got ndarray"):
        presample_hotness(one(np.array([0, 1])), 3)
    with pytest.raises(ValueError, match=r"node ids must be 1-D, got shape \(1, 2\)"):
        presample_hotness(one(torch.tensor([[0, 1]])), 3)
    with pytest.raises(ValueError, match=r"1-D, got shape \(\)"):
        presample_hotness(one(torch.tensor(1)), 3)


@pytest.mark.parametrize("n", [3.0, "3", None, True, torch.tensor(3), [3]])
def test_num_nodes_not_an_int(n):
    with pytest.raises(TypeError, match="num_nodes must be an int"):
        presample_hotness(one(torch.tensor([0])), n)


def test_num_nodes_negative():
    with pytest.raises(ValueError, match="num_nodes must be >= 0, got -1"):
        presample_hotness(one(torch.tensor([0])), -1)


def test_num_nodes_dict_errors():
    with pytest.raises(ValueError, match="empty dict"):
        presample_hotness([], {})
    with pytest.raises(TypeError, match=r"num_nodes\['paper'\] must be an int"):
        presample_hotness([], {"paper": 2.5})
    with pytest.raises(ValueError, match=r"num_nodes\['paper'\] must be >= 0"):
        presample_hotness([], {"paper": -2})


def test_form_mismatch():
    # dict batch, int num_nodes
    with pytest.raises(TypeError, match=r"batch 0: .*dict of node types \['paper'\] but "
                                        r"num_nodes is an int"):
        presample_hotness([({"paper": torch.tensor([0])},)], 5)
    with pytest.raises(TypeError, match="num_nodes is an int"):
        presample_hotness([FakeHeteroData(paper=torch.tensor([0]))], 5)
    # tensor batch, dict num_nodes
    with pytest.raises(TypeError, match=r"batch 1: num_nodes is a dict of node types but the "
                                        r"batch's input nodes are a Tensor"):
        presample_hotness([({"paper": torch.tensor([0])},), (torch.tensor([0]),)], NUM)
    with pytest.raises(TypeError, match="num_nodes is a dict"):
        presample_hotness([FakeData(torch.tensor([0]))], NUM)
    # a node type num_nodes does not know
    with pytest.raises(ValueError, match=r"batch 0: node type\(s\) \['topic'\] not in num_nodes"):
        presample_hotness([({"paper": torch.tensor([0]), "topic": torch.tensor([0])},)], NUM)
    with pytest.raises(ValueError, match=r"node type\(s\) \['topic'\]"):
        presample_hotness([FakeHeteroData(topic=torch.tensor([0]))], NUM)


def test_hetero_data_node_type_without_n_id():
    with pytest.raises(ValueError, match=r"batch 0 \(HeteroData-like\): node type 'author' has "
                                         r"no n_id"):
        presample_hotness([FakeHeteroData(paper=torch.tensor([0]), author=None)], NUM)


@pytest.mark.parametrize("k,exc", [(-1, ValueError), (1.0, TypeError), ("2", TypeError),
                                   (True, TypeError), (torch.tensor(2), TypeError)])
def test_num_batches_bad(k, exc):
    with pytest.raises(exc, match="num_batches must be"):
        presample_hotness(one(torch.tensor([0])), 3, k)


def test_error_in_an_owned_loader_epoch_stops_its_producer(graph):
    loader = make_loader(graph, batch_size=8)
    with pytest.raises(IndexError, match="outside"):
        presample_hotness(loader, 10)                  # ids up to N-1 >= 10
    assert producers() == []
