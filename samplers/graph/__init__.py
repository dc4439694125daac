"""Graph structures: what is sampled from and what sampling produces.

- :class:`CSCGraph` (``_csc.py``): in-edges grouped by destination, on the CPU, pinned or on a GPU;
- :class:`HeteroCSCGraph` (``_hetero_csc.py``): one CSC per canonical edge type;
- :class:`Block` / :class:`HeteroBlock` (``_block.py``, ``_hetero_block.py``): one sampled layer with
  DGL's MFG accessors and PyG's ``edge_index``;
- :class:`PairGraph` (``_pair.py``): the seed / negative edges of a link-prediction batch;
- :func:`reorder` (``_reorder.py``): renumber a graph and its node tables once for locality
  (hot rows contiguous, communities together), with the id maps (:class:`Reordering`).

Imports: ``unified_tensor`` only (this is the bottom of ``graph <- sampling <- loading``; the
``datasets`` subpackage sits beside them and builds these structures).
"""
from ._block import Block
from ._csc import CSCGraph
from ._hetero_block import HeteroBlock
from ._hetero_csc import EdgeType, HeteroCSCGraph
from ._pair import PairGraph
from ._reorder import Reordering, reorder

__all__ = ["CSCGraph", "HeteroCSCGraph", "EdgeType", "Block", "HeteroBlock", "PairGraph",
           "reorder", "Reordering"]
