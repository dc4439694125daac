"""The GPU code paths' device handling, on the CPU: the fake-CUDA harness (tests/fake_cuda/).

CI has no GPU. ``tests/fake_cuda/harness.py`` makes CPU tensors of a subclass play CUDA tensors,
enforces PyTorch's device rules on them, counts host syncs and fakes the sampling and gather
kernels, so the GPU branches of the samplers, loaders and gathers run here and their results can
be compared with the CPU path's (see the harness's docstring for what it can and cannot catch).
The harness patches ``torch.cuda`` for the whole process, so every scenario group runs in a child
process (``tests/fake_cuda/run.py GROUP``), never in this one; each scenario of
``tests/fake_cuda/scenarios.py`` is one test here, reported from the child's output.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest

from testing import REPO_ROOT

FAKE_DIR = os.path.join(REPO_ROOT, "tests", "fake_cuda")
RUNNER = os.path.join(FAKE_DIR, "run.py")
TIMEOUT_S = 300

# Groups that need an optional package in the child (skipped here without it).
NEEDS = {"pyg": "torch_geometric"}

# Scenarios that expose a library bug: they assert the correct behaviour and are expected to fail
# until the bug is fixed (strict: a fix makes them XPASS, then remove the entry). Each entry is
# (reason, regex the child's failure report must match): a failure for another reason is a
# plain failure, not an expected one.
XFAIL: Dict[str, Tuple[str, str]] = {}


class KnownLibraryBug(AssertionError):
    """A scenario failed the way its XFAIL entry says."""


def _declared() -> List[Tuple[str, str]]:
    """``(group, scenario)`` for every ``@scenario("group")`` function of scenarios.py, read with
    ``ast`` (importing the module needs the harness installed)."""
    with open(os.path.join(FAKE_DIR, "scenarios.py")) as f:
        tree = ast.parse(f.read())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "scenario":
                    out.append((d.args[0].value, node.name))
    return out


SCENARIOS = _declared()
GROUPS = list(dict.fromkeys(g for g, _ in SCENARIOS))


class _Run:
    def __init__(self, rc, output: str):
        self.rc, self.output = rc, output
        self.status = dict(re.findall(r"^@@ (\w+) (PASS|FAIL) ", output, re.M))
        self.sections: Dict[str, str] = {}
        for m in re.finditer(r"^---- (\w+) failed:\n(.*?)(?=^@@ \1 )", output, re.M | re.S):
            self.sections[m.group(1)] = m.group(2)

    def tail(self, n: int = 6000) -> str:
        return self.output[-n:]


_runs: Dict[str, _Run] = {}


def _run(group: str) -> _Run:
    """Run one group in a child process (once per session)."""
    if group not in _runs:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("UNIFIED_TENSOR_DISABLE_CUDA", None)
        env.pop("UNIFIED_TENSOR_SYNC_CHECKS", None)
        cmd = [sys.executable, "-X", "faulthandler", RUNNER, group]
        try:
            p = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                               timeout=TIMEOUT_S)
            _runs[group] = _Run(p.returncode, p.stdout + p.stderr)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
                else (exc.stdout or "")
            _runs[group] = _Run(None, out + f"\n[timed out after {TIMEOUT_S} s]")
    return _runs[group]


def _skip_without_deps(group: str) -> None:
    if group in NEEDS:
        pytest.importorskip(NEEDS[group])


def _params():
    for group, name in SCENARIOS:
        marks = [pytest.mark.xfail(strict=True, raises=KnownLibraryBug, reason=XFAIL[name][0])] \
            if name in XFAIL else []
        yield pytest.param(group, name, id=f"{group}-{name}", marks=marks)


@pytest.mark.parametrize("group, name", list(_params()))
def test_scenario(group: str, name: str) -> None:
    _skip_without_deps(group)
    run = _run(group)
    status = run.status.get(name)
    if status is None:
        pytest.fail(f"the fake-CUDA child for group {group!r} exited with {run.rc} without "
                    f"reporting {name}:\n{run.tail()}", pytrace=False)
    if status != "PASS":
        report = run.sections.get(name, run.tail())
        if name in XFAIL and re.search(XFAIL[name][1], report):
            raise KnownLibraryBug(f"{group}/{name}: {XFAIL[name][0]}\n{report}")
        pytest.fail(f"{group}/{name} failed in the fake-CUDA child (python "
                    f"tests/fake_cuda/run.py {group} {name} reruns it):\n{report}", pytrace=False)


@pytest.mark.parametrize("group", GROUPS)
def test_group_child_exits_cleanly(group: str) -> None:
    """The child ran every scenario of the group (no crash, no timeout, none unknown) and exited
    0, or 1 when (and only when) a scenario failed."""
    _skip_without_deps(group)
    run = _run(group)
    expected = {n for g, n in SCENARIOS if g == group}
    assert set(run.status) == expected, \
        f"scenarios reported {sorted(run.status)}, declared {sorted(expected)}:\n{run.tail()}"
    failed = any(s != "PASS" for s in run.status.values())
    assert run.rc == (1 if failed else 0), f"child exit status {run.rc}:\n{run.tail()}"
