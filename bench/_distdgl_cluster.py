"""A DistDGL cluster of N simulated machines on one host, for tests and bench/distdgl.py.

Each simulated machine runs one KVStore server and one trainer, started the way DGL's
``tools/launch.py`` starts them (``DGL_ROLE=server`` + ``DGL_SERVER_ID`` / ``DGL_IP_CONFIG`` /
``DGL_NUM_SERVER`` / ``DGL_NUM_CLIENT`` / ``DGL_CONF_PATH`` / ``DGL_GRAPH_FORMAT``, then
``dgl.distributed.initialize``; trainers with ``DGL_DIST_MODE=distributed``). Two things make
machines distinct on one host:

- shared memory: DGL's KVStore server names a table's segment ``<name>-kvdata-`` (no graph or
  partition id) and opens it with ``O_CREAT`` without ``O_EXCL`` (``src/runtime/shared_mem.cc``),
  so a second server on the same host silently overwrites the first's rows. Every machine gets a
  private ``/dev/shm`` (a mount namespace with its own tmpfs), shared by its server and trainer,
  as on separate hosts. That needs ``unshare(CLONE_NEWNS)`` (root or unprivileged user
  namespaces); :func:`can_simulate` says whether this host allows it.
- machine id: a DistDGL client takes the first ip_config line whose address is one of its
  interfaces' (``rpc_client.local_ip4_addr_list``). Machine m listens on ``127.0.0.{m+1}``
  (all of 127/8 is loopback on Linux) and its trainer is told that is its address.

Each server and trainer gets ``OMP_NUM_THREADS`` = cores / (2 x machines) (at least 1), its
machine's share of the host, as DGL's launch tool divides a machine's cores among its processes.

A process that dies ends the job: every child has ``PR_SET_PDEATHSIG`` = SIGKILL, each machine
watches its server and trainer, the launcher watches the machines, and the first non-zero exit
(or the timeout) kills everything and raises :class:`ClusterError` naming who died.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """A server or trainer of the simulated cluster failed (or the job timed out)."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def private_shm() -> None:
    """Give this process (and its future children) a private, empty ``/dev/shm``."""
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        # unprivileged: a user namespace owns the new mount namespace
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), f"unshare(CLONE_NEWNS) failed ({os.strerror(err)}) "
                          f"and so did unshare(CLONE_NEWUSER|CLONE_NEWNS)")
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate / failed")
    if libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", 0, b"mode=1777") != 0:
        raise OSError(ctypes.get_errno(), "mounting a tmpfs on /dev/shm failed")


_PROBE = ("import sys; sys.path.insert(0, %r); import _distdgl_cluster as c; c.private_shm(); "
          "print('ok')")


def can_simulate() -> Tuple[bool, str]:
    """Whether this host can give each simulated machine its own ``/dev/shm`` (and why not)."""
    if not sys.platform.startswith("linux"):
        return False, f"needs Linux mount namespaces, this is {sys.platform}"
    p = subprocess.run([sys.executable, "-c", _PROBE % os.path.dirname(os.path.abspath(__file__))],
                       capture_output=True, text=True, timeout=60)
    if p.returncode == 0 and p.stdout.strip() == "ok":
        return True, ""
    last = (p.stderr.strip().splitlines() or ["?"])[-1]
    return False, ("two DistDGL machines on one host need a private /dev/shm each (DGL's KVStore "
                   "names shared memory '<name>-kvdata-' without a partition id, so a second "
                   f"server overwrites the first's rows), and unshare failed here: {last}")


def machine_ip(m: int) -> str:
    return f"127.0.0.{m + 1}"


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def write_ip_config(path: str, num_machines: int) -> str:
    with open(path, "w") as f:
        for m in range(num_machines):
            f.write(f"{machine_ip(m)} {_free_port(machine_ip(m))}\n")
    return path


def partition(graph: Any, out_dir: str, num_parts: int = 2, part_method: str = "metis",
              name: str = "g") -> Tuple[str, Any]:
    """``dgl.distributed.partition_graph`` into ``out_dir``; (config path, new->original node id)."""
    import dgl

    orig_nid, _ = dgl.distributed.partition_graph(graph, name, num_parts, out_dir, num_hops=1,
                                                  part_method=part_method, return_mapping=True)
    return os.path.join(out_dir, f"{name}.json"), orig_nid


# --------------------------------------------------------------------------------------------
def _server_main(m: int, ip_config: str, part_config: str, num_clients: int) -> None:
    _die_with_parent()
    os.environ.update(DGL_ROLE="server", DGL_DIST_MODE="distributed", DGL_SERVER_ID=str(m),
                      DGL_IP_CONFIG=ip_config, DGL_NUM_SERVER="1", DGL_NUM_CLIENT=str(num_clients),
                      DGL_CONF_PATH=part_config, DGL_GRAPH_FORMAT="csc,coo")
    import dgl

    dgl.distributed.initialize(ip_config)   # runs the server; exits when the clients are done


