"""samplers.pyg under unusual and bad inputs: clear Python exceptions naming the loader and the
argument, and attributes of every dtype / layout sliced exactly as ``attr[n_id]``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from torch_geometric.data import Data  # noqa: E402
from torch_geometric.sampler import NegativeSampling  # noqa: E402

from samplers.pyg import LinkNeighborLoader, NeighborLoader  # noqa: E402

N = 50


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return Data(x=torch.randn(N, 4, generator=g), y=torch.randint(0, 3, (N,), generator=g),
                edge_index=torch.randint(0, N, (2, 200), generator=g))


@pytest.mark.parametrize("make", [
    lambda x: x.t().contiguous().t(),                        # non-contiguous
    lambda x: x.double(), lambda x: x.bfloat16(), lambda x: x.half(),
    lambda x: x.to(torch.complex64),
    lambda x: x.clone().requires_grad_(),
    lambda x: x.to_sparse(),
    lambda x: x.view(N, 2, 2),                                # 3-D rows
], ids=["noncontig", "float64", "bfloat16", "float16", "complex64", "requires_grad", "sparse", "3d"])
def test_attribute_layouts_and_dtypes_are_sliced_exactly(data, make):
    data.x = make(data.x)
    batch = next(iter(NeighborLoader(data, [3, 2], batch_size=6, seed=0)))
    want = (data.x.to_dense() if data.x.is_sparse else data.x.detach())[batch.n_id]
    got = batch.x.to_dense() if batch.x.is_sparse else batch.x.detach()
    assert got.dtype == want.dtype and torch.equal(got, want)


def test_read_only_numpy_attribute(data):
    a = data.x.numpy().copy()
    a.setflags(write=False)
    data.x = torch.from_numpy(a)   # a read-only tensor (torch warns once)
    batch = next(iter(NeighborLoader(data, [2], batch_size=4, seed=0)))
    assert torch.equal(batch.x, data.x[batch.n_id])
    assert not a.flags.writeable


def test_numpy_attribute(data):
    data.x = data.x.numpy()
    batch = next(iter(NeighborLoader(data, [2], batch_size=4, seed=0)))
    assert np.array_equal(np.asarray(batch.x), data.x[batch.n_id.numpy()])


def test_errors_name_the_pyg_loader(data):
    with pytest.raises(ValueError, match="^NeighborLoader: device='tpu'"):
        NeighborLoader(data, [2], device="tpu")
    with pytest.raises(TypeError, match="^NeighborLoader: data.edge_index: .*int32 or torch.int64"):
        NeighborLoader(Data(x=data.x, edge_index=data.edge_index.float()), [2])
    with pytest.raises(ValueError, match="^NeighborLoader: data.edge_index: .*>= num_nodes"):
        NeighborLoader(Data(x=data.x, edge_index=data.edge_index + N), [2])
    with pytest.raises(TypeError, match="^NeighborLoader: index must hold integer positions"):
        NeighborLoader(data, [2])(torch.tensor([0.5]))


@pytest.mark.parametrize("weight", [torch.zeros(N), torch.full((N,), -1.0),
                                    torch.full((N,), float("nan"))], ids=["zeros", "negative", "nan"])
def test_negative_weights_are_checked_at_construction(data, weight):
    with pytest.raises(ValueError, match="src_weight must be finite, >= 0 and not all 0"):
        LinkNeighborLoader(data, [2], neg_sampling=NegativeSampling("binary", 1, src_weight=weight))


def test_zero_hops_gives_the_seeds_alone(data):
    batch = next(iter(NeighborLoader(data, [], batch_size=5, seed=0)))
    assert batch.num_nodes == 5 and batch.edge_index.shape == (2, 0)
    assert batch.num_sampled_nodes == [5] and batch.num_sampled_edges == []
