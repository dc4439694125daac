"""Compressed feature tables: stored as bf16, fp16 or int8, gathered as float rows.

``ut.compress(feats, "int8")`` builds a :class:`CompressedTensor` from any float table the library
accepts (torch tensor, NumPy array, ``np.memmap``, shared memory), streaming it in chunks of
bounded size; with ``path=`` the result is written to a folder (``values.npy``, ``scale.npy``,
``offset.npy``, ``meta.json``) that :func:`load_compressed` later maps (``np.memmap``, no copy,
no re-quantisation). A gather reads the compressed row and writes the converted row in one pass:
on the GPU in one kernel (``cuda/gather_convert.cu``), on the CPU in one Numba loop
(``_convert_cpu.py``). Every entry point works as for a :class:`UnifiedTensor`: ``t[idx]``,
``torch.index_select(t, 0, idx)``, ``F.embedding(idx, t)``, ``ut.gather(t, idx, out=)``, the
loaders' ``features=`` and PyG ``data.x``. ``ut.cache(t, ...)`` keeps compressed rows on the GPU.

Storage kinds:

* ``"bf16"``, ``"fp16"``: the values rounded to bfloat16 / float16 (fp16 refuses values beyond its
  range, 65504, instead of storing infinities);
* ``"int8"``: ``x ~ q * scale + offset`` with ``q`` in [-128, 127] and ``scale``, ``offset``
  float32 per column (default) or per row. Per column, the range is the column's
  ``[quantile(1 - clip), quantile(clip)]`` (``clip=0.9999`` by default, estimated from up to
  ``sample_rows`` rows spread over the table): a few extreme values are clipped instead of
  stretching the column's step for every other value; ``clip=1.0`` uses the exact min / max.
  Per row, each row's exact min / max.

The build measures the reconstruction error of every column (``t.column_rmse``,
``t.column_max_error``, in the table's units, and the share of clipped values
``t.column_clipped``) and logs a summary.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["CompressedTensor", "compress", "load_compressed", "KINDS"]

logger = logging.getLogger("unified_tensor")

KINDS = ("bf16", "fp16", "int8")
# how each kind is held in memory / on disk (bf16 as its int16 bit patterns: NumPy has no bf16)
_STORE = {"bf16": (torch.int16, np.int16, 2), "fp16": (torch.float16, np.float16, 2),
          "int8": (torch.int8, np.int8, 1)}
_VIEW = {"bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.int8}
_OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_FLOAT_SOURCES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_CHUNK_BYTES = 64 << 20          # float32 bytes of source rows handled at once while building
_FORMAT_VERSION = 1
_FP16_MAX = 65504.0


class CompressedTensor(torch.Tensor):
    """A 2-D feature table stored compressed whose row gathers return floating-point rows.

    It presents as the float table it stands for: ``shape`` ``(N, F)``, ``dtype`` the output dtype
    (float32 unless asked otherwise), on the CPU. Gathers (``t[idx]``, ``index_select``,
    ``F.embedding``, ``ut.gather``) return plain tensors on the index's device; ``t[idx] = rows``
    quantises the rows with the table's scales. Other operations would silently act on the whole
    table or on the codes, so they raise ``TypeError``; :meth:`decompress` gives the float table.
    Build one with :func:`compress` or :func:`load_compressed`.
    """

    _ut_values: Any            # UnifiedTensor over the stored values ([N, F] int8 / fp16 / int16)
    _ut_kind: str
    _ut_scale: Optional[torch.Tensor]
    _ut_offset: Optional[torch.Tensor]
    _ut_per_row: bool
    _ut_report: Dict[str, Any]
    _ut_dev_scales: Dict[int, Tuple[torch.Tensor, torch.Tensor]]

    @staticmethod
    def _make(values: Any, kind: str, scale: Optional[torch.Tensor], offset: Optional[torch.Tensor],
              per_row: bool, dtype: torch.dtype, report: Optional[dict] = None) -> "CompressedTensor":
        plain = values._ut_plain
        t = torch.Tensor._make_wrapper_subclass(CompressedTensor, tuple(plain.shape), dtype=dtype,
                                                device=torch.device("cpu"), requires_grad=False)
        t._ut_values = values
        t._ut_kind = kind
        t._ut_scale = scale
        t._ut_offset = offset
        t._ut_per_row = per_row
        t._ut_report = dict(report or {})
        t._ut_dev_scales = {}
        return t

    # ------------------------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        """``"bf16"``, ``"fp16"`` or ``"int8"``."""
        return self._ut_kind

    @property
    def values(self) -> torch.Tensor:
        """The stored values, a CPU tensor ``[N, F]`` of bfloat16, float16 or int8 (no copy)."""
        return self._ut_values._ut_plain.view(_VIEW[self._ut_kind])

    @property
    def scale(self) -> Optional[torch.Tensor]:
        """int8: float32 scale per column (``[F]``) or per row (``[N]``); else ``None``."""
        return self._ut_scale

    @property
    def offset(self) -> Optional[torch.Tensor]:
        """int8: float32 offset per column or per row; else ``None``."""
        return self._ut_offset

    @property
    def per_row(self) -> bool:
        return self._ut_per_row

    @property
    def nbytes_stored(self) -> int:
        """Bytes of the stored values (what a gather reads; what ``ut.cache`` counts)."""
        p = self._ut_values._ut_plain
        return p.numel() * p.element_size()

    @property
    def column_rmse(self) -> Optional[torch.Tensor]:
        """Root-mean-square reconstruction error per column, measured by the build (``None``
        for a table loaded from a folder written before errors were recorded)."""
        return self._ut_report.get("column_rmse")

    @property
    def column_max_error(self) -> Optional[torch.Tensor]:
        """Largest absolute reconstruction error per column, measured by the build."""
        return self._ut_report.get("column_max_error")

    @property
    def column_clipped(self) -> Optional[torch.Tensor]:
        """int8 per column: share of each column's values clipped to its range by the build."""
        return self._ut_report.get("column_clipped")

    # ------------------------------------------------------------------------------ operations
    def decompress(self, rows: Optional[slice] = None) -> torch.Tensor:
        """The float table (or ``rows``, a slice) as a new CPU tensor of :attr:`dtype`."""
        n = self.shape[0]
        idx = torch.arange(n)[rows] if rows is not None else torch.arange(n)
        from ._gather import gather
        return gather(self, idx)

    def with_dtype(self, dtype: torch.dtype) -> "CompressedTensor":
        """The same stored table gathered as ``dtype`` rows (float32, bfloat16 or float16)."""
        dtype = _out_dtype(dtype)
        t = CompressedTensor._make(self._ut_values, self._ut_kind, self._ut_scale, self._ut_offset,
                                   self._ut_per_row, dtype, self._ut_report)
        t._ut_dev_scales = self._ut_dev_scales   # same scales, same device copies
        return t

    def device_scales(self, device_index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """int8: ``(scale, offset)`` on ``cuda:device_index`` (copied once per device)."""
        hit = self._ut_dev_scales.get(device_index)
        if hit is None:
            dev = torch.device("cuda", device_index)
            hit = (self._ut_scale.to(dev), self._ut_offset.to(dev))
            self._ut_dev_scales[device_index] = hit
        return hit

    def _write_rows(self, key: Any, value: Any) -> None:
        """``t[key] = value``: the rows quantised with the table's scales (clipped to the range
        they can represent), written into the stored values."""
        from ._gather import as_index_tensor

        if isinstance(key, slice):
            idx = torch.arange(self.shape[0])[key]
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            idx = torch.tensor([int(key)])
        else:
            idx = as_index_tensor(key, "index").reshape(-1)
        if idx.device.type != "cpu":
            idx = idx.cpu()
        n = self.shape[0]
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            bad = int(idx.max()) if int(idx.max()) >= n else int(idx.min())
            raise IndexError(f"index {bad} is out of bounds for dimension 0 with size {n}")
        idx = torch.where(idx < 0, idx + n, idx)
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value)
        if not (value.is_floating_point() or value.dtype in (torch.int8, torch.int16, torch.int32,
                                                            torch.int64, torch.uint8)):
            raise TypeError(f"rows written into a compressed table must be real numbers, got "
                            f"{value.dtype}")
        rows = value.detach().to("cpu", torch.float32).expand(idx.numel(), self.shape[1])
        if not bool(torch.isfinite(rows).all()):
            raise ValueError("rows written into a compressed table must be finite (NaN or Inf "
                             "cannot be stored)")
        codes = _encode(rows, self._ut_kind, self._ut_scale, self._ut_offset, self._ut_per_row,
                        idx)
        values = self._ut_values
        if values._ut_readonly:
            raise RuntimeError("this compressed table is read-only (opened with mode='r'); "
                               "load_compressed(path, mode='r+') to write into it")
        values[idx] = codes   # through the UnifiedTensor: GPU caches of the values follow

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        from ._gather import gather
        from ._tensor import _INDEX_SELECTS, _is_row_index
        import torch.nn.functional as F

        kwargs = kwargs or {}
        self = args[0] if args and isinstance(args[0], CompressedTensor) else None
        if func is torch.Tensor.__getitem__ and self is not None and len(args) == 2:
            key = args[1]
            if _is_row_index(key):
                return gather(self, key)
            if isinstance(key, slice):
                return self.decompress(key)
            if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
                return gather(self, torch.tensor([int(key)]))[0]
        elif func is torch.Tensor.__setitem__ and self is not None and len(args) == 3:
            return self._write_rows(args[1], args[2])
        elif func in _INDEX_SELECTS:
            bound = _bind_index_select(*args, **kwargs)
            if bound is not None:
                return gather(bound[0], bound[1], out=bound[2])
        elif func is F.embedding:
            bound = _bind_embedding(*args, **kwargs)
            if bound is not None:
                return gather(bound[1], bound[0])
        name = getattr(func, "__name__", str(func))
        if name == "__get__":   # a property: only metadata ones (no data behind a wrapper)
            name = getattr(getattr(func, "__self__", None), "__name__", name)
            if name in _PROPERTIES:
                with torch._C.DisableTorchFunctionSubclass():
                    return func(*args, **kwargs)
        elif name in _METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        elif name == "is_contiguous":
            return True
        elif name == "is_pinned":
            return False
        elif name == "to" and self is not None:
            dt = _to_dtype_only(args[1:], kwargs)
            if dt is not None:
                return self if dt == self.dtype else self.with_dtype(dt)
        elif name in ("float", "half", "bfloat16") and self is not None and len(args) == 1:
            return self.with_dtype({"float": torch.float32, "half": torch.float16,
                                    "bfloat16": torch.bfloat16}[name])
        raise TypeError(f"{name} on a compressed table is not supported: it stores codes, not "
                        f"the float values. Gather rows (t[idx], torch.index_select, F.embedding, "
                        f"ut.gather) or call t.decompress() for the float table")

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        # Only what __torch_function__ let through reaches here (a wrapper has no data behind
        # it): nothing may compute on it.
        raise TypeError(f"{func} on a compressed table is not supported; gather rows (t[idx]) "
                        f"or call t.decompress() for the float table")

    def __repr__(self, *args: Any, **kwargs: Any) -> str:  # noqa: D105
        extra = f", per={'row' if self._ut_per_row else 'column'}" if self._ut_kind == "int8" else ""
        return (f"CompressedTensor(kind={self._ut_kind!r}{extra}, shape={tuple(self.shape)}, "
                f"dtype={self.dtype}, stored={self.nbytes_stored / 2**20:.1f} MiB)")

    def __reduce_ex__(self, proto):
        return (_rebuild, (self._ut_values, self._ut_kind, self._ut_scale, self._ut_offset,
                           self._ut_per_row, str(self.dtype).replace("torch.", ""),
                           {k: v for k, v in self._ut_report.items()}))

    def __deepcopy__(self, memo):
        import copy
        return _rebuild(copy.deepcopy(self._ut_values, memo), self._ut_kind,
                        None if self._ut_scale is None else self._ut_scale.clone(),
                        None if self._ut_offset is None else self._ut_offset.clone(),
                        self._ut_per_row, str(self.dtype).replace("torch.", ""),
                        dict(self._ut_report))


