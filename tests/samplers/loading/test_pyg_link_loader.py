"""samplers.pyg.LinkNeighborLoader against PyG's documented link-batch semantics (PyG's own loader
needs pyg-lib / torch-sparse, absent here): seed edges and ``input_id``, ``edge_label_index`` in
local ids, binary and triplet negatives (PyG's label shift, amounts, weights), the sampled
neighbourhood of the endpoints, epochs, Data and HeteroData, errors. CPU here; GPU under ``gpu``."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Data, HeteroData  # noqa: E402
from torch_geometric.sampler import NegativeSampling  # noqa: E402

from samplers.pyg import LinkNeighborLoader  # noqa: E402

N, E = 300, 1500


def make_data(idtype=torch.int64, seed=0) -> Data:
    g = torch.Generator().manual_seed(seed)
    data = Data(edge_index=torch.randint(0, N - 5, (2, E), generator=g).to(idtype))  # 5 isolated
    data.x = torch.randn(N, 6, generator=g)
    data.y = torch.randint(0, 3, (N,), generator=g)
    data.edge_attr = torch.randn(E, 2, generator=g)
    return data


@pytest.fixture(scope="module")
def data():
    return make_data()


BUYS = ("user", "buys", "item")
REV_BUYS = ("item", "rev_buys", "user")
SIMILAR = ("item", "similar", "item")
NUM = {"user": 60, "item": 80, "shop": 4}


def make_hetero(seed=0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    h = HeteroData()
    h["user"].x = torch.randn(60, 3, generator=g)
    h["item"].x = torch.randn(80, 5, generator=g)
    h["item"].price = torch.rand(80, generator=g)
    h["shop"].x = torch.randn(4, 2, generator=g)           # a node type without edges
    b = torch.stack([torch.randint(0, 60, (400,), generator=g),
                     torch.randint(0, 80, (400,), generator=g)])
    h[BUYS].edge_index = b
    h[BUYS].rating = torch.randint(1, 6, (400,), generator=g)
    h[REV_BUYS].edge_index = b.flip(0)
    h[SIMILAR].edge_index = torch.randint(0, 80, (2, 300), generator=g)
    return h


@pytest.fixture(scope="module")
def hetero():
    return make_hetero()


def offsets(counts):
    return list(itertools.accumulate([0] + list(counts)))


def check_sampled(full, src, dst, edge_index, e_id, nsn_src, nsn_dst, nse, fanouts, num_dst):
    """Sampled edges of one type: real, ``e_id`` right, PyG's hop semantics, fanouts (no
    replacement)."""
    full = full.long()
    assert torch.equal(src[edge_index[0]], full[0, e_id])
    assert torch.equal(dst[edge_index[1]], full[1, e_id])
    indeg = torch.bincount(full[1], minlength=num_dst)
    s_off, d_off, e_off = offsets(nsn_src), offsets(nsn_dst), offsets(nse)
    for k, fan in enumerate(fanouts):
        row, col = edge_index[:, e_off[k]:e_off[k + 1]]
        lo, hi = d_off[k], d_off[k + 1]
        assert bool(((col >= lo) & (col < hi)).all()) and bool((row < s_off[k + 2]).all())
        got = torch.bincount(col - lo, minlength=hi - lo)
        want = indeg[dst[lo:hi]]
        assert torch.equal(got, want if fan == -1 else want.clamp(max=fan))


def check_homo(data, b, fanouts, seeds):
    """A homogeneous link batch: the endpoints (sorted, distinct: PyG's ``unique``) are the seed
    nodes, sampled as NeighborLoader does, attributes sliced."""
    n_id = b.n_id
    k = seeds.numel()
    assert b.num_sampled_nodes[0] == k and torch.equal(n_id[:k], seeds)
    assert n_id.unique().numel() == n_id.numel() and sum(b.num_sampled_nodes) == n_id.numel()
    check_sampled(data.edge_index, n_id, n_id, b.edge_index, b.e_id, b.num_sampled_nodes,
                  b.num_sampled_nodes, b.num_sampled_edges, fanouts, N)
    assert torch.equal(b.x, data.x[n_id]) and torch.equal(b.y, data.y[n_id])
    assert torch.equal(b.edge_attr, data.edge_attr[b.e_id])


def same_batch(a, b, keys=("n_id", "e_id", "edge_index", "input_id")):
    return all(torch.equal(a[k], b[k]) for k in keys)


# ------------------------------------------------------------------------------ Data
def test_default_edge_label_index_is_every_edge(data):
    loader = LinkNeighborLoader(data, [4, 2], batch_size=128, shuffle=True, seed=0)
    assert len(loader) == math.ceil(E / 128) and isinstance(loader, torch.utils.data.DataLoader)
    seen = []
    for b in loader:
        B = b.input_id.numel()
        eli = b.edge_label_index
        assert eli.shape == (2, B) and eli.dtype == torch.int64
        assert torch.equal(b.n_id[eli], data.edge_index[:, b.input_id])     # the seed edges
        assert "edge_label" not in b                                          # none given
        check_homo(data, b, [4, 2], data.edge_index[:, b.input_id].unique())
        seen.append(b.input_id)
    seen = torch.cat(seen)
    assert torch.equal(seen.sort().values, torch.arange(E))   # every seed edge once per epoch
    assert not torch.equal(seen, torch.arange(E))


def test_explicit_edge_label_index_and_edge_label(data):
    g = torch.Generator().manual_seed(1)
    eli = torch.randint(0, N, (2, 100), generator=g)          # need not be graph edges
    label = torch.randn(100, 3, generator=g)
    loader = LinkNeighborLoader(data, [3], edge_label_index=eli.int(), edge_label=label,
                                batch_size=32, seed=0)
    assert len(loader) == 4
    for i, b in enumerate(loader):
        assert torch.equal(b.input_id, torch.arange(32 * i, min(32 * i + 32, 100)))
        assert torch.equal(b.n_id[b.edge_label_index], eli[:, b.input_id])
        assert torch.equal(b.edge_label, label[b.input_id])
        check_homo(data, b, [3], eli[:, b.input_id].unique())


@pytest.mark.parametrize("amount", [1, 2, 0.5])
@pytest.mark.parametrize("labels", [None, "from0", "from1"])
def test_binary_negatives(data, amount, labels):
    g = torch.Generator().manual_seed(2)
    eli = data.edge_index[:, :200]
    label = {None: None, "from0": torch.randint(0, 3, (200,), generator=g),
             "from1": torch.randint(1, 4, (200,), generator=g)}[labels]
    if label is not None:
        label[0] = label.min()      # make sure the minimum is there
    loader = LinkNeighborLoader(data, [3, 2], edge_label_index=eli, edge_label=label,
                                neg_sampling=NegativeSampling("binary", amount), batch_size=64,
                                shuffle=True, seed=0)
    for b in loader:
        B = b.input_id.numel()
        num_neg = math.ceil(B * amount)
        assert b.edge_label_index.shape == (2, B + num_neg) and b.edge_label.shape == (B + num_neg,)
        glob = b.n_id[b.edge_label_index]
        assert torch.equal(glob[:, :B], eli[:, b.input_id])                    # positives first
        assert bool((glob >= 0).all()) and bool((glob < N).all())              # negatives in range
        if label is None:        # binary: float ones then zeros
            assert b.edge_label.dtype == torch.float32
            assert torch.equal(b.edge_label, torch.cat([torch.ones(B), torch.zeros(num_neg)]))
        else:                    # PyG shifts the labels by one when the smallest is 0
            shift = 1 if labels == "from0" else 0
            assert torch.equal(b.edge_label[:B], label[b.input_id] + shift)
            assert bool((b.edge_label[B:] == 0).all()) and bool((b.edge_label[:B] > 0).all())
        check_homo(data, b, [3, 2], glob.reshape(-1).unique())


def test_neg_sampling_ratio_is_binary(data):
    kw = dict(edge_label_index=data.edge_index[:, :90], batch_size=30, seed=4)
    a = list(LinkNeighborLoader(data, [2], neg_sampling_ratio=2.0, **kw))
    b = list(LinkNeighborLoader(data, [2], neg_sampling=NegativeSampling("binary", 2.0), **kw))
    for x, y in zip(a, b):
        assert x.edge_label_index.shape == (2, 90)
        assert torch.equal(x.edge_label[30:], torch.zeros(60))
        assert same_batch(x, y, ("n_id", "e_id", "edge_label_index", "edge_label"))
    c = next(iter(LinkNeighborLoader(data, [2], neg_sampling_ratio=0.0, **kw)))
    assert c.edge_label_index.shape == (2, 30)                        # 0: no negatives


@pytest.mark.parametrize("amount", [1, 3])
@pytest.mark.parametrize("form", ["object", "str", "dict"])
def test_triplet_negatives(data, amount, form):
    eli = data.edge_index[:, 100:300]
    ns = {"object": NegativeSampling("triplet", amount), "str": "triplet",
          "dict": {"mode": "triplet", "amount": amount}}[form]
    if form == "str":
        amount = 1
    loader = LinkNeighborLoader(data, [3, 2], edge_label_index=eli, neg_sampling=ns,
                                batch_size=50, shuffle=True, seed=1)
    for b in loader:
        B = b.input_id.numel()
        assert "edge_label_index" not in b and "edge_label" not in b
        assert b.src_index.shape == (B,) and b.dst_pos_index.shape == (B,)
        assert b.dst_neg_index.shape == ((B,) if amount == 1 else (B, amount))
        assert torch.equal(b.n_id[b.src_index], eli[0, b.input_id])
        assert torch.equal(b.n_id[b.dst_pos_index], eli[1, b.input_id])
        neg = b.n_id[b.dst_neg_index]
        assert bool((neg >= 0).all()) and bool((neg < N).all())
        seeds = torch.cat([eli[:, b.input_id].reshape(-1), neg.reshape(-1)]).unique()
        check_homo(data, b, [3, 2], seeds)


@pytest.mark.parametrize("mode", ["binary", "triplet"])
def test_weighted_negatives_only_draw_positive_weights(data, mode):
    allowed = torch.tensor([3, 17, 42, 250])
    w = torch.zeros(N)
    w[allowed] = torch.tensor([1.0, 2.0, 0.5, 4.0])
    ns = NegativeSampling(mode, 2, src_weight=w if mode == "binary" else None, dst_weight=w)
    loader = LinkNeighborLoader(data, [2], edge_label_index=data.edge_index[:, :120],
                                neg_sampling=ns, batch_size=40, seed=0)
    negs = []
    for b in loader:
        B = b.input_id.numel()
        if mode == "binary":
            negs.append(b.n_id[b.edge_label_index[:, B:]].reshape(-1))
        else:
            negs.append(b.n_id[b.dst_neg_index].reshape(-1))
    negs = torch.cat(negs)
    assert negs.numel() == (480 if mode == "binary" else 240)
    assert torch.equal(negs.unique(), allowed)       # only weight > 0, and (240 draws) all of them


def test_same_seed_same_batches_and_epochs_differ(data):
    def run(seed):
        loader = LinkNeighborLoader(data, [3, 2], edge_label_index=data.edge_index[:, :300],
                                    neg_sampling="binary", batch_size=64, shuffle=True, seed=seed)
        return [list(loader) for _ in range(2)]

    a, b, c = run(7), run(7), run(8)
    keys = ("n_id", "e_id", "edge_index", "input_id", "edge_label_index", "edge_label")
    for ea, eb in zip(a, b):
        assert all(same_batch(x, y, keys) for x, y in zip(ea, eb))
    assert not all(same_batch(x, y, keys) for x, y in zip(a[0], a[1]))
    assert not all(same_batch(x, y, keys) for x, y in zip(a[0], c[0]))


def test_edge_index_int32_and_isolated_endpoints():
    d64, d32 = make_data(), make_data(torch.int32)
    eli = torch.tensor([[N - 1, 0, N - 2], [N - 3, N - 1, 5]])    # isolated endpoints too
    a = next(iter(LinkNeighborLoader(d64, [3, 3], edge_label_index=eli, batch_size=3, seed=0)))
    b = next(iter(LinkNeighborLoader(d32, [3, 3], edge_label_index=eli, batch_size=3, seed=0)))
    assert same_batch(a, b) and torch.equal(a.edge_label_index, b.edge_label_index)
    assert torch.equal(b.n_id[b.edge_label_index], eli)
    check_homo(d64, b, [3, 3], eli.unique())


def test_drop_last_transform_and_call(data):
    calls = []
    loader = LinkNeighborLoader(data, [2], edge_label_index=data.edge_index[:, :50], batch_size=16,
                                drop_last=True, transform=lambda b: calls.append(1) or b)
    assert len(loader) == 3 and [b.input_id.numel() for b in loader] == [16] * 3 and len(calls) == 3
    b = loader(torch.tensor([4, 40]))                      # PyG's loader(index)
    assert torch.equal(b.input_id, torch.tensor([4, 40]))
    assert torch.equal(b.n_id[b.edge_label_index], data.edge_index[:, [4, 40]])


def test_empty_seed_edges_and_batches_of_one(data):
    loader = LinkNeighborLoader(data, [2], edge_label_index=torch.empty(2, 0, dtype=torch.long),
                                batch_size=4)
    assert len(loader) == 0 and list(loader) == []
    eli = data.edge_index[:, :3]
    for b in LinkNeighborLoader(data, [2], edge_label_index=eli, neg_sampling="triplet",
                                batch_size=1, seed=0):
        assert b.src_index.shape == b.dst_pos_index.shape == b.dst_neg_index.shape == (1,)
        assert torch.equal(b.n_id[torch.cat([b.src_index, b.dst_pos_index])],
                           eli[:, b.input_id].view(-1))
    for b in LinkNeighborLoader(data, [2], edge_label_index=eli, neg_sampling="binary",
                                batch_size=1, seed=0):
        assert b.edge_label_index.shape == (2, 2)
        assert torch.equal(b.edge_label, torch.tensor([1.0, 0.0]))


def test_custom_input_id_is_honoured(data):
    """PyG's LinkLoader takes ``input_id=`` (through ``**kwargs``) and reports ``input_id[index]``
    for each batch, as NodeLoader does."""
    tags = torch.arange(1000, 1020)
    loader = LinkNeighborLoader(data, [2], edge_label_index=data.edge_index[:, :20], batch_size=10,
                                input_id=tags)
    b = next(iter(loader))
    assert torch.equal(b.input_id, tags[:10])


def test_disjoint_binary(data):
    """PyG's disjoint link sampling: every endpoint (negatives included) roots its own tree, in
    order, ``edge_label_index`` is ``arange(2 * (B + num_neg)).view(2, -1)`` and ``batch`` is the
    tree modulo the number of positives."""
    eli = data.edge_index[:, :40]
    loader = LinkNeighborLoader(data, [3, 2], edge_label_index=eli, neg_sampling="binary",
                                batch_size=20, disjoint=True, seed=0)
    for b in loader:
        B = b.input_id.numel()
        roots = b.n_id[:4 * B]
        assert torch.equal(b.edge_label_index, torch.arange(4 * B).view(2, -1))
        assert torch.equal(roots.view(2, -1)[:, :B], eli[:, b.input_id])
        assert torch.equal(b.batch[:4 * B], torch.arange(4 * B) % B)
        assert torch.equal(b.batch[b.edge_index[0]], b.batch[b.edge_index[1]])


@pytest.mark.parametrize("amount", [1, 2])
def test_disjoint_triplet_pairs_negatives_with_their_tree(data, amount):
    """Disjoint triplet: ``src_index`` / ``dst_pos_index`` / ``dst_neg_index`` are the roots
    ``arange`` in PyG's layout, and every negative of positive ``i`` roots a tree ``i`` (mod B)."""
    eli = data.edge_index[:, 500:560]
    loader = LinkNeighborLoader(data, [2, 2], edge_label_index=eli, disjoint=True, batch_size=16,
                                neg_sampling=NegativeSampling("triplet", amount), seed=1)
    for b in loader:
        B = b.input_id.numel()
        assert torch.equal(b.src_index, torch.arange(B))
        assert torch.equal(b.dst_pos_index, torch.arange(B, 2 * B))
        assert b.dst_neg_index.shape == ((B,) if amount == 1 else (B, amount))
        neg = b.dst_neg_index.view(B, -1)
        assert torch.equal(b.batch[neg], torch.arange(B).view(-1, 1).expand_as(neg))
        assert torch.equal(b.n_id[b.src_index], eli[0, b.input_id])
        assert torch.equal(b.n_id[b.dst_pos_index], eli[1, b.input_id])
        assert torch.equal(b.batch[b.edge_index[0]], b.batch[b.edge_index[1]])


# ------------------------------------------------------------------------------ HeteroData
def check_hetero(h, b, seeds, fanouts):
    """``seeds``: ``{node_type: sorted distinct seed ids}``."""
    for nt in h.node_types:
        n_id = b[nt].n_id
        k = seeds[nt].numel() if nt in seeds else 0
        assert b[nt].num_sampled_nodes[0] == k and torch.equal(n_id[:k], seeds.get(nt, n_id[:0]))
        assert n_id.unique().numel() == n_id.numel()
        for key, value in h[nt].items():
            assert torch.equal(b[nt][key], value[n_id]), (nt, key)
    for et in h.edge_types:
        s, _, d = et
        check_sampled(h[et].edge_index, b[s].n_id, b[d].n_id, b[et].edge_index, b[et].e_id,
                      b[s].num_sampled_nodes, b[d].num_sampled_nodes, b[et].num_sampled_edges,
                      fanouts[et], NUM[d])
        for key, value in h[et].items():
            if key != "edge_index":
                assert torch.equal(b[et][key], value[b[et].e_id])
    assert b["shop"].n_id.numel() == 0


@pytest.mark.parametrize("neg", [None, "binary", "triplet"])
def test_hetero_distinct_node_types(hetero, neg):
    loader = LinkNeighborLoader(hetero, {BUYS: [3, 2], REV_BUYS: [2, 2], SIMILAR: [-1, 1]},
                                edge_label_index=BUYS, neg_sampling=neg, batch_size=64,
                                shuffle=True, seed=0)
    fan = {BUYS: [3, 2], REV_BUYS: [2, 2], SIMILAR: [-1, 1]}
    full = hetero[BUYS].edge_index
    seen = []
    for b in loader:
        store = b[BUYS]
        B = store.input_id.numel()
        seen.append(store.input_id)
        users, items = b["user"].n_id, b["item"].n_id
        if neg == "triplet":
            assert torch.equal(users[b["user"].src_index], full[0, store.input_id])
            assert torch.equal(items[b["item"].dst_pos_index], full[1, store.input_id])
            assert b["item"].dst_neg_index.shape == (B,)
            seeds = {"user": full[0, store.input_id].unique(),
                     "item": torch.cat([full[1, store.input_id],
                                        items[b["item"].dst_neg_index]]).unique()}
        else:
            eli = store.edge_label_index
            glob = torch.stack([users[eli[0]], items[eli[1]]])
            assert torch.equal(glob[:, :B], full[:, store.input_id])
            assert eli.shape[1] == (2 * B if neg == "binary" else B)
            if neg == "binary":
                assert torch.equal(store.edge_label, torch.cat([torch.ones(B), torch.zeros(B)]))
                assert bool((glob[0] < 60).all()) and bool((glob[1] < 80).all())
            seeds = {"user": glob[0].unique(), "item": glob[1].unique()}
        check_hetero(hetero, b, seeds, fan)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(400))


