"""The first real Numba compilation of a library kernel says so once on stderr (the first batch of
a fresh install otherwise looks like a hang); a run that loads the kernels from Numba's on-disk
cache prints nothing. Each case runs in a fresh process with its own NUMBA_CACHE_DIR."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

from unified_tensor._numba_guard import COMPILE_MESSAGE  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# One CPU gather: Numba compiles the kernel and the functions it calls (several compile events),
# one message.
GATHER = """
import torch, unified_tensor as ut
t = ut.unified(torch.arange(4000, dtype=torch.float32).view(1000, 4))
assert t[torch.tensor([3, 1])].tolist() == [[12., 13., 14., 15.], [4., 5., 6., 7.]]
print("ok")
"""


def _run(cache_dir: Path, code: str = GATHER) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=cache_dir.parent,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["ok"]
    return res


def test_first_compile_is_announced_once_and_a_cached_run_is_silent(tmp_path):
    cache = tmp_path / "numba-cache"
    cold = _run(cache)
    assert cold.stderr.count(COMPILE_MESSAGE) == 1, cold.stderr
    assert any(cache.rglob("*.nbi")), "Numba wrote no cache index"
    warm = _run(cache)
    assert COMPILE_MESSAGE not in warm.stderr, warm.stderr


def test_numba_functions_of_other_modules_are_not_announced(tmp_path):
    code = ("import unified_tensor._deps as d; assert d.has_numba()\n"
            "from numba import njit\n"
            "f = njit(lambda x: x + 1)\n"
            "assert f(1) == 2\n"
            "print('ok')\n")
    res = _run(tmp_path / "numba-cache", code)
    assert COMPILE_MESSAGE not in res.stderr, res.stderr
