"""Serialise Numba parallel regions when Numba's threading layer is not thread-safe.

The loader runs Numba code from a producer thread while the training loop may run Numba code too.
Numba's ``tbb`` and ``omp`` layers allow that; its ``workqueue`` layer aborts the process on
concurrent parallel launches. :func:`parallel_guard` is a no-op lock-free context on the first two
and a process-wide lock on the last.
"""
from __future__ import annotations

import contextlib
import threading

__all__ = ["parallel_guard"]

_lock = threading.Lock()
_needs_lock = None


def _layer_needs_lock() -> bool:
    global _needs_lock
    if _needs_lock is None:
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel region has run yet; decide after the first one
            return True
        _needs_lock = layer == "workqueue"
    return _needs_lock


@contextlib.contextmanager
def parallel_guard():
    """Context for a call into a ``parallel=True`` Numba function."""
    if _layer_needs_lock():
        with _lock:
            yield
    else:
        yield
