"""One side CUDA stream per device, shared by every loader and prefetcher in the process.

Work that should overlap with training (sampling the next minibatch, gathering its features) is
issued on :func:`side_stream` instead of the current stream. Creating a stream per loader would
multiply streams (and the memory the caching allocator keeps per stream) for nothing: one stream
per device already overlaps with the training stream, so the stream is created once, on first use,
and cached.

The hand-over rule for anything produced on the side stream and consumed on the current stream:

1. the producer records an event on the side stream after the last kernel of the batch
   (:func:`record_event`);
2. the consumer makes its current stream wait for that event and calls ``record_stream`` on every
   CUDA tensor of the batch (:func:`hand_over`), so the caching allocator does not hand the memory
   back to the side stream while the consumer's kernels may still read it.

Nothing here touches the GPU at import time.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Optional, Union

import torch

__all__ = ["side_stream", "record_event", "hand_over", "to_device_async"]

DeviceLike = Union[torch.device, str, int]

_lock = threading.Lock()
_streams: dict = {}


def _cuda_device(device: Optional[DeviceLike]) -> torch.device:
    if device is None:
        return torch.device("cuda", torch.cuda.current_device())
    dev = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    if dev.type != "cuda":
        raise ValueError(f"side_stream: device must be a CUDA device, got device={device!r}")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def side_stream(device: Optional[DeviceLike] = None) -> "torch.cuda.Stream":
    """Return the process-wide side stream of a CUDA device, creating it on first use.

    Parameters
    ----------
    device : torch.device, str, int or None
        The CUDA device; ``None`` means the current CUDA device.

    Returns
    -------
    torch.cuda.Stream
        The same stream object for every call with the same device (thread-safe).

    Raises
    ------
    ValueError
        If ``device`` is not a CUDA device.

    Examples
    --------
    >>> s = side_stream("cuda")                      # doctest: +SKIP
    >>> with torch.cuda.stream(s):                   # doctest: +SKIP
    ...     y = x * 2
    """
    dev = _cuda_device(device)
    stream = _streams.get(dev.index)
    if stream is None:
        with _lock:
            stream = _streams.get(dev.index)
            if stream is None:
                stream = torch.cuda.Stream(device=dev)
                _streams[dev.index] = stream
    return stream


def record_event(stream: "torch.cuda.Stream") -> "torch.cuda.Event":
    """Record and return a fresh event on ``stream`` (marks "everything issued so far is done")."""
    event = torch.cuda.Event()
    event.record(stream)
    return event


def hand_over(tensors: Iterable[Any], event: Optional["torch.cuda.Event"],
              device: Optional[DeviceLike] = None) -> None:
    """Make the current stream of ``device`` safe to use ``tensors`` produced on another stream.

    The current stream waits for ``event`` (GPU-side, the host does not block) and every CUDA tensor
    gets ``record_stream(current_stream)`` so its memory is not reused before the current stream's
    work on it completes. CPU tensors are skipped. Objects that are not tensors but have a
    ``record_stream`` method (``dgl.DGLGraph``) get it called when their ``device`` is CUDA.

    Parameters
    ----------
    tensors : iterable of torch.Tensor (or objects with ``record_stream``)
        Everything that crosses from the producer stream to the consumer.
    event : torch.cuda.Event or None
        Event recorded on the producer stream after the tensors were written; ``None`` skips the
        wait (the tensors were produced on the current stream).
    device : torch.device, str, int or None
        Device whose current stream consumes the tensors; ``None`` = current CUDA device.
    """
    dev = _cuda_device(device)
    current = torch.cuda.current_stream(dev)
    if event is not None:
        current.wait_event(event)
    for t in tensors:
        if isinstance(t, torch.Tensor):
            if t.is_cuda:
                t.record_stream(current)
        elif callable(getattr(t, "record_stream", None)):
            t_dev = getattr(t, "device", None)
            if t_dev is None or torch.device(t_dev).type == "cuda":
                t.record_stream(current)


def to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` without a host sync: a CPU tensor goes to a GPU staged in pinned memory
    (PyTorch's host allocator keeps the block until the copy is done) and copied with
    ``non_blocking``; a tensor already there is returned as it is; anything else is a plain
    ``.to``."""
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.contiguous().pin_memory().to(device, non_blocking=True)
    return t.to(device)
