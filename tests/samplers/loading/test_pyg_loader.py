"""samplers.pyg.NeighborLoader against PyG's documented batch semantics, checked on the graph itself
(PyG's own loader needs pyg-lib / torch-sparse, absent here): seeds first, ``n_id`` / ``e_id`` /
``input_id``, hop-by-hop sampling (hop ``k`` expands only the nodes hop ``k - 1`` added), fanouts,
attribute slicing, subgraph types, epochs, heterogeneous graphs, errors, and a GraphSAGE that
learns. CPU here; GPU variants under ``gpu``."""
from __future__ import annotations

import itertools
import warnings

import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Data, HeteroData  # noqa: E402
from torch_geometric.sampler import SamplerOutput, HeteroSamplerOutput  # noqa: E402

from samplers.loading import _core as _dataloader  # noqa: E402
from samplers.pyg import NeighborLoader  # noqa: E402

N, E = 400, 2400
NO_IN = 30          # the last NO_IN nodes have no in-edges ...
ISOLATED = 10       # ... and the last ISOLATED of them no edges at all


def make_data(idtype=torch.int64, seed=0) -> Data:
    """A random multigraph (parallel edges and self loops allowed) with node attributes of several
    dtypes and ranks, edge attributes, graph-level attributes and nodes without in-edges."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, N - ISOLATED, (E,), generator=g)
    dst = torch.randint(0, N - NO_IN, (E,), generator=g)
    data = Data(edge_index=torch.stack([src, dst]).to(idtype))
    data.x = torch.randn(N, 8, generator=g)
    data.y = torch.randint(0, 5, (N,), generator=g)
    data.train_mask = torch.rand(N, generator=g) < 0.3
    data.x_half = torch.randn(N, 5, generator=g).half()
    data.x_bf16 = torch.randn(N, 3, generator=g).bfloat16()
    data.x_int = torch.randint(-100, 100, (N, 2), generator=g, dtype=torch.int32)
    data.pos3 = torch.randn(N, 3, 2, generator=g)                       # a 3-D node attribute
    data.edge_attr = torch.randn(E, 4, generator=g)
    data.edge_weight = torch.rand(E, generator=g)
    data.edge_flag = torch.rand(E, generator=g) < 0.5
    data.graph_feat = torch.randn(1, 6, generator=g)                    # graph-level
    data.name = "toy"
    return data


NODE_KEYS = ("x", "y", "train_mask", "x_half", "x_bf16", "x_int", "pos3")
EDGE_KEYS = ("edge_attr", "edge_weight", "edge_flag")


@pytest.fixture(scope="module")
def data():
    return make_data()


def offsets(counts):
    return list(itertools.accumulate([0] + list(counts)))


def check_hops(full, n_id, edge_index, e_id, nsn, nse, fanouts, replace, num_dst_nodes=None):
    """One edge type of a sampled subgraph against the full ``[2, E]`` edge list: every edge real
    and ``e_id`` right, PyG's hop semantics and the fanouts. ``n_id`` / ``nsn``: the node ids and
    per-hop counts of the (source, destination) types; for one node type pass the same twice."""
    (src_ids, dst_ids), (src_nsn, dst_nsn) = n_id, nsn
    full = full.long()
    assert edge_index.dtype == torch.int64 and e_id.dtype == torch.int64
    assert edge_index.shape == (2, e_id.numel())
    assert torch.equal(src_ids[edge_index[0]], full[0, e_id])
    assert torch.equal(dst_ids[edge_index[1]], full[1, e_id])
    assert len(nse) == len(fanouts) and sum(nse) == e_id.numel()
    src_off, dst_off, e_off = offsets(src_nsn), offsets(dst_nsn), offsets(nse)
    indeg = torch.bincount(full[1], minlength=num_dst_nodes or 0)
    for k, fan in enumerate(fanouts):
        row, col = edge_index[:, e_off[k]:e_off[k + 1]]
        eid = e_id[e_off[k]:e_off[k + 1]]
        lo, hi = dst_off[k], dst_off[k + 1]
        # hop k expands exactly the destination nodes hop k - 1 added (the seeds at hop 0) ...
        assert bool(((col >= lo) & (col < hi)).all()), f"hop {k}"
        # ... and reaches only nodes known before or added by this hop
        assert bool((row < src_off[k + 2]).all()), f"hop {k}"
        got = torch.bincount(col - lo, minlength=hi - lo)
        want = indeg[dst_ids[lo:hi]] if indeg.numel() else torch.zeros(hi - lo, dtype=torch.long)
        if fan == -1:
            expect = want
        elif replace:
            expect = torch.where(want > 0, torch.full_like(want, fan), want)
        else:
            expect = want.clamp(max=fan)
        assert torch.equal(got, expect), f"hop {k} fanout {fan}"
        # grouped by destination, in node order (as pyg-lib emits them)
        assert bool((col[1:] >= col[:-1]).all()), f"hop {k}"
        if not replace:   # without replacement: distinct in-edges of each node
            pairs = col * max(full.shape[1], 1) + eid
            assert pairs.unique().numel() == pairs.numel()
        if fan == -1:     # all in-edges of the expanded nodes
            mine = torch.isin(full[1], dst_ids[lo:hi])
            assert torch.equal(eid.sort().values, mine.nonzero().view(-1))


def check_batch(data, b, seeds, fanouts, replace=False):
    """A homogeneous batch against ``data``: PyG's layout and semantics, attributes sliced."""
    bs = b.batch_size
    n_id = b.n_id
    assert isinstance(b, Data) and n_id.dtype == torch.int64
    assert bs == seeds.numel() and torch.equal(n_id[:bs], seeds.long())
    assert n_id.unique().numel() == n_id.numel()
    nsn = b.num_sampled_nodes
    assert len(nsn) == len(fanouts) + 1 and nsn[0] == bs and sum(nsn) == n_id.numel()
    check_hops(data.edge_index, (n_id, n_id), b.edge_index, b.e_id, (nsn, nsn),
               b.num_sampled_edges, fanouts, replace, data.num_nodes)
    # the nodes each hop adds are exactly its new sources, numbered in order of first appearance
    n_off, e_off = offsets(nsn), offsets(b.num_sampled_edges)
    for k in range(len(fanouts)):
        row = b.edge_index[0, e_off[k]:e_off[k + 1]]
        new = row[row >= n_off[k + 1]]
        uniq, inv = torch.unique(new, return_inverse=True)
        first = torch.full((uniq.numel(),), new.numel()).scatter_reduce(
            0, inv, torch.arange(new.numel()), "amin")
        assert torch.equal(uniq[first.argsort()], torch.arange(n_off[k + 1], n_off[k + 2]))
    check_attrs(data, b)