# Methods and properties a wrapper answers from its shape and dtype (no data is read).
_METADATA = {"size", "dim", "numel", "__len__", "is_floating_point", "is_complex", "element_size",
             "ndimension", "nelement", "stride", "storage_offset", "get_device", "__hash__",
             "is_signed", "has_names", "__format__"}
_PROPERTIES = {"shape", "dtype", "device", "is_cuda", "ndim", "layout", "requires_grad",
               "is_sparse", "is_quantized", "is_meta", "is_nested", "names", "grad", "grad_fn",
               "is_leaf", "is_mps", "is_xpu", "is_mkldnn", "is_cpu", "itemsize", "nbytes"}


def _bind_index_select(input=None, dim=None, index=None, *, out=None):
    if isinstance(input, CompressedTensor) and dim in (0, -2) and isinstance(index, torch.Tensor) \
            and index.dim() == 1:
        return input, index, out
    return None


def _bind_embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
                    scale_grad_by_freq=False, sparse=False):
    if isinstance(weight, CompressedTensor) and padding_idx is None and max_norm is None \
            and isinstance(input, torch.Tensor):
        return input, weight
    return None


def _to_dtype_only(args: tuple, kwargs: dict) -> Optional[torch.dtype]:
    """The dtype of ``t.to(dtype)`` / ``t.to(dtype=...)`` when nothing else is asked for."""
    dt = kwargs.get("dtype")
    rest = {k: v for k, v in kwargs.items() if k != "dtype"}
    if len(args) == 1 and isinstance(args[0], torch.dtype) and dt is None:
        dt = args[0]
    elif args:
        return None
    if dt is None or rest:
        return None
    return dt


