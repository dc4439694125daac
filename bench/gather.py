"""Row-gather benchmark: zero-copy ``ut.gather`` against the ways users move host rows to a GPU.

GPU machine (``ut.cuda_available()``), per row size x index pattern, in one run (the project's
performance protocol, bench/README.md):

  pcie_h2d           contiguous pinned host->device copy of the same number of bytes (the limit)
  cpu_gather_copy    torch.index_select on the CPU into a pinned staging buffer + non_blocking
                     copy to the GPU, end to end (what users do today)
  uva_torch          torch's own index_select on a CUDA view of the pinned table (naive zero-copy)
  unified            ut.gather with its defaults: what a user gets (short rows read in ascending
                     id order, argsort included; the default range check, deferred: no host sync)
  unified_novalidate ut.gather(validate=False): no range check (ids known valid); the headline
                     ``unified`` of the results before issue 18
  unified_unsorted   ut.gather(sorted_order=False): rows read in index order
  unified_unaligned  ut.gather(aligned=False, sorted_order=False)
  unified_sorted     ut.gather(sorted_order=True) (argsort included)
  unified_synccheck  ut.gather(validate="sync"): the immediate range check (one host sync a call)
  gpu_resident       index_select with the table in GPU memory (the upper bound)

Every ``unified_*`` variant changes only what its name says (``--novalidate``: all of them without
the range check, as before issue 18).

CPU-only machine: ``x[idx]`` (x_idx), ``torch.index_select(out=)`` (index_select_out) and the CPU
path of ``ut.gather`` (ut_gather_cpu).

Every mode's result is compared bit for bit with ``table.index_select(0, idx)`` on the CPU before
it is timed; a mismatch is recorded and makes the script exit with status 1. Out-of-memory is
recorded per mode, never fatal. Effective GB/s = gathered bytes / median time.

    PYTHONPATH=. python bench/gather.py                      # full run, JSON + PNG in bench/results/
    PYTHONPATH=. python bench/gather.py --quick --out /tmp/g.json
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional

GPU_MODES = ["pcie_h2d", "cpu_gather_copy", "uva_torch", "unified", "unified_novalidate",
             "unified_unsorted", "unified_unaligned", "unified_sorted", "unified_synccheck",
             "gpu_resident"]
CPU_MODES = ["x_idx", "index_select_out", "ut_gather_cpu"]
PATTERNS = ["uniform", "powerlaw"]
# float32 widths: 16 B .. 4 KB, with the odd 400 B (100 floats) and 1028 B (257 floats).
DEFAULT_WIDTHS = [4, 16, 32, 64, 100, 128, 257, 512, 1024]
QUICK_WIDTHS = [4, 100, 257, 1024]
GIB = 1 << 30
MIB = 1 << 20
# Multiplier that scatters the power-law ranks over the table (hot rows are not clustered).
_SCATTER = 2654435761


# -- command line ------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                   help="auto: cuda when ut.cuda_available(), else the CPU modes")
    p.add_argument("--out", default=None,
                   help="JSON path; if not given, bench/results/gather_<device>.json")
    p.add_argument("--plot", default=None, help="PNG path; if not given, the JSON path with .png")
    p.add_argument("--no-plot", action="store_true", help="write no PNG chart")
    p.add_argument("--replot", metavar="JSON", default=None,
                   help="only redraw the PNG of an existing result JSON (to --plot or next to "
                        "it); if not given, run the benchmark")
    p.add_argument("--quick", action="store_true", help="tiny run (seconds): small table, 4 widths")
    p.add_argument("--table-gb", type=float, default=None,
                   help="table size in GiB; if not given, 8 on a GPU, 2 on the CPU (--quick: 0.25, "
                        "0.0625)")
    p.add_argument("--gather-mb", type=float, default=None,
                   help="bytes moved per gather, MiB; if not given, 128 on a GPU, 32 on the CPU "
                        "(--quick: 8, 2)")
    p.add_argument("--widths", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="float32 row widths, comma separated; if not given, "
                        f"{','.join(map(str, DEFAULT_WIDTHS))} "
                        f"(--quick: {','.join(map(str, QUICK_WIDTHS))})")
    p.add_argument("--patterns", type=lambda s: s.split(","), default=",".join(PATTERNS),
                   help=f"index patterns, comma-separated subset of {','.join(PATTERNS)}")
    p.add_argument("--modes", type=lambda s: s.split(","), default=None,
                   help=f"modes to time, comma separated (GPU: {','.join(GPU_MODES)}; CPU: "
                        f"{','.join(CPU_MODES)}; see the module docstring); if not given, all of "
                        f"the device's")
    p.add_argument("--alpha", type=float, default=1.0, help="power-law exponent of the powerlaw pattern")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed calls per mode and configuration (1 where the first call took "
                        "over 0.5 s; --quick: at most 1)")
    p.add_argument("--iters", type=int, default=10,
                   help="timed calls per mode and configuration, fewer past --budget-s; the "
                        "median is reported (--quick: at most 3)")
    p.add_argument("--budget-s", type=float, default=1.5, help="max seconds of timed calls per mode")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="skip the remaining configurations after this long; if not given, 4 on a "
                        "GPU, 15 on the CPU")
    p.add_argument("--novalidate", action="store_true",
                   help="time unified and its variants with validate=False (no range check), as "
                        "the results before issue 18 did; unified_novalidate is always timed so")
    p.add_argument("--base-offsets", type=lambda s: [int(x) % 128 for x in s.split(",")], default="0",
                   help="table base address mod 128 (GPU); e.g. 0,64 measures both alignments")
    p.add_argument("--hugepages", action="store_true",
                   help="allocate the GPU-run table with madvise(MADV_HUGEPAGE) (2 MiB pages where THP "
                        "is enabled): fewer address translations per random row")
    p.add_argument("--caps", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                   help="also time ut.gather with these max_threads caps, comma separated (modes "
                        "unified_cap<N>); if not given, none")
    p.add_argument("--seed", type=int, default=0, help="seed of the index generator")
    p.add_argument("--verbose", action="store_true",
                   help="print the traceback of a mode that fails")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (anon_hugepages_kb, device_tag, env_info, format_table, free_cuda, gbps,  # noqa: E402
                     host_mem_available, hugepage_empty, is_oom, time_cuda, time_host, write_json)

import unified_tensor as ut  # noqa: E402


# -- inputs ------------------------------------------------------------------------------------------
def make_table(nbytes: int, hugepages: bool = False) -> torch.Tensor:
    """A uint8 CPU buffer of ``nbytes`` (multiple of 4) whose int32 words are their own positions
    (mod 2**31): every row of every width differs from every other row, so a wrong row is caught.
    Filled in 256 MiB chunks with arange (memory-bandwidth bound: ~1 s per 8 GiB on 16 cores)."""
    base = hugepage_empty(nbytes) if hugepages else torch.empty(nbytes, dtype=torch.uint8)
    words = base.view(torch.int32)
    chunk = 1 << 26  # words per chunk; divides 2**31, so start % 2**31 + chunk <= 2**31
    for s in range(0, words.numel(), chunk):
        c = words[s:s + chunk]
        torch.arange(c.numel(), dtype=torch.int32, out=c)
        off = s % (1 << 31)
        if off:
            c.add_(off)
    return base


def make_index(pattern: str, n: int, m: int, alpha: float, seed: int) -> torch.Tensor:
    """``m`` int64 row ids in ``[0, n)`` on the CPU.

    uniform: i.i.d. uniform. powerlaw: Zipf-like, P(rank r) ~ r**-alpha (continuous inverse CDF),
    ranks scattered over the table by a multiplicative hash (a bijection mod n), so hot rows are
    spread out as in a randomly ordered graph.
    """
    g = torch.Generator().manual_seed(seed)
    if pattern == "uniform":
        return torch.randint(0, n, (m,), generator=g, dtype=torch.int64)
    if pattern != "powerlaw":
        raise ValueError(f"unknown pattern {pattern!r}")
    u = torch.rand(m, generator=g, dtype=torch.float64)
    if abs(alpha - 1.0) < 1e-9:
        x = torch.exp(u * math.log(n))                        # n**u, in [1, n]
    else:
        a = 1.0 - alpha
        x = ((n ** a - 1.0) * u + 1.0) ** (1.0 / a)
    rank = (x.floor().to(torch.int64) - 1).clamp_(0, n - 1)
    mult = _SCATTER
    while math.gcd(mult, n) != 1:
        mult += 2
    return (rank * mult + 12345) % n


class _CudaArrayView:
    """``__cuda_array_interface__`` over a device-accessible pointer (pinned host memory via UVA),
    so torch wraps it as a CUDA tensor without a copy. Holds ``owner`` alive."""

    def __init__(self, ptr: int, shape, typestr: str, owner):
        self._owner = owner
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (int(ptr), False), "strides": None, "version": 3}


def uva_view(t, shape) -> torch.Tensor:
    """A CUDA tensor (float32) that aliases the pinned host table ``t`` (zero-copy)."""
    ptr = ut.device_pointer(t)
    v = torch.as_tensor(_CudaArrayView(ptr, shape, "<f4", t), device="cuda")
    if v.device.type != "cuda" or v.data_ptr() != ptr:
        raise RuntimeError(f"torch made a {v.device} tensor at 0x{v.data_ptr():x}, not a CUDA view "
                           f"of 0x{ptr:x}")
    return v


# -- one mode -----------------------------------------------------------------------------------------
def _same(a: torch.Tensor, ref: torch.Tensor) -> bool:
    a = a.detach()
    if a.device.type != "cpu":
        a = a.cpu()
    return a.shape == ref.shape and torch.equal(a.view(torch.int32), ref.view(torch.int32))


def run_mode(name: str, fn: Callable[[], torch.Tensor], check: Optional[Callable[[torch.Tensor], bool]],
             nbytes: int, timer: str, args, prep: Optional[Callable[[], object]] = None) -> Dict[str, object]:
    """``prep()``, then correctness (``check(fn())``), then timing; failures recorded, never raised."""
    rec: Dict[str, object] = {"status": "ok"}
    try:
        if prep is not None:
            prep()
        t0 = time.perf_counter()
        res = fn()
        if timer != "host":
            torch.cuda.synchronize()
        first_s = time.perf_counter() - t0
        if check is not None and not check(res):
            return {"status": "mismatch", "reason": "result differs from table.index_select(0, idx)"}
        del res
        warmup = 1 if first_s > 0.5 else args.warmup
        kw = dict(warmup=warmup, iters=args.iters, min_iters=min(3, args.iters), budget_s=args.budget_s)
        if timer == "cuda":
            st = time_cuda(fn, **kw)
        else:
            st = time_host(fn, cuda_sync=(timer == "host+cuda"), **kw)
        rec.update(st)
        rec["gbps"] = gbps(nbytes, st["median_ms"])
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        if is_oom(exc):
            rec = {"status": "oom", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
            free_cuda()
        else:
            rec = {"status": "error", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
            if args.verbose:
                traceback.print_exc()
    return rec


def _ratio(modes, a: str, b: str) -> Optional[float]:
    ra, rb = modes.get(a, {}), modes.get(b, {})
    if ra.get("status") == "ok" and rb.get("status") == "ok" and rb.get("gbps"):
        return ra["gbps"] / rb["gbps"]
    return None


# -- GPU run ------------------------------------------------------------------------------------------
def _one_row_in_flight(fn):
    """Run ``fn`` with the gather kernel's rows-in-flight set to 1 (the previous kernel)."""
    from unified_tensor import _gather_cuda

    old = _gather_cuda.ROWS_IN_FLIGHT
    _gather_cuda.ROWS_IN_FLIGHT = 1
    try:
        return fn()
    finally:
        _gather_cuda.ROWS_IN_FLIGHT = old


