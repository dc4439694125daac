"""Every write into a table, whatever route it takes (issue 19, item 1).

A table needs its writes watched when it is **read-only** (its source is: ``np.load(...,
mmap_mode="r")`` maps ``PROT_READ`` pages, where a write kills the process; ``np.frombuffer`` over
``bytes`` would change an immutable object) or **cached** (``ut.cache``: the GPU copies of its rows
must follow a change). A list of op names always misses a route (the tensor passed by keyword to
``torch.nn.init.normal_``, ``F.relu(t, inplace=True)``, ``out=(t, idx)``, a view's ``mul_``), so
the check works one level down, on the ATen ops themselves: each op's schema marks the arguments
it writes (``Tensor(a!)``), and :class:`_WriteWatch`, a dispatch mode entered only around ops that
involve a watched table, checks those arguments' memory **before** the kernel runs:

* memory of a read-only table: ``RuntimeError``, nothing written;
* memory of a cached table: the op runs, then the cached rows it touched are refreshed (the
  rows an indexed write names: ``index_put_``/``index_copy_``/``index_fill_``/``index_add_``/
  ``index_reduce_`` along dim 0 of the table or a row slice of it; else the row range the
  written tensor's memory spans; see :func:`rows_written`).

Views of a watched table (``t[0:2]``, ``t[0]``, ``t.T``, ``t.detach()``, ``t.data``) come back
as :class:`TableView`, a thin subclass whose ops go through the same check, so a write through a
view is seen too; views of other tables stay plain tensors. ``t.numpy()`` of a read-only table is a
read-only array.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["TableView", "watched_tables", "watched_call", "rows_written"]


def span(t: torch.Tensor) -> Tuple[int, int]:
    """Byte range ``[start, end)`` a strided CPU tensor can touch."""
    start = t.data_ptr()
    if t.numel() == 0:
        return start, start
    extent = sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()))
    return start, start + (extent + 1) * t.element_size()


def _table_span(table: Any) -> Tuple[int, int]:
    plain = table._ut_plain
    start = plain.data_ptr()
    return start, start + plain.numel() * plain.element_size()


def _overlaps(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _needs_watch(table: Any) -> bool:
    return bool(table._ut_readonly or table._ut_caches)


def _iter(x: Any, depth: int = 0) -> Iterable[Any]:
    if depth > 4:
        return
    if isinstance(x, (list, tuple)):
        for v in x:
            yield from _iter(v, depth + 1)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _iter(v, depth + 1)
    else:
        yield x


def watched_tables(args: tuple, kwargs: dict) -> List[Any]:
    """The read-only or cached tables among ``args`` / ``kwargs`` (UnifiedTensors, and the
    tables behind :class:`TableView` arguments), each once."""
    from ._tensor import UnifiedTensor

    out: List[Any] = []
    for x in _iter((args, kwargs)):
        table = x if isinstance(x, UnifiedTensor) else \
            x._ut_table if isinstance(x, TableView) else None
        if table is not None and _needs_watch(table) and not any(table is t for t in out):
            out.append(table)
    return out


# Ops that write rows of their first argument named by an index along a dimension:
# op name -> how to find (dim, index) in its arguments.
_INDEXED = {"index_copy_", "index_fill_", "index_add_", "index_reduce_"}
_INDEX_PUT = {"index_put_", "_index_put_impl_"}


def _op_name(func: Any) -> str:
    return getattr(func, "__name__", str(func)).split(".")[0]


def _row_ids(index: Any, m: int) -> Optional[torch.Tensor]:
    """Rows ``[0, m)`` an index tensor along dim 0 names (CPU int64), or ``None`` when it is not
    a CPU integer/bool tensor (the caller falls back to the written memory's span)."""
    if not isinstance(index, torch.Tensor) or index.device.type != "cpu":
        return None
    if index.dtype == torch.bool:
        mask = index.reshape(index.shape[0], -1).any(1) if index.dim() > 1 else index.reshape(-1)
        return mask.nonzero().reshape(-1)
    if index.is_floating_point() or index.is_complex():
        return None
    r = index.reshape(-1).to(torch.int64)
    r = torch.where(r < 0, r + m, r)
    return r[(r >= 0) & (r < m)]   # out-of-range ids make the op raise: nothing to refresh


def rows_written(func: Any, args: tuple, kwargs: dict, x: torch.Tensor, plain: torch.Tensor
                 ) -> Union[Tuple[int, int], torch.Tensor]:
    """The rows of table ``plain`` (contiguous) that op ``func`` may write through its argument
    ``x``: a CPU int64 tensor of row ids for an indexed write along dim 0 of the table or of a
    row slice of it (``t[ids] = v``, ``t[a:b].index_copy_(0, i, v)``), else the range
    ``(lo, hi)`` of rows that ``x``'s memory spans (a slice, a row, a column, the whole table)."""
    n = plain.shape[0]
    esize = plain.element_size()
    row_bytes = max(1, plain[0].numel() * esize) if n else 1
    t0 = plain.data_ptr()
    name = _op_name(func)
    if (name in _INDEX_PUT or name in _INDEXED) and args and args[0] is x \
            and x.dim() == plain.dim() and x.stride() == plain.stride() \
            and x.shape[1:] == plain.shape[1:] and (x.data_ptr() - t0) % row_bytes == 0:
        index = None
        if name in _INDEX_PUT:
            indices = args[1] if len(args) > 1 else kwargs.get("indices")
            if isinstance(indices, (list, tuple)) and indices:
                index = indices[0]
        else:
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if isinstance(dim, int) and dim % x.dim() == 0:
                index = args[2] if len(args) > 2 else kwargs.get("index")
        ids = _row_ids(index, x.shape[0]) if index is not None else None
        if ids is not None:
            return ids + (x.data_ptr() - t0) // row_bytes
    s0, s1 = span(x)
    lo = max(0, (s0 - t0) // row_bytes)
    hi = min(n, -(-(s1 - t0) // row_bytes))
    return (lo, max(lo, hi))


class _WriteWatch(TorchDispatchMode):
    """Checks the arguments each ATen op writes (its schema's ``a!``) against the watched tables'
    memory before the op runs (read-only: refuse), and notes the cached tables written and the
    rows each write touched."""

    def __init__(self, tables: List[Any]) -> None:
        super().__init__()
        self.tables = [(t, _table_span(t)) for t in tables]
        self.written: List[Any] = []
        self.rows: Dict[int, list] = {}   # id(table) -> rows written (see rows_written)
        # each cached table's version before the op: its caches were current then, or not
        self.versions = {id(t): t._ut_plain._version for t in tables if t._ut_caches}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        schema = getattr(func, "_schema", None)
        if schema is not None:
            for i, a in enumerate(schema.arguments):
                info = a.alias_info
                if info is None or not info.is_write:
                    continue
                if a.kwarg_only or i >= len(args):
                    v = kwargs.get(a.name)
                else:
                    v = args[i]
                for x in (v if isinstance(v, (list, tuple)) else (v,)):
                    if isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.numel():
                        self._check(func, x, args, kwargs)
        return func(*args, **kwargs)

    def _check(self, func: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> None:
        from ._tensor import check_writable

        s = span(x)
        name = _op_name(func)
        for table, ts in self.tables:
            if not _overlaps(s, ts):
                continue
            if table._ut_readonly:
                raise RuntimeError(
                    f"{name}: writes into a read-only UnifiedTensor (its source is read-only, "
                    f"e.g. np.load(..., mmap_mode='r') or np.frombuffer over bytes); nothing was "
                    f"written. Modify a copy (t.clone()) instead")
            if not any(table is w for w in self.written):
                self.written.append(table)
            if table._ut_caches:
                self.rows.setdefault(id(table), []).append(
                    rows_written(func, args, kwargs, x, table._ut_plain))
        check_writable(x, name)   # read-only memory of any other table


def watched_call(func: Any, args: tuple, kwargs: dict, tables: List[Any], unwrap) -> Any:
    """``func`` on the plain tensors with every write checked; the cached rows it wrote are
    refreshed, and views of the watched tables in the result come back as :class:`TableView`."""
    watch = _WriteWatch(tables)
    try:
        with watch:
            result = func(*unwrap(args), **unwrap(kwargs))
    finally:   # even when the op raised part-way: what it may have written is refreshed
        if watch.written:
            from ._cache import refresh_all   # the GPU copies of cached rows follow the change

            for table in watch.written:
                if table._ut_caches:
                    refresh_all(table, watch.rows.get(id(table)), watch.versions.get(id(table)))
    return _wrap_views(result, tables)


def _wrap_views(result: Any, tables: List[Any], depth: int = 0) -> Any:
    if isinstance(result, torch.Tensor) and not isinstance(result, TableView) \
            and result.device.type == "cpu" and result.numel():
        s = span(result)
        for table in tables:
            if table._ut_plain is not result and _overlaps(s, _table_span(table)):
                return TableView.of(result, table)
        return result
    if isinstance(result, np.ndarray) and result.size and result.flags.writeable:
        start = result.__array_interface__["data"][0]
        s = (start, start + result.nbytes)
        if any(t._ut_readonly and _overlaps(s, _table_span(t)) for t in tables):
            result.flags.writeable = False
        return result
    if isinstance(result, tuple) and depth < 2 and not hasattr(result, "_fields"):
        return tuple(_wrap_views(r, tables, depth + 1) for r in result)
    if isinstance(result, list) and depth < 2:
        return [_wrap_views(r, tables, depth + 1) for r in result]
    return result


class TableView(torch.Tensor):
    """A view of a read-only or cached UnifiedTensor (``t[0:2]``, ``t[0]``, ``t.T``): an ordinary
    CPU tensor whose writes are checked like the table's own (refused into read-only memory; a
    cached table's caches refreshed). Ops on it return plain tensors, or views of the same kind."""

    _ut_plain: torch.Tensor
    _ut_table: Any   # the UnifiedTensor: it (its registration, caches) lives as long as its views

    @staticmethod
    def of(plain: torch.Tensor, table: Any) -> "TableView":
        v = plain.as_subclass(TableView)
        v._ut_plain = plain
        v._ut_table = table
        return v

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        from ._tensor import _unwrap

        kwargs = kwargs or {}
        tables = watched_tables(args, kwargs)
        if not tables:   # the table is no longer watched (uncached): plain semantics
            return func(*_unwrap(args), **_unwrap(kwargs))
        return watched_call(func, args, kwargs, tables, _unwrap)

    def __repr__(self, *args: Any, **kwargs: Any) -> str:  # noqa: D105
        return repr(self._ut_plain)   # prints as the tensor it is
