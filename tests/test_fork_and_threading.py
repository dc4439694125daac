"""Crash regressions of the CPU (Numba) paths: ``fork`` after a gather or sample, and concurrent
gathers and samples from several threads under Numba's ``workqueue`` threading layer.

A broken build does not raise here, it kills the process (GNU OpenMP's "fork() called from a
process already using GNU OpenMP" or workqueue's "Concurrent access has been detected"), so every
case runs as a child Python process with a timeout; a crash or a hang fails the test.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from testing import REPO_ROOT

# Exit code a child uses to say "this threading layer cannot be loaded here".
_NO_LAYER = 77

# Shared set-up of every child: a CPU-only unified table, a graph, and a worker function whose
# results are deterministic (the sampler is seeded per item), so any two processes agree.
_PRELUDE = textwrap.dedent("""
    import os, sys, threading, time
    import numba, torch
    import unified_tensor as ut
    from samplers import CSCGraph, NeighborSampler

    LAYER = os.environ.get("NUMBA_THREADING_LAYER", "default")
    N, FANOUTS = 3000, [5, 3]
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(N, 16, generator=gen)
    ref_table = table.clone()
    feats = ut.unified(table)
    assert not feats.is_cuda
    graph = CSCGraph.from_edge_index(torch.randint(0, N, (2, 30000), generator=gen), num_nodes=N)

    def work(i, num_seeds=64):
        seeds = torch.randperm(N, generator=torch.Generator().manual_seed(i))[:num_seeds]
        input_nodes, _, blocks = NeighborSampler(FANOUTS, seed=i).sample(graph, seeds)
        x = feats[input_nodes]
        return input_nodes, [b.edge_index for b in blocks], [b.edata["_ID"] for b in blocks], x

    def same(a, b):
        return (torch.equal(a[0], b[0]) and all(map(torch.equal, a[1], b[1]))
                and all(map(torch.equal, a[2], b[2])) and torch.equal(a[3], b[3]))

    def check(out, i):
        assert torch.equal(out[3], ref_table[out[0]]), f"item {i}: gathered rows differ"
        assert out[0].numel() > 64 and all(e.shape[1] > 0 for e in out[1]), f"item {i}: no edges"

    try:  # start Numba's threading layer in this (parent) process
        check(work(0), 0)
    except ValueError as exc:
        if "threading layer" in str(exc):
            sys.exit(%(no_layer)d)
        raise
""" % {"no_layer": _NO_LAYER})

_DATALOADER_FORK = _PRELUDE + textwrap.dedent("""
    from torch.utils.data import DataLoader, Dataset

    class Items(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return os.getpid(), work(i)

    ref = [work(i) for i in range(8)]
    loader = DataLoader(Items(), batch_size=None, num_workers=2, multiprocessing_context="fork",
                        timeout=120)
    pids = set()
    for epoch in range(2):
        for i, (pid, out) in enumerate(loader):
            pids.add(pid)
            check(out, i)
            assert same(out, ref[i]), f"item {i}: a worker sampled or gathered differently"
    assert os.getpid() not in pids and len(pids) >= 2, pids
    print("ok", numba.threading_layer(), len(pids), "workers")
""")

_FORK_WHILE_GUARD_HELD = _PRELUDE + textwrap.dedent("""
    from unified_tensor._numba_guard import parallel_guard

    ref = work(1)
    # A producer thread inside a kernel at fork time holds the guard: the child gets a copy.
    with parallel_guard():
        pid = os.fork()
        if pid == 0:
            try:
                torch.set_num_threads(1)  # as DataLoader workers do: torch's OpenMP pool does not
                out = work(1)             # survive fork either (the child would hang in torch)
                check(out, 1)
                code = 0 if same(out, ref) else 1
            except BaseException:
                code = 1
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            sys.exit("forked child hung (guard lock inherited held?)")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0, f"forked child failed: {status}"
    print("ok")
""")

_THREADS = _PRELUDE + textwrap.dedent("""
    assert numba.threading_layer() == "workqueue", numba.threading_layer()
    ref_sample = work(7, num_seeds=2000)
    idx = torch.randint(0, N, (200_000,), generator=gen)
    ref_rows = ref_table[idx]
    errors, counts = [], {"sample": 0, "gather": 0}
    stop = time.monotonic() + 1.5

    def sampler_thread():
        try:
            while time.monotonic() < stop:
                assert same(work(7, num_seeds=2000), ref_sample), "concurrent sample differs"
                counts["sample"] += 1
        except BaseException as exc:
            errors.append(repr(exc))

    def gather_thread():
        try:
            while time.monotonic() < stop:
                assert torch.equal(feats[idx], ref_rows), "concurrent gather differs"
                counts["gather"] += 1
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=f) for f in (sampler_thread, gather_thread) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert counts["sample"] and counts["gather"], counts
    print("ok", counts)
""")


def _run_child(code: str, layer: str | None, timeout: float = 300) -> None:
    """Run ``code`` in a fresh interpreter with the given Numba threading layer (``None``: Numba's
    default); a crash, hang or non-zero exit fails the test, an unavailable layer skips it."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               UNIFIED_TENSOR_DISABLE_CUDA="1")
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    try:
        p = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"child timed out after {timeout} s (hang?):\n{exc.stdout}\n{exc.stderr}")
    if p.returncode == _NO_LAYER:
        pytest.skip(f"Numba threading layer {layer!r} is not available here")
    assert p.returncode == 0, (f"child exited with {p.returncode} (layer {layer!r}):\n"
                               f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    assert p.stdout.startswith("ok"), p.stdout


fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@fork_only
@pytest.mark.parametrize("layer", [None, "omp", "workqueue", "tbb"])
def test_dataloader_workers_fork_after_cpu_gather_and_sample(layer):
    """torch DataLoader(num_workers=2) forked after the parent gathered and sampled on the CPU:
    the workers gather and sample too, and return exactly what the parent computes."""
    _run_child(_DATALOADER_FORK, layer)


@fork_only
@pytest.mark.parametrize("layer", [None, "workqueue"])
def test_fork_while_another_thread_is_inside_a_kernel(layer):
    """A child forked while the parent's guard is held (a thread inside a kernel) does not
    inherit the held lock: its own gather and sample finish and agree with the parent's."""
    _run_child(_FORK_WHILE_GUARD_HELD, layer)


def test_concurrent_sample_and_gather_under_workqueue():
    """Under the workqueue layer (not thread-safe) threads that sample and gather at the same
    time are serialised by the guard: no abort, results equal the single-threaded ones."""
    _run_child(_THREADS, "workqueue")
