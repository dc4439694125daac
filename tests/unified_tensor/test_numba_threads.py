"""The library's parallel CPU kernels use torch.get_num_threads() threads (at most Numba's pool),
so a process limited with torch.set_num_threads / OMP_NUM_THREADS is not oversubscribed."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

numba = pytest.importorskip("numba")

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import numba
    import torch
    from unified_tensor._numba_guard import ParallelKernel

    @ParallelKernel
    def who():
        from numba import prange, get_thread_id
        def who(out):
            for i in prange(out.shape[0]):
                out[i] = get_thread_id()
        return who

    pool = numba.config.NUMBA_NUM_THREADS
    for want in (1, pool):
        torch.set_num_threads(want)
        out = np.full(1 << 16, -1, np.int64)
        who(out)
        used = np.unique(out)
        assert used.min() >= 0, used
        assert used.shape[0] <= want, (want, used)
        assert numba.get_num_threads() == want, (want, numba.get_num_threads())
        if want == 1:
            assert used.tolist() == [0], used
    torch.set_num_threads(pool + 7)          # more than the pool: capped at the pool
    out = np.full(1 << 16, -1, np.int64)
    who(out)
    assert numba.get_num_threads() == pool
    print("ok", pool)
""")


def test_parallel_kernels_follow_torch_threads(tmp_path):
    script = tmp_path / "child.py"          # a file: Numba's on-disk cache needs one
    script.write_text(CHILD)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                       cwd=str(tmp_path), env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok"), r.stdout


def _env():
    import os
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env
