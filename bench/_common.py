"""Shared helpers for the scripts in bench/: timing, environment record, JSON, tables, summaries.

Import from a script in bench/ with::

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import time_cuda, time_host, env_info, write_json, format_table, is_oom

Timing follows the project's benchmark habits: the caller checks correctness first; then ``warmup`` untimed
calls; then up to ``iters`` timed calls (fewer when one call is slow, never fewer than
``min_iters``), reported as the median. GPU work is timed with CUDA events on the current stream;
mixed host+GPU work with the wall clock between two ``torch.cuda.synchronize()``.

Run as a script it prints a summary of result JSONs (used by bench/gpu_check.sh)::

    python bench/_common.py summary bench/results/gather_*.json
"""
from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

__all__ = ["hugepage_empty", "anon_hugepages_kb", "median", "gbps", "time_cuda", "time_host", "is_oom", "free_cuda", "env_info",
           "device_tag", "write_json", "format_table", "print_table", "summarize", "host_mem_available"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hugepage_empty(nbytes: int):
    """A uint8 CPU tensor of ``nbytes`` in anonymous memory advised for transparent huge pages
    (``madvise(MADV_HUGEPAGE)`` before first touch, 2 MiB-aligned start), so the kernel backs it
    with 2 MiB pages where THP is enabled. The tensor keeps the mapping alive."""
    import mmap

    import torch

    huge = 2 << 20
    mm = mmap.mmap(-1, nbytes + huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        mm.madvise(mmap.MADV_HUGEPAGE)
    t = torch.frombuffer(mm, dtype=torch.uint8)
    shift = (-t.data_ptr()) % huge
    return t[shift:shift + nbytes]


def anon_hugepages_kb() -> Optional[int]:
    """AnonHugePages of this process (kB), from /proc/self/smaps_rollup; None where unreadable."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def median(xs: Sequence[float]) -> float:
    """Median of a non-empty sequence (mean of the middle two for even lengths)."""
    s = sorted(xs)
    if not s:
        raise ValueError("median of an empty sequence")
    k = len(s) // 2
    return s[k] if len(s) % 2 else 0.5 * (s[k - 1] + s[k])


def gbps(nbytes: int, ms: float) -> float:
    """Effective bandwidth in GB/s (1e9 bytes per second) for ``nbytes`` moved in ``ms``."""
    return nbytes / (ms * 1e-3) / 1e9 if ms > 0 else float("nan")


def _n_iters(first_ms: float, iters: int, min_iters: int, budget_s: Optional[float]) -> int:
    if budget_s is None or first_ms <= 0:
        return iters
    return max(min_iters, min(iters, int(budget_s * 1e3 / first_ms)))


def _stats(times_ms: List[float]) -> Dict[str, object]:
    return {"median_ms": median(times_ms), "min_ms": min(times_ms), "max_ms": max(times_ms),
            "iters": len(times_ms), "times_ms": [round(t, 6) for t in times_ms]}


def time_cuda(fn: Callable[[], object], *, warmup: int = 3, iters: int = 10, min_iters: int = 3,
              budget_s: Optional[float] = 2.0) -> Dict[str, object]:
    """Time ``fn`` (GPU work enqueued on the current stream) with CUDA events; median in ms.

    One event pair per call; all calls are enqueued back to back and synchronised once at the end,
    so host launch overhead overlaps with the GPU as it would in a training loop. ``budget_s``
    caps the timed calls (estimated from the last warm-up call).
    """
    import torch

    for _ in range(max(warmup, 1)):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        first_ms = (time.perf_counter() - t0) * 1e3
    n = _n_iters(first_ms, iters, min_iters, budget_s)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    t0 = time.perf_counter()
    for s, e in zip(starts, ends):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - t0) * 1e3 / n
    out = _stats([s.elapsed_time(e) for s, e in zip(starts, ends)])
    out["timer"] = "cuda_events"
    # Cross-check: events time only the current stream. Work that ran elsewhere (another stream,
    # or on the host) shows up as a mean wall time per call far above the event median.
    out["wall_mean_ms"] = wall_ms
    return out


def time_host(fn: Callable[[], object], *, warmup: int = 3, iters: int = 10, min_iters: int = 3,
              budget_s: Optional[float] = 2.0, cuda_sync: bool = False) -> Dict[str, object]:
    """Time ``fn`` with the wall clock (``perf_counter``); median in ms.

    ``cuda_sync=True`` synchronises the GPU before and after every call, so work ``fn`` enqueued on
    the GPU is inside the measurement (end-to-end time of a host+GPU pipeline).
    """
    sync = None
    if cuda_sync:
        import torch

        sync = torch.cuda.synchronize
    first_ms = 0.0
    for _ in range(max(warmup, 1)):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        first_ms = (time.perf_counter() - t0) * 1e3
    n = _n_iters(first_ms, iters, min_iters, budget_s)
    times = []
    for _ in range(n):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
    out = _stats(times)
    out["timer"] = "wall+cuda_sync" if cuda_sync else "wall"
    return out


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (torch, CuPy, CUDA runtime, or host MemoryError)."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    msg = str(exc).lower()
    return ("OutOfMemory" in name or "out of memory" in msg or "cudaerrormemoryallocation" in msg
            or "memory_allocation" in msg)


def free_cuda() -> None:
    """Drop garbage and return cached CUDA memory (after an OOM, or between phases)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    except Exception:  # a broken context: nothing more to free
        pass


def host_mem_available() -> Optional[int]:
    """Bytes of host memory available (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(mod: str) -> Optional[str]:
    try:
        m = __import__(mod)
        return str(getattr(m, "__version__", "?"))
    except Exception:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git() -> Dict[str, object]:
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": head or None, "dirty": bool(dirty)}
    except Exception:
        return {"commit": None, "dirty": None}


def env_info(device: str = "cpu") -> Dict[str, object]:
    """Where and with what a benchmark ran: date, host, versions, CPU, GPU name and properties."""
    import torch

    info: Dict[str, object] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "cupy": _version("cupy") if device == "cuda" else None,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "host_mem_gib": None,
        "git": _git(),
        "device": device,
        "device_name": "cpu",
    }
    try:
        with open("/proc/meminfo") as f:
            info["host_mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    if device == "cuda":
        p = torch.cuda.get_device_properties(torch.cuda.current_device())
        info["device_name"] = torch.cuda.get_device_name()
        info["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                       "sm_count": p.multi_processor_count,
                       "capability": f"{p.major}.{p.minor}"}
        try:
            import cupy

            info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
            info["cuda_runtime_cupy"] = cupy.cuda.runtime.runtimeGetVersion()
        except Exception:
            pass
    else:
        info["device_name"] = "cpu: " + str(info["cpu"])
    return info


def device_tag(device: str = "cpu") -> str:
    """Short file-name tag: ``cpu``, or the GPU name as a slug (``h100_80gb_hbm3``)."""
    if device != "cuda":
        return "cpu"
    import torch

    name = torch.cuda.get_device_name().lower()
    name = re.sub(r"^(nvidia|amd)\s+", "", name)
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_") or "gpu"


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(path: str, payload: dict) -> str:
    """Write ``payload`` as indented JSON (NaN/inf as null), atomically; returns ``path``."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_clean(payload), f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)
    return path


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]], floatfmt: str = "{:.2f}") -> str:
    """A plain-text table; floats through ``floatfmt``, None as ``-``."""
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else floatfmt.format(v)
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in body:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line, sep] + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body])


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], **kw) -> None:
    print(format_table(headers, rows, **kw), flush=True)


