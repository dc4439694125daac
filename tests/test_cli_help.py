"""The command lines of the example scripts and benchmarks: ``--help`` works everywhere (also
without PyG or DGL), answers fast (no torch, NumPy, Numba or framework import before the options
are parsed), every option explains itself, and a run that cannot start (framework missing, OGB
folder missing or damaged) stops with one line on stderr and status 2, like an argparse error.
The project's environment variables (one prefix, ``UNIFIED_TENSOR_``; the old names still work)
reach the scripts that read them.

Each script runs as a subprocess of this interpreter (in the modern environment: no DGL)."""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import re
import resource
import subprocess
import sys
from typing import Dict

import numpy as np
import pytest

from testing import REPO_ROOT, run_script


def _scripts(folder: str):
    """Every script of ``folder`` with a command line (it uses argparse), repo-relative."""
    out = []
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, folder, "[!_]*.py"))):
        with open(path) as fh:
            if "argparse" in fh.read():
                out.append(os.path.relpath(path, REPO_ROOT).replace(os.sep, "/"))
    return out


EXAMPLES = _scripts("examples")
BENCHES = _scripts("bench")
# What --help must not import: the options are parsed before any of these is needed.
HEAVY = ("torch", "numpy", "numba", "dgl", "torch_geometric", "cupy", "pandas", "scipy",
         "matplotlib", "unified_tensor", "samplers")
# A loose bound on the CPU seconds of a --help run (interpreter start included; about 0.2 s
# here): importing torch alone takes about 2 s, and the heavy-module check is the exact test.
HELP_CPU_S = 5.0

# Runs a script as `python script args` does (same argv, sys.path[0], __main__), then reports on
# stderr, as the last line, the exit status and which heavy top-level modules were imported.
_WRAPPER = r"""
import json, os, runpy, sys
script, heavy = sys.argv[1], set(sys.argv[2].split(","))
sys.argv = [script] + sys.argv[3:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules} & heavy)}),
      file=sys.stderr)
"""


