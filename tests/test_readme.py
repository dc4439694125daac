"""The README's promises, checked so that the docs cannot drift:

* its ```python blocks, run in order in one fresh process on a CPU machine, run as written (later
  blocks use names from earlier ones); a block that needs what such a machine lacks starts with a
  ``# needs: ...`` line and is left out;
* the examples it says take ``--dataset`` / ``--ogb-root`` are exactly those that do;
* the make targets it names exist."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NEEDS = re.compile(r"#\s*needs:\s*\S")

# Runs each block with the README's line numbers, so a traceback points at the README line.
RUNNER = r"""
import json, sys
blocks = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for first_line, code in blocks:
    print(f"--- README.md block at line {first_line}", flush=True)
    exec(compile("\n" * first_line + code, "README.md", "exec"), ns)
print("--- all blocks ran", flush=True)
"""


def python_blocks(text: str):
    """``[(line of the first code line (0-based), code, needs)]`` for every ```python block.

    ``needs`` is the block's ``# needs: ...`` line (its first non-blank line), else ``None``."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start, i = i + 1, i + 1
            while i < len(lines) and lines[i].strip() != "```":
                i += 1
            if i == len(lines):
                raise ValueError(f"README.md: the ```python block at line {start} is not closed")
            body = lines[start:i]
            first = next((ln.strip() for ln in body if ln.strip()), "")
            blocks.append((start, "\n".join(body) + "\n", first if NEEDS.match(first) else None))
        i += 1
    return blocks


def test_block_extraction():
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\n\n# needs: a GPU\nb\n```\n"
    assert python_blocks(text) == [(2, "a = 1\n", None),
                                   (8, "\n# needs: a GPU\nb\n", "# needs: a GPU")]
    with pytest.raises(ValueError, match="not closed"):
        python_blocks("```python\na = 1\n")


def test_readme_python_blocks_run_in_order_on_a_cpu(tmp_path):
    pytest.importorskip("torch_geometric")  # the PyG block; the modern environment has PyG
    blocks = python_blocks(README.read_text())
    runnable = [(start, code) for start, code, needs in blocks if needs is None]
    assert len(blocks) >= 8 and len(runnable) >= 6, "README lost its python blocks?"
    for start, code in runnable:
        assert 'device="cuda"' not in code, (
            f"README.md line {start + 1}: a block without '# needs:' hard-codes device=\"cuda\"")
    (tmp_path / "blocks.json").write_text(json.dumps(runnable))
    (tmp_path / "run.py").write_text(RUNNER)
    env = dict(os.environ, PYTHONPATH=str(ROOT), UNIFIED_TENSOR_DISABLE_CUDA="1")
    # A fresh process in an empty folder (files the blocks write land there).
    res = subprocess.run([sys.executable, "run.py", "blocks.json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-6000:]
    assert res.stdout.count("--- README.md block at line") == len(runnable)
    assert res.stdout.rstrip().endswith("--- all blocks ran")


HELP_RUNNER = r"""
import contextlib, io, json, runpy, sys
out = {}
sys.path.insert(0, sys.argv[1])
for script in sys.argv[2:]:
    sys.argv = [script, "--help"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            assert exc.code in (0, None), (script, exc.code)
    out[script] = buf.getvalue()
print(json.dumps(out))
"""


def test_readme_names_the_examples_without_ogb_options(tmp_path):
    """The README says which examples take ``--dataset`` / ``--ogb-root``: every example but the
    ones it names (from each script's ``--help``, all in one process)."""
    scripts = sorted(str(p) for p in (ROOT / "examples").glob("train_*.py"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", HELP_RUNNER, str(ROOT / "examples"), *scripts],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    helps = json.loads(res.stdout.strip().splitlines()[-1])
    without = {Path(s).name for s, text in helps.items()
               if not ("--dataset" in text and "--ogb-root" in text)}
    text = " ".join(README.read_text().split())
    m = re.search(r"Every example except ((?:`[\w.]+`(?:, | and )?)+) takes `--dataset", text)
    assert m, "README lost its sentence on which examples take --dataset"
    assert set(re.findall(r"`([\w.]+)`", m.group(1))) == without


def test_make_targets_the_readme_names_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README.read_text()))
    assert named, "README names no make target?"
    assert named <= targets, named - targets
