"""Host syncs per thread: which thread (the training loop, a loader's producer) waited for the GPU.

A host sync stalls the thread that makes it until the GPU catches up. The issue's target is per
thread: at most one per batch on the producer thread, none on the training thread. Counting both
threads together (what ``torch.cuda.set_sync_debug_mode`` alone gives) cannot tell them apart,
so :class:`SyncCounter` attributes every sync to ``threading.current_thread()``:

* **syncs on CUDA data** (``.item()``, ``.tolist()``, ``.cpu()``, ``nonzero``, blocking copies,
  ``torch.cuda.synchronize()``, ...): ``torch.cuda.set_sync_debug_mode("warn")`` makes PyTorch
  raise a ``UserWarning`` ("called a synchronizing CUDA operation") in the thread that synced; a
  ``warnings.showwarning`` hook records that thread (an ``"always"`` filter for that message is
  put first while counting, so repeated syncs at one site are all seen);
* **explicit waits the debug mode does not report** (``torch.cuda.Event.synchronize``,
  ``torch.cuda.Stream.synchronize``) and ``torch.cuda.synchronize`` are patched while counting
  and recorded by name. A wait that also warns (``torch.cuda.synchronize`` does) counts once:
  warnings raised inside a patched call are not counted again.

Threads are reported by name and by role: ``training`` is the thread that entered the counter,
``producer`` every other thread (the DataLoader's ``samplers-DataLoader-producer-*``). Code run
under ``with counter.scope("model"):`` counts under that role instead (so the model's own syncs,
e.g. ``torch.bincount`` on CUDA, are told apart from the data path's on the training thread).

    with SyncCounter() as c:
        for _ in range(10):
            train_step(next(it))
    c.per_batch(10)   # {"training": 0.0, "producer": 1.0, "by_thread": {...}, "by_kind": {...}}

Not seen: syncs inside libraries that bypass PyTorch (CuPy's own ``synchronize`` / ``.get()``,
raw CUDA runtime calls); the library under test makes its host reads through PyTorch.
"""
from __future__ import annotations

import collections
import contextlib
import re
import threading
import warnings
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["SyncCounter", "SYNC_WARNING"]

#: The text of PyTorch's warning in ``set_sync_debug_mode("warn")``.
SYNC_WARNING = "called a synchronizing CUDA operation"
_SYNC_RE = re.compile(re.escape(SYNC_WARNING))

TRAINING, PRODUCER = "training", "producer"


