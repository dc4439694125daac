"""Make the library's CPU paths (``parallel=True`` Numba kernels, buffer pools) safe across
threads and ``fork``.

Every parallel Numba entry point of the library is a :class:`ParallelKernel` and runs under
:func:`parallel_guard`, which handles the hazards of Numba's threading layers:

* Threads. The loader runs Numba code from a producer thread while the training loop may run Numba
  code too. Numba's ``tbb`` and ``omp`` layers allow that; its ``workqueue`` layer aborts the
  process on concurrent parallel launches. There the guard is a process-wide lock.
* ``fork``. GNU OpenMP (Numba's ``omp`` layer on Linux) cannot be used in a process forked from
  one that already used it: the child terminates on its first parallel launch. (Like Numba's own
  ``forksafe`` choice, the guard treats every ``omp`` layer so, whatever the OpenMP vendor.) This is the common
  ``torch.utils.data.DataLoader(num_workers=...)`` pattern. A forked child of such a process runs
  the serial build of each kernel instead (same code, same results, one thread; the DataLoader's
  workers are single-threaded anyway). ``tbb`` and ``workqueue`` are fork-safe and stay parallel.

``fork`` has two more hazards, which hang the child for good (a futex wait) instead of killing it:

* Locks. The child is a copy of the forking thread only: a lock that another thread (the loader's
  producer, say) held at that moment stays held there forever. The locks of the CPU gather and
  sampler (this guard's, each kernel's build lock, the gather's :mod:`host buffer pool
  <unified_tensor._host_pool>`, the sampler's buffer pool, a heterogeneous graph's scratch pool)
  are registered with :func:`reset_locks_after_fork` and replaced by free ones in the child. Numba's
  compiler lock, which a kernel's first call in the child may need, is taken by the forking thread
  instead, so that a fork waits for a compilation in progress in another thread.
* PyTorch's GNU OpenMP thread pool. Once the parent ran a parallel torch operator (most CPU ops on
  more than 32768 elements), the first one in the child waits forever for the parent's pool
  threads, which the child does not have; the sampler's seed checks are such operators. So, as
  ``DataLoader`` does in its workers, the child sets ``torch.set_num_threads(1)`` when torch's
  intra-op threads run on OpenMP (set it higher again there only if the parent never used them).

Nothing happens at import time: the ``os.register_at_fork`` hooks are installed when the library
first uses one of these (a kernel call, a pooled buffer, a heterogeneous graph), so a process that
forks before that needs none. (Only if other code started Numba's ``omp`` layer or torch's OpenMP
pool and the process forked before this library's first use would the child still be at risk;
``NUMBA_THREADING_LAYER=tbb`` or ``workqueue`` avoids the first, ``torch.set_num_threads(1)`` in
the child the second.)
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import types
import weakref
from typing import Any, Callable, Iterator, Optional, Tuple

from ._deps import has_numba

__all__ = ["parallel_guard", "ParallelKernel", "reset_locks_after_fork", "announce_compiles"]

logger = logging.getLogger("unified_tensor")

_lock = threading.Lock()
_needs_lock: Optional[bool] = None
_serial_only = False
_fork_hook_installed = False
_compiler_lock_hooked = False
_logged_serial = False
# Objects whose locks a forked child replaces: {owner: names of its lock attributes}.
_lock_owners: "weakref.WeakKeyDictionary[Any, Tuple[str, ...]]" = weakref.WeakKeyDictionary()


def _current_layer() -> Optional[str]:
    """Numba's threading layer if a parallel region has started it in this process (or in the
    parent this process was forked from), else ``None``."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # not started yet
        return None


def _after_fork_in_child() -> None:
    """Runs in every child forked after the hook's installation, before anything else there."""
    global _lock, _serial_only
    # Other threads of the parent may have held these locks at fork time; they do not exist here.
    _lock = threading.Lock()
    for owner, names in list(_lock_owners.items()):
        for name in names:
            setattr(owner, name, threading.Lock())
    if "numba" in sys.modules and _current_layer() == "omp":
        _serial_only = True
    torch = sys.modules.get("torch")
    if torch is not None and torch.backends.openmp.is_available() and torch.get_num_threads() > 1:
        # The parent's OpenMP pool threads are gone; a parallel torch op would wait for them.
        torch.set_num_threads(1)
        logger.info("process %d was forked: torch.set_num_threads(1) here, as GNU OpenMP's "
                    "thread pool does not survive fork (a parallel torch operator would hang)",
                    os.getpid())


def _install_fork_hook() -> None:
    global _fork_hook_installed
    # No lock: one held by another thread at fork time would block this in the child. Threads
    # racing here may register the hook twice, which is harmless (it is idempotent).
    if not _fork_hook_installed:
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


