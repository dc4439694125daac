"""The command lines of the example scripts and benchmarks: ``--help`` works everywhere (also
without PyG or DGL), every option explains itself, and a run that cannot start (framework missing,
OGB folder missing) stops with one line on stderr and status 2, like an argparse error.

Each script runs as a subprocess of this interpreter (in the modern environment: no DGL)."""
from __future__ import annotations

import glob
import os
import re
from typing import Dict

import pytest

from testing import REPO_ROOT, run_script

EXAMPLES = sorted(os.path.relpath(p, REPO_ROOT).replace(os.sep, "/")
                  for p in glob.glob(os.path.join(REPO_ROOT, "examples", "[!_]*.py")))
BENCHES = [f"bench/{name}.py" for name in ("gather", "sampler", "e2e", "gpu_probe", "gpu_quick", "overlap",
                                            "sampler_ratio", "pyg_loader")]
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


@pytest.mark.parametrize("script", EXAMPLES + BENCHES)
def test_help_explains_every_option(script, hide_modules):
    if script.startswith("examples/"):
        hide_modules("dgl", "torch_geometric")      # --help needs neither
    p = run_script(script, "--help", timeout=300)
    assert p.stdout.startswith(f"usage: {os.path.basename(script)}"), p.stdout[:300]
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