def check_attrs(data, b):
    assert b.num_nodes == b.n_id.numel()
    for key in NODE_KEYS:
        assert b[key].dtype == data[key].dtype
        assert torch.equal(b[key], data[key][b.n_id]), key
    for key in EDGE_KEYS:
        assert torch.equal(b[key], data[key][b.e_id]), key
    assert torch.equal(b.graph_feat.cpu(), data.graph_feat) and b.name == "toy"


def same_batch(a, b):
    return (torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)
            and torch.equal(a.e_id, b.e_id))


# ------------------------------------------------------------------------------ Data: semantics
@pytest.mark.parametrize("fanouts,replace", [([5, 3], False), ([4, 3, 2], False), ([-1, 2], False),
                                             ([3, -1], False), ([6, 4], True), ([0, 3], False),
                                             ([1000], False), ([-1, 3], True)],
                         ids=["5-3", "4-3-2", "all-2", "3-all", "replace", "zero-hop", "huge",
                              "replace-all"])
def test_batches_follow_pyg_semantics(data, fanouts, replace):
    seeds = torch.randperm(N, generator=torch.Generator().manual_seed(1))[:150]
    loader = NeighborLoader(data, fanouts, input_nodes=seeds, batch_size=64, replace=replace,
                            seed=0)
    assert len(loader) == 3 and isinstance(loader, torch.utils.data.DataLoader)
    got = []
    for i, b in enumerate(loader):
        check_batch(data, b, seeds[64 * i:64 * (i + 1)], fanouts, replace)
        assert torch.equal(b.input_id, torch.arange(64 * i, min(64 * (i + 1), 150)))
        if fanouts[0] == 0:
            assert b.num_sampled_edges[0] == 0 and b.num_sampled_nodes[1] == 0
        got.append(b.batch_size)
    assert got == [64, 64, 22]


def test_replace_draws_repeated_edges(data):
    """With replacement, a node with fewer in-edges than the fanout gets some edge twice."""
    loader = NeighborLoader(data, [25], batch_size=N, replace=True, seed=0)
    b = next(iter(loader))
    check_batch(data, b, torch.arange(N), [25], replace=True)
    assert b.e_id.unique().numel() < b.e_id.numel()


@pytest.mark.parametrize("form", ["ids", "mask", "list", "none"])
def test_input_nodes_and_input_id(data, form):
    mask = data.train_mask
    ids = mask.nonzero().view(-1)
    inp = {"ids": ids, "mask": mask, "list": ids.tolist(), "none": None}[form]
    loader = NeighborLoader(data, [3, 2], input_nodes=inp, batch_size=32, shuffle=True, seed=5)
    seeds = torch.arange(N) if form == "none" else ids
    seen, positions = [], []
    for b in loader:
        bs = b.batch_size
        assert b.input_id.dtype == torch.int64 and b.input_id.numel() == bs
        if form == "mask":     # PyG: a mask's input_id is the node id
            assert torch.equal(b.input_id, b.n_id[:bs])
            positions.append(torch.searchsorted(ids, b.input_id))
        else:                  # ids (or None): the position in input_nodes
            assert torch.equal(seeds[b.input_id], b.n_id[:bs])
            positions.append(b.input_id)
        seen.append(b.n_id[:bs])
        check_batch(data, b, b.n_id[:bs], [3, 2])
    # every seed exactly once per epoch, shuffled
    seen, positions = torch.cat(seen), torch.cat(positions)
    assert torch.equal(seen.sort().values, seeds)
    assert torch.equal(positions.sort().values, torch.arange(seeds.numel()))
    assert not torch.equal(seen, seeds)


def test_custom_input_id_is_honoured(data):
    ids = torch.tensor([5, 17, 3, 250, 99])
    tags = torch.tensor([100, 101, 102, 103, 104])
    b = next(iter(NeighborLoader(data, [2], input_nodes=ids, input_id=tags, batch_size=5)))
    assert torch.equal(b.input_id, tags) and torch.equal(b.n_id[:5], ids)
    mask = torch.zeros(N, dtype=torch.bool)
    mask[ids] = True
    b = next(iter(NeighborLoader(data, [2], input_nodes=mask, input_id=tags, batch_size=5)))
    assert torch.equal(b.input_id, tags) and torch.equal(b.n_id[:5], ids.sort().values)


def test_mask_and_ids_give_the_same_batches(data):
    ids = data.train_mask.nonzero().view(-1)
    a = NeighborLoader(data, [4, 2], input_nodes=data.train_mask, batch_size=20, shuffle=True,
                       seed=11)
    b = NeighborLoader(data, [4, 2], input_nodes=ids, batch_size=20, shuffle=True, seed=11)
    n = 0
    for x, y in zip(a, b):
        assert same_batch(x, y)
        assert torch.equal(x.input_id, ids[y.input_id])
        n += 1
    assert n == len(a) == len(b) > 1


def test_attributes_are_sliced_and_graph_attributes_copied(data):
    b = next(iter(NeighborLoader(data, [5, 5], batch_size=50, seed=0)))
    check_attrs(data, b)
    assert b.pos3.shape == (b.n_id.numel(), 3, 2) and b.x_bf16.dtype == torch.bfloat16
    assert b.edge_attr.shape == (b.e_id.numel(), 4)
    assert b.graph_feat is data.graph_feat              # graph-level: copied by reference
    # the user's data is untouched
    assert data.num_nodes == N and data.edge_index.shape == (2, E) and "n_id" not in data


def test_edge_index_int32(data):
    d32 = make_data(torch.int32)
    assert d32.edge_index.dtype == torch.int32
    for b in NeighborLoader(d32, [4, 3], batch_size=100, seed=0):
        check_batch(d32, b, b.n_id[:b.batch_size], [4, 3])
    a = next(iter(NeighborLoader(data, [4, 3], batch_size=100, seed=0)))
    b = next(iter(NeighborLoader(d32, [4, 3], batch_size=100, seed=0)))
    assert same_batch(a, b)