def _trainer_main(m: int, ip_config: str, graph_name: str, fn: Callable, args: tuple,
                  workdir: str) -> None:
    _die_with_parent()
    os.environ.update(DGL_ROLE="client", DGL_DIST_MODE="distributed", DGL_NUM_SERVER="1",
                      DGL_NUM_SAMPLER="0")
    import dgl
    from dgl.distributed import rpc_client

    # this simulated machine's network address (see the module docstring)
    rpc_client.local_ip4_addr_list = lambda: {machine_ip(m)}
    try:
        dgl.distributed.initialize(ip_config)
        g = dgl.distributed.DistGraph(graph_name)
        out = fn(m, g, *args)
    except BaseException:
        # exit now: DGL's atexit hook (exit_client) waits on a barrier with the other trainers,
        # so a plain exit of a failed trainer would hang the job
        msg = traceback.format_exc()
        sys.stderr.write(msg)
        with open(os.path.join(workdir, f"trainer{m}.err"), "w") as f:
            f.write(msg.strip().splitlines()[-1])
        os._exit(1)
    # files, not multiprocessing queues: their semaphores live in the /dev/shm this machine
    # no longer shares with the launcher
    path = os.path.join(workdir, f"result{m}.pkl")
    with open(path + ".tmp", "wb") as f:
        pickle.dump(out, f)
    os.replace(path + ".tmp", path)
    dgl.distributed.exit_client()


def _first_failure(procs: Dict[str, Any]) -> Optional[str]:
    for who, p in procs.items():
        if p.exitcode not in (None, 0):
            return f"{who} exited with code {p.exitcode}"
    return None


def _report(workdir: str, m: int, msg: str) -> None:
    with open(os.path.join(workdir, f"failure{m}.txt"), "w") as f:
        f.write(msg)


def _machine_main(m: int, ip_config: str, part_config: str, graph_name: str, num_machines: int,
                  fn: Callable, args: tuple, workdir: str) -> None:
    _die_with_parent()
    try:
        private_shm()
        # this machine's share of the host's cores, as DGL's launch tool sets OMP_NUM_THREADS
        # per process (oversubscribed OpenMP pools make every DGL kernel spin-wait)
        threads = max(1, (os.cpu_count() or 1) // (2 * num_machines))
        os.environ["OMP_NUM_THREADS"] = os.environ.get("DISTDGL_SIM_THREADS", str(threads))
        os.environ["NUMBA_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
        ctx = mp.get_context("spawn")
        server = ctx.Process(target=_server_main, args=(m, ip_config, part_config, num_machines),
                             name=f"server{m}")
        server.start()
        os.environ["DGL_SIM_SERVER_PID"] = str(server.pid)
        trainer = ctx.Process(target=_trainer_main,
                              args=(m, ip_config, graph_name, fn, args, workdir),
                              name=f"trainer{m}")
        trainer.start()
        procs = {f"machine {m} server": server, f"machine {m} trainer": trainer}
        while True:
            bad = _first_failure(procs)
            if bad:
                _report(workdir, m, bad)
                for p in procs.values():
                    if p.is_alive():
                        p.kill()
                os._exit(1)
            if all(p.exitcode == 0 for p in procs.values()):
                return
            time.sleep(0.05)
    except BaseException:
        _report(workdir, m, traceback.format_exc())
        os._exit(1)


def kill_local_server() -> None:
    """From a trainer: kill this machine's KVStore server (failure tests)."""
    os.kill(int(os.environ["DGL_SIM_SERVER_PID"]), signal.SIGKILL)


def run(part_config: str, fn: Callable, args: tuple = (), num_machines: int = 2,
        timeout: float = 300.0, graph_name: str = "g") -> List[Any]:
    """Run ``fn(machine, dist_graph, *args)`` in one trainer per simulated machine; return the
    trainers' results in machine order. Raises :class:`ClusterError` when any server or trainer
    fails or the job exceeds ``timeout`` seconds (everything is killed first)."""
    import shutil
    import tempfile

    ctx = mp.get_context("spawn")
    workdir = tempfile.mkdtemp(prefix="distdgl_job_")
    try:
        ip_config = write_ip_config(os.path.join(workdir, "ip_config.txt"), num_machines)
        machines = [ctx.Process(target=_machine_main,
                                args=(m, ip_config, part_config, graph_name, num_machines, fn,
                                      args, workdir), name=f"machine{m}")
                    for m in range(num_machines)]
        for p in machines:
            p.start()
        deadline = time.monotonic() + timeout
        failure = None
        try:
            while True:
                reports = []
                for m in range(num_machines):
                    path = os.path.join(workdir, f"failure{m}.txt")
                    if os.path.exists(path):
                        with open(path) as f:
                            reports.append(f"machine {m}: {f.read().strip()}")
                failure = "; ".join(reports) or \
                    _first_failure({f"machine {m}": p for m, p in enumerate(machines)})
                if failure:
                    break
                if all(p.exitcode == 0 for p in machines):
                    break
                if time.monotonic() > deadline:
                    failure = f"timed out after {timeout:.0f} s"
                    break
                time.sleep(0.05)
        finally:
            for p in machines:
                if p.is_alive():
                    p.kill()
            for p in machines:
                p.join(10)
        if failure:
            for m in range(num_machines):
                path = os.path.join(workdir, f"trainer{m}.err")
                if os.path.exists(path):
                    with open(path) as f:
                        failure += f"; trainer {m} raised {f.read()}"
            raise ClusterError(f"DistDGL job failed: {failure}")
        out = []
        for m in range(num_machines):
            path = os.path.join(workdir, f"result{m}.pkl")
            if not os.path.exists(path):
                raise ClusterError(f"DistDGL job: no result from machine {m}")
            with open(path, "rb") as f:
                out.append(pickle.load(f))
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