def run_help(script: str) -> tuple:
    """``python <script> --help`` through the wrapper: ``(process, report, child CPU seconds)``."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-c", _WRAPPER, os.path.join(REPO_ROOT, script),
                        ",".join(HEAVY), "--help"], cwd=REPO_ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert p.stderr.strip(), p.stdout
    report = json.loads(p.stderr.strip().splitlines()[-1])
    return p, report, cpu
# Their parsers show no defaults (no ArgumentDefaultsHelpFormatter); every option says its own.
NO_DEFAULTS_FORMATTER = {"bench/gpu_probe.py"}

_OPTION = re.compile(r"^  (-\S.*?)(?: {2,}(\S.*))?$")   # "  --flag METAVAR   help text"
_CONTINUED = re.compile(r"^ {3,}\S")                     # a wrapped line of the help text


def option_help(text: str) -> Dict[str, tuple]:
    """``{flag: (invocation, help text)}`` for every option an argparse ``--help`` lists (the
    longest flag names the option; wrapped help lines are joined with single spaces)."""
    out, flag = {}, None
    for line in text.splitlines():
        m = _OPTION.match(line)
        if m:
            invocation = m.group(1)
            flag = max(re.findall(r"(?:^|, )(--?[\w-]+)", invocation), key=len)
            out[flag] = (invocation, m.group(2) or "")
        elif flag is not None and _CONTINUED.match(line):
            invocation, help_text = out[flag]
            out[flag] = (invocation, f"{help_text} {line.strip()}".strip())
        else:
            flag = None
    return out


def test_option_help_parser():
    text = ("usage: x.py [-h] [--a A]\n\noptions:\n"
            "  -h, --help            show this help message and exit\n"
            "  --device {auto,cuda,cpu}\n"
            "                        auto: cuda when available (default:\n"
            "                        auto)\n"
            "  --no-plot\n"
            "  --out OUT             JSON path (default: None)\n\ngroup:\n  --x X\n")
    assert option_help(text) == {
        "--help": ("-h, --help", "show this help message and exit"),
        "--device": ("--device {auto,cuda,cpu}", "auto: cuda when available (default: auto)"),
        "--no-plot": ("--no-plot", ""), "--out": ("--out OUT", "JSON path (default: None)"),
        "--x": ("--x X", "")}


@pytest.fixture
def hide_modules(tmp_path, monkeypatch):
    """``hide_modules('dgl', ...)``: scripts run afterwards fail to import these modules, as where
    they are not installed (a package of that name that raises ModuleNotFoundError comes first
    on PYTHONPATH)."""
    def hide(*names: str) -> None:
        for name in names:
            pkg = tmp_path / "hidden" / name
            pkg.mkdir(parents=True)
            (pkg / "__init__.py").write_text(
                f"raise ModuleNotFoundError(\"No module named '{name}' (hidden by the test)\", "
                f"name={name!r})\n")
        monkeypatch.setenv("PYTHONPATH", str(tmp_path / "hidden") + os.pathsep
                           + os.environ.get("PYTHONPATH", ""))
    return hide


def test_every_script_is_covered():
    assert "examples/train_graphsage.py" in EXAMPLES and "examples/train_multi_gpu.py" in EXAMPLES
    assert {"bench/gather.py", "bench/e2e.py", "bench/gpu_quick.py",
            "bench/compress_accuracy.py"} <= set(BENCHES)


@pytest.mark.parametrize("script", EXAMPLES + BENCHES)
def test_help_is_fast_and_explains_every_option(script, hide_modules):
    """``--help`` exits 0 with the usage, imports none of ``HEAVY`` (the options are parsed before
    the script's heavy imports) and so takes a fraction of a second; every option has help text
    that shows its default."""
    if script.startswith("examples/"):
        hide_modules("dgl", "torch_geometric")      # --help needs neither
    p, report, cpu = run_help(script)
    assert report["code"] in (0, None), p.stdout + p.stderr
    assert p.stdout.startswith(f"usage: {os.path.basename(script)}"), p.stdout[:300]
    assert report["modules"] == [], f"{script} --help imported {report['modules']}"
    assert cpu < HELP_CPU_S, f"{script} --help took {cpu:.1f} s of CPU"
    options = option_help(p.stdout)
    assert len(options) > 2, p.stdout
    undocumented = [flag for flag, (_, text) in options.items() if not text]
    assert not undocumented, f"{script}: options without help text: {undocumented}"
    for flag, (invocation, text) in options.items():
        if text.endswith("(default: None)"):
            # the formatter's "(default: None)" must not contradict a default the text names
            assert "default" not in text[:-len("(default: None)")], (flag, text)
        takes_value = invocation.split(", ")[-1] != flag
        if takes_value and script not in NO_DEFAULTS_FORMATTER:
            assert "default" in text, f"{script} {flag} does not show its default: {text!r}"


@pytest.mark.parametrize("script, module, framework, install", [
    ("examples/train_dgl.py", "dgl", "DGL", "pip install dgl"),
    ("examples/train_pyg.py", "torch_geometric", "PyG", "pip install torch_geometric"),
    ("examples/train_pyg_hetero.py", "torch_geometric", "PyG", "pip install torch_geometric"),
    ("examples/train_pyg_link.py", "torch_geometric", "PyG", "pip install torch_geometric"),
])
def test_missing_framework_exits_with_one_line(script, module, framework, install, hide_modules):
    hide_modules(module)
    # (the synthetic ogbn-mag graph is always generated in RAM: no --cache there)
    cache = [] if script.endswith("_hetero.py") else ["--cache", "none"]
    p = run_script(script, "--device", "cpu", *cache, check=False, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"{os.path.basename(script)}: error: this script needs "
                               f"{framework}") and install in lines[0], lines[0]
    assert "dataset:" not in p.stdout                  # stopped before loading anything


@pytest.mark.parametrize("script", ["examples/train_graphsage.py", "examples/train_pyg.py",
                                    "examples/train_pyg_link.py"])
@pytest.mark.parametrize("case", ["no folder", "no --ogb-root"])
def test_missing_ogb_dataset_exits_with_one_line(script, case, tmp_path):
    if "_pyg" in script:
        pytest.importorskip("torch_geometric")
    root = tmp_path / "nonexistent"
    args = ["--dataset", "ogbn-products", "--device", "cpu"]
    if case == "no folder":
        args += ["--ogb-root", str(root)]
    p = run_script(script, *args, check=False, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"{os.path.basename(script)}: error: "), lines[0]
    if case == "no folder":
        assert str(root / "ogbn_products") in lines[0] and "never downloads" in lines[0]
    else:
        assert "needs --ogb-root" in lines[0]


@pytest.mark.parametrize("script, args, msg", [
    ("examples/train_graphsage.py", ["--cache-fraction", "0.1", "--device", "cpu"],
     "--cache-fraction needs --loader unified on a CUDA device"),
    ("examples/train_graphsage.py", ["--cache-fraction", "2", "--device", "cpu"],
     "--cache-fraction must be in [0, 1]"),
    ("examples/train_multi_gpu.py", ["--device", "cpu", "--world-size", "0"],
     "--world-size must be >= 1"),
    ("examples/train_multi_gpu.py", ["--device", "cuda:1"], "--device must be 'auto', 'cuda' or 'cpu'"),
])
def test_bad_option_values_exit_with_one_line(script, args, msg):
    p = run_script(script, "--nodes", "1000", "--cache", "none", *args, check=False, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith(f"{os.path.basename(script)}: error: ") and msg in lines[0], lines[0]


# ------------------------------------------------------------------ OGB folders on the command line
def _fake_ogb(root, split: str, nodes: int = 60) -> str:
    """A tiny csv-layout ogbn-products under ``root`` with the split folder ``split``."""
    rng = np.random.default_rng(0)
    ddir = root / "ogbn_products"
    files = {"raw/edge.csv.gz": rng.integers(0, nodes, (300, 2)),
             "raw/node-feat.csv.gz": rng.standard_normal((nodes, 8)).round(4),
             "raw/node-label.csv.gz": rng.integers(0, 3, (nodes, 1)),
             "raw/num-node-list.csv.gz": [[nodes]], "raw/num-edge-list.csv.gz": [[300]]}
    perm = rng.permutation(nodes)
    for part, ids in (("train", perm[:30]), ("valid", perm[30:45]), ("test", perm[45:])):
        files[f"split/{split}/{part}.csv.gz"] = ids.reshape(-1, 1)
    for rel, rows in files.items():
        (ddir / rel).parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(ddir / rel, "wt") as fh:
            fh.write("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return str(ddir)


OGB_RUN = ["--dataset", "ogbn-products", "--device", "cpu", "--epochs", "1", "--max-batches", "1",
           "--eval-batches", "1", "--batch-size", "16", "--hidden", "8", "--no-progress"]


def _one_line_error(p) -> str:
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("train_graphsage.py: error: --ogb-root "), lines[0]
    return lines[0]


def test_damaged_ogb_file_exits_with_one_line(tmp_path):
    ddir = _fake_ogb(tmp_path, "sales_ranking")
    feat = os.path.join(ddir, "raw", "node-feat.csv.gz")
    with open(feat, "rb") as fh:
        data = fh.read()
    with open(feat, "wb") as fh:
        fh.write(data[:len(data) // 2])                 # a truncated download
    p = run_script("examples/train_graphsage.py", *OGB_RUN, "--ogb-root", tmp_path, check=False,
                   timeout=300)
    line = _one_line_error(p)
    assert f"'{feat}' is truncated or damaged" in line, line


def test_missing_ogb_split_names_the_command_line_option(tmp_path):
    """ogbn-products' split is sales_ranking (OGB's master.csv); a folder holding only another
    split is not read silently: the error lists it and names --ogb-split, which then works."""
    _fake_ogb(tmp_path, "random")
    p = run_script("examples/train_graphsage.py", *OGB_RUN, "--ogb-root", tmp_path, check=False,
                   timeout=300)
    line = _one_line_error(p)
    assert "sales_ranking" in line and "['random']" in line, line
    assert "pass --ogb-split random to use it" in line and "split=" not in line, line
    p = run_script("examples/train_graphsage.py", *OGB_RUN, "--ogb-root", tmp_path,
                   "--ogb-split", "random", timeout=300)
    assert "dataset: " in p.stdout and "test acc" in p.stdout, p.stdout


# ------------------------------------------------------------------ environment variables
def test_data_root_env_names(tmp_path, monkeypatch):
    """``--cache`` not given: ``UNIFIED_TENSOR_DATA_ROOT``; ``UT_DATA_ROOT`` (the old name) still
    works, with a FutureWarning naming the new one; the new name wins when both are set."""
    from unified_tensor import _env

    monkeypatch.syspath_prepend(os.path.join(REPO_ROOT, "examples"))
    import _util

    monkeypatch.setattr(_env, "_warned", set())
    monkeypatch.delenv("UNIFIED_TENSOR_DATA_ROOT", raising=False)

    def load(**over):
        args = argparse.Namespace(dataset="synthetic", cache=None, nodes=300, avg_degree=4.0,
                                  classes=3, feat_dim=4, data_seed=0, ogb_root=None,
                                  ogb_split=None)
        vars(args).update(over)
        ds = _util.load_dataset(args)
        return args, ds

    monkeypatch.setenv("UT_DATA_ROOT", str(tmp_path / "old"))
    with pytest.warns(FutureWarning, match="UT_DATA_ROOT is deprecated.*UNIFIED_TENSOR_DATA_ROOT"):
        args, ds = load()
    assert args.cache == str(tmp_path / "old")
    assert str(ds.features_path).startswith(str(tmp_path / "old"))
    monkeypatch.setenv("UNIFIED_TENSOR_DATA_ROOT", str(tmp_path / "new"))
    args, ds = load()
    assert args.cache == str(tmp_path / "new")
    assert str(ds.features_path).startswith(str(tmp_path / "new"))
    args, ds = load(cache=str(tmp_path / "given"))      # the option wins over both
    assert str(ds.features_path).startswith(str(tmp_path / "given"))


def _gpu_quick_budget(tmp_path, **env_vars) -> tuple:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    for name in ("OUT", "GPU_QUICK_BUDGET", "UNIFIED_TENSOR_GPU_QUICK_BUDGET"):
        env.pop(name, None)
    env.update(env_vars)
    out = tmp_path / "_".join(env_vars) if env_vars else tmp_path / "none"
    p = subprocess.run([sys.executable, "bench/gpu_quick.py", "--dry-run", "--steps", "gather",
                        "--out", str(out)], cwd=REPO_ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads((out / "gpu_quick_summary.json").read_text())
    return summary["budget_s"], p.stderr


def test_gpu_quick_budget_env_names(tmp_path):
    budget, err = _gpu_quick_budget(tmp_path, GPU_QUICK_BUDGET="123")
    assert budget == 123 and "FutureWarning" in err and "UNIFIED_TENSOR_GPU_QUICK_BUDGET" in err
    budget, err = _gpu_quick_budget(tmp_path, GPU_QUICK_BUDGET="123",
                                    UNIFIED_TENSOR_GPU_QUICK_BUDGET="77")
    assert budget == 77 and "FutureWarning" not in err