def test_isolated_seeds_and_nodes_without_in_edges(data):
    seeds = torch.arange(N - NO_IN, N)     # no in-edges: nothing to sample
    b = next(iter(NeighborLoader(data, [5, 5], input_nodes=seeds, batch_size=NO_IN, seed=0)))
    assert torch.equal(b.n_id, seeds) and b.edge_index.shape == (2, 0) and b.e_id.numel() == 0
    assert b.num_sampled_nodes == [NO_IN, 0, 0] and b.num_sampled_edges == [0, 0]
    check_attrs(data, b)


def test_graph_without_edges():
    d = Data(x=torch.randn(7, 3), edge_index=torch.empty(2, 0, dtype=torch.long))
    loader = NeighborLoader(d, [3, 2], batch_size=3)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    for i, b in enumerate(batches):
        seeds = torch.arange(3 * i, min(3 * i + 3, 7))
        assert torch.equal(b.n_id, seeds) and torch.equal(b.x, d.x[seeds])
        assert b.edge_index.shape == (2, 0) and b.num_sampled_edges == [0, 0]
        assert b.num_sampled_nodes == [seeds.numel(), 0, 0]


def test_zero_hops_and_numpy_seeds(data):
    import numpy as np

    b = next(iter(NeighborLoader(data, [], input_nodes=np.array([5, 3, 9]), batch_size=8)))
    assert torch.equal(b.n_id, torch.tensor([5, 3, 9])) and torch.equal(b.input_id, torch.arange(3))
    assert b.num_sampled_nodes == [3] and b.num_sampled_edges == [] and b.edge_index.shape == (2, 0)
    check_attrs(data, b)


def test_empty_graph():
    d = Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=0)
    loader = NeighborLoader(d, [3, 2], batch_size=4)
    assert len(loader) == 0 and list(loader) == []
    d = make_data()
    loader = NeighborLoader(d, [3], input_nodes=torch.empty(0, dtype=torch.long), batch_size=4)
    assert len(loader) == 0 and list(loader) == []


@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_size_drop_last_and_len(data, drop_last):
    seeds = torch.arange(0, 100, 2)                                # 50 seeds
    loader = NeighborLoader(data, [2], input_nodes=seeds, batch_size=16, drop_last=drop_last,
                            shuffle=True, seed=3)
    sizes = [b.batch_size for b in loader]
    assert len(loader) == len(sizes) == (3 if drop_last else 4)
    assert sizes == ([16] * 3 if drop_last else [16, 16, 16, 2])
    big = NeighborLoader(data, [2], input_nodes=seeds, batch_size=1000, drop_last=drop_last)
    sizes = [b.batch_size for b in big]
    assert len(big) == len(sizes) and sizes == ([] if drop_last else [50])


def test_same_seed_same_batches_and_epochs_differ(data):
    def epochs(loader):
        return [list(loader) for _ in range(2)]

    kw = dict(input_nodes=data.train_mask, batch_size=32, shuffle=True)
    a = epochs(NeighborLoader(data, [5, 3], seed=42, **kw))
    b = epochs(NeighborLoader(data, [5, 3], seed=42, **kw))
    c = epochs(NeighborLoader(data, [5, 3], seed=43, **kw))
    for ea, eb in zip(a, b):
        assert len(ea) == len(eb)
        assert all(same_batch(x, y) and torch.equal(x.input_id, y.input_id)
                   for x, y in zip(ea, eb))
    assert not all(same_batch(x, y) for x, y in zip(a[0], a[1]))   # epochs differ
    assert not all(same_batch(x, y) for x, y in zip(a[0], c[0]))   # seeds differ
    # without shuffling the seed order is fixed but the neighbour draws still differ per epoch
    loader = NeighborLoader(data, [5, 3], batch_size=N, seed=1)
    x, y = next(iter(loader)), next(iter(loader))
    assert torch.equal(x.n_id[:N], y.n_id[:N]) and not torch.equal(x.e_id, y.e_id)


def test_trim_to_layer_and_trimmed_graphsage_agree(data):
    """PyG's trim_to_layer relies on the hop layout: what it keeps for layer ``l`` is closed (edges
    only reference kept nodes) and a GraphSAGE run with trimming gives the seeds the same output."""
    from torch_geometric.nn import GraphSAGE
    from torch_geometric.utils import trim_to_layer

    b = next(iter(NeighborLoader(data, [4, 3, 2], batch_size=40, seed=0)))
    nsn, nse = b.num_sampled_nodes, b.num_sampled_edges
    x, ei, ea = b.x, b.edge_index, b.edge_attr
    for layer in range(3):     # applied layer after layer, as BasicGNN does
        x, ei, ea = trim_to_layer(layer, nsn, nse, x, ei, ea)
        keep_n, keep_e = sum(nsn[:len(nsn) - layer]), sum(nse[:len(nse) - layer])
        assert x.shape[0] == keep_n and ei.shape[1] == keep_e and ea.shape[0] == keep_e
        assert torch.equal(ei, b.edge_index[:, :keep_e]) and int(ei.max()) < keep_n
    torch.manual_seed(0)
    model = GraphSAGE(8, 16, num_layers=3, out_channels=4).eval()
    with torch.no_grad():
        full = model(b.x, b.edge_index)[:b.batch_size]
        trimmed = model(b.x, b.edge_index, num_sampled_nodes_per_hop=nsn,
                        num_sampled_edges_per_hop=nse)[:b.batch_size]
    torch.testing.assert_close(trimmed, full)


def test_call_makes_one_batch_of_given_positions(data):
    """PyG's ``loader(index)``: the batch of the seeds at those positions, made now."""
    ids = data.train_mask.nonzero().view(-1)
    loader = NeighborLoader(data, [3, 2], input_nodes=ids, batch_size=16, seed=0)
    pos = torch.tensor([7, 0, 30, 2])
    b = loader(pos)
    assert b.batch_size == 4 and torch.equal(b.input_id, pos)
    check_batch(data, b, ids[pos], [3, 2])
    b = loader([5])
    assert torch.equal(b.n_id[:1], ids[5:6])
    with pytest.raises(IndexError, match="index"):
        loader(torch.tensor([ids.numel()]))
    with pytest.raises(TypeError, match="index"):
        loader(torch.tensor([0.0]))