def _rebuild(values, kind, scale, offset, per_row, dtype, report) -> CompressedTensor:
    return CompressedTensor._make(values, kind, scale, offset, per_row, getattr(torch, dtype),
                                  report)


# A checkpoint holding a compressed table loads under torch.load(weights_only=True), the default.
if hasattr(torch.serialization, "add_safe_globals"):
    torch.serialization.add_safe_globals([_rebuild])


def _out_dtype(dtype: Any) -> torch.dtype:
    if dtype not in _OUT_DTYPES:
        raise TypeError(f"a compressed table is gathered as float32, bfloat16 or float16 rows, "
                        f"got dtype={dtype!r}")
    return dtype


# ---------------------------------------------------------------------------------- encoding
def _encode(rows: torch.Tensor, kind: str, scale: Optional[torch.Tensor],
            offset: Optional[torch.Tensor], per_row: bool, row_ids: Optional[torch.Tensor] = None
            ) -> torch.Tensor:
    """float32 rows -> stored codes (the storage dtype of ``kind``)."""
    if kind == "bf16":
        return rows.to(torch.bfloat16).view(torch.int16)
    if kind == "fp16":
        big = rows.abs().amax() if rows.numel() else torch.tensor(0.0)
        if float(big) > _FP16_MAX:
            raise ValueError(f"a value of magnitude {float(big):.4g} does not fit float16 (largest "
                             f"65504); store this table as 'bf16' or 'int8'")
        return rows.to(torch.float16)
    if per_row:
        s = scale[row_ids].unsqueeze(1)
        o = offset[row_ids].unsqueeze(1)
    else:
        s, o = scale.unsqueeze(0), offset.unsqueeze(0)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round((rows - o) / safe)
    q = torch.where(s > 0, q, torch.zeros_like(q))
    return q.clamp_(-128, 127).to(torch.int8)


