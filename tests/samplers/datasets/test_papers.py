"""Tests for samplers.datasets.papers_like: shapes, determinism, the in-degree tail, the nested
community structure (most edges inside small communities), the splits and the on-disk cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from samplers.datasets import NodeDataset, papers_like, papers_like_communities

N = 30_000


@pytest.fixture(scope="module")
def ds() -> NodeDataset:
    return papers_like(N, feat_dim=16)


def _dst(ds: NodeDataset) -> np.ndarray:
    return np.repeat(np.arange(ds.num_nodes), np.diff(ds.indptr.numpy()))


def test_shapes_and_dtypes(ds):
    assert isinstance(ds, NodeDataset)
    assert ds.indptr.dtype == torch.int64 and ds.indptr.shape == (N + 1,)
    assert ds.indices.dtype == torch.int32 and int(ds.indptr[-1]) == ds.num_edges
    assert bool((ds.indptr[1:] >= ds.indptr[:-1]).all())
    assert 0 <= int(ds.indices.min()) and int(ds.indices.max()) < N
    assert ds.features.shape == (N, 16) and ds.features.dtype == torch.float32
    assert ds.num_classes == 172 and ds.labels.dtype == torch.int64
    # about avg_degree in-edges per node (self loops dropped)
    assert 12.0 < ds.num_edges / N < 14.5
    dst = _dst(ds)
    assert not np.any(ds.indices.numpy() == dst), "self loops"


def test_splits_and_labels(ds):
    tr, va, te = ds.train_idx, ds.val_idx, ds.test_idx
    assert (tr.numel(), va.numel(), te.numel()) == (330, 30, 60)
    allids = torch.cat([tr, va, te])
    assert allids.unique().numel() == allids.numel()
    labelled = torch.nonzero(ds.labels >= 0).flatten()
    assert torch.equal(labelled, allids.sort().values)
    assert int(ds.labels.max()) < ds.num_classes


def test_deterministic_and_seeded():
    a, b = papers_like(5000, feat_dim=4, seed=3), papers_like(5000, feat_dim=4, seed=3)
    for key in ("indptr", "indices", "features", "labels", "train_idx", "val_idx", "test_idx"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    c = papers_like(5000, feat_dim=4, seed=4)
    assert not torch.equal(a.indices[:1000], c.indices[:1000])


def test_degree_tail(ds):
    deg = np.diff(ds.indptr.numpy())
    mean = deg.mean()
    # power law: a median well below the mean and hubs hundreds of times the mean
    assert np.median(deg) < 0.7 * mean
    assert deg.max() > 30 * mean
    out = np.bincount(ds.indices.numpy(), minlength=N)
    assert out.max() > 30 * mean


def test_community_structure(ds):
    c = papers_like_communities(N)
    src, dst = ds.indices.numpy(), _dst(ds)
    share = {k: float((c[k][src] == c[k][dst]).mean()) for k in ("community", "venue", "field")}
    assert 0.5 < share["community"] < share["venue"] < share["field"] <= 1.0
    sizes = np.bincount(c["community"])
    assert sizes.min() >= 1 and sizes.max() <= 500 and 50 <= np.median(sizes) <= 500
    # the ids are randomly permuted: communities are not contiguous id ranges
    assert np.mean(c["community"][1:] == c["community"][:-1]) < 0.05


def test_labels_follow_communities(ds):
    c = papers_like_communities(N)["venue"]
    lab = ds.labels.numpy()
    keep = lab >= 0
    venue, y = c[keep], lab[keep]
    # most labelled nodes carry their venue's majority class
    order = np.lexsort([y, venue])
    venue, y = venue[order], y[order]
    agree = 0
    for v in np.unique(venue):
        agree += np.bincount(y[venue == v]).max()
    assert agree / y.size > 0.6


def test_cache_roundtrip(tmp_path):
    a = papers_like(3000, feat_dim=8, root=tmp_path)
    assert a.features_path is not None and a.features_path.is_file()
    b = papers_like(3000, feat_dim=8, root=tmp_path)
    assert b.name == a.name and b.features_path == a.features_path
    mem = papers_like(3000, feat_dim=8)
    for key in ("indptr", "indices", "features", "labels", "train_idx"):
        assert torch.equal(getattr(b, key), getattr(mem, key)), key


@pytest.mark.parametrize("kwargs, exc", [
    (dict(num_nodes=0), ValueError), (dict(num_nodes=1.5), TypeError),
    (dict(num_nodes=100, p_community=0.9, p_venue=0.2), ValueError),
    (dict(num_nodes=100, train_fraction=0.9, test_fraction=0.2), ValueError),
    (dict(num_nodes=100, feat_dtype=torch.int8), ValueError),
    (dict(num_nodes=100, degree_exponent=2.0), ValueError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        papers_like(**kwargs)
