"""``make gpu-quick``: the most valuable GPU measurements first, inside one global time budget.

A lent GPU machine gives 15 minutes in all (start-up included) and at most 10 minutes per command,
so this runs in one command within ``--budget`` seconds (default 450) and writes every result as
soon as its step ends, into ``$OUT`` when that variable is set (what a remote GPU run brings back:
at most 8 files, no sub-folders here) or else ``bench/results/``. Each step runs as a child process
group whose time limit is clipped to the budget left; a step that overruns is killed and the next
one runs. Steps, most valuable first (estimates on an H100/H200):

  1. probe     bench/gpu_probe.py: versions, libraries loaded, smoke gathers, kernel occupancy,
               cudaHostRegister on anonymous / read-only / memmapped memory, syncs per batch (~25 s)
  2. gpu_tests pytest -m gpu on the library's own tests (tests/unified_tensor, tests/samplers),
               junit XML (~60 s)
  3. e2e       bench/e2e.py GraphSAGE on a papers100M-shaped graph (samplers.datasets.papers_like,
               ``--e2e-nodes``, default 16M nodes = 8 GiB of float32 features, 10x the 0.1 cache;
               generated with all cores), every configuration most valuable first, each skipped
               (recorded) when the step's budget left is shorter than the longest one so far:
               unified (defaults), gpu_resident, baseline (the strong one: CPU sampling + gather
               in worker threads, pinned, non_blocking, overlapped), unified_cached,
               unified_reordered(_cached) (``--e2e-order``, default degree: the community order
               is single-threaded, minutes at 16M nodes), unified_graph_on_gpu, baseline_naive,
               unified_int8_cached, unified_bf16, unified_int8, unified_one_sync,
               unified_no_overlap, unified_capped, unified_unsorted; host syncs per batch per
               thread for each (~170 s)
  4. overlap   bench/overlap.py: gather (per thread cap) beside a stand-in training step on another
               stream: both / (uncapped gather + train), and the capped gather's GB/s against
               pcie_h2d; then the DataLoader's defaults beside it, with host syncs per batch per
               thread (~30 s)
  5. gather    bench/gather.py: 64 B, 512 B, 4 KB rows, uniform ids, 8 GiB table, base offset 0 and
               64 mod 128, all GPU modes (``unified``: the defaults, ``unified_novalidate``: no
               range check, the headline ``unified`` before issue 18) + thread caps (~30 s)
  5b. gather_thp  the same with the table in transparent huge pages (madvise), 0 offset only (~15 s)
  6. memcheck  compute-sanitizer memcheck on the gather GPU tests plus one deferred-check and one
               cache test; skipped in one line where the sanitizer refuses the device (~40 s)
  7. sampler   bench/sampler.py GPU rows (time left)
  8. demo      examples/train_graphsage.py on the GPU (time left)
  9. pyg       bench/pyg_loader.py: samplers.pyg.NeighborLoader against the DGL-style DataLoader
               (UVA sampling, zero-copy x / y), interleaved runs, stage breakdown, and GraphSAGE
               steps through each path; skipped where torch_geometric is not installed (~25 s)

A summary table (per step status, seconds and the headline ratios) is printed last and written
to ``gpu_quick_summary.json`` after every step. Output files: gpu_quick.log (everything printed),
gpu_quick_summary.json, gpu_probe.json, gpu_tests.xml, gather_<gpu>.json, overlap_<gpu>.json,
e2e_<gpu>.json: 7 files with every step. The lower-priority steps' JSON (gather_thp, sampler, pyg)
is folded into gpu_quick_summary.json under "results" as each of them ends (their own files are
removed), so a remote run that brings back 8 files loses nothing.

Without a GPU (CI) every GPU step is reported "skipped: no GPU" after checking that its command
line parses, and the run exits 0 in seconds (``--dry-run`` forces that mode on a GPU machine too).

    PYTHONPATH=. python bench/gpu_quick.py                 # or: make gpu-quick
    PYTHONPATH=. python bench/gpu_quick.py --budget 300 --steps probe,gather
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

STEP_NAMES = ["probe", "gpu_tests", "e2e", "overlap", "gather", "gather_thp", "memcheck", "sampler", "demo",
              "pyg"]
# Per-step caps (seconds); each is also clipped to the budget left.
CAPS = {"probe": 75, "gpu_tests": 150, "gather": 110, "gather_thp": 70, "overlap": 90, "e2e": 240, "memcheck": 70, "sampler": 80,
        "demo": 90, "pyg": 45}
E2E_MARGIN_S = 15    # the e2e step's own --budget-s is its time limit less this (it then skips, not dies)
MIN_STEP_S = 15      # a step gets at least this much or is skipped for lack of budget
RESERVE_S = 5        # kept back for the summary


class Runner:
    def __init__(self, args, out_dir: str, gpu: bool, tag: str):
        self.args, self.out, self.gpu, self.tag = args, out_dir, gpu, tag
        self.t0 = time.monotonic()
        self.records: List[Dict[str, object]] = []
        self.embedded: Dict[str, object] = {}   # folded-in results of the lower-priority steps
        self.log = open(os.path.join(out_dir, "gpu_quick.log"), "a", buffering=1)
        self.python = args.python

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.t0)

    def say(self, msg: str) -> None:
        print(msg, flush=True)
        self.log.write(msg + "\n")

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def record(self, name: str, status: str, secs: float, **extra) -> None:
        rec = {"step": name, "status": status, "seconds": round(secs, 1), **extra}
        self.records.append(rec)
        self.say(f">>> {name}: {status} ({secs:.0f} s; {self.left():.0f} s of budget left)")
        self.write_summary()

    def write_summary(self) -> None:
        payload = {"tool": "bench/gpu_quick.py", "device": self.tag, "budget_s": self.args.budget,
                   "elapsed_s": round(time.monotonic() - self.t0, 1), "dry_run": not self.gpu,
                   "steps": self.records, "headlines": headlines(self.out, self.tag, self.embedded),
                   "results": self.embedded}
        tmp = self.path("gpu_quick_summary.json.tmp")
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1, default=str)
        os.replace(tmp, self.path("gpu_quick_summary.json"))

    def fold(self, name: str, filename: str) -> None:
        """Move a lower-priority step's JSON into the summary (keeps the files that come back from
        a remote run to 8)."""
        path = self.path(filename)
        if not os.path.exists(path):
            return
        try:
            with open(path) as f:
                self.embedded[name] = json.load(f)
        except (OSError, ValueError) as exc:
            self.embedded[name] = {"error": f"unreadable {filename}: {exc}"}
        os.remove(path)

    def limit(self, name: str) -> float:
        """Seconds the step ``name`` may run now: its cap, clipped to the budget left."""
        return min(CAPS[name], self.left() - RESERVE_S)

    def run(self, name: str, cmd: List[str], env: Optional[Dict[str, str]] = None) -> tuple:
        """Run ``cmd`` in its own process group, output to the terminal and the log, clipped to the
        step's cap and the budget left. Returns (status, seconds, output text)."""
        limit = self.limit(name)
        if limit < MIN_STEP_S:
            return f"skipped: budget ({self.left():.0f} s left)", 0.0, ""
        self.say(f"\n=== {name}: {' '.join(cmd)} (limit {limit:.0f} s)")
        full_env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                        PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True, bufsize=1)
        lines: List[str] = []
        timed_out = False
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            if time.monotonic() - t0 > limit:
                timed_out = True
                _kill_group(proc)
                break
            if sel.select(timeout=1.0):
                line = proc.stdout.readline()
                if not line:
                    if proc.poll() is not None:
                        break
                    continue
                line = line.rstrip("\n")
                lines.append(line)
                self.say(line)
            elif proc.poll() is not None:
                rest = proc.stdout.read()
                for line in rest.splitlines():
                    lines.append(line)
                    self.say(line)
                break
        sel.close()
        rc = proc.wait()
        secs = time.monotonic() - t0
        text = "\n".join(lines)
        if timed_out:
            return f"TIMEOUT after {limit:.0f} s", secs, text
        return ("PASS" if rc == 0 else f"FAIL(rc={rc})"), secs, text


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(HERE, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def headlines(out_dir: str, tag: str, embedded: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """The ratios the issue's targets are about, read from the JSON files written so far (and the
    results folded into the summary)."""
    h: Dict[str, object] = {}
    try:
        with open(os.path.join(out_dir, f"gather_{tag}.json")) as f:
            g = json.load(f)
        for row in g.get("rows", []):
            r = row.get("ratios", {})
            key = f"{row['row_bytes']}B@{row.get('base_offset', 0)}"
            # "unified" is the default path since issue 18 (deferred range check); the old headline
            # "unified" (validate=False) is "unified_novalidate", and the old
            # "unified_checked/unified" is "unified/unified_novalidate"
            for k in ("unified/pcie_h2d", "unified/cpu_gather_copy", "unified/unified_unsorted",
                      "unified_unsorted/unified_unaligned", "unified/unified_novalidate",
                      "unified_checked/unified", "unified_synccheck/unified"):
                if k in r:
                    h[f"gather {key} {k}"] = round(r[k], 3)
            mods = row.get("modes", {})
            for mode in ("pcie_h2d", "unified", "unified_novalidate"):
                if mods.get(mode, {}).get("gbps"):
                    h[f"gather {key} {mode} GB/s"] = round(mods[mode]["gbps"], 2)
    except (OSError, ValueError, KeyError):
        pass
    try:
        with open(os.path.join(out_dir, f"e2e_{tag}.json")) as f:
            e = json.load(f)
        sps = {r["config"]: r.get("seeds_per_s") for r in e.get("rows", []) if r.get("status") == "ok"}
        for k, v in sps.items():
            h[f"e2e {k} seeds/s"] = round(v, 1)
        # "baseline" is the strong baseline since issue 18; the old one is "baseline_naive"
        for a, b in (("unified", "baseline"), ("gpu_resident", "unified"), ("unified", "unified_no_overlap"),
                     ("unified_capped", "unified"), ("unified", "unified_unsorted"),
                     ("unified_one_sync", "unified"), ("unified_cached", "unified"),
                     ("unified", "baseline_naive"), ("baseline", "baseline_naive"),
                     ("unified", "gpu_resident"), ("unified_reordered", "unified"),
                     ("unified_reordered_cached", "unified"), ("unified_graph_on_gpu", "unified"),
                     ("unified_cached", "gpu_resident"), ("unified_reordered_cached", "gpu_resident"),
                     ("unified_int8_cached", "gpu_resident")):
            if sps.get(a) and sps.get(b):
                h[f"e2e {a}/{b}"] = round(sps[a] / sps[b], 3)
        for k in ("best_ours/gpu_resident", "best_ours/baseline"):
            if k in e.get("ratios", {}):
                h[f"e2e {k}"] = round(e["ratios"][k], 3)
        if e.get("best_ours"):
            h["e2e best_ours"] = e["best_ours"]
        for r in e.get("rows", []):
            s = r.get("syncs_per_batch")
            if r.get("status") == "ok" and s:
                h[f"e2e {r['config']} syncs/batch training,producer,model"] = [
                    round(s.get(role, 0.0), 2) for role in ("training", "producer", "model")]
        for k, v in e.get("targets", {}).items():
            h[f"e2e target {k}"] = "met" if v else "NOT met"
        ds = e.get("dataset", {})
        if ds:
            h["e2e graph"] = f"{ds.get('graph', 'synthetic')} {ds.get('num_nodes')} nodes"
    except (OSError, ValueError, KeyError):
        pass
    try:
        with open(os.path.join(out_dir, f"overlap_{tag}.json")) as f:
            o = json.load(f)
        for k, v in o.get("summary", {}).items():
            h[f"overlap {k}"] = v
    except (OSError, ValueError, KeyError):
        pass
    try:
        pl = (embedded or {}).get("pyg")
        if pl is None:
            with open(os.path.join(out_dir, f"pyg_loader_{tag}.json")) as f:
                pl = json.load(f)
        for part in ("feat", "nofeat"):
            if part in pl:
                h[f"pyg_loader {part} pyg/dgl_style batches/s"] = round(pl[part]["median_ratio"], 3)
        for k, v in pl.get("e2e", {}).get("ratios", {}).items():
            h[f"pyg_loader e2e {k}"] = round(v, 3)
    except (OSError, ValueError, KeyError):
        pass
    return h


def find_sanitizer() -> Optional[str]:
    cands = [shutil.which("compute-sanitizer")]
    for base in (os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"):
        if base:
            cands += [os.path.join(base, "bin", "compute-sanitizer"),
                      os.path.join(base, "compute-sanitizer", "compute-sanitizer")]
    return next((c for c in cands if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--budget", type=float, default=None,
                   help="global wall-clock budget in seconds; if not given, "
                        "$UNIFIED_TENSOR_GPU_QUICK_BUDGET, else 450")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(HERE, "results"),
                   help="results folder (default: $OUT when set, else bench/results)")
    p.add_argument("--steps", default=",".join(STEP_NAMES), help="comma-separated subset, in order")
    p.add_argument("--python", default=sys.executable, help="interpreter for the steps")
    p.add_argument("--dry-run", action="store_true",
                   help="check every step's command line, run nothing on a GPU")
    p.add_argument("--e2e-nodes", type=int, default=16_000_000,
                   help="papers_like graph size of the e2e step (16M: 8 GiB of float32 features, the "
                        "gather step's table; 10x the 0.1 GPU cache under test)")
    p.add_argument("--e2e-order", choices=("degree", "community"), default="degree",
                   help="locality order of the e2e step's unified_reordered rows (community: "
                        "single-threaded, ~36 s per million nodes on a 2-core CI box)")
    args = p.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    bad = [s for s in steps if s not in STEP_NAMES]
    if bad:
        p.error(f"--steps: unknown {bad}; choose from {STEP_NAMES}")
    os.makedirs(args.out, exist_ok=True)

    sys.path.insert(0, HERE)
    sys.path.insert(0, REPO)
    import torch

    from _common import device_tag
    from unified_tensor._env import env

    if args.budget is None:
        budget = env("GPU_QUICK_BUDGET", "450")
        try:
            args.budget = float(budget)
        except ValueError:
            p.error(f"UNIFIED_TENSOR_GPU_QUICK_BUDGET must be a number of seconds, got {budget!r}")

    gpu = torch.cuda.is_available() and not args.dry_run
    if gpu:
        import unified_tensor as ut

        gpu = ut.cuda_available()
    tag = device_tag("cuda") if torch.cuda.is_available() else "cpu"
    r = Runner(args, args.out, gpu, tag)
    r.say(f"gpu_quick: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, repo {REPO}, "
          f"python {args.python}, out {args.out}, budget {args.budget:.0f} s, device "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
          f"{'' if gpu else ' (dry run: no GPU steps)'}")
    if shutil.which("nvidia-smi") and torch.cuda.is_available():
        try:
            r.say(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip())
        except (OSError, subprocess.SubprocessError) as exc:
            r.say(f"nvidia-smi failed: {exc}")

    py = args.python
    nodes = args.e2e_nodes
    bench_argv = {
        "gather": ["--widths", "16,128,1024", "--patterns", "uniform", "--table-gb", "8",
                   "--base-offsets", "0,64", "--caps", "8192,16384,32768,65536", "--budget-s", "0.5",
                   "--iters", "10", "--max-minutes", "1.6", "--no-plot",
                   "--out", r.path(f"gather_{tag}.json")],
        "gather_thp": ["--widths", "16,128,1024", "--patterns", "uniform", "--table-gb", "8",
                       "--hugepages", "--modes", "pcie_h2d,uva_torch,unified,unified_sorted",
                       "--caps", "8192,32768", "--budget-s", "0.5", "--iters", "10", "--max-minutes", "1.0",
                       "--no-plot", "--out", r.path(f"gather_{tag}_thp.json")],
        "overlap": ["--out", r.path(f"overlap_{tag}.json")],
        # most valuable first (e2e.py runs them in this order and skips what its budget cannot fit)
        "e2e": ["--graph", "papers_like", "--nodes", str(nodes), "--configs",
                "unified,gpu_resident,baseline,unified_cached,unified_reordered,"
                "unified_reordered_cached,unified_graph_on_gpu,baseline_naive,unified_int8_cached,"
                "unified_bf16,unified_int8,unified_one_sync,unified_no_overlap,unified_capped,"
                "unified_unsorted",
                "--order", args.e2e_order, "--cache-fraction", "0.1", "--sync-batches", "5",
                "--warmup", "3", "--batches", "10", "--rounds", "3", "--cache", "none", "--no-plot",
                "--budget-s", str(CAPS["e2e"] - E2E_MARGIN_S),   # set to the time left when it runs
                "--out", r.path(f"e2e_{tag}.json")],
        "sampler": ["--nodes", "2000000", "--edges", "30000000", "--no-dgl", "--rounds", "3",
                    "--batches", "8", "--out", r.path(f"sampler_{tag}.json")],
        "demo": ["--epochs", "1", "--nodes", "500000"],
        "pyg": ["--device", "cuda", "--nodes", "1000000", "--batches", "10", "--runs", "5",
                "--e2e-warmup", "3", "--e2e-batches", "10", "--e2e-rounds", "3",
                "--out", r.path(f"pyg_loader_{tag}.json")],
    }
    scripts = {"gather": "bench/gather.py", "gather_thp": "bench/gather.py", "overlap": "bench/overlap.py", "e2e": "bench/e2e.py", "sampler": "bench/sampler.py",
               "demo": "examples/train_graphsage.py", "pyg": "bench/pyg_loader.py"}

    folded = {"gather_thp": f"gather_{tag}_thp.json", "sampler": f"sampler_{tag}.json",
              "pyg": f"pyg_loader_{tag}.json"}
    for name in steps:
        if not gpu:
            # Dry run: the step's command line must still parse, so the script cannot rot.
            status = "skipped: no GPU"
            if name in scripts:
                try:
                    mod = _load(os.path.splitext(os.path.basename(scripts[name]))[0]) if name != "demo" \
                        else _load_example("train_graphsage")
                    mod.parse_args(bench_argv[name])
                except SystemExit as exc:
                    status = f"FAIL(command line of {scripts[name]} does not parse: exit {exc.code})"
                except Exception as exc:  # noqa: BLE001
                    status = f"FAIL(cannot load {scripts[name]}: {type(exc).__name__}: {exc})"
            if name == "probe":   # versions only: cheap, and proves the probe still imports
                st, secs, _ = r.run(name, [py, "bench/gpu_probe.py", "--sections", "versions",
                                           "--out", r.path("gpu_probe.json")])
                r.record(name, st if st != "PASS" else "skipped: no GPU (versions recorded)", secs)
                continue
            r.record(name, status, 0.0)
            continue
        if name == "probe":
            st, secs, _ = r.run(name, [py, "bench/gpu_probe.py", "--out", r.path("gpu_probe.json")])
        elif name == "gpu_tests":
            st, secs, text = r.run(name, [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                                          "-o", "junit_family=xunit1", f"--junitxml={r.path('gpu_tests.xml')}",
                                          "tests/unified_tensor", "tests/samplers"])
            if st == "PASS" and " passed" not in text:
                st = "FAIL(no test passed: GPU tests skipped?)"
        elif name == "pyg" and importlib.util.find_spec("torch_geometric") is None:
            r.record(name, "skipped: torch_geometric not installed", 0.0)
            continue
        elif name == "memcheck":
            san = find_sanitizer()
            if san is None:
                r.record(name, "skipped: compute-sanitizer not found", 0.0)
                continue
            # Does the sanitizer accept this device at all? (gVisor: "Device not supported")
            pst, psecs, ptext = r.run(name, [san, "--tool", "memcheck", "--error-exitcode", "97", py, "-c",
                                             "import torch; torch.zeros(1, device='cuda'); "
                                             "torch.cuda.synchronize(); print('sanitizer-ok')"])
            if pst != "PASS" or "sanitizer-ok" not in ptext:
                why = next((ln.strip() for ln in ptext.splitlines() if "not supported" in ln.lower()
                            or "error" in ln.lower()), pst)
                r.record(name, f"skipped: compute-sanitizer refuses this device ({why[:120]})", psecs)
                continue
            st, secs, text = r.run(name, [san, "--tool", "memcheck", "--error-exitcode", "97",
                                          "--report-api-errors", "no", py, "-m", "pytest", "-m", "gpu", "-q",
                                          "-x", "-p", "no:cacheprovider", "-k", "test_gather or bad_index_is_zeros or cached_gather_bad_ids",
                                          "tests/unified_tensor/test_gather.py",
                                          "tests/unified_tensor/test_deferred_checks.py",
                                          "tests/unified_tensor/test_cache.py"],
                                   env={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"})
            secs += psecs
            if "ERROR SUMMARY: 0 errors" not in text and st == "PASS":
                st = "FAIL(no memcheck summary)"
        elif name == "e2e":
            argv = list(bench_argv[name])
            argv[argv.index("--budget-s") + 1] = f"{max(r.limit(name) - E2E_MARGIN_S, 1.0):.0f}"
            st, secs, _ = r.run(name, [py, scripts[name]] + argv)
        else:
            st, secs, _ = r.run(name, [py, scripts[name]] + bench_argv[name])
        if name in folded:
            r.fold(name, folded[name])
        extra = {"graph_nodes": nodes} if name == "e2e" else {}
        r.record(name, st, secs, **extra)

    # Summary ------------------------------------------------------------------------------------
    r.write_summary()
    r.say("\n=================== gpu_quick summary ===================")
    r.say(f"device: {tag}; budget {args.budget:.0f} s; elapsed {time.monotonic() - r.t0:.0f} s")
    r.say(f"{'step':<10} {'status':<60} {'seconds':>7}")
    for rec in r.records:
        r.say(f"{rec['step']:<10} {str(rec['status'])[:60]:<60} {rec['seconds']:>7}")
    for k, v in headlines(args.out, tag, r.embedded).items():
        r.say(f"  {k}: {v}")
    failed = [rec for rec in r.records if str(rec["status"]).startswith(("FAIL", "TIMEOUT"))]
    r.say("RESULT: " + ("FAILED: " + ", ".join(x["step"] for x in failed) if failed else "OK"))
    return 1 if failed else 0


def _load_example(name: str):
    sys.path.insert(0, os.path.join(REPO, "examples"))
    spec = importlib.util.spec_from_file_location(f"_ex_{name}", os.path.join(REPO, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


if __name__ == "__main__":
    sys.exit(main())