def _hold_compiler_lock_across_fork() -> None:
    """Make every later fork wait for a Numba compilation in progress in another thread: the
    forking thread takes Numba's compiler lock first, and parent and child release it after. A
    child forked during a compilation would wait forever at its own first one (a kernel's serial
    build, a new signature). Called when the kernels are built (Numba is imported then)."""
    global _compiler_lock_hooked
    if not _compiler_lock_hooked and hasattr(os, "register_at_fork"):
        from numba.core.compiler_lock import global_compiler_lock as lock

        # A reentrant lock owned by the forking thread, which is the child's only thread: racing
        # registrations just nest.
        os.register_at_fork(before=lock.acquire, after_in_parent=lock.release,
                            after_in_child=lock.release)
    _compiler_lock_hooked = True


def reset_locks_after_fork(owner: Any, *names: str) -> None:
    """Give ``owner`` a new, free ``threading.Lock`` under each attribute in ``names`` in every
    process forked from this one from now on.

    A child is a copy of the forking thread only: a lock another thread held at that moment stays
    held there forever, and the child's first ``with owner.<name>:`` never returns. Call this
    before the lock is first taken (``owner`` is held weakly). What the lock guards is left as
    the holder had it, possibly between two of its updates: the owner must cope with any such
    state (the library's pools then merely forget a buffer). A ``with`` block releases the lock
    object it entered with, so a child forked by the holding thread itself inside one still
    leaves that block cleanly.

    Examples
    --------
    >>> class Pool:
    ...     def __init__(self):
    ...         self._lock = threading.Lock()
    ...         reset_locks_after_fork(self, "_lock")
    """
    _install_fork_hook()
    _lock_owners[owner] = names


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


def _follow_torch_threads() -> None:
    """Run this thread's next parallel launch on ``torch.get_num_threads()`` threads (at most
    Numba's pool size), as torch's own CPU operators do: a process limited with
    ``torch.set_num_threads(k)`` or ``OMP_NUM_THREADS=k`` is not oversubscribed by Numba's pool,
    which Numba sizes by the core count whatever ``OMP_NUM_THREADS`` says (an idle pool of spinning
    OpenMP threads slowed DGL's and torch's CPU work beside it 10-40x when the cores were taken)."""
    import numba

    try:
        import torch
        want = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    n = max(1, min(int(want), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)


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
        reset_locks_after_fork(self, "_init_lock")
        with self._init_lock:
            if self._builds is None:
                func = self._source()
                if has_numba():
                    from numba import njit

                    # njit compiles lazily: each build is compiled (or loaded from the on-disk
                    # cache) on its first call only.
                    _hold_compiler_lock_across_fork()
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
            else:
                _follow_torch_threads()
            return (parallel_build if parallel else serial_build)(*args)


_compile_listener_installed = False
_compile_announced = False
_LIBRARY_MODULES = ("unified_tensor", "samplers")
COMPILE_MESSAGE = ("unified_tensor: compiling CPU kernels with Numba (first run only, ~30 s; "
                   "later runs load them from Numba's on-disk cache)")


def _on_numba_compile(event: Any) -> None:
    """First real compilation of one of the library's Numba functions: say so, once per process.

    Numba fires ``numba:compile`` only when it compiles a signature, not when it loads one from
    its on-disk cache (``cache=True``), so a warm run prints nothing."""
    global _compile_announced
    if _compile_announced or not event.is_start:
        return
    dispatcher = (event.data or {}).get("dispatcher")
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    if module.split(".")[0] in _LIBRARY_MODULES:
        _compile_announced = True
        print(COMPILE_MESSAGE, file=sys.stderr, flush=True)
        logger.info("compiling CPU kernels with Numba (%s first)", module)


def announce_compiles() -> None:
    """Print :data:`COMPILE_MESSAGE` to stderr the first time this process compiles one of the
    library's Numba functions (18-46 s on a 2-core machine; the first batch seems to hang without
    it). Called once Numba is imported (:func:`unified_tensor._deps.has_numba`); idempotent."""
    global _compile_listener_installed
    if _compile_listener_installed:
        return
    _compile_listener_installed = True
    try:
        from numba.core import event
    except ImportError:  # pragma: no cover - a Numba without the event API: stay silent
        return

    class _Announce(event.Listener):
        def on_start(self, ev: Any) -> None:
            _on_numba_compile(ev)

        def on_end(self, ev: Any) -> None:
            pass

    event.register("numba:compile", _Announce())


def _log_serial_once() -> None:
    global _logged_serial
    if not _logged_serial:
        _logged_serial = True
        logger.debug("process %d was forked from one using Numba's GNU OpenMP threading layer, "
                     "which is not fork-safe: CPU kernels run single-threaded here (set "
                     "NUMBA_THREADING_LAYER=tbb or workqueue to keep them parallel)", os.getpid())
