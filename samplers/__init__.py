"""Graph sampling and loading for minibatch GNN training, one subpackage per concern:

- :mod:`samplers.graph`: CSC graphs (in pinned host memory, on a GPU or on the CPU), blocks;
- :mod:`samplers.sampling`: neighbour sampling (GPU kernel over UVA, or Numba), link prediction;
- :mod:`samplers.loading`: the loading core and its front-ends (DGL-style :class:`DataLoader`;
  PyG's loaders, public as :mod:`samplers.pyg`);
- :mod:`samplers.datasets`: synthetic and OGB datasets.

Imports point only down ``graph <- sampling <- loading``; ``datasets`` sits beside them.

>>> from samplers import CSCGraph, NeighborSampler, DataLoader
"""
from .graph import Block, CSCGraph, HeteroBlock, HeteroCSCGraph, PairGraph, Reordering, reorder
from .loading import DataLoader
from .sampling import (EdgePredictionSampler, NeighborSampler, UniformNegativeSampler,
                       presample_hotness)

from unified_tensor import __version__  # one version for the distribution

__all__ = ["__version__", "CSCGraph", "HeteroCSCGraph", "NeighborSampler", "EdgePredictionSampler",
           "UniformNegativeSampler", "Block", "HeteroBlock", "PairGraph", "DataLoader",
           "presample_hotness", "reorder", "Reordering"]
