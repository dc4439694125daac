"""Several machines under ``torchrun --nnodes 2``, simulated on localhost (marked ``multinode``).

Each "machine" is a torchrun agent of its own (``--node-rank 0`` / ``1``, one rendezvous endpoint)
with its own dataset folder (``--cache``), so nothing is shared between them by accident; its
ranks are CPU processes talking over gloo. ``examples/train_multi_gpu.py`` runs unchanged, and
with its test-only ``--report-dir`` every rank writes the seeds it trained on and its host memory
after training. Checked: every training seed on exactly one rank of all machines, one host copy of
the feature table per machine (the PSS of the table summed over a machine's ranks is one table,
while every rank has all of it resident), the same accuracy as one machine with the same number
of ranks, and a rank or a whole machine that dies ends the job with an error on every machine
within a short timeout (torchrun's failure handling plus gloo's connection errors; no hang).
"""
from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from testing import REPO_ROOT

pytestmark = [pytest.mark.multinode,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="reads /proc (PSS) and simulates machines with torchrun")]

SCRIPT = os.path.join(REPO_ROOT, "examples", "train_multi_gpu.py")
# 3000 nodes, 600 training seeds (150 per rank on 4 ranks), 64 float features (768 KB).
TINY = ["--nodes", "3000", "--feat-dim", "64", "--classes", "4", "--epochs", "1",
        "--batch-size", "64", "--hidden", "32", "--lr", "0.01", "--no-progress",
        "--device", "cpu", "--timeout", "30"]
JOB_TIMEOUT = 300      # a whole job, start-up included, on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1",
                PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def agent(node_rank: int, nnodes: int, nproc: int, port: int, args, log) -> subprocess.Popen:
    """One torchrun agent = one machine, in a session of its own (so a whole machine can be
    killed at once: the agent and its ranks)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes),
           "--nproc-per-node", str(nproc), "--node-rank", str(node_rank),
           "--rdzv-endpoint", f"127.0.0.1:{port}", "--max-restarts", "0",
           "--monitor-interval", "0.5", SCRIPT, *TINY, *map(str, args)]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill_session(p: subprocess.Popen) -> None:
    """SIGKILL an agent's session (the agent and its ranks) if anything of it is left."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def run_job(root, nnodes: int, nproc: int, extra=()) -> dict:
    """Run ``train_multi_gpu.py`` on ``nnodes`` simulated machines with ``nproc`` ranks each,
    machine ``i`` on its own dataset folder ``root/machine<i>``; return the reports, the JSON of
    rank 0, the logs and the wall time."""
    port = free_port()
    reports, out = root / "reports", root / "rank0.json"
    logs = [root / f"machine{i}.log" for i in range(nnodes)]
    t0 = time.perf_counter()
    procs = []
    try:
        for i in range(nnodes):
            args = ["--cache", root / f"machine{i}", "--report-dir", reports, *extra]
            if i == 0:
                args += ["--json", out]
            procs.append(agent(i, nnodes, nproc, port, args, open(logs[i], "w")))
        codes = [p.wait(timeout=JOB_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            kill_session(p)
    wall = time.perf_counter() - t0
    text = [log.read_text() for log in logs]
    assert codes == [0] * nnodes, "\n".join(t[-4000:] for t in text)
    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in range(nnodes * nproc)]
    return dict(reports=ranks, final=json.loads(out.read_text()), logs=text, wall_s=wall)


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    return run_job(tmp_path_factory.mktemp("two_machines"), nnodes=2, nproc=2)


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory):
    return run_job(tmp_path_factory.mktemp("one_machine"), nnodes=1, nproc=4)


def test_ranks_know_their_machine_and_use_its_own_folder(two_machines):
    reps = two_machines["reports"]
    assert [(r["rank"], r["node_rank"], r["local_rank"]) for r in reps] == \
        [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]
    assert all((r["world_size"], r["local_world_size"], r["num_nodes"]) == (4, 2, 2) for r in reps)
    for r in reps:     # each machine mapped the copy its local rank 0 prepared in its own folder
        assert f"{os.sep}machine{r['node_rank']}{os.sep}" in r["features_path"], r
    for machine in (0, 1):
        folder = os.path.dirname(reps[2 * machine]["features_path"])
        assert os.path.isfile(os.path.join(folder, "meta.json"))
        assert not glob.glob(os.path.join(os.path.dirname(folder), ".*.tmp"))  # written once
    assert "machine 1 of 2, local rank 1 of 2" in two_machines["logs"][1]


