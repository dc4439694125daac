"""Shared test helpers: dtypes, index dtypes, odd shapes, capability probes, fixtures."""
from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys

import torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
          torch.int16, torch.int32, torch.int64, torch.bool]
IDTYPES = [torch.int32, torch.int64]
# Trailing shapes of a table row: widths 1, 3, 100, 257 and a multi-dimensional row.
ROW_SHAPES = [(1,), (3,), (100,), (257,), (13, 3), ()]


@functools.lru_cache(maxsize=None)
def has_gpu() -> bool:
    from unified_tensor._deps import cuda_available
    return cuda_available()


@functools.lru_cache(maxsize=None)
def has_dgl() -> bool:
    try:
        import dgl  # noqa: F401
    except Exception:
        return False
    return True


def make_table(n: int, row_shape, dtype, seed: int = 0) -> torch.Tensor:
    """A contiguous CPU table of `n` rows with distinct-ish values of any dtype."""
    g = torch.Generator().manual_seed(seed)
    shape = (n,) + tuple(row_shape)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return torch.randint(lo, hi, shape, generator=g, dtype=torch.int64).to(dtype)


@contextlib.contextmanager
def cuda_path_disabled(monkeypatch):
    """Run the body with the CUDA path switched off by the library's env switch."""
    monkeypatch.setenv("UNIFIED_TENSOR_DISABLE_CUDA", "1")
    yield


@functools.lru_cache(maxsize=None)
def _lowered_names(source: str) -> dict:
    from unified_tensor import _kernels

    return _kernels.compile_cubin(source, _kernels.registered()[source], arch="sm_80")[1]


def kernel_arg_dtypes(source: str, instance: str) -> list:
    """NumPy scalar type each argument of kernel ``instance`` must be passed as (pointers: uint64),
    read from the signature NVRTC mangled (needs CuPy's NVRTC bindings, no GPU)."""
    import numpy as np

    s = _lowered_names(source)[instance].split("EEv", 1)[1]
    builtin = {"x": np.int64, "y": np.uint64, "i": np.int32, "j": np.uint32}
    out, i = [], 0

    def skip_type(i: int) -> int:
        if s[i] in "TS":                     # template parameter / substitution: up to '_'
            return s.index("_", i) + 1
        return i + 1                         # builtin

    while i < len(s):
        if s[i] == "P":                      # pointer (to const)
            i += 2 if s[i + 1] == "K" else 1
            i = skip_type(i)
            out.append(np.uint64)
        elif s[i] == "S":                    # a repeated type: in these kernels always a pointer
            i = skip_type(i)
            out.append(np.uint64)
        else:
            out.append(builtin[s[i]])
            i += 1
    return out


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(rel_path: str, *args: str, timeout: float = 240,
               check: bool = True) -> "subprocess.CompletedProcess[str]":
    """Run ``python <repo>/<rel_path> args...`` from the checkout (``PYTHONPATH`` = the repo) and
    return the finished process; with ``check`` a non-zero exit fails the test with the output."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.join(REPO_ROOT, rel_path), *map(str, args)]
    p = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n"
                             f"{p.stderr[-3000:]}")
    return p


def ref_sample_layer(indptr, indices, eids, seeds, fanout, replace, key, excl=()):
    """One CPU/GPU sampler layer in plain Python: ``(src, dst_local, eid)`` lists, edge by edge.
    Each node draws from its in-edges minus the CSC positions in ``excl``, in CSC order, exactly
    as the kernels index them (``ut::draw``, Floyd's algorithm without replacement)."""
    from samplers.sampling._layer_cpu import draw_py

    ex = set(int(p) for p in excl)
    src, dst, eid = [], [], []
    for i, v in enumerate(int(s) for s in seeds):
        start, end = int(indptr[v]), int(indptr[v + 1])
        kept = [p for p in range(start, end) if p not in ex]
        deg = len(kept)
        if deg == 0:
            continue
        if fanout < 0 or (not replace and deg <= fanout):
            picks = list(range(deg))
        elif replace:
            picks = [draw_py(key, v, t) % deg for t in range(fanout)]
        else:
            picks = []
            for t in range(fanout):
                j = deg - fanout + t
                r = draw_py(key, v, t) % (j + 1)
                picks.append(j if r in picks else r)
        for p in picks:
            pos = kept[p]
            src.append(int(indices[pos]))
            dst.append(i)
            eid.append(int(eids[pos]) if eids is not None else pos)
    return src, dst, eid