@pytest.mark.parametrize("neg", [None, "binary", NegativeSampling("triplet", 2)])
def test_hetero_same_node_type(hetero, neg):
    g = torch.Generator().manual_seed(5)
    eli = torch.randint(0, 80, (2, 70), generator=g)
    label = torch.randint(0, 2, (70,), generator=g)
    label[0] = 0
    if isinstance(neg, NegativeSampling):     # triplet: no edge_label
        label = None
    loader = LinkNeighborLoader(hetero, [2, 2], edge_label_index=(SIMILAR, eli), edge_label=label,
                                neg_sampling=neg, batch_size=32, seed=3)
    fan = {et: [2, 2] for et in hetero.edge_types}
    for b in loader:
        store = b[SIMILAR]
        B = store.input_id.numel()
        items = b["item"].n_id
        if isinstance(neg, NegativeSampling):
            assert torch.equal(items[b["item"].src_index], eli[0, store.input_id])
            assert torch.equal(items[b["item"].dst_pos_index], eli[1, store.input_id])
            assert b["item"].dst_neg_index.shape == (B, 2)
            seeds = torch.cat([eli[:, store.input_id].reshape(-1),
                               items[b["item"].dst_neg_index].reshape(-1)]).unique()
        else:
            glob = items[store.edge_label_index]
            assert torch.equal(glob[:, :B], eli[:, store.input_id])
            shift = 1 if neg == "binary" else 0
            assert torch.equal(store.edge_label[:B], label[store.input_id] + shift)
            seeds = glob.reshape(-1).unique()
        check_hetero(hetero, b, {"item": seeds}, fan)