def test_call_with_repeated_positions_names_the_argument(data):
    loader = NeighborLoader(data, [3], batch_size=8, seed=0)
    with pytest.raises(ValueError) as info:
        loader(torch.tensor([4, 1, 4]))
    assert str(info.value).startswith("NeighborLoader") and "index" in str(info.value)


# ------------------------------------------------------------------------------ disjoint
@pytest.mark.parametrize("fanouts,replace", [([4, 3], False), ([-1, 2], False), ([3, 2], True)])
def test_disjoint_one_tree_per_seed(data, fanouts, replace):
    """PyG's ``disjoint=True``: every seed grows its own subgraph; ``batch`` names the tree of each
    node, edges stay inside a tree, a node appears at most once per tree (possibly in several
    trees), and each tree follows the hop semantics and fanouts."""
    seeds = torch.arange(0, 120, 3)
    loader = NeighborLoader(data, fanouts, input_nodes=seeds, batch_size=20, replace=replace,
                            disjoint=True, seed=0)
    repeated = False
    for i, b in enumerate(loader):
        bs, n_id, tree = b.batch_size, b.n_id, b.batch
        assert torch.equal(n_id[:bs], seeds[20 * i:20 * (i + 1)])
        assert tree.dtype == torch.int64 and tree.shape == n_id.shape
        assert torch.equal(tree[:bs], torch.arange(bs)) and int(tree.max()) < bs
        pairs = tree * N + n_id
        assert pairs.unique().numel() == pairs.numel()             # once per tree ...
        repeated |= n_id.unique().numel() < n_id.numel()            # ... but maybe in several
        ei = b.edge_index
        assert torch.equal(tree[ei[0]], tree[ei[1]])               # edges stay in their tree
        nsn = b.num_sampled_nodes
        assert nsn[0] == bs and sum(nsn) == n_id.numel()
        check_hops(data.edge_index, (n_id, n_id), ei, b.e_id, (nsn, nsn), b.num_sampled_edges,
                   fanouts, replace, N)
        check_attrs(data, b)
    assert repeated      # with 20 seeds and these fanouts some node is reached from two seeds


def test_disjoint_trees_match_single_seed_draws(data):
    """Draws are keyed by (batch, hop, node): a seed's hop-1 neighbours in its own tree are the
    ones the non-disjoint loader draws for it in the same batch."""
    kw = dict(input_nodes=torch.arange(0, 60, 2), batch_size=10, seed=3)
    for d, b in zip(NeighborLoader(data, [4], disjoint=True, **kw),
                    NeighborLoader(data, [4], **kw)):
        for t in range(b.batch_size):
            mine = d.batch[d.edge_index[1]] == t
            theirs = b.edge_index[1] == t
            assert torch.equal(d.e_id[mine].sort().values, b.e_id[theirs].sort().values)


def test_hetero_disjoint(hetero):
    b = next(iter(NeighborLoader(hetero, [2, 2], input_nodes="paper", batch_size=12,
                                 disjoint=True, seed=0)))
    assert torch.equal(b["paper"].batch[:12], torch.arange(12))
    for nt in hetero.node_types:
        assert b[nt].batch.shape == b[nt].n_id.shape
        pairs = b[nt].batch * 1000 + b[nt].n_id
        assert pairs.unique().numel() == pairs.numel()
    for et in hetero.edge_types:
        s, _, d = et
        ei = b[et].edge_index
        assert torch.equal(b[s].batch[ei[0]], b[d].batch[ei[1]])
        full = hetero[et].edge_index
        assert torch.equal(b[s].n_id[ei[0]], full[0, b[et].e_id])
        assert torch.equal(b[d].n_id[ei[1]], full[1, b[et].e_id])


# ------------------------------------------------------------------------------ subgraph types
def test_bidirectional(data):
    kw = dict(batch_size=60, seed=7)
    directed = list(NeighborLoader(data, [4, 3], **kw))
    loader = NeighborLoader(data, [4, 3], subgraph_type="bidirectional", **kw)
    bidir = list(loader)
    assert len(directed) == len(bidir)
    # the GPU hand-over reaches _orig_edge_index too (set from a sampler output's orig_row /
    # orig_col; PyG keeps it in the store's __dict__, not among the store's values)
    b0 = bidir[0]
    b0._orig_edge_index = torch.zeros(2, 3, dtype=torch.int64)
    assert any(t is b0._orig_edge_index for t in loader._batch_tensors(b0))
    for d, b in zip(directed, bidir):
        assert torch.equal(d.n_id, b.n_id)
        # PyG's to_bidirectional drops the per-hop counts (the merged edges are not per hop)
        assert "num_sampled_nodes" not in b and "num_sampled_edges" not in b
        ei = b.edge_index
        pairs = set(map(tuple, ei.t().tolist()))
        assert len(pairs) == ei.shape[1]                         # coalesced
        assert pairs == {(c, r) for r, c in pairs}                 # every edge has its reverse
        want = set(map(tuple, d.edge_index.t().tolist()))
        assert pairs == want | {(c, r) for r, c in want}
        # every edge is a data edge in one direction or the other
        full = set(map(tuple, data.edge_index.t().tolist()))
        glob = b.n_id[ei].t().tolist()
        assert all(tuple(p) in full or (p[1], p[0]) in full for p in glob)
        check_attrs(data, d)


@pytest.mark.parametrize("how", ["subgraph_type", "directed"])
def test_induced(data, how):
    from torch_geometric.utils import subgraph

    if how == "subgraph_type":
        loader = NeighborLoader(data, [3, 2], subgraph_type="induced", batch_size=50, seed=2)
    else:
        with pytest.warns(DeprecationWarning, match="directed"):
            loader = NeighborLoader(data, [3, 2], directed=False, batch_size=50, seed=2)
    directed = NeighborLoader(data, [3, 2], batch_size=50, seed=2)
    for b, d in zip(loader, directed):
        assert torch.equal(b.n_id, d.n_id)                  # the same nodes ...
        ei, _, mask = subgraph(b.n_id, data.edge_index, relabel_nodes=True, num_nodes=N,
                               return_edge_mask=True)       # ... and every edge among them
        eid = mask.nonzero().view(-1)
        order = b.e_id.argsort()
        assert torch.equal(b.e_id[order], eid)
        assert torch.equal(b.edge_index[:, order], ei)
        for key in EDGE_KEYS:
            assert torch.equal(b[key], data[key][b.e_id])


