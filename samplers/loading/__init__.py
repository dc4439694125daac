"""Loading: seeds in batches, a producer thread one batch ahead, features gathered, batches packaged.

- ``_core.py``: :class:`_LoaderCore`, the one core every front-end shares: seed batching (node ids,
  edge ids, typed dicts, via ``_seeds.py``), epochs (shuffle, DDP split, ``drop_last``), the producer
  thread, the side stream and the event hand-over, tables made unified in place;
- ``_dataloader.py``: :class:`DataLoader`, the DGL-style front-end (``_dgl_compat.py`` holds what it
  needs to accept DGL graphs and samplers without importing DGL);
- ``_pyg.py``: PyG's ``NeighborLoader`` / ``LinkNeighborLoader`` (public as :mod:`samplers.pyg`;
  the only module that imports ``torch_geometric``, so it is not imported here);
- ``_distdgl.py``: the DistDGL adapter (:class:`DataLoader` hands it a ``DistGraph``): DistDGL's
  distributed sampler, rows of this machine's partition from the KVStore's shared memory, remote
  rows over RPC, an optional hotness cache; the only module that knows ``dgl.distributed``
  (imported when a ``DistGraph`` arrives). A second engine would sit beside it.

Imports: :mod:`samplers.sampling`, :mod:`samplers.graph` and ``unified_tensor``.
"""
from ._dataloader import DataLoader

__all__ = ["DataLoader"]