def test_hetero_edge_label_index_forms(hetero):
    full = hetero[BUYS].edge_index
    a = next(iter(LinkNeighborLoader(hetero, [2], edge_label_index=BUYS, batch_size=8, seed=0)))
    b = next(iter(LinkNeighborLoader(hetero, [2], edge_label_index=(BUYS, None), batch_size=8,
                                     seed=0)))
    c = next(iter(LinkNeighborLoader(hetero, [2], edge_label_index=(BUYS, full), batch_size=8,
                                     seed=0)))
    d = next(iter(LinkNeighborLoader(hetero, [2], edge_label_index=(("user", "item"), full),
                                     batch_size=8, seed=0)))
    for x in (b, c, d):
        assert torch.equal(x[BUYS].edge_label_index, a[BUYS].edge_label_index)
        assert torch.equal(x["item"].n_id, a["item"].n_id)


def test_hetero_seed_edge_type_the_graph_lacks(hetero):
    """Seed edges of a type with no message-passing edges (PyG allows it: the endpoints' node
    types exist); their label index lands on that edge type's store."""
    rates = ("user", "rates", "item")
    eli = torch.tensor([[0, 5, 59, 5], [79, 3, 0, 40]])
    loader = LinkNeighborLoader(hetero, [2, 2], edge_label_index=(rates, eli),
                                neg_sampling="binary", batch_size=4, seed=0)
    b = next(iter(loader))
    store = b[rates]
    glob = torch.stack([b["user"].n_id[store.edge_label_index[0]],
                        b["item"].n_id[store.edge_label_index[1]]])
    assert torch.equal(glob[:, :4], eli) and torch.equal(store.input_id, torch.arange(4))
    assert torch.equal(store.edge_label, torch.cat([torch.ones(4), torch.zeros(4)]))
    check_hetero(hetero, b, {"user": glob[0].unique(), "item": glob[1].unique()},
                 {et: [2, 2] for et in hetero.edge_types})
    assert rates not in hetero.edge_types           # the user's data is untouched


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(neg_sampling="triplet", edge_label=torch.ones(E)), ValueError, r"edge_label.*triplet"),
    (dict(edge_label_index=torch.tensor([[0, N], [1, 2]])), IndexError, r"edge_label_index.*300"),
    (dict(edge_label_index=torch.tensor([[0, 1], [1, -1]])), IndexError, r"edge_label_index"),
    (dict(edge_label_index=torch.tensor([[0.0], [1.0]])), TypeError, r"edge_label_index"),
    (dict(edge_label_index=torch.zeros(3, 4, dtype=torch.long)), ValueError, r"edge_label_index"),
    (dict(edge_label_index=[[0, 1], [1, 2]]), TypeError, r"edge_label_index"),
    (dict(edge_label=torch.ones(E - 1)), ValueError, r"edge_label"),
    (dict(edge_label=[1] * E), TypeError, r"edge_label"),
    (dict(edge_label_time=torch.zeros(E)), ValueError, r"conflicting 'edge_label_time'"),
    (dict(time_attr="t"), ValueError, r"'edge_label_time' is not set"),
    (dict(neg_sampling="quadruplet"), ValueError, r"neg_sampling"),
    (dict(neg_sampling=NegativeSampling("binary", dst_weight=torch.ones(N - 1))), ValueError,
     r"dst_weight"),
    (dict(disjoint=True, subgraph_type="induced"), ValueError, r"disjoint"),
    (dict(neighbor_sampler=object()), ValueError, r"neighbor_sampler"),
    (dict(bar=2), TypeError, r"bar"),
    (dict(num_neighbors=[-5]), ValueError, r"num_neighbors"),
])
def test_errors(data, kwargs, exc, match):
    kwargs = dict(kwargs)
    nn = kwargs.pop("num_neighbors", [2])
    with pytest.raises(exc, match=match) as info:
        LinkNeighborLoader(data, nn, **kwargs)
    assert str(info.value).startswith("LinkNeighborLoader")