def _decode(codes: torch.Tensor, kind: str, scale, offset, per_row: bool,
            row_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Stored codes -> float32 rows (the reference the kernels match)."""
    if kind == "bf16":
        return codes.view(torch.bfloat16).float()
    if kind == "fp16":
        return codes.float()
    if per_row:
        return codes.float() * scale[row_ids].unsqueeze(1) + offset[row_ids].unsqueeze(1)
    return codes.float() * scale + offset


def _int8_params(lo: torch.Tensor, hi: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """scale, offset mapping [lo, hi] onto the 256 codes [-128, 127]."""
    lo64, hi64 = lo.double(), hi.double()
    scale = ((hi64 - lo64) / 255.0)
    offset = lo64 + 128.0 * scale
    return scale.float(), offset.float()


# ---------------------------------------------------------------------------------- building
def _source(x: Any) -> Tuple[Any, Tuple[int, int]]:
    """A chunkable view of ``x`` (a torch tensor or NumPy array, 2-D, float) and its shape."""
    from ._tensor import UnifiedTensor

    if isinstance(x, CompressedTensor):
        raise TypeError("the table is already compressed")
    if isinstance(x, UnifiedTensor):
        x = x._ut_plain
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise TypeError(f"ut.compress takes a floating-point table, got a NumPy array of dtype "
                            f"{x.dtype} (integer, boolean and complex tables are not compressed: "
                            f"labels and ids must stay exact)")
    elif isinstance(x, torch.Tensor):
        if x.dtype not in _FLOAT_SOURCES:
            raise TypeError(f"ut.compress takes a floating-point table, got dtype {x.dtype} "
                            f"(integer, boolean and complex tables are not compressed: labels and "
                            f"ids must stay exact)")
        if x.device.type != "cpu":
            raise ValueError(f"ut.compress takes a table in host memory, got one on {x.device}")
        if x.requires_grad:
            x = x.detach()
    else:
        raise TypeError(f"ut.compress takes a torch.Tensor or NumPy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"ut.compress takes a 2-D table [rows, features], got shape "
                         f"{tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"ut.compress: the table is empty (shape {tuple(x.shape)})")
    return x, (int(x.shape[0]), int(x.shape[1]))


def _chunk(x: Any, a: int, b: int) -> torch.Tensor:
    """Rows [a, b) of the source as a float32 CPU tensor (a copy of just that chunk)."""
    part = x[a:b]
    if isinstance(part, np.ndarray):
        return torch.from_numpy(np.array(part, dtype=np.float32, order="C", copy=True))
    return part.to(torch.float32).contiguous()


def _check_finite(chunk: torch.Tensor, start: int) -> None:
    ok = torch.isfinite(chunk)
    if not bool(ok.all()):
        r, c = (~ok).nonzero()[0].tolist()
        raise ValueError(f"ut.compress: the table holds {chunk[r, c].item()} at row {start + r}, "
                         f"column {c}; NaN and Inf cannot be compressed (clean or impute them "
                         f"first)")


def _progress(total: int, enabled: Optional[bool], nbytes: int, what: str):
    if enabled is None:
        enabled = nbytes >= (1 << 30)
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        logger.info("%s: %d rows (install tqdm for a progress bar)", what, total)
        return None
    return tqdm(total=total, desc=what, unit="rows", unit_scale=True, leave=False)


def compress(table: Any, kind: str = "int8", *, per: str = "column", clip: float = 0.9999,
             sample_rows: int = 1 << 20, dtype: torch.dtype = torch.float32,
             path: Union[None, str, os.PathLike] = None, chunk_rows: Optional[int] = None,
             progress: Optional[bool] = None, seed: int = 0) -> CompressedTensor:
    """Compress a float table for gathering: stored as ``kind``, gathered as ``dtype`` rows.

    Parameters
    ----------
    table : torch.Tensor, numpy.ndarray (``np.memmap`` included) or UnifiedTensor
        A 2-D float table ``[N, F]`` (float16, bfloat16, float32 or float64) in host memory. It
        is read in chunks (``chunk_rows`` rows, default about 64 MiB of float32), so a table
        larger than memory (a memmap) is compressed in bounded memory. NaN or Inf raise
        ``ValueError`` (naming the row and column); integer, boolean and complex tables raise
        ``TypeError`` (labels and ids are never compressed).
    kind : {"int8", "bf16", "fp16"}
        Storage: 1 byte per value with scales, or 2 bytes (bfloat16 / float16).
    per : {"column", "row"}
        int8: one ``(scale, offset)`` per feature column (default) or per row.
    clip : float in (0.5, 1]
        int8 per column: each column's range is ``[quantile(1 - clip), quantile(clip)]``,
        estimated from up to ``sample_rows`` rows spread evenly over the table; values outside
        are clipped (counted in :attr:`CompressedTensor.column_clipped`). ``1.0``: exact min/max.
    dtype : torch.dtype
        What gathers return: ``torch.float32`` (default), ``torch.bfloat16`` or ``torch.float16``
        (for models trained in half precision); :meth:`CompressedTensor.with_dtype` changes it.
    path : str or os.PathLike, optional
        A folder to write the compressed table to (created; an existing one is replaced when the
        new one is complete). The result then maps that folder read-only, as
        :func:`load_compressed` does in later runs.
    progress : bool, optional
        A progress bar (tqdm) for the build; ``None``: for tables of 1 GiB or more.

    Returns
    -------
    CompressedTensor
        On the CPU, pinned in place for zero-copy CUDA gathers when CUDA is available.

    Examples
    --------
    >>> import torch, unified_tensor as ut
    >>> feats = torch.randn(1000, 16)
    >>> t = ut.compress(feats, "int8")
    >>> t[torch.tensor([0, 5])].shape, t.dtype
    (torch.Size([2, 16]), torch.float32)
    >>> bool((t[torch.arange(1000)] - feats).abs().max() < 0.1)
    True
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if per not in ("column", "row"):
        raise ValueError(f"per must be 'column' or 'row', got {per!r}")
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0.5 < clip <= 1.0:
        raise ValueError(f"clip must be a fraction in (0.5, 1], got {clip!r}")
    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 1:
        raise ValueError(f"sample_rows must be an int >= 1, got {sample_rows!r}")
    dtype = _out_dtype(dtype)
    x, (n, f) = _source(table)
    if chunk_rows is None:
        chunk_rows = max(1, _CHUNK_BYTES // (4 * f))
    elif isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be an int >= 1, got {chunk_rows!r}")
    per_row = kind == "int8" and per == "row"
    torch_dt, np_dt, itemsize = _STORE[kind]
    folder = tmp = None
    if path is not None:
        folder = Path(path)
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
        tmp.mkdir(parents=True)
    try:
        # 1. int8 per column: the column ranges (exact pass, or a sample's quantiles)
        scale = offset = None
        if kind == "int8" and not per_row:
            lo, hi = _column_range(x, n, f, clip, sample_rows, chunk_rows, seed)
            scale, offset = _int8_params(lo, hi)
        elif per_row:
            scale = torch.empty(n, dtype=torch.float32)
            offset = torch.empty(n, dtype=torch.float32)
        # 2. the values, chunk by chunk, with the error per column
        if tmp is not None:
            codes_np = np.lib.format.open_memmap(tmp / "values.npy", mode="w+", dtype=np_dt,
                                                 shape=(n, f))
            codes = torch.from_numpy(codes_np)
        else:
            codes_np = None
            codes = torch.empty((n, f), dtype=torch_dt)
        sq = torch.zeros(f, dtype=torch.float64)
        worst = torch.zeros(f, dtype=torch.float32)
        clipped = torch.zeros(f, dtype=torch.int64)
        bar = _progress(n, progress, n * f * 4, f"ut.compress({kind})")
        for a in range(0, n, chunk_rows):
            b = min(n, a + chunk_rows)
            rows = _chunk(x, a, b)
            _check_finite(rows, a)
            ids = torch.arange(a, b)
            if per_row:
                s, o = _int8_params(rows.amin(1), rows.amax(1))
                scale[a:b], offset[a:b] = s, o
            c = _encode(rows, kind, scale, offset, per_row, ids)
            codes[a:b] = c
            err = _decode(c, kind, scale, offset, per_row, ids) - rows
            sq += err.double().square().sum(0)
            worst = torch.maximum(worst, err.abs().amax(0))
            if kind == "int8" and not per_row:
                clipped += ((rows < offset - 128.0 * scale - scale * 0.5)
                            | (rows > offset + 127.0 * scale + scale * 0.5)).sum(0)
            if bar is not None:
                bar.update(b - a)
        if bar is not None:
            bar.close()
        report = {"column_rmse": (sq / n).sqrt().float(), "column_max_error": worst}
        if kind == "int8" and not per_row:
            report["column_clipped"] = clipped.double() / n
        _log_report(kind, report, x, n)
        if tmp is not None:
            codes_np.flush()
            del codes, codes_np
            if scale is not None:
                np.save(tmp / "scale.npy", scale.numpy())
                np.save(tmp / "offset.npy", offset.numpy())
            for k in ("column_rmse", "column_max_error", "column_clipped"):
                if k in report:
                    np.save(tmp / f"{k}.npy", report[k].numpy())
            meta = {"format": _FORMAT_VERSION, "kind": kind, "per": per if kind == "int8" else None,
                    "shape": [n, f], "clip": clip if kind == "int8" and not per_row else None}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
            tmp = None
            return load_compressed(folder, dtype=dtype)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    from ._tensor import unified

    return CompressedTensor._make(unified(codes), kind, scale, offset, per_row, dtype, report)


def _column_range(x: Any, n: int, f: int, clip: float, sample_rows: int, chunk_rows: int,
                  seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-column [lo, hi]: exact min/max (clip=1, or every row fits the sample), else the
    quantiles (1 - clip, clip) of up to ``sample_rows`` rows spread over the table."""
    if clip >= 1.0:
        lo = torch.full((f,), math.inf)
        hi = torch.full((f,), -math.inf)
        for a in range(0, n, chunk_rows):
            rows = _chunk(x, a, min(n, a + chunk_rows))
            _check_finite(rows, a)
            lo = torch.minimum(lo, rows.amin(0))
            hi = torch.maximum(hi, rows.amax(0))
        return lo, hi
    if n <= sample_rows:
        ids = np.arange(n)
    else:   # evenly spread, jittered: independent of any order the rows were written in
        rng = np.random.default_rng(seed)
        ids = np.unique(rng.choice(n, size=sample_rows, replace=False))
    parts = []
    for a in range(0, ids.size, chunk_rows):
        sel = ids[a:a + chunk_rows]
        if isinstance(x, np.ndarray):
            part = torch.from_numpy(np.asarray(x[sel], dtype=np.float32))
        else:
            part = x[torch.from_numpy(sel)].to(torch.float32)
        _check_finite(part, int(sel[0]))
        parts.append(part)
    sample = torch.cat(parts)
    q = torch.tensor([1.0 - clip, clip], dtype=torch.float64)
    if sample.shape[0] * f <= (1 << 24):
        qs = torch.quantile(sample.double(), q, dim=0)
    else:   # torch.quantile's input limit: column blocks
        step = max(1, (1 << 24) // sample.shape[0])
        qs = torch.cat([torch.quantile(sample[:, c:c + step].double(), q, dim=0)
                        for c in range(0, f, step)], dim=1)
    return qs[0].float(), qs[1].float()


def _log_report(kind: str, report: dict, x: Any, n: int) -> None:
    rmse = report["column_rmse"]
    logger.info("ut.compress(%s): %d rows; reconstruction RMSE per column: median %.3g, max %.3g "
                "(column %d)", kind, n, float(rmse.median()), float(rmse.max()), int(rmse.argmax()))


# ---------------------------------------------------------------------------------- loading
def load_compressed(path: Union[str, os.PathLike], *, dtype: torch.dtype = torch.float32,
                    mode: str = "r") -> CompressedTensor:
    """Map a compressed table written by ``ut.compress(..., path=path)`` (no copy).

    ``mode``: ``"r"`` (read-only; writes raise) or ``"r+"`` (``t[idx] = rows`` writes through to
    the file). The values are pinned in place for zero-copy CUDA gathers.
    """
    from ._tensor import unified

    folder = Path(path)
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{folder} is not a compressed table (no meta.json; write one with "
                                f"ut.compress(table, kind, path=...))")
    try:
        meta = json.loads(meta_file.read_text())
        kind, (n, f) = meta["kind"], meta["shape"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{meta_file}: not a valid compressed-table description ({exc})") from None
    if meta.get("format") != _FORMAT_VERSION or kind not in KINDS:
        raise ValueError(f"{meta_file}: format {meta.get('format')!r} / kind {kind!r} is not one "
                         f"this version reads (format {_FORMAT_VERSION}, kinds {KINDS})")
    _, np_dt, _ = _STORE[kind]
    try:
        values = np.load(folder / "values.npy", mmap_mode=mode)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder / 'values.npy'}: cannot be mapped ({exc})") from None
    if values.dtype != np_dt or values.shape != (n, f):
        raise ValueError(f"{folder / 'values.npy'} holds {values.dtype} {values.shape}, the "
                         f"description says {np.dtype(np_dt)} {(n, f)}")
    per_row = kind == "int8" and meta.get("per") == "row"
    scale = offset = None
    if kind == "int8":
        scale = torch.from_numpy(np.load(folder / "scale.npy").astype(np.float32))
        offset = torch.from_numpy(np.load(folder / "offset.npy").astype(np.float32))
        want = n if per_row else f
        if scale.shape != (want,) or offset.shape != (want,):
            raise ValueError(f"{folder}: scale/offset have shapes {tuple(scale.shape)}/"
                             f"{tuple(offset.shape)}, expected ({want},)")
    report = {}
    for k in ("column_rmse", "column_max_error", "column_clipped"):
        p = folder / f"{k}.npy"
        if p.is_file():
            report[k] = torch.from_numpy(np.load(p))
    return CompressedTensor._make(unified(values), kind, scale, offset, per_row, _out_dtype(dtype),
                                  report)
