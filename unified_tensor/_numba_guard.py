"""Make the library's ``parallel=True`` Numba kernels safe across threads and ``fork``.

Every parallel Numba entry point of the library is a :class:`ParallelKernel` and runs under
:func:`parallel_guard`, which handles the two hazards of Numba's threading layers:

* Threads. The loader runs Numba code from a producer thread while the training loop may run Numba
  code too. Numba's ``tbb`` and ``omp`` layers allow that; its ``workqueue`` layer aborts the
  process on concurrent parallel launches. There the guard is a process-wide lock.
* ``fork``. GNU OpenMP (Numba's ``omp`` layer on Linux) cannot be used in a process forked from
  one that already used it: the child terminates on its first parallel launch. (Like Numba's own
  ``forksafe`` choice, the guard treats every ``omp`` layer so, whatever the OpenMP vendor.) This is the common
  ``torch.utils.data.DataLoader(num_workers=...)`` pattern. A forked child of such a process runs
  the serial build of each kernel instead (same code, same results, one thread; the DataLoader's
  workers are single-threaded anyway). ``tbb`` and ``workqueue`` are fork-safe and stay parallel.

Nothing happens at import time: the ``os.register_at_fork`` hook is installed on the first kernel
call, so a process that forks before it ever calls a kernel needs none. (Only if other code
started Numba's ``omp`` layer and the process forked before this library's first call would the
child still be at risk; ``NUMBA_THREADING_LAYER=tbb`` or ``workqueue`` avoids that.)
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import types
from typing import Any, Callable, Iterator, Optional

from ._deps import has_numba

__all__ = ["parallel_guard", "ParallelKernel"]

logger = logging.getLogger("unified_tensor")

_lock = threading.Lock()
_needs_lock: Optional[bool] = None
_serial_only = False
_fork_hook_installed = False
_install_lock = threading.Lock()
_logged_serial = False


def _current_layer() -> Optional[str]:
    """Numba's threading layer if a parallel region has started it in this process (or in the
    parent this process was forked from), else ``None``."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # not started yet
        return None


def _after_fork_in_child() -> None:
    global _lock, _serial_only
    # Another thread of the parent may have held the lock at fork time; it does not exist here.
    _lock = threading.Lock()
    if _current_layer() == "omp":
        _serial_only = True


def _install_fork_hook() -> None:
    global _fork_hook_installed
    with _install_lock:
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


def _layer_needs_lock() -> bool:
    global _needs_lock
    if _needs_lock is None:
        layer = _current_layer()
        if layer is None:  # no parallel region has run yet; decide after the first one
            return True
        _needs_lock = layer == "workqueue"
    return _needs_lock


@contextlib.contextmanager
def parallel_guard() -> Iterator[bool]:
    """Context for a call into a ``parallel=True`` Numba function.

    Yields
    ------
    bool
        Whether the parallel build may run. ``False`` in a process forked from one that used
        Numba's GNU OpenMP layer: call the serial build then (see :class:`ParallelKernel`).
    """
    if not _fork_hook_installed:
        _install_fork_hook()
    if _serial_only:
        yield False
    elif _layer_needs_lock():
        with _lock:
            yield True
    else:
        yield True


def _renamed(func: Callable[..., Any], suffix: str) -> Callable[..., Any]:
    """A copy of ``func`` whose qualified name ends in ``suffix``.

    Numba's on-disk cache is keyed by the qualified name and the bytecode, not by the compile
    options, so the serial build needs its own name to avoid loading the parallel one.
    """
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix,
                              func.__defaults__, func.__closure__)
    copy.__qualname__ = func.__qualname__ + suffix
    copy.__doc__ = func.__doc__
    return copy


class ParallelKernel:
    """A ``prange`` kernel compiled on first call both with ``parallel=True`` and serially
    (``nogil=True, cache=True`` either way), and called under :func:`parallel_guard`.

    Without Numba the plain Python function runs (``prange`` is then ``range``).

    Parameters
    ----------
    source : callable
        Takes no argument and returns the kernel's Python function, in which every ``prange``
        iteration writes only its own outputs. Called once, on the first kernel call, so that a
        module can define a kernel without importing Numba. Usable as a decorator.

    Examples
    --------
    >>> import numpy as np
    >>> @ParallelKernel
    ... def add_one():
    ...     from numba import prange
    ...     def add_one(x):
    ...         for i in prange(x.shape[0]):
    ...             x[i] += 1
    ...     return add_one
    >>> x = np.zeros(4)
    >>> add_one(x)                     # doctest: +SKIP
    >>> x                              # doctest: +SKIP
    array([1., 1., 1., 1.])
    """

    def __init__(self, source: Callable[[], Callable[..., Any]]) -> None:
        self._source = source
        self._builds: Optional[tuple[Callable[..., Any], Callable[..., Any]]] = None
        self._init_lock = threading.Lock()
        self.__doc__ = source.__doc__
        self.__name__ = source.__name__

    def _get_builds(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        with self._init_lock:
            if self._builds is None:
                func = self._source()
                if has_numba():
                    from numba import njit

                    # njit compiles lazily: each build is compiled (or loaded from the on-disk
                    # cache) on its first call only.
                    self._builds = (njit(parallel=True, nogil=True, cache=True)(func),
                                    njit(nogil=True, cache=True)(_renamed(func, "_serial")))
                else:
                    self._builds = (func, func)
            return self._builds

    def __call__(self, *args: Any) -> Any:
        parallel_build, serial_build = self._builds or self._get_builds()
        if parallel_build is serial_build:  # no Numba: plain Python
            return parallel_build(*args)
        with parallel_guard() as parallel:
            if not parallel:
                _log_serial_once()
            return (parallel_build if parallel else serial_build)(*args)


def _log_serial_once() -> None:
    global _logged_serial
    if not _logged_serial:
        _logged_serial = True
        logger.debug("process %d was forked from one using Numba's GNU OpenMP threading layer, "
                     "which is not fork-safe: CPU kernels run single-threaded here (set "
                     "NUMBA_THREADING_LAYER=tbb or workqueue to keep them parallel)", os.getpid())