def test_seeds_split_over_all_ranks_of_all_machines_exactly_once(two_machines):
    reps = two_machines["reports"]
    folder = os.path.dirname(reps[0]["features_path"])
    train = np.load(os.path.join(folder, "train_idx.npy"))
    assert train.size % 4 == 0           # no padding: every seed exactly once
    per_rank = [r["seeds"]["0"] for r in reps]
    assert [len(s) for s in per_rank] == [train.size // 4] * 4
    together = np.sort(np.concatenate(per_rank))
    np.testing.assert_array_equal(together, np.sort(train))


def test_each_machine_holds_the_table_once(two_machines):
    reps = two_machines["reports"]
    page = os.sysconf("SC_PAGE_SIZE")
    for machine in (0, 1):
        tables = [r["memory_after_training"]["table"] for r in reps if r["node_rank"] == machine]
        size = tables[0]["nbytes"]
        assert size == 3000 * 64 * 4
        mapped = -(-(size + 128) // page) * page          # the .npy file: header + table, paged
        # every rank has (nearly) all of the table resident: a copy per rank would add up to 2x
        assert all(t["rss"] >= 0.9 * size for t in tables), tables
        assert all(t["shared"] >= 0.9 * size for t in tables), tables
        pss = sum(t["pss"] for t in tables)
        assert 0.9 * size <= pss <= mapped + 1024 * len(tables), (pss, size, tables)
    log = two_machines["logs"][0]
    # what rank 0 prints for users: per machine, the table's PSS summed over its ranks
    ratios = dict(re.findall(r"machine (\d) after training: 2 rank\(s\), .*= (\d+\.\d+) x the "
                             r"table", log))
    assert sorted(ratios) == ["0", "1"] and all(0.9 <= float(v) <= 1.01 for v in ratios.values()), \
        log[-3000:]
    # the start-up line every rank prints
    for rank in range(4):
        assert f"rank {rank}: cpu, features in file-backed memmap; machine {rank // 2} of 2" \
            in two_machines["logs"][rank // 2]
    assert "host memory: RSS" in log and "PSS" in log


def test_same_accuracy_as_one_machine(two_machines, one_machine):
    two, one = two_machines["final"], one_machine["final"]
    assert two["params"]["world_size"] == one["params"]["world_size"] == 4
    # Same ranks, same seeds per rank, same samples: only the reduction order may differ.
    assert two["epochs"][0]["loss"] == pytest.approx(one["epochs"][0]["loss"], rel=1e-3)
    assert two["final"]["test_acc"] == pytest.approx(one["final"]["test_acc"], abs=0.02)
    assert two["final"]["test_acc"] > 2 * two["final"]["chance"]
    np.testing.assert_array_equal(
        np.sort(np.concatenate([r["seeds"]["0"] for r in two_machines["reports"]])),
        np.sort(np.concatenate([r["seeds"]["0"] for r in one_machine["reports"]])))
    print(f"\nwall time: two machines x 2 ranks {two_machines['wall_s']:.1f} s, one machine x 4 "
          f"ranks {one_machine['wall_s']:.1f} s")


def children(pid: int) -> list:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("victim", ["rank", "agent"])
def test_a_rank_or_agent_that_dies_ends_the_job_everywhere(tmp_path, victim):
    """While the job trains, SIGKILL one rank of machine 1, or machine 1's torchrun agent alone
    (its ranks must follow it, not run on as orphans): every agent still alive exits non-zero
    within a timeout (torchrun's failure handling, gloo's errors and its --timeout), no hang."""
    port = free_port()
    logs = [tmp_path / f"machine{i}.log" for i in (0, 1)]
    procs, ranks = [], []
    try:
        for i in (0, 1):
            procs.append(agent(i, 2, 1, port, ["--cache", tmp_path / f"machine{i}",
                                               "--epochs", "1000"], open(logs[i], "w")))
        deadline = time.monotonic() + JOB_TIMEOUT
        while "epoch  0 |" not in logs[0].read_text():     # both machines are training
            assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
            assert all(p.poll() is None for p in procs), [log.read_text()[-3000:] for log in logs]
            time.sleep(0.2)
        ranks = children(procs[1].pid)
        assert len(ranks) == 1, ranks
        t_kill = time.monotonic()
        os.kill(ranks[0] if victim == "rank" else procs[1].pid, signal.SIGKILL)
        survivors = procs if victim == "rank" else procs[:1]
        codes = [p.wait(timeout=90) for p in survivors]   # a hang fails here
        waited = time.monotonic() - t_kill
        while alive(ranks[0]) and time.monotonic() - t_kill < 30:
            time.sleep(0.1)
        orphan = alive(ranks[0])
    finally:
        for p in procs:
            kill_session(p)
        for pid in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    text = [log.read_text() for log in logs]
    assert all(c != 0 for c in codes), (codes, text[0][-3000:])
    assert waited < 60, waited
    assert not orphan, "a rank of machine 1 outlived its agent"
    print(f"\nkilled the {victim} of machine 1: the job ended everywhere {waited:.1f} s later")
    assert "ChildFailedError" in text[0], text[0][-3000:]


# ------------------------------------------------------------------------------------------------
# The helpers behind it, in one process or two (fast)
# ------------------------------------------------------------------------------------------------
def test_node_info_reads_torchrun_variables(monkeypatch):
    from unified_tensor._dist import node_info

    for k, v in dict(RANK="5", WORLD_SIZE="8", LOCAL_RANK="1", LOCAL_WORLD_SIZE="4",
                     GROUP_RANK="1", GROUP_WORLD_SIZE="2").items():
        monkeypatch.setenv(k, v)
    assert tuple(node_info()) == (5, 8, 1, 4, 1, 2)
    monkeypatch.setenv("LOCAL_RANK", "4")
    with pytest.raises(ValueError, match="LOCAL_RANK=4"):
        node_info()
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(ValueError, match="LOCAL_RANK must be an integer"):
        node_info()


def test_host_memory_splits_shared_pages_between_mappings(tmp_path):
    from unified_tensor._dist import host_memory

    path = tmp_path / "t.npy"
    np.save(path, np.ones((512, 1024), np.float32))          # 2 MiB
    a, b = np.load(path, mmap_mode="r"), np.load(path, mmap_mode="r")
    float(a.sum()), float(b.sum())                          # both mappings resident
    mem = host_memory(a)
    size = a.nbytes
    assert mem["table"]["nbytes"] == size
    assert mem["table"]["rss"] >= size and mem["table"]["shared"] >= size
    assert size / 2 - 8192 <= mem["table"]["pss"] <= size / 2 + 8192   # two mappers: half each
    assert mem["rss"] >= mem["table"]["rss"] and mem["pss"] <= mem["rss"]
    with pytest.raises(TypeError, match="table must be a tensor or NumPy array"):
        host_memory([1, 2])


def _prepare_rank(rank: int, port: int, q) -> None:
    """Two ranks of one machine (torchrun's variables set by hand): local rank 0 prepares."""
    import torch.distributed as dist

    from unified_tensor._dist import local_rank_zero_first

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE="2", GROUP_RANK="0", GROUP_WORLD_SIZE="1")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=datetime.timedelta(seconds=60))
    try:
        with local_rank_zero_first("step one", timeout=30):   # local rank 0 first, then the rest
            if rank == 0:
                time.sleep(0.5)
            q.put((rank, "one", time.monotonic()))   # rank 0: when done; rank 1: when entered
        for step, timeout in (("two", 1.5), ("three", 30)):
            try:
                with local_rank_zero_first(f"step {step}", timeout=timeout):
                    if rank == 0 and step == "two":
                        time.sleep(4)                 # longer than the others wait
                    if rank == 0 and step == "three":
                        raise OSError("disk full")
                q.put((rank, step, "entered"))
            except (TimeoutError, RuntimeError, OSError) as exc:
                q.put((rank, step, f"{type(exc).__name__}: {exc}"))
    finally:
        dist.destroy_process_group()


def test_local_rank_zero_first_waits_times_out_and_passes_errors_on():
    ctx = torch.multiprocessing.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    ps = [ctx.Process(target=_prepare_rank, args=(r, port, q)) for r in (0, 1)]
    for p in ps:
        p.start()
    got = {}
    for _ in range(6):
        rank, step, value = q.get(timeout=120)
        got[rank, step] = value
    for p in ps:
        p.join(60)
    assert [p.exitcode for p in ps] == [0, 0]
    assert got[0, "one"] <= got[1, "one"]          # rank 1 entered after rank 0 was done
    assert got[0, "two"] == "entered"
    assert got[1, "two"].startswith("TimeoutError: rank 1 (machine 0, local rank 1) waited 1.5 s "
                                    "for local rank 0 of its machine to prepare step two"), got
    assert got[0, "three"] == "OSError: disk full"
    assert got[1, "three"] == ("RuntimeError: local rank 0 of machine 0 failed to prepare step "
                               "three (OSError: disk full)"), got