def aligned_view(buf: torch.Tensor, nbytes: int, offset: int) -> torch.Tensor:
    """``nbytes`` of the uint8 buffer ``buf`` starting at an address that is ``offset`` mod 128
    (``buf`` must hold ``nbytes + 128`` bytes). Large torch CPU tensors start at 64 mod 128, so the
    base alignment of a benchmark table is set explicitly, never inherited from the allocator."""
    shift = (offset - buf.data_ptr()) % 128
    v = buf[shift:shift + nbytes]
    if v.numel() != nbytes or v.data_ptr() % 128 != offset % 128:
        raise RuntimeError(f"cannot place {nbytes} bytes at offset {offset} mod 128 in a buffer of "
                           f"{buf.numel()} bytes")
    return v


def run_gpu(args, table_bytes: int, log, on_row: Optional[Callable[[List[dict]], None]] = None
            ) -> Dict[str, object]:
    dev = torch.device("cuda", torch.cuda.current_device())
    t0 = time.perf_counter()
    thp0 = anon_hugepages_kb()
    base_buf = make_table(table_bytes + 128, hugepages=args.hugepages)
    thp = anon_hugepages_kb()
    if thp is not None and thp0 is not None:
        log(f"table allocation: {'madvise(MADV_HUGEPAGE)' if args.hugepages else 'torch.empty'}; "
            f"AnonHugePages grew by {(thp - thp0) / 2**20:.2f} GiB")
    t_fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    whole = ut.unified(base_buf)  # pins the whole buffer once; every table below is a view of it
    t_pin = time.perf_counter() - t0
    log(f"table: {table_bytes / GIB:.2f} GiB filled in {t_fill:.1f} s, pinned in {t_pin:.1f} s")
    skipped: Dict[str, str] = {}

    # gpu_resident: one device copy of the whole table, if it fits with room for the buffers.
    base_gpu = None
    free, total = torch.cuda.mem_get_info()
    need = table_bytes + 4 * args.gather_bytes + GIB
    if "gpu_resident" in args.modes:
        if need > free:
            skipped["gpu_resident"] = (f"table ({table_bytes / GIB:.1f} GiB) + buffers do not fit in "
                                       f"free GPU memory ({free / GIB:.1f} of {total / GIB:.1f} GiB)")
        else:
            try:
                base_gpu = base_buf.to(dev, non_blocking=True)   # same byte offsets as base_buf
                torch.cuda.synchronize()
            except Exception as exc:  # noqa: BLE001
                if not is_oom(exc):
                    raise
                skipped["gpu_resident"] = f"out of memory copying the table: {str(exc)[:200]}"
                free_cuda()
    # Staging buffer (pinned by torch) for cpu_gather_copy, and the device buffers.
    staging = torch.empty(args.gather_bytes, dtype=torch.uint8, pin_memory=True)
    dst = torch.empty(args.gather_bytes, dtype=torch.uint8, device=dev)

    rows: List[Dict[str, object]] = []
    deadline = time.perf_counter() + args.max_minutes * 60 - (t_fill + t_pin)
    for w, base_off in [(w, o) for w in args.widths for o in args.base_offsets]:
        row_bytes = 4 * w
        n = table_bytes // row_bytes
        m = max(1, args.gather_bytes // row_bytes)
        nbytes = m * row_bytes
        base = aligned_view(base_buf, table_bytes, base_off)
        plain = base[: n * row_bytes].view(torch.float32).view(n, w)
        tw = ut.unified(plain)
        uva = None
        if "uva_torch" in args.modes and "uva_torch" not in skipped:
            try:
                uva = uva_view(tw, (n, w))
            except Exception as exc:  # noqa: BLE001
                skipped["uva_torch"] = (f"torch cannot wrap the pinned table as a CUDA tensor "
                                        f"({type(exc).__name__}: {str(exc)[:200]})")
        shift = base.data_ptr() - base_buf.data_ptr()
        gpu_tab = (base_gpu[shift: shift + n * row_bytes].view(torch.float32).view(n, w)
                   if base_gpu is not None else None)
        out = dst[:nbytes].view(torch.float32).view(m, w)
        stage = staging[:nbytes].view(torch.float32).view(m, w)
        for pattern in args.patterns:
            if time.perf_counter() > deadline:
                rows.append({"row_bytes": row_bytes, "width": w, "pattern": pattern,
                             "base_offset": base_off,
                             "skipped": f"time budget of {args.max_minutes} min exhausted"})
                continue
            try:
                idx_cpu = make_index(pattern, n, m, args.alpha, args.seed + w)
                idx = idx_cpu.to(dev)
                ref = torch.index_select(plain, 0, idx_cpu)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                kind = "oom" if is_oom(exc) else "error"
                rows.append({"row_bytes": row_bytes, "width": w, "pattern": pattern,
                             "base_offset": base_off,
                             "skipped": f"{kind} preparing indices: {type(exc).__name__}: {str(exc)[:200]}"})
                free_cuda()
                continue

            def check(res, ref=ref):
                return _same(res, ref)

            vkw = {"validate": False} if args.novalidate else {}   # the variants' range check
            fns = {
                "pcie_h2d": (lambda: dst[:nbytes].copy_(base[:nbytes], non_blocking=True),
                             lambda res: torch.equal(res.cpu(), base[:nbytes]), "cuda"),
                "cpu_gather_copy": (lambda: out.copy_(torch.index_select(plain, 0, idx_cpu, out=stage),
                                                      non_blocking=True), check, "host+cuda"),
                "uva_torch": ((lambda: torch.index_select(uva, 0, idx, out=out)) if uva is not None else None,
                              check, "cuda"),
                # what a user gets: the defaults (deferred range check, no host sync)
                "unified": (lambda: ut.gather(tw, idx, out=out, **vkw), check, "cuda"),
                "unified_novalidate": (lambda: ut.gather(tw, idx, out=out, validate=False), check, "cuda"),
                "unified_unsorted": (lambda: ut.gather(tw, idx, out=out, sorted_order=False, **vkw),
                                     check, "cuda"),
                "unified_unaligned": (lambda: ut.gather(tw, idx, out=out, aligned=False, sorted_order=False,
                                                        **vkw), check, "cuda"),
                "unified_sorted": (lambda: ut.gather(tw, idx, out=out, sorted_order=True, **vkw),
                                   check, "cuda"),
                "unified_synccheck": (lambda: ut.gather(tw, idx, out=out, validate="sync"), check, "cuda"),
                "gpu_resident": ((lambda: torch.index_select(gpu_tab, 0, idx, out=out))
                                 if gpu_tab is not None else None, check, "cuda"),
            }
            if "unified" in args.modes:   # the one-row-in-flight kernel, for comparison
                fns["unified_1row"] = (lambda: _one_row_in_flight(lambda: ut.gather(
                    tw, idx, out=out, sorted_order=False, **vkw)), check, "cuda")
            for cap in args.caps:   # the gather with at most `cap` resident threads
                fns[f"unified_cap{cap}"] = ((lambda cap=cap: ut.gather(tw, idx, out=out, max_threads=cap,
                                                                       sorted_order=False, **vkw)),
                                            check, "cuda")
            modes: Dict[str, object] = {}
            extra = (["unified_1row"] if "unified" in args.modes else []) + [f"unified_cap{c}" for c in args.caps]
            for name in args.modes + extra:
                fn, chk, timer = fns[name]
                if name in skipped or fn is None:
                    modes[name] = {"status": "skipped", "reason": skipped.get(name, "unavailable")}
                    continue
                # Poison the output (-1 words: no table row holds them), so a kernel that writes
                # nothing fails the correctness call that run_mode makes first.
                modes[name] = run_mode(name, fn, chk, nbytes, timer, args,
                                       prep=lambda: out.view(torch.int32).fill_(-1))
            ratios = {k: v for k, v in {
                "unified/pcie_h2d": _ratio(modes, "unified", "pcie_h2d"),
                "unified/cpu_gather_copy": _ratio(modes, "unified", "cpu_gather_copy"),
                "unified/uva_torch": _ratio(modes, "unified", "uva_torch"),
                "unified/gpu_resident": _ratio(modes, "unified", "gpu_resident"),
                "unified/unified_unsorted": _ratio(modes, "unified", "unified_unsorted"),
                "unified/unified_novalidate": _ratio(modes, "unified", "unified_novalidate"),
                "unified_synccheck/unified": _ratio(modes, "unified_synccheck", "unified"),
                "unified_unsorted/unified_unaligned": _ratio(modes, "unified_unsorted", "unified_unaligned"),
                "unified_unsorted/unified_1row": _ratio(modes, "unified_unsorted", "unified_1row"),
                "unified_sorted/unified_unsorted": _ratio(modes, "unified_sorted", "unified_unsorted"),
            }.items() if v is not None}
            for cap in args.caps:
                r = _ratio(modes, f"unified_cap{cap}", "unified_unsorted")
                if r is not None:
                    ratios[f"unified_cap{cap}/unified_unsorted"] = r
            rows.append({"row_bytes": row_bytes, "width": w, "dtype": "float32", "pattern": pattern,
                         "base_offset": base_off, "table_addr_mod128": plain.data_ptr() % 128,
                         "num_indices": m, "gathered_bytes": nbytes, "modes": modes, "ratios": ratios})
            log(_row_line(rows[-1], list(modes)))
            if on_row is not None:
                on_row(rows)
            del idx, idx_cpu, ref, fns
        del tw, uva, gpu_tab
    del whole
    return {"rows": rows, "skipped_modes": skipped,
            "setup_s": {"fill": round(t_fill, 2), "pin": round(t_pin, 2)}}


# -- CPU run ------------------------------------------------------------------------------------------
def run_cpu(args, table_bytes: int, log) -> Dict[str, object]:
    t0 = time.perf_counter()
    base = make_table(table_bytes)
    t_fill = time.perf_counter() - t0
    log(f"table: {table_bytes / GIB:.2f} GiB filled in {t_fill:.1f} s; torch threads "
        f"{torch.get_num_threads()}")
    buf = torch.empty(args.gather_bytes, dtype=torch.uint8)
    rows: List[Dict[str, object]] = []
    deadline = time.perf_counter() + args.max_minutes * 60 - t_fill
    for w in args.widths:
        row_bytes = 4 * w
        n = table_bytes // row_bytes
        m = max(1, args.gather_bytes // row_bytes)
        nbytes = m * row_bytes
        plain = base[: n * row_bytes].view(torch.float32).view(n, w)
        tw = ut.unified(plain)
        out = buf[:nbytes].view(torch.float32).view(m, w)
        for pattern in args.patterns:
            if time.perf_counter() > deadline:
                rows.append({"row_bytes": row_bytes, "width": w, "pattern": pattern,
                             "skipped": f"time budget of {args.max_minutes} min exhausted"})
                continue
            idx = make_index(pattern, n, m, args.alpha, args.seed + w)
            ref = torch.index_select(plain, 0, idx)

            def check(res, ref=ref):
                return _same(res, ref)

            fns = {
                "x_idx": lambda: plain[idx],
                "index_select_out": lambda: torch.index_select(plain, 0, idx, out=out),
                "ut_gather_cpu": lambda: ut.gather(tw, idx, out=out),
            }
            modes = {}
            for name in args.modes:
                out.view(torch.int32).fill_(-1)
                modes[name] = run_mode(name, fns[name], check, nbytes, "host", args)
            ratios = {k: v for k, v in {
                "ut_gather_cpu/index_select_out": _ratio(modes, "ut_gather_cpu", "index_select_out"),
                "ut_gather_cpu/x_idx": _ratio(modes, "ut_gather_cpu", "x_idx"),
            }.items() if v is not None}
            rows.append({"row_bytes": row_bytes, "width": w, "dtype": "float32", "pattern": pattern,
                         "num_indices": m, "gathered_bytes": nbytes, "modes": modes, "ratios": ratios})
            log(_row_line(rows[-1], args.modes))
            del idx, ref
        del tw
    return {"rows": rows, "skipped_modes": {}, "setup_s": {"fill": round(t_fill, 2)}}


# -- reporting ----------------------------------------------------------------------------------------
def _cell(rec: Dict[str, object]):
    if rec.get("status") == "ok":
        return rec["gbps"]
    return rec.get("status", "-")


def _row_line(row, modes) -> str:
    parts = [f"{row['row_bytes']:>5} B {row['pattern']:<8} @{row.get('base_offset', 0):<3}"]
    for mname in modes:
        c = _cell(row["modes"][mname])
        parts.append(f"{mname}={c if isinstance(c, str) else format(c, '.2f')}")
    return "  ".join(parts)


def table_text(result, modes: List[str]) -> str:
    ratio_names: List[str] = []
    for row in result["rows"]:
        for k in row.get("ratios", {}):
            if k not in ratio_names:
                ratio_names.append(k)
    modes = list(modes)
    for row in result["rows"]:
        for k in row.get("modes", {}):
            if k not in modes:
                modes.append(k)
    headers = ["row_B", "pattern", "off"] + [f"{m}" for m in modes] + ratio_names
    body = []
    for row in result["rows"]:
        key = [row["row_bytes"], row["pattern"], row.get("base_offset", 0)]
        if "modes" not in row:
            body.append(key + ["skip"] * (len(modes) + len(ratio_names)))
            continue
        body.append(key + [_cell(row["modes"].get(m, {})) for m in modes]
                    + [row["ratios"].get(r) for r in ratio_names])
    return "GB/s per mode (gathered bytes / median time); ratios of GB/s\n" + format_table(headers, body)


def targets(result, device: str) -> Dict[str, object]:
    """Issue 2's GPU targets: unified/pcie_h2d >= 0.9 for rows >= 512 B, >= 3x cpu_gather_copy."""
    if device != "cuda":
        return {}
    pcie, copy = [], []
    for row in result["rows"]:
        r = row.get("ratios", {})
        if row["row_bytes"] >= 512 and "unified/pcie_h2d" in r:
            pcie.append((row["row_bytes"], row["pattern"], r["unified/pcie_h2d"]))
        if "unified/cpu_gather_copy" in r:
            copy.append((row["row_bytes"], row["pattern"], r["unified/cpu_gather_copy"]))
    t = {}
    if pcie:
        worst = min(pcie, key=lambda x: x[2])
        t["unified/pcie_h2d>=0.9 (rows>=512B)"] = (all(x[2] >= 0.9 for x in pcie),
                                                   f"min {worst[2]:.2f} at {worst[0]} B {worst[1]}")
    if copy:
        worst = min(copy, key=lambda x: x[2])
        t["unified/cpu_gather_copy>=3"] = (all(x[2] >= 3 for x in copy),
                                           f"min {worst[2]:.2f} at {worst[0]} B {worst[1]}")
    return {k: ("met" if ok else "NOT met") + f" ({why})" for k, (ok, why) in t.items()}


def plot(result, modes: List[str], path: str, title: str) -> Optional[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001
        print(f"(no plot: matplotlib unavailable: {exc})")
        return None
    patterns = sorted({r["pattern"] for r in result["rows"]}, key=PATTERNS.index)
    fig, axes = plt.subplots(1, len(patterns), figsize=(6 * len(patterns), 4.5), squeeze=False)
    for ax, pat in zip(axes[0], patterns):
        rows = [r for r in result["rows"] if r["pattern"] == pat and "modes" in r]
        for mname in modes:
            pts = [(r["row_bytes"], r["modes"][mname]["gbps"]) for r in rows
                   if r["modes"].get(mname, {}).get("status") == "ok"]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=mname)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("row size (bytes)")
        ax.set_ylabel("effective GB/s")
        ax.set_title(f"{pat} indices")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- main ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        import json

        with open(args.replot) as f:
            d = json.load(f)
        png = args.plot or os.path.splitext(args.replot)[0] + ".png"
        tb = d["params"]["table_bytes"] / GIB
        gm = d["params"]["gather_bytes"] / MIB
        ok = plot(d, d["params"]["modes"], png,
                  f"gather, {d['env']['device_name']}, table {tb:.1f} GiB, {gm:.0f} MiB/gather")
        print(f"wrote {png}" if ok else "no plot")
        return 0 if ok else 1
    if args.device == "auto":
        device = "cuda" if ut.cuda_available() else "cpu"
    else:
        device = args.device
    if args.quick:
        args.widths = args.widths or QUICK_WIDTHS
        args.table_gb = args.table_gb or (0.25 if device == "cuda" else 0.0625)
        args.gather_mb = args.gather_mb or (8 if device == "cuda" else 2)
        args.warmup, args.iters = min(args.warmup, 1), min(args.iters, 3)
    args.widths = args.widths or DEFAULT_WIDTHS
    args.table_gb = args.table_gb or (8.0 if device == "cuda" else 2.0)
    args.gather_mb = args.gather_mb or (128 if device == "cuda" else 32)
    args.max_minutes = args.max_minutes or (4.0 if device == "cuda" else 15.0)
    args.gather_bytes = int(args.gather_mb * MIB) // 4 * 4
    all_modes = GPU_MODES if device == "cuda" else CPU_MODES
    if args.modes is None:
        args.modes = list(all_modes)
    bad = [m for m in args.modes if m not in all_modes]
    if bad:
        print(f"unknown modes for {device}: {bad}; choose from {all_modes}", file=sys.stderr)
        return 2
    bad = [p for p in args.patterns if p not in PATTERNS]
    if bad:
        print(f"unknown patterns {bad}; choose from {PATTERNS}", file=sys.stderr)
        return 2

    table_bytes = int(args.table_gb * GIB) // 4096 * 4096
    avail = host_mem_available()
    note = None
    if avail is not None and table_bytes > 0.6 * avail:
        new = int(0.6 * avail) // GIB * GIB or int(0.6 * avail) // 4096 * 4096
        note = f"table reduced from {table_bytes / GIB:.2f} GiB to {new / GIB:.2f} GiB (host memory)"
        table_bytes = new

    out_path = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        f"gather_{device_tag(device)}.json")
    payload: Dict[str, object] = {"benchmark": "gather", "schema": 1, "device": device}
    payload["env"] = env_info(device)
    payload["params"] = {"table_bytes": table_bytes, "gather_bytes": args.gather_bytes,
                         "widths": args.widths, "dtype": "float32", "patterns": args.patterns,
                         "modes": args.modes, "powerlaw_alpha": args.alpha, "warmup": args.warmup,
                         "iters": args.iters, "budget_s": args.budget_s, "index_dtype": "int64",
                         "validate": not args.novalidate, "quick": args.quick, "seed": args.seed,
                         "hugepages": args.hugepages, "base_offsets": args.base_offsets, "caps": args.caps,
                         "argv": sys.argv[1:] if argv is None else list(argv)}
    if note:
        payload["params"]["note"] = note
        print(note)
    print(f"gather benchmark on {payload['env']['device_name']}: table {table_bytes / GIB:.2f} GiB, "
          f"{args.gather_bytes / MIB:.0f} MiB per gather, widths {args.widths}", flush=True)

    t_start = time.perf_counter()
    rc = 0
    try:
        if device == "cuda":
            if not ut.cuda_available():
                raise RuntimeError("--device cuda but ut.cuda_available() is False (no GPU, no CuPy, "
                                   "or UNIFIED_TENSOR_DISABLE_CUDA is set)")
            def on_row(rows):   # partial results on disk after every row (a run may be cut off)
                write_json(out_path, {**payload, "rows": rows, "partial": True,
                                      "wall_s": round(time.perf_counter() - t_start, 1)})

            result = run_gpu(args, table_bytes, lambda s: print(s, flush=True), on_row)
        else:
            result = run_cpu(args, table_bytes, lambda s: print(s, flush=True))
    except Exception as exc:  # noqa: BLE001 - still write what we know
        traceback.print_exc()
        payload["error"] = f"{type(exc).__name__}: {exc}"
        payload["wall_s"] = round(time.perf_counter() - t_start, 1)
        write_json(out_path, payload)
        print(f"wrote {out_path} (with error)")
        return 1
    payload.update(result)
    payload["wall_s"] = round(time.perf_counter() - t_start, 1)
    payload["targets"] = targets(result, device)
    bad = [(r["row_bytes"], r["pattern"], mname, rec["status"]) for r in result["rows"]
           for mname, rec in r.get("modes", {}).items() if rec.get("status") in ("mismatch", "error")]
    payload["failures"] = [f"{b} B {p} {m}: {s}" for b, p, m, s in bad]

    print()
    print(table_text(result, args.modes))
    for k, v in result.get("skipped_modes", {}).items():
        print(f"skipped {k}: {v}")
    for k, v in payload["targets"].items():
        print(f"target {k}: {v}")
    if bad:
        rc = 1
        print("FAILURES: " + "; ".join(payload["failures"]))
    write_json(out_path, payload)
    print(f"wrote {out_path} ({payload['wall_s']} s)")
    if not args.no_plot:
        png = args.plot or os.path.splitext(out_path)[0] + ".png"
        if plot(result, args.modes, png, f"gather, {payload['env']['device_name']}, "
                f"table {table_bytes / GIB:.1f} GiB, {args.gather_bytes / MIB:.0f} MiB/gather"):
            print(f"wrote {png}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
