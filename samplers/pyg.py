"""PyG's loaders on this library's sampler: ``from samplers.pyg import NeighborLoader``.

The one-import swap for PyG scripts; the loaders live in :mod:`samplers.loading._pyg` (this
module needs ``torch_geometric``; the rest of ``samplers`` works without it).

>>> from samplers.pyg import NeighborLoader, LinkNeighborLoader
"""
from .loading._pyg import LinkNeighborLoader, NeighborLoader

__all__ = ["NeighborLoader", "LinkNeighborLoader"]

# Where users import them from (reprs, pickles and printed names stay put if the module moves).
for _cls in (NeighborLoader, LinkNeighborLoader):
    _cls.__module__ = __name__
del _cls
