"""One host copy per machine under ``torch.distributed``: where this rank sits, who prepares the
machine's copy, and how much host memory the copy really costs.

A job started by ``torchrun --nnodes N --nproc-per-node K`` has ``N * K`` ranks; the ``K`` ranks of
one machine share one host copy of the tables (a file-backed memmap or shared memory), so the
machine's copy must be prepared once, by one of them, while the others wait:

* :func:`node_info` says which machine this rank is on and its place there. torchrun's
  ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE`` / ``GROUP_RANK`` (the node rank) are used when set, so two
  "machines" simulated on one host stay apart; without them the ranks are grouped by host name.
* :func:`local_rank_zero_first` runs its body on local rank 0 of every machine first; the machine's
  other ranks wait for it through the process group's key-value store (keyed by node, not a global
  barrier), with a timeout and an error that says what they were waiting for. A failure on local
  rank 0 is passed on to the ranks that wait.
* :func:`exit_with_parent` makes a rank follow its torchrun agent when the agent is killed
  outright, so a machine that loses its agent fails the job instead of leaving orphans.
* :func:`host_memory` reads ``/proc/self/smaps_rollup`` (and, for a table, the ``smaps`` entries
  of the mappings that hold it): ``rss`` counts every resident page this process maps, shared ones
  included, which is what ``top`` shows; ``pss`` splits each shared page between the processes that
  map it, so the PSS of the ranks of one machine adds up to one copy of a shared table.
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import signal
import socket
import sys
import threading
from typing import Dict, Iterator, NamedTuple, Optional

import torch

__all__ = ["NodeInfo", "node_info", "local_rank_zero_first", "host_memory", "exit_with_parent"]

_STORE_PREFIX = "unified_tensor/local_rank_zero_first"
_calls: Dict[str, int] = {}        # per-process call counter per "what": keys are unique per call
_calls_lock = threading.Lock()


class NodeInfo(NamedTuple):
    """Where this process sits in the job.

    ``rank`` / ``world_size``: over all machines; ``local_rank`` / ``local_world_size``: on this
    machine; ``node_rank`` / ``num_nodes``: the machine (torchrun's ``GROUP_RANK`` /
    ``GROUP_WORLD_SIZE``)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    num_nodes: int


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def node_info() -> NodeInfo:
    """This process's rank, local rank and machine.

    Global rank and world size come from the default process group when it is initialised (else
    ``RANK`` / ``WORLD_SIZE``, else a single process). The place on the machine comes from
    torchrun's ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` (``NODE_RANK`` is read too,
    as other launchers set it) when all are set; otherwise, with an initialised process group, the
    ranks are grouped by host name (one all-gather); otherwise this process is alone on its
    machine.

    Returns
    -------
    NodeInfo

    Examples
    --------
    >>> info = node_info()          # no process group, no launcher: a single process
    >>> (info.rank, info.local_rank, info.node_rank) == (0, 0, 0) or "RANK" in os.environ
    True
    """
    dist = _dist()
    rank = dist.get_rank() if dist else (_env_int("RANK") or 0)
    world = dist.get_world_size() if dist else (_env_int("WORLD_SIZE") or 1)
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside [0, world size {world})")
    local, local_world = _env_int("LOCAL_RANK"), _env_int("LOCAL_WORLD_SIZE")
    node = _env_int("GROUP_RANK")
    node = _env_int("NODE_RANK") if node is None else node
    if local is not None and local_world is not None and node is not None:
        if not 0 <= local < local_world:
            raise ValueError(f"LOCAL_RANK={local} is outside [0, LOCAL_WORLD_SIZE={local_world})")
        nodes = _env_int("GROUP_WORLD_SIZE")
        if nodes is None:
            nodes = max(1, world // local_world)
        if not 0 <= node < nodes:
            raise ValueError(f"node rank {node} (GROUP_RANK / NODE_RANK) is outside "
                             f"[0, {nodes}) machines")
        return NodeInfo(rank, world, local, local_world, node, nodes)
    if dist is None or world == 1:
        return NodeInfo(rank, world, 0, 1, 0, 1)
    hosts = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    order = list(dict.fromkeys(hosts))                 # machines in order of their first rank
    mine = hosts[rank]
    peers = [r for r, h in enumerate(hosts) if h == mine]
    return NodeInfo(rank, world, peers.index(rank), len(peers), order.index(mine), len(order))


def _store():
    """The default process group's key-value store (under torchrun, the agent's TCPStore)."""
    from torch.distributed import distributed_c10d as c10d

    get = getattr(c10d, "_get_default_store", None)
    if get is None:    # present in every torch this project supports (2.2 to 2.13)
        raise RuntimeError("local_rank_zero_first: this torch does not expose the process "
                           "group's store (torch.distributed.distributed_c10d._get_default_store)")
    return get()


@contextlib.contextmanager
def local_rank_zero_first(what: str, timeout: Optional[float] = None) -> Iterator[NodeInfo]:
    """Run the body on local rank 0 of every machine before the machine's other ranks run it.

    Use it for what each machine must hold once: local rank 0 generates or converts the dataset
    into that machine's folder (or shared memory); the others enter the body once it is done and
    map what it wrote. Machines do not wait for one another, and the wait is keyed by machine
    (``node_info().node_rank``), so two machines simulated on one host, each with its own folder,
    stay apart. Without an initialised process group, or with one rank on the machine, the body
    just runs.

    Parameters
    ----------
    what : str
        What is being prepared, for the messages (``"the dataset"``). Every rank of a machine must
        make the same calls in the same order.
    timeout : float, optional
        Seconds the other ranks wait for local rank 0; ``None``: 30 minutes.

    Yields
    ------
    NodeInfo
        This rank's place in the job.

    Raises
    ------
    TimeoutError
        On a rank that waited ``timeout`` seconds: local rank 0 of its machine did not finish.
    RuntimeError
        On a rank that waited: local rank 0 of its machine raised (its error is quoted).

    Examples
    --------
    >>> with local_rank_zero_first("the dataset") as info:   # doctest: +SKIP
    ...     ds = load_or_generate(folder_of_this_machine)      # generated once per machine
    """
    if not isinstance(what, str) or not what:
        raise TypeError(f"what must be a non-empty str, got {what!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    wait_s = 1800.0 if timeout is None else float(timeout)
    info = node_info()
    if _dist() is None or info.local_world_size == 1:
        yield info
        return
    with _calls_lock:
        n = _calls[what] = _calls.get(what, -1) + 1
    # Keys are unique per machine, per call and per restart of the job (torchrun's restarts
    # reuse the agent's store).
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    key = f"{_STORE_PREFIX}/{restart}/node{info.node_rank}/{what}/{n}"
    store = _store()
    if info.local_rank == 0:
        try:
            yield info
        except BaseException as exc:
            with contextlib.suppress(Exception):     # the store may be gone too: keep `exc`
                store.set(key, "failed: " + " ".join(f"{type(exc).__name__}: {exc}".split()))
            raise
        store.set(key, "ok")
        return
    try:
        store.wait([key], datetime.timedelta(seconds=wait_s))
    except RuntimeError as exc:      # DistStoreError (a RuntimeError): timed out or store gone
        if "timeout" not in str(exc).lower():
            raise RuntimeError(f"rank {info.rank} (machine {info.node_rank}, local rank "
                               f"{info.local_rank}) lost the job's store while waiting for local "
                               f"rank 0 of its machine to prepare {what}: {exc}") from exc
        raise TimeoutError(f"rank {info.rank} (machine {info.node_rank}, local rank "
                           f"{info.local_rank}) waited {wait_s:g} s for local rank 0 of its "
                           f"machine to prepare {what}, and it did not finish; if preparing takes "
                           f"that long, pass a larger timeout") from None
    status = store.get(key).decode()
    if status != "ok":
        raise RuntimeError(f"local rank 0 of machine {info.node_rank} failed to prepare {what} "
                           f"({status[len('failed: '):]})")
    yield info


def exit_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have Linux send ``sig`` to this process when its parent dies (``PR_SET_PDEATHSIG``).

    torchrun's agent stops its ranks when it shuts down, but an agent that is killed outright
    (SIGKILL, the OOM killer) leaves them running as orphans: the job then neither finishes nor
    fails. A rank that calls this at start follows its agent, so the other machines' ranks see
    it gone (their collectives fail) and the whole job ends with an error.

    Returns
    -------
    bool
        Whether it took effect (``False`` off Linux or if ``prctl`` is refused).
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(1, int(sig), 0, 0, 0) == 0           # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return False
    if ok and os.getppid() != parent:          # the parent died before the request was made
        os.kill(os.getpid(), sig)
    return ok


# ------------------------------------------------------------------------------------------------
# Host memory
# ------------------------------------------------------------------------------------------------
_FIELDS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")


def _summary(kb: Dict[str, int]) -> Dict[str, int]:
    """Bytes: rss, pss, shared (pages other processes map too), private."""
    return {"rss": kb.get("Rss", 0) * 1024, "pss": kb.get("Pss", 0) * 1024,
            "shared": (kb.get("Shared_Clean", 0) + kb.get("Shared_Dirty", 0)) * 1024,
            "private": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024}


def _field(line: str) -> Optional[tuple]:
    key, _, rest = line.partition(":")
    if key in _FIELDS:
        parts = rest.split()
        if parts and parts[-1] == "kB":
            return key, int(parts[0])
    return None


def _table_span(table) -> tuple:
    """``(address, nbytes)`` of the host memory behind ``table`` (a tensor, UnifiedTensor or
    NumPy array)."""
    import numpy as np

    if isinstance(table, np.ndarray):
        return int(table.ctypes.data), int(table.nbytes)
    if isinstance(table, torch.Tensor):
        plain = getattr(table, "_ut_plain", None)
        t = plain if isinstance(plain, torch.Tensor) else table
        if t.device.type != "cpu":
            raise ValueError(f"host_memory: table must be in host memory, got a tensor on "
                             f"{t.device}")
        return int(t.data_ptr()), int(t.numel() * t.element_size())
    raise TypeError(f"host_memory: table must be a tensor or NumPy array, got "
                    f"{type(table).__name__}")


def host_memory(table=None, pid: Optional[int] = None) -> Optional[Dict[str, object]]:
    """This process's host memory (Linux): resident, proportional, shared and private bytes.

    Parameters
    ----------
    table : torch.Tensor or numpy.ndarray, optional
        Also report the mappings that hold this table's memory (``"table"``): what this process
        has resident of it and its proportional share. Summed over the ranks of one machine, the
        ``pss`` of a table held once is at most the table's size, whatever the number of ranks.
    pid : int, optional
        Another process (``None``: this one).

    Returns
    -------
    dict or None
        ``{"rss", "pss", "shared", "private"}`` in bytes (from ``smaps_rollup``), plus ``"table"``
        (the same four for the table's mappings, and ``"nbytes"``: the table's size) when
        ``table`` is given; ``None`` where ``/proc`` has no ``smaps_rollup`` (not Linux, or a
        kernel before 4.14).

    Examples
    --------
    >>> mem = host_memory()
    >>> mem is None or mem["pss"] <= mem["rss"] + 4096
    True
    """
    proc = f"/proc/{'self' if pid is None else int(pid)}"
    try:
        with open(f"{proc}/smaps_rollup") as fh:
            total = dict(f for f in map(_field, fh) if f)
    except OSError:
        return None
    out: Dict[str, object] = dict(_summary(total))
    if table is not None:
        start, nbytes = _table_span(table)
        end = start + max(nbytes, 1)
        kb = dict.fromkeys(_FIELDS, 0)
        inside = False
        with open(f"{proc}/smaps") as fh:
            for line in fh:
                head = line.split(None, 1)[0]
                if "-" in head and ":" not in head:          # "start-end perms offset ..."
                    lo, _, hi = head.partition("-")
                    try:
                        inside = int(lo, 16) < end and int(hi, 16) > start
                    except ValueError:
                        inside = False
                    continue
                if inside:
                    f = _field(line)
                    if f:
                        kb[f[0]] += f[1]
        out["table"] = dict(_summary(kb), nbytes=nbytes)
    return out
