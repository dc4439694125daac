"""Crash and hang regressions of the CPU (Numba) paths: ``fork`` after a gather or sample (torch
DataLoader workers, ``multiprocessing`` children, a fork while another thread holds the library's
locks), and concurrent gathers and samples from several threads; each under every Numba threading
layer (``omp``, ``workqueue``, ``tbb`` where installed) with 1 and 4 CPU threads.

A broken build does not raise here, it kills the process (GNU OpenMP's "fork() called from a
process already using GNU OpenMP" or workqueue's "Concurrent access has been detected") or hangs
it for good (a forked child waiting on a lock or thread pool that only its parent has), so every
case runs as a child Python process with a timeout; a crash or a hang fails the test.
"""
from __future__ import annotations

import functools
import importlib
import itertools
import os
import subprocess
import sys
import textwrap
from typing import Optional

import pytest

from testing import REPO_ROOT

# Exit code a child uses to say "this threading layer cannot be loaded here".
_NO_LAYER = 77

LAYERS = ["omp", "workqueue", "tbb"]
THREADS = [1, 4]
LAYERS_X_THREADS = list(itertools.product(LAYERS, THREADS))

# Shared set-up of every child: a CPU-only unified table, a graph, and a worker function whose
# results are deterministic (the sampler is seeded per item), so any two processes agree.
# NUMBA_NUM_THREADS, when set, is torch's intra-op thread count too.
_PRELUDE = textwrap.dedent("""
    import os, sys, threading, time
    import numba, torch
    import unified_tensor as ut
    from samplers import CSCGraph, NeighborSampler

    LAYER = os.environ.get("NUMBA_THREADING_LAYER", "default")
    if "NUMBA_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["NUMBA_NUM_THREADS"]))
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
    assert LAYER in ("default", numba.threading_layer()), (LAYER, numba.threading_layer())
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
                out = work(1)
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

_FORK_CHILD = _PRELUDE + textwrap.dedent("""
    import faulthandler, hashlib, multiprocessing
    from numba.core.compiler_lock import global_compiler_lock
    from samplers import HeteroCSCGraph
    from samplers.sampling._layer_cpu import _POOL
    from unified_tensor._host_pool import host_pool
    from unified_tensor._numba_guard import parallel_guard

    # Big enough that the sampler's seed checks are parallel torch operators, the gather writes
    # into the host buffer pool and the sampler into its own pool.
    BIG = 40_000
    big_graph = CSCGraph.from_edge_index(torch.randint(0, BIG, (2, 8 * BIG), generator=gen),
                                         num_nodes=BIG)
    big_feats = ut.unified(torch.randn(BIG, 16, generator=gen))
    big_seeds = torch.randperm(BIG, generator=gen)
    hetero = HeteroCSCGraph.from_edge_index_dict(
        {("a", "to", "b"): torch.randint(0, 500, (2, 5000), generator=gen),
         ("b", "to", "a"): torch.randint(0, 500, (2, 5000), generator=gen)}, {"a": 500, "b": 500})

    def results():
        \"\"\"Digest of a big and a small batch (sampled, then gathered) and of a
        heterogeneous one.\"\"\"
        nodes, _, blocks = NeighborSampler([5, 3], seed=3).sample(big_graph, big_seeds)
        small = work(2)
        hnodes, _, hblocks = NeighborSampler([4, 2], seed=5).sample(hetero,
                                                                    {"b": torch.arange(100)})
        parts = [nodes, big_feats[nodes], *(b.edge_index for b in blocks), small[0], small[3],
                 *small[1], *small[2], *(hnodes[nt] for nt in sorted(hnodes))]
        for b in hblocks:
            parts += [b.edge_index_dict[et] for et in sorted(b.edge_index_dict)]
        h = hashlib.sha256()
        for t in parts:
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    ref = results()

    def child(conn):
        faulthandler.dump_traceback_later(45, exit=True)   # a hang: say where, then exit
        conn.send(results())

    def fork_child(what, before_join=lambda: None):
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=child, args=(send,))
        p.start()
        send.close()
        before_join()
        try:
            got = recv.recv() if recv.poll(90) else "no answer in 90 s"
        except EOFError:
            got = "no answer"
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()
        assert got == ref, f"{what}: {got} (exit code {p.exitcode}), expected {ref}"

    # The report: gather and sample here, then a forked child does the same.
    fork_child("child forked after a gather and a sample")

    # Another thread inside the library at fork time (a loader's producer thread, say): inside
    # both buffer pools, a heterogeneous graph's scratch pool and the kernel guard, and briefly
    # compiling (Numba's compiler lock; the fork waits for that one).
    held, release = threading.Event(), threading.Event()

    def holder():
        with host_pool._lock, _POOL._lock, hetero._scratch_lock, parallel_guard():
            with global_compiler_lock:
                held.set()
                time.sleep(0.5)
            release.wait(120)

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    held.wait()
    fork_child("child forked while another thread held the library's locks", release.set)
    t.join()
    print("ok")