# -- summaries of result files (bench/gpu_check.sh) -------------------------------------------------
def _summarize_gather(d: dict) -> str:
    ratio_names = ["unified/pcie_h2d", "unified/cpu_gather_copy", "unified/uva_torch",
                   "unified/gpu_resident", "ut_gather_cpu/index_select_out", "ut_gather_cpu/x_idx"]
    present = [r for r in ratio_names if any(r in row.get("ratios", {}) for row in d.get("rows", []))]
    shown = ["unified", "pcie_h2d", "cpu_gather_copy"] if d.get("device") == "cuda" else ["ut_gather_cpu"]
    rows = []
    for row in d.get("rows", []):
        cells = []
        for name in shown:
            m = row.get("modes", {}).get(name, {})
            cells.append(m.get("gbps") if m.get("status") == "ok" else m.get("status", row.get("skipped")))
        rows.append([row["row_bytes"], row["pattern"]] + cells + [row.get("ratios", {}).get(r) for r in present])
    out = format_table(["row_B", "pattern"] + [f"{n} GB/s" for n in shown] + present, rows)
    t = d.get("targets")
    if t:
        out += "\n" + "; ".join(f"{k}: {v}" for k, v in t.items())
    return out


def summarize(path: str) -> str:
    """A few lines about one result JSON (gather tables in full; other files: their ``summary``)."""
    try:
        with open(path) as f:
            d = json.load(f)
    except Exception as exc:
        return f"{path}: unreadable ({exc})"
    head = f"== {os.path.basename(path)}: {d.get('env', {}).get('device_name', d.get('device', '?'))}"
    if d.get("error"):
        head += f"  ERROR: {d['error']}"
    if d.get("benchmark") == "gather":
        return head + "\n" + _summarize_gather(d)
    s = d.get("summary")
    if isinstance(s, dict):
        return head + "\n" + "\n".join(f"  {k}: {v}" for k, v in s.items())
    if s is not None:
        return head + "\n  " + str(s)
    scalars = {k: v for k, v in d.items() if isinstance(v, (int, float, str)) and k not in ("date",)}
    return head + "\n" + "\n".join(f"  {k}: {v}" for k, v in list(scalars.items())[:12])


def _main(argv: List[str]) -> int:
    if len(argv) >= 1 and argv[0] == "summary":
        for p in argv[1:]:
            print(summarize(p))
            print()
        return 0
    if len(argv) >= 1 and argv[0] == "tag":
        import torch

        print(device_tag("cuda" if torch.cuda.is_available() else "cpu"))
        return 0
    print("usage: python bench/_common.py summary FILE.json... | tag", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