# ------------------------------------------------------------------------------ hooks & options
def test_transform_and_transform_sampler_output(data):
    calls = {"out": 0, "batch": 0}

    def tso(out):
        assert isinstance(out, SamplerOutput) and out.node.dtype == torch.int64
        calls["out"] += 1
        return out

    def tf(b):
        calls["batch"] += 1
        b.tagged = True
        return b

    loader = NeighborLoader(data, [3], batch_size=100, transform=tf, transform_sampler_output=tso)
    batches = list(loader)
    assert calls == {"out": 4, "batch": 4} and all(b.tagged for b in batches)


def test_num_workers_warns_once_and_works(data, monkeypatch):
    monkeypatch.setattr(_dataloader, "_workers_warned", False)
    with pytest.warns(UserWarning, match="num_workers=2"):
        loader = NeighborLoader(data, [3, 2], batch_size=64, num_workers=2, seed=0,
                                persistent_workers=True, pin_memory=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = NeighborLoader(data, [3, 2], batch_size=64, num_workers=2, seed=0)
        batches = list(loader)
    assert not [w for w in caught if "num_workers" in str(w.message)]     # once per process
    assert len(batches) == len(loader) == 7
    assert all(same_batch(x, y) for x, y in zip(batches, again))
    for b in batches:
        check_batch(data, b, b.n_id[:b.batch_size], [3, 2])


def test_prefetch_off_and_generator(data):
    a = NeighborLoader(data, [3, 2], batch_size=64, shuffle=True, prefetch=0,
                       generator=torch.Generator().manual_seed(9))
    seen = torch.cat([b.n_id[:b.batch_size] for b in a])
    assert torch.equal(seen.sort().values, torch.arange(N))


# ------------------------------------------------------------------------------ HeteroData
AUTHOR_PAPER = ("author", "writes", "paper")
PAPER_AUTHOR = ("paper", "rev_writes", "author")
CITES = ("paper", "cites", "paper")
PAPER_VENUE = ("paper", "published_in", "venue")
VENUE_PAPER = ("venue", "rev_published_in", "paper")
HNUM = {"author": 80, "paper": 120, "venue": 6, "topic": 9}


def make_hetero(seed=0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    h = HeteroData()
    h["author"].x = torch.randn(80, 4, generator=g)
    h["paper"].x = torch.randn(120, 6, generator=g)
    h["paper"].y = torch.randint(0, 3, (120,), generator=g)
    h["paper"].train_mask = torch.rand(120, generator=g) < 0.4
    h["paper"].emb = torch.randn(120, 2, 3, generator=g).half()
    h["venue"].x = torch.randn(6, 2, generator=g)
    h["topic"].x = torch.randn(9, 3, generator=g)                      # a node type without edges
    w = torch.stack([torch.randint(0, 80, (500,), generator=g),
                     torch.randint(0, 110, (500,), generator=g)])     # papers 110.. unwritten
    h[AUTHOR_PAPER].edge_index = w
    h[AUTHOR_PAPER].edge_attr = torch.randn(500, 3, generator=g)
    h[PAPER_AUTHOR].edge_index = w.flip(0)
    h[CITES].edge_index = torch.randint(0, 120, (2, 600), generator=g)
    h[CITES].edge_weight = torch.rand(600, generator=g)
    p = torch.stack([torch.arange(120), torch.randint(0, 6, (120,), generator=g)])
    h[PAPER_VENUE].edge_index = p
    h[VENUE_PAPER].edge_index = p.flip(0)
    h.graph_name = "hetero-toy"
    return h


@pytest.fixture(scope="module")
def hetero():
    return make_hetero()


def check_hetero(h, b, input_type, seeds, fanouts):
    """A HeteroData batch against ``h``; ``fanouts``: ``{edge_type: [per hop]}``."""
    assert isinstance(b, HeteroData)
    num_hops = len(next(iter(fanouts.values())))
    store = b[input_type]
    assert store.batch_size == seeds.numel() and torch.equal(store.n_id[:seeds.numel()], seeds)
    assert store.input_id.numel() == seeds.numel()
    for nt in h.node_types:
        n_id, nsn = b[nt].n_id, b[nt].num_sampled_nodes
        assert n_id.dtype == torch.int64 and n_id.unique().numel() == n_id.numel()
        assert len(nsn) == num_hops + 1 and sum(nsn) == n_id.numel()
        assert nsn[0] == (seeds.numel() if nt == input_type else 0)
        for key, value in h[nt].items():
            assert torch.equal(b[nt][key], value[n_id]), (nt, key)
    for et in h.edge_types:
        s, _, d = et
        check_hops(h[et].edge_index, (b[s].n_id, b[d].n_id), b[et].edge_index, b[et].e_id,
                   (b[s].num_sampled_nodes, b[d].num_sampled_nodes),
                   b[et].num_sampled_edges, fanouts[et], False, h[d].num_nodes)
        for key, value in h[et].items():
            if key != "edge_index":
                assert torch.equal(b[et][key], value[b[et].e_id]), (et, key)
    # the nodes each hop adds are exactly the new sources over all edge types into that type
    for nt in h.node_types:
        off = offsets(b[nt].num_sampled_nodes)
        for k in range(num_hops):
            new = [b[et].edge_index[0, offsets(b[et].num_sampled_edges)[k]:
                                    offsets(b[et].num_sampled_edges)[k + 1]]
                   for et in h.edge_types if et[0] == nt]
            new = torch.cat(new) if new else torch.empty(0, dtype=torch.long)
            assert torch.equal(new[new >= off[k + 1]].unique(),
                               torch.arange(off[k + 1], off[k + 2]))
    assert b.graph_name == "hetero-toy"
    for nt in h.node_types:          # batch_size / input_id only on the input type, as PyG
        assert ("batch_size" in b[nt]) == ("input_id" in b[nt]) == (nt == input_type)
    assert b["topic"].n_id.numel() == 0 and b["topic"].x.shape == (0, 3)


@pytest.mark.parametrize("form", ["type", "ids", "mask", "none"])
def test_hetero_input_nodes(hetero, form):
    mask = hetero["paper"].train_mask
    ids = mask.nonzero().view(-1)
    inp = {"type": "paper", "ids": ("paper", ids), "mask": ("paper", mask),
           "none": ("paper", None)}[form]
    seeds = ids if form in ("ids", "mask") else torch.arange(120)
    loader = NeighborLoader(hetero, [3, 2], input_nodes=inp, batch_size=16, shuffle=True, seed=4)
    fan = {et: [3, 2] for et in hetero.edge_types}
    seen = []
    for b in loader:
        store = b["paper"]
        bs = store.batch_size
        check_hetero(hetero, b, "paper", store.n_id[:bs], fan)
        if form == "mask":
            assert torch.equal(store.input_id, store.n_id[:bs])
        else:
            assert torch.equal(seeds[store.input_id], store.n_id[:bs])
        seen.append(store.n_id[:bs])
    assert torch.equal(torch.cat(seen).sort().values, seeds)
    assert len(loader) == -(-seeds.numel() // 16)


def test_hetero_num_neighbors_per_edge_type(hetero):
    fan = {AUTHOR_PAPER: [2, 1], PAPER_AUTHOR: [3, 0], CITES: [-1, 2], PAPER_VENUE: [1, 1],
           VENUE_PAPER: [0, 4]}
    loader = NeighborLoader(hetero, fan, input_nodes=("author", torch.arange(0, 80, 3)),
                            batch_size=9, seed=0)
    for b in loader:
        check_hetero(hetero, b, "author", b["author"].n_id[:b["author"].batch_size], fan)
        assert b[VENUE_PAPER].num_sampled_edges[0] == 0
        assert b[PAPER_AUTHOR].num_sampled_edges[1] == 0
    # the per-type counts are lists per hop
    assert isinstance(b.num_sampled_nodes_dict["venue"], list)


def test_hetero_seeds_of_a_type_without_edges(hetero):
    b = next(iter(NeighborLoader(hetero, [3, 2], input_nodes=("topic", torch.tensor([8, 0, 4])),
                                 batch_size=8)))
    assert torch.equal(b["topic"].n_id, torch.tensor([8, 0, 4])) and b["topic"].batch_size == 3
    assert torch.equal(b["topic"].x, hetero["topic"].x[[8, 0, 4]])
    assert all(b[nt].n_id.numel() == 0 for nt in ("author", "paper", "venue"))
    assert all(b[et].edge_index.shape == (2, 0) for et in hetero.edge_types)


def test_hetero_same_seed_same_batches(hetero):
    kw = dict(input_nodes="paper", batch_size=30, shuffle=True, seed=8)
    a, b = list(NeighborLoader(hetero, [3, 2], **kw)), list(NeighborLoader(hetero, [3, 2], **kw))
    for x, y in zip(a, b):
        for nt in hetero.node_types:
            assert torch.equal(x[nt].n_id, y[nt].n_id)
        for et in hetero.edge_types:
            assert torch.equal(x[et].e_id, y[et].e_id)
            assert torch.equal(x[et].edge_index, y[et].edge_index)


def test_hetero_bidirectional_and_induced(hetero):
    from torch_geometric.utils import bipartite_subgraph

    kw = dict(input_nodes="paper", batch_size=40, seed=3)
    base = next(iter(NeighborLoader(hetero, [2, 2], **kw)))
    bidir = next(iter(NeighborLoader(hetero, [2, 2], subgraph_type="bidirectional", **kw)))
    for fwd, rev in ((AUTHOR_PAPER, PAPER_AUTHOR), (PAPER_VENUE, VENUE_PAPER)):
        want = set(map(tuple, base[fwd].edge_index.t().tolist())) | \
            {(c, r) for r, c in base[rev].edge_index.t().tolist()}
        assert set(map(tuple, bidir[fwd].edge_index.t().tolist())) == want
        assert set(map(tuple, bidir[rev].edge_index.t().tolist())) == {(c, r) for r, c in want}
    cites = set(map(tuple, bidir[CITES].edge_index.t().tolist()))
    assert cites == {(c, r) for r, c in cites}
    for et in hetero.edge_types:     # as PyG: the merged edges have no ids, so no edge attributes
        assert "e_id" not in bidir[et] and "edge_attr" not in bidir[et]
        assert "edge_weight" not in bidir[et]
    induced = next(iter(NeighborLoader(hetero, [2, 2], subgraph_type="induced", **kw)))
    for et in hetero.edge_types:
        s, _, d = et
        sub, _, mask = bipartite_subgraph((induced[s].n_id, induced[d].n_id),
                                          hetero[et].edge_index, relabel_nodes=True,
                                          size=(HNUM[s], HNUM[d]), return_edge_mask=True)
        order = induced[et].e_id.argsort()
        assert torch.equal(induced[et].e_id[order], mask.nonzero().view(-1)), et
        assert torch.equal(induced[et].edge_index[:, order], sub), et


def test_hetero_transform_sampler_output(hetero):
    seen = []
    loader = NeighborLoader(hetero, [2], input_nodes="venue", batch_size=4,
                            transform_sampler_output=lambda o: seen.append(type(o)) or o)
    assert len(list(loader)) == 2 and seen == [HeteroSamplerOutput] * 2


# ------------------------------------------------------------------------------ errors
def _ids(*v):
    return torch.tensor(v)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(input_nodes=_ids(1, 2, 1)), ValueError, r"input_nodes.*distinct"),
    (dict(input_nodes=_ids(0, N)), IndexError, r"input_nodes.*\[0, 400\)"),
    (dict(input_nodes=_ids(-1, 3)), IndexError, r"input_nodes"),
    (dict(input_nodes=torch.tensor([1.0, 2.0])), TypeError, r"input_nodes.*integer"),
    (dict(input_nodes=torch.zeros(N - 1, dtype=torch.bool)), ValueError, r"input_nodes.*mask"),
    (dict(input_nodes=torch.zeros(2, N, dtype=torch.bool)), ValueError, r"input_nodes.*mask"),
    (dict(input_nodes="paper"), TypeError, r"input_nodes.*HeteroData"),
    (dict(input_nodes=_ids(1, 2), input_id=_ids(0)), ValueError, r"input_id"),
    (dict(disjoint=1), TypeError, r"disjoint"),
    (dict(disjoint=True, subgraph_type="induced"), ValueError, r"disjoint.*induced"),
    (dict(time_attr="time"), ValueError, r"did not find any temporal data"),
    (dict(temporal_strategy="recent"), ValueError, r"temporal_strategy must be 'uniform' or 'last'"),
    (dict(weight_attr="nope"), ValueError, r"no edge attribute of that name"),
    (dict(input_time=torch.zeros(N)), ValueError, r"input_time is set but time_attr is not"),
    (dict(neighbor_sampler=object()), ValueError, r"neighbor_sampler"),
    (dict(batch_sampler=[[0, 1]]), ValueError, r"batch_sampler"),
    (dict(foo=1), TypeError, r"foo"),
    (dict(num_neighbors=[-2]), ValueError, r"num_neighbors"),
    (dict(num_neighbors=[2.5, 1]), ValueError, r"num_neighbors"),
    (dict(num_neighbors=[True]), ValueError, r"num_neighbors"),
    (dict(num_neighbors=5), TypeError, r"num_neighbors"),
    (dict(num_neighbors="5"), TypeError, r"num_neighbors"),
    (dict(num_neighbors={CITES: [2]}), ValueError, r"num_neighbors.*HeteroData"),
    (dict(subgraph_type="full"), ValueError, r"subgraph_type"),
    (dict(replace="yes"), TypeError, r"replace"),
    (dict(batch_size=0), ValueError, r"batch_size"),
    (dict(seed=1, generator=torch.Generator()), ValueError, r"seed"),
], ids=lambda v: None)
def test_errors(data, kwargs, exc, match):
    kwargs = dict(kwargs)
    nn = kwargs.pop("num_neighbors", [2, 2])
    with pytest.raises(exc, match=match) as info:
        NeighborLoader(data, nn, **kwargs)
    assert str(info.value).startswith("NeighborLoader")