def test_hetero_errors(hetero):
    with pytest.raises(ValueError, match="edge_label_index"):
        LinkNeighborLoader(hetero, [2])
    with pytest.raises(ValueError, match="edge_label_index"):     # no such edges to default to
        LinkNeighborLoader(hetero, [2], edge_label_index=("user", "rates", "item"))
    with pytest.raises(KeyError, match="edge_label_index"):       # no such node type
        LinkNeighborLoader(hetero, [2], edge_label_index=(("user", "rates", "movie"),
                                                          torch.zeros(2, 1, dtype=torch.long)))
    with pytest.raises(IndexError, match="edge_label_index.*destination"):
        LinkNeighborLoader(hetero, [2], edge_label_index=(BUYS, torch.tensor([[0], [80]])))
    with pytest.raises(IndexError, match="edge_label_index.*source"):
        LinkNeighborLoader(hetero, [2], edge_label_index=(BUYS, torch.tensor([[60], [0]])))
    w = torch.ones(80)                       # sized for items, used for the users
    with pytest.raises(ValueError, match="src_weight"):
        LinkNeighborLoader(hetero, [2], edge_label_index=BUYS,
                           neg_sampling=NegativeSampling("binary", src_weight=w))


# ------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("neg", ["binary", "triplet"])
def test_gpu_matches_cpu(data, neg):
    kw = dict(edge_label_index=data.edge_index[:, :256], neg_sampling=neg, batch_size=64,
              shuffle=True, seed=9)
    keys = ("n_id", "e_id", "edge_index", "input_id") + (
        ("edge_label_index", "edge_label") if neg == "binary" else
        ("src_index", "dst_pos_index", "dst_neg_index"))
    for use_uva in (None, False):
        gpu = LinkNeighborLoader(data, [3, 2], device="cuda", use_uva=use_uva, **kw)
        cpu = LinkNeighborLoader(data, [3, 2], **kw)
        for g, c in zip(gpu, cpu):
            assert g.n_id.is_cuda and g.x.is_cuda
            g = g.to("cpu")
            assert same_batch(g, c, keys)
            assert torch.equal(g.x, data.x[g.n_id])
            assert torch.equal(g.edge_attr, data.edge_attr[g.e_id])
