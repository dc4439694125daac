"""Built-in datasets: a synthetic GNN benchmark generator and a loader for OGB data on disk.

Both return a :class:`NodeDataset`: a CSC graph (in-edges grouped by destination), a node feature
table, int64 labels, train/val/test node ids and the number of classes. Everything is on the CPU;
with ``root`` the feature table is a ``.npy`` memmap created once and reopened afterwards, ready
for ``unified_tensor.unified`` (which pins it in place). :func:`synthetic_mag` generates a
heterogeneous graph shaped like ogbn-mag (a :class:`HeteroDataset`, in RAM); :func:`papers_like`
one shaped like ogbn-papers100M (power-law in-degrees, nested communities, ~1 % labelled, ids
randomly permuted), the benchmark graph of locality orders.

>>> from samplers.datasets import synthetic_graph
>>> ds = synthetic_graph(1000, feat_dim=16)
>>> ds.features.shape, ds.indptr.shape
(torch.Size([1000, 16]), torch.Size([1001]))

Files: ``_node_dataset.py`` (:class:`NodeDataset`, :func:`synthetic_graph`, :func:`load_ogb`, the
cache), ``_ogb.py`` (OGB's on-disk layouts), ``_synthetic.py`` (the homogeneous generator's chunked
draws), ``_papers.py`` (:func:`papers_like`), ``_synthetic_hetero.py`` (:func:`synthetic_mag`), ``_args.py`` (argument checks).

Imports: :mod:`samplers.graph` only (beside ``graph <- sampling <- loading``, not on that chain).
"""
from ._node_dataset import FEAT_DTYPES, NodeDataset, csc_from_edges, load_ogb, synthetic_graph
from ._papers import papers_like, papers_like_communities
from ._synthetic_hetero import HeteroDataset, synthetic_mag

__all__ = ["NodeDataset", "synthetic_graph", "load_ogb", "csc_from_edges", "FEAT_DTYPES",
           "HeteroDataset", "synthetic_mag", "papers_like", "papers_like_communities"]