""")

_THREADS = _PRELUDE + textwrap.dedent("""
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


@functools.lru_cache(maxsize=None)
def _missing_layer(layer: Optional[str]) -> Optional[str]:
    """Why Numba's threading ``layer`` cannot load here (checked without a child), else ``None``."""
    if layer == "tbb":
        try:
            importlib.import_module("numba.np.ufunc.tbbpool")
        except ImportError as exc:
            return f"Numba's tbb threading layer needs the TBB library (pip install tbb): {exc}"
    return None


def _run_child(code: str, layer: Optional[str], threads: Optional[int] = None,
               timeout: float = 300) -> None:
    """Run ``code`` in a fresh interpreter with the given Numba threading layer and thread count
    (``None``: Numba's defaults); a crash, hang or non-zero exit fails the test, an unavailable
    layer skips it."""
    missing = _missing_layer(layer)
    if missing:
        pytest.skip(missing)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               UNIFIED_TENSOR_DISABLE_CUDA="1")
    for name, value in (("NUMBA_THREADING_LAYER", layer), ("NUMBA_NUM_THREADS", threads)):
        env.pop(name, None)
        if value is not None:
            env[name] = str(value)
    try:
        p = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"child timed out after {timeout} s (hang?):\n{exc.stdout}\n{exc.stderr}")
    if p.returncode == _NO_LAYER:
        pytest.skip(f"Numba threading layer {layer!r} is not available here")
    assert p.returncode == 0, (f"child exited with {p.returncode} (layer {layer!r}, {threads} "
                               f"threads):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    assert p.stdout.startswith("ok"), p.stdout


fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@fork_only
@pytest.mark.parametrize("layer, threads", LAYERS_X_THREADS)
def test_dataloader_workers_fork_after_cpu_gather_and_sample(layer, threads):
    """torch DataLoader(num_workers=2) forked after the parent gathered and sampled on the CPU:
    the workers gather and sample too, and return exactly what the parent computes."""
    _run_child(_DATALOADER_FORK, layer, threads)


@fork_only
@pytest.mark.parametrize("layer, threads", LAYERS_X_THREADS)
def test_forked_child_gathers_and_samples_like_its_parent(layer, threads):
    """A ``multiprocessing`` child (fork context) of a process that gathered and sampled on the
    CPU gathers and samples (homogeneous and heterogeneous, small and large batches) exactly as
    the parent does, without hanging: torch's OpenMP pool, which the child lacks, is not waited
    for, nor is any lock that another thread of the parent held at fork time (both buffer pools,
    a heterogeneous graph's scratch pool, the kernel guard, Numba's compiler lock)."""
    _run_child(_FORK_CHILD, layer, threads, timeout=240)


@fork_only
@pytest.mark.parametrize("layer, threads", LAYERS_X_THREADS)
def test_fork_while_another_thread_is_inside_a_kernel(layer, threads):
    """A child forked while the parent's guard is held (a thread inside a kernel) does not
    inherit the held lock: its own gather and sample finish and agree with the parent's."""
    _run_child(_FORK_WHILE_GUARD_HELD, layer, threads)


@pytest.mark.parametrize("layer, threads", LAYERS_X_THREADS)
def test_concurrent_sample_and_gather(layer, threads):
    """Threads that sample and gather at the same time neither abort (the workqueue layer is not
    thread-safe: the guard serialises them there) nor disagree with the single-threaded
    results."""
    _run_child(_THREADS, layer, threads)