def test_data_errors(hetero):
    from torch_geometric.testing.feature_store import MyFeatureStore
    from torch_geometric.testing.graph_store import MyGraphStore

    with pytest.raises(TypeError, match=r"must be \(FeatureStore, GraphStore\), got \(MyGraphStore"):
        NeighborLoader((MyGraphStore(), MyFeatureStore()), [2], input_nodes=_ids(0))
    with pytest.raises(TypeError, match="Data or HeteroData"):
        NeighborLoader({"edge_index": torch.zeros(2, 1, dtype=torch.long)}, [2])
    with pytest.raises(ValueError, match="input_nodes"):
        NeighborLoader(hetero, [2])
    with pytest.raises(KeyError, match="conference"):
        NeighborLoader(hetero, [2], input_nodes="conference")
    with pytest.raises(TypeError, match="input_nodes"):
        NeighborLoader(hetero, [2], input_nodes=_ids(0, 1))
    with pytest.raises(IndexError, match="input_nodes"):
        NeighborLoader(hetero, [2], input_nodes=("venue", _ids(6)))
    with pytest.raises(ValueError, match="input_nodes"):
        NeighborLoader(hetero, [2], input_nodes=("venue", torch.ones(5, dtype=torch.bool)))
    fan = {et: [2] for et in hetero.edge_types if et != CITES}     # one edge type missing
    with pytest.raises(ValueError, match="num_neighbors.*cites"):
        NeighborLoader(hetero, fan, input_nodes="paper")
    fan = {et: [2] for et in hetero.edge_types}
    fan[("paper", "reviews", "paper")] = [1]                          # one the graph lacks
    with pytest.raises(ValueError, match="num_neighbors"):
        NeighborLoader(hetero, fan, input_nodes="paper")
    fan = {et: [2] for et in hetero.edge_types}
    fan[CITES] = [2, -3]
    with pytest.raises(ValueError, match="num_neighbors"):
        NeighborLoader(hetero, fan, input_nodes="paper")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_device_without_cuda(data):
    with pytest.raises(ValueError, match="device"):
        NeighborLoader(data, [2], device="cuda")
    with pytest.raises(ValueError, match="use_uva"):
        NeighborLoader(data, [2], use_uva=True, device="cpu")


