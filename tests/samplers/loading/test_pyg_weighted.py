"""Weighted neighbour sampling (PyG's ``weight_attr``): the CPU kernel (zero weights never drawn,
draws in proportion to the weights, no repeats without replacement, determinism) and the PyG
loaders' weighted batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Data, HeteroData  # noqa: E402

from samplers.sampling._layer_cpu import sample_layer_weighted  # noqa: E402
from samplers.pyg import NeighborLoader  # noqa: E402


def random_csc(n=60, e=900, seed=0):
    rng = np.random.default_rng(seed)
    dst = np.sort(rng.integers(0, n, e))
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, dst + 1, 1)
    return np.cumsum(indptr), rng.integers(0, n, e).astype(np.int64)


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("fanout", [-1, 1, 4, 100])
def test_kernel_never_draws_zero_weights_and_counts_right(replace, fanout):
    indptr, indices = random_csc()
    rng = np.random.default_rng(1)
    w = rng.random(indices.size)
    w[rng.random(indices.size) < 0.4] = 0.0
    seeds = np.arange(60, dtype=np.int64)
    src, dst, eid = sample_layer_weighted(indptr, indices, None, seeds, w, fanout, replace, 5)
    assert (w[eid] > 0).all() and np.array_equal(src, indices[eid])
    for i in range(60):
        pos = (w[indptr[i]:indptr[i + 1]] > 0).sum()
        got = eid[dst == i]
        want = 0 if pos == 0 else (pos if fanout < 0 or (not replace and pos <= fanout) else fanout)
        assert got.size == want
        if not replace:
            assert np.unique(got).size == got.size
        assert ((got >= indptr[i]) & (got < indptr[i + 1])).all()
    again = sample_layer_weighted(indptr, indices, None, seeds, w, fanout, replace, 5)
    assert all(np.array_equal(a, b) for a, b in zip((src, dst, eid), again))


@pytest.mark.parametrize("replace", [False, True])
def test_kernel_draws_in_proportion_to_the_weights(replace):
    ip, ix, w = np.array([0, 3]), np.array([0, 1, 2]), np.array([1.0, 3.0, 6.0])
    counts = np.zeros(3)
    for key in range(6000):
        _, _, eid = sample_layer_weighted(ip, ix, None, np.array([0]), w, 1, replace, key)
        counts[eid[0]] += 1
    np.testing.assert_allclose(counts / counts.sum(), w / w.sum(), atol=0.025)


def test_loader_samples_by_weight_homogeneous_and_hetero():
    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 100, (2, 1500), generator=g)
    w = (torch.rand(1500, generator=g) > 0.5).float() * torch.rand(1500, generator=g)
    data = Data(x=torch.arange(100), edge_index=ei, w=w)
    for b in NeighborLoader(data, [3, 2], weight_attr="w", batch_size=10, seed=0):
        assert bool((data.w[b.e_id] > 0).all())
        assert torch.equal(b.n_id[b.edge_index], ei[:, b.e_id])
    h = HeteroData()
    h["a"].x = torch.arange(100)
    h["a", "to", "a"].edge_index = ei
    h["a", "to", "a"].w = w
    h["a", "un", "a"].edge_index = ei.flip(0)          # no weights there: uniform
    b = next(iter(NeighborLoader(h, [3, 2], input_nodes="a", weight_attr="w", batch_size=10)))
    assert bool((w[b["a", "to", "a"].e_id] > 0).all())
    assert b["a", "un", "a"].e_id.numel() > 0


def test_weight_errors():
    ei = torch.randint(0, 10, (2, 40))
    for bad, err, match in ((torch.full((40,), -1.0), ValueError, "finite and >= 0"),
                            (torch.full((40,), float("nan")), ValueError, "finite and >= 0"),
                            (torch.ones(39), ValueError, "one weight per edge"),
                            (torch.ones(40, dtype=torch.bool), TypeError, "numbers")):
        with pytest.raises(err, match=match):
            NeighborLoader(Data(edge_index=ei, num_nodes=10, w=bad), [2], weight_attr="w")
    with pytest.raises(NotImplementedError, match="weighted temporal"):
        NeighborLoader(Data(edge_index=ei, num_nodes=10, w=torch.ones(40), t=torch.arange(10)),
                       [2], weight_attr="w", time_attr="t")