class SyncCounter:
    """Count host syncs per thread while active (a context manager; module docstring).

    Parameters
    ----------
    training_thread : threading.Thread, optional
        The thread reported as ``training``; default: the thread that enters the counter.
    debug_mode : bool
        Turn on ``torch.cuda.set_sync_debug_mode("warn")`` while counting (default). Without a
        CUDA build, or with ``False``, only the patched explicit waits and :meth:`note` count;
        :attr:`tensor_syncs_observed` says which.
    """

    def __init__(self, training_thread: Optional[threading.Thread] = None,
                 debug_mode: bool = True) -> None:
        self.training_thread = training_thread
        self.debug_mode = bool(debug_mode)
        # (thread name, role, kind) -> count
        self.counts: "collections.Counter[Tuple[str, str, str]]" = collections.Counter()
        self.tensor_syncs_observed = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._active = False
        self._undo: List[Callable[[], None]] = []

    # ---------------------------------------------------------------------------- recording
    def note(self, kind: str) -> None:
        """Record one sync of ``kind`` on the calling thread (while active)."""
        if not self._active:
            return
        th = threading.current_thread()
        role = getattr(self._local, "scope", None) or (
            TRAINING if th is self.training_thread else PRODUCER)
        with self._lock:
            self.counts[(th.name, role, kind)] += 1

    @contextlib.contextmanager
    def scope(self, role: str):
        """Syncs of the calling thread inside the block count under ``role``."""
        if not isinstance(role, str) or not role:
            raise ValueError(f"role must be a non-empty str, got {role!r}")
        prev = getattr(self._local, "scope", None)
        self._local.scope = role
        try:
            yield
        finally:
            self._local.scope = prev

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    def _wrap(self, fn: Callable, kind: str) -> Callable:
        counter = self

        def wrapped(*args, **kwargs):
            outer = counter._depth() == 0
            counter._local.depth = counter._depth() + 1
            try:
                return fn(*args, **kwargs)
            finally:
                counter._local.depth -= 1
                if outer:
                    counter.note(kind)

        wrapped.__wrapped__ = fn
        wrapped.__name__ = getattr(fn, "__name__", kind)
        return wrapped

    def _show(self, message, category, filename, lineno, file=None, line=None):
        if _SYNC_RE.search(str(message)):
            if self._depth() == 0:        # inside a patched wait: counted there
                self.note("tensor sync (debug mode)")
            return
        self._old_show(message, category, filename, lineno, file, line)

    # ---------------------------------------------------------------------------- install
    def _patch(self, owner, name: str, kind: str) -> None:
        old = getattr(owner, name, None)
        if old is None or not callable(old):
            return
        own = name in vars(owner)        # else inherited: undo deletes the override
        setattr(owner, name, self._wrap(old, kind))
        self._undo.append((lambda: setattr(owner, name, old)) if own
                          else (lambda: delattr(owner, name)))

    def __enter__(self) -> "SyncCounter":
        import torch

        if self._active:
            raise RuntimeError("SyncCounter is already active")
        if self.training_thread is None:
            self.training_thread = threading.current_thread()
        cuda = torch.cuda
        self._patch(cuda, "synchronize", "torch.cuda.synchronize")
        self._patch(cuda.Stream, "synchronize", "stream.synchronize")
        self._patch(cuda.Event, "synchronize", "event.synchronize")
        # every sync warning reaches the hook, whatever the filters or registries say
        self._saved = warnings.catch_warnings()   # restores filters and showwarning on exit
        self._saved.__enter__()
        warnings.filterwarnings("always", message=".*" + re.escape(SYNC_WARNING))
        self._old_show = warnings.showwarning
        warnings.showwarning = self._show
        self._old_mode = None
        if self.debug_mode:
            try:
                self._old_mode = cuda.get_sync_debug_mode()
                cuda.set_sync_debug_mode("warn")
                self.tensor_syncs_observed = True
            except (AssertionError, AttributeError, RuntimeError):   # no CUDA build / device
                self._old_mode = None
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        import torch

        self._active = False
        if self._old_mode is not None:
            torch.cuda.set_sync_debug_mode(self._old_mode)
        self._saved.__exit__(None, None, None)
        while self._undo:
            self._undo.pop()()

    # ---------------------------------------------------------------------------- results
    def by_thread(self) -> Dict[str, int]:
        """``{thread name: count}``."""
        out: "collections.Counter[str]" = collections.Counter()
        for (name, _, _), n in self.counts.items():
            out[name] += n
        return dict(out)

    def by_role(self) -> Dict[str, int]:
        """``{role: count}``; ``training`` and ``producer`` always present."""
        out = {TRAINING: 0, PRODUCER: 0}
        for (_, role, _), n in self.counts.items():
            out[role] = out.get(role, 0) + n
        return out

    def by_kind(self) -> Dict[str, Dict[str, int]]:
        """``{role: {kind: count}}``."""
        out: Dict[str, Dict[str, int]] = {}
        for (_, role, kind), n in self.counts.items():
            d = out.setdefault(role, {})
            d[kind] = d.get(kind, 0) + n
        return out

    def per_batch(self, batches: int) -> Dict[str, object]:
        """Syncs per batch per role (``training``, ``producer`` and any scope), with the raw
        counts per thread and per kind."""
        if isinstance(batches, bool) or not isinstance(batches, int):
            raise TypeError(f"batches must be an int, got {type(batches).__name__}")
        if batches < 1:
            raise ValueError(f"batches must be >= 1, got {batches}")
        out: Dict[str, object] = {role: n / batches for role, n in self.by_role().items()}
        out.update(batches=batches, by_thread=self.by_thread(), by_kind=self.by_kind(),
                   tensor_syncs_observed=self.tensor_syncs_observed)
        return out