# ------------------------------------------------------------------------------ training
def test_graphsage_learns_with_neighbor_loader():
    """PyG's GraphSAGE trained for 3 epochs on a planted-community graph whose node features are
    a weak signal reaches far above chance (4 classes: 25 %)."""
    from torch_geometric.nn import GraphSAGE
    from samplers.datasets import synthetic_graph

    ds = synthetic_graph(2000, avg_degree=10, num_classes=4, feat_dim=16, noise=1.5, seed=0)
    data = Data(x=ds.features, y=ds.labels, edge_index=ds.edge_index())
    torch.manual_seed(0)
    model = GraphSAGE(16, 32, num_layers=2, out_channels=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    loader = NeighborLoader(data, [10, 5], input_nodes=ds.train_idx, batch_size=64, shuffle=True,
                            seed=0)
    losses = []
    for _ in range(3):
        model.train()
        total = 0.0
        for b in loader:
            out = model(b.x, b.edge_index)[:b.batch_size]
            loss = torch.nn.functional.cross_entropy(out, b.y[:b.batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        losses.append(total / len(loader))
    model.eval()
    correct = 0
    with torch.no_grad():
        for b in NeighborLoader(data, [-1, -1], input_nodes=ds.test_idx, batch_size=200):
            pred = model(b.x, b.edge_index)[:b.batch_size].argmax(1)
            correct += int((pred == b.y[:b.batch_size]).sum())
    acc = correct / ds.test_idx.numel()
    assert losses[-1] < losses[0] and acc > 0.6, (losses, acc)


# ------------------------------------------------------------------------------ GPU
def _cuda_batches(loader):
    out = []
    for b in loader:
        assert b.n_id.is_cuda and b.edge_index.is_cuda and b.x.is_cuda
        out.append(b.to("cpu"))
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("use_uva,disjoint", [(None, False), (False, False), (None, True)],
                         ids=["uva", "cpu-sampling", "uva-disjoint"])
def test_gpu_batches_match_cpu(data, use_uva, disjoint):
    """device='cuda' over a host Data: sampled over UVA (or on the CPU and copied), attributes
    gathered zero-copy; with the same seed the batches equal the CPU loader's (counter-based
    draws do not depend on the device)."""
    kw = dict(input_nodes=data.train_mask, batch_size=32, shuffle=True, seed=21,
              disjoint=disjoint)
    gpu = NeighborLoader(data, [5, 3], device="cuda", use_uva=use_uva, **kw)
    assert gpu._sample_device.type == ("cuda" if use_uva is None else "cpu")
    cpu = NeighborLoader(data, [5, 3], **kw)
    for _ in range(2):
        g_batches, c_batches = _cuda_batches(gpu), list(cpu)
        assert len(g_batches) == len(c_batches) == len(gpu)
        for g, c in zip(g_batches, c_batches):
            assert same_batch(g, c) and torch.equal(g.input_id, c.input_id)
            assert g.num_sampled_nodes == c.num_sampled_nodes
            assert g.num_sampled_edges == c.num_sampled_edges
            if disjoint:
                assert torch.equal(g.batch, c.batch)
                check_attrs(data, g)
            else:
                check_batch(data, g, g.n_id[:g.batch_size], [5, 3])
    assert data.x.device.type == "cpu"     # the host tables stay where they are


@pytest.mark.gpu
def test_gpu_data_already_on_cuda(data):
    dev = make_data().to("cuda")
    gpu = NeighborLoader(dev, [4, 2], batch_size=64, seed=5)
    assert gpu.device.type == "cuda"
    for g, c in zip(_cuda_batches(gpu), NeighborLoader(data, [4, 2], batch_size=64, seed=5)):
        assert same_batch(g, c)
        check_attrs(data, g)


@pytest.mark.gpu
def test_gpu_hetero(hetero):
    kw = dict(input_nodes="paper", batch_size=32, seed=6)
    for g, c in zip(NeighborLoader(hetero, [3, 2], device="cuda", **kw),
                    NeighborLoader(hetero, [3, 2], **kw)):
        assert g["paper"].n_id.is_cuda
        g = g.to("cpu")
        for nt in hetero.node_types:
            assert torch.equal(g[nt].n_id, c[nt].n_id)
            for key, value in hetero[nt].items():
                assert torch.equal(g[nt][key], value[g[nt].n_id])
        for et in hetero.edge_types:
            assert torch.equal(g[et].edge_index, c[et].edge_index)
            assert torch.equal(g[et].e_id, c[et].e_id)


def test_sampler_gives_the_epoch_order_ddp_style():
    """PyG passes torch DataLoader kwargs through: sampler=DistributedSampler(...) gives each
    rank's positions (reshuffled by set_epoch), and the ranks together cover every seed once."""
    from torch.utils.data.distributed import DistributedSampler

    g = torch.Generator().manual_seed(0)
    data = Data(x=torch.randn(60, 3, generator=g), edge_index=torch.randint(0, 60, (2, 300), generator=g))
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            ds = DistributedSampler(range(60), num_replicas=2, rank=rank, shuffle=True, seed=4)
            loader = NeighborLoader(data, [2], batch_size=7, sampler=ds, seed=0)
            assert len(loader) == 5                                   # ceil(30 / 7)
            ds.set_epoch(epoch)
            got = torch.cat([b.n_id[:b.batch_size] for b in loader])
            assert torch.equal(got, torch.tensor(list(iter(ds))))
            seen.append(got)
        assert torch.equal(torch.cat(seen).sort().values, torch.arange(60))


def test_sampler_errors():
    data = Data(x=torch.randn(10, 2), edge_index=torch.randint(0, 10, (2, 30)))
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        NeighborLoader(data, [2], sampler=range(10), shuffle=True)
    with pytest.raises(IndexError, match="sampler yielded position 10"):
        list(NeighborLoader(data, [2], sampler=[0, 10], batch_size=2))
    with pytest.raises(ValueError, match="position 3 twice in one batch"):
        list(NeighborLoader(data, [2], sampler=[3, 1, 3], batch_size=3))
    assert len(list(NeighborLoader(data, [2], sampler=[3, 1, 3], batch_size=2))) == 2   # other batches
    with pytest.raises(ValueError, match="batch_sampler"):
        NeighborLoader(data, [2], batch_sampler=[[0, 1]])


def test_hetero_relation_without_edge_index_takes_the_id_dtype_of_the_others():
    """A relation with no edge_index gets an empty placeholder of the other relations' id dtype
    (and device), so all CSCs share one placement and idtype."""
    h = HeteroData()
    h["a"].x = torch.randn(10, 2)
    h["b"].x = torch.randn(8, 2)
    h["a", "to", "b"].edge_index = torch.stack([torch.arange(10) % 10, torch.arange(10) % 8]).int()
    h["b", "back", "a"].edge_label_index = torch.tensor([[0], [1]])     # no edge_index
    loader = NeighborLoader(h, [2], input_nodes="b", batch_size=4, seed=0)
    batch = next(iter(loader))
    assert batch["b"].batch_size == 4 and batch["a", "to", "b"].edge_index.shape[0] == 2


def test_bidirectional_merge_is_deterministic_and_keeps_each_directions_own_edge_id():
    """The bidirectional merge gives PyG's edges in PyG's order; a pair with several copies keeps
    the id of the edge sampled in that very direction when there is one (else of the reverse),
    on every device (PyG's coalesce keeps an arbitrary copy)."""
    from samplers.loading._pyg import _to_bidirectional

    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        n = int(torch.randint(2, 30, (1,), generator=g))
        e = int(torch.randint(0, 60, (1,), generator=g))
        row, col = torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)
        edge = torch.randperm(1000, generator=g)[:e]
        out = SamplerOutput(node=torch.arange(n), row=row, col=col, edge=edge)
        ref, got = out.to_bidirectional(), _to_bidirectional(out)
        assert torch.equal(ref.row, got.row) and torch.equal(ref.col, got.col)
        assert got.num_sampled_nodes is None and got.num_sampled_edges is None
        own = {}
        for r, c, x in zip(row.tolist(), col.tolist(), edge.tolist()):
            own.setdefault((r, c), x)
        rev = {(c, r): x for r, c, x in zip(row.tolist(), col.tolist(), edge.tolist())}
        for r, c, x in zip(got.row.tolist(), got.col.tolist(), got.edge.tolist()):
            assert x == own[(r, c)] if (r, c) in own else (r, c) in rev
