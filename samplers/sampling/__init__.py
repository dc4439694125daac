"""Sampling: seeds in, sampled layers out.

- :class:`NeighborSampler` (``_neighbor.py``): DGL's ``sample(g, seeds)`` interface, fanouts,
  per-batch keys, homogeneous and heterogeneous (``_hetero.py``) graphs;
- one layer of uniform / weighted / temporal neighbour sampling and the relabelling, on the CPU
  (``_layer_cpu.py``, Numba) and on the GPU (``_layer_cuda.py``, ``cuda/sample.cu``), and all layers
  of a batch with one host sync (``_one_sync.py``);
- PyG-style hops over typed frontiers, disjoint and temporal (``_frontier.py``);
- link prediction: :class:`EdgePredictionSampler`, :class:`UniformNegativeSampler` (``_link.py``);
- :func:`presample_hotness` (``_hotness.py``): access counts for the GPU row cache.

Imports: :mod:`samplers.graph` and ``unified_tensor``; never :mod:`samplers.loading`.
"""
from ._hotness import presample_hotness
from ._link import EdgePredictionSampler, UniformNegativeSampler
from ._neighbor import NeighborSampler

__all__ = ["NeighborSampler", "EdgePredictionSampler", "UniformNegativeSampler", "presample_hotness"]
