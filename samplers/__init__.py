"""Graph sampling for minibatch GNN training: a CSC graph that can live in pinned host memory
(UVA) or on the GPU, a uniform neighbour sampler (GPU kernel or Numba) and DGL-style blocks."""
from .loading import DataLoader
from .graph import Block, CSCGraph, HeteroBlock, HeteroCSCGraph, PairGraph
from .sampling import (EdgePredictionSampler, NeighborSampler, UniformNegativeSampler,
                       presample_hotness)

__all__ = ["CSCGraph", "HeteroCSCGraph", "NeighborSampler", "EdgePredictionSampler",
           "UniformNegativeSampler", "Block", "HeteroBlock", "PairGraph", "DataLoader",
           "presample_hotness"]
