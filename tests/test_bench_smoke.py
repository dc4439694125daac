"""Smoke tests of bench/gather.py (a tiny run as a subprocess) and the helpers in bench/_common.py."""
from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

import _common  # noqa: E402
from testing import run_script  # noqa: E402

CPU_MODES = {"x_idx", "index_select_out", "ut_gather_cpu"}
GPU_MODES = {"pcie_h2d", "cpu_gather_copy", "uva_torch", "unified", "unified_unsorted", "unified_unaligned",
             "unified_sorted", "unified_novalidate", "unified_synccheck", "gpu_resident", "unified_1row"}


def _run_quick(tmp_path, device, extra=(), timeout=120):
    out = tmp_path / f"gather_{device}.json"
    p = run_script("bench/gather.py", "--quick", "--device", device, "--out", out, "--no-plot",
                   *extra, timeout=timeout)
    with open(out) as f:
        return json.load(f), p.stdout


def test_gather_quick_cpu(tmp_path):
    d, stdout = _run_quick(tmp_path, "cpu", extra=["--widths", "4,100,257", "--iters", "2"])
    assert d["benchmark"] == "gather" and d["device"] == "cpu"
    assert d["env"]["torch"] and d["env"]["date"] and d["env"]["device_name"].startswith("cpu")
    assert d["params"]["quick"] is True and d["params"]["table_bytes"] > 0
    rows = d["rows"]
    assert {(r["row_bytes"], r["pattern"]) for r in rows} == {
        (b, p) for b in (16, 400, 1028) for p in ("uniform", "powerlaw")}
    for r in rows:
        assert set(r["modes"]) == CPU_MODES
        for name, m in r["modes"].items():
            assert m["status"] == "ok", (r["row_bytes"], r["pattern"], name, m)
            assert m["gbps"] > 0 and m["median_ms"] > 0 and m["iters"] >= 2
        assert r["ratios"]["ut_gather_cpu/index_select_out"] > 0
        assert r["ratios"]["ut_gather_cpu/x_idx"] > 0
        assert r["gathered_bytes"] == r["num_indices"] * r["row_bytes"]
    assert d["failures"] == []
    assert "ut_gather_cpu/x_idx" in stdout  # the printed table


@pytest.mark.gpu
def test_gather_quick_gpu(tmp_path):
    d, _ = _run_quick(tmp_path, "cuda", timeout=300)
    assert d["device"] == "cuda" and d["env"]["gpu"]["name"]
    for r in d["rows"]:
        assert set(r["modes"]) == GPU_MODES
        for name in ("pcie_h2d", "cpu_gather_copy", "unified", "unified_unaligned", "unified_sorted"):
            assert r["modes"][name]["status"] == "ok", (r["row_bytes"], r["pattern"], name, r["modes"][name])
            assert r["modes"][name]["gbps"] > 0
        for name in ("uva_torch", "gpu_resident"):  # may be skipped, but only with a reason
            m = r["modes"][name]
            assert m["status"] == "ok" or (m["status"] in ("skipped", "oom") and m["reason"]), (name, m)
        assert r["ratios"]["unified/pcie_h2d"] > 0
    assert d["failures"] == []


def test_make_index_patterns():
    import gather

    n, m = 1000, 20000
    u = gather.make_index("uniform", n, m, 1.0, 0)
    p = gather.make_index("powerlaw", n, m, 1.0, 0)
    p2 = gather.make_index("powerlaw", n, m, 1.5, 0)
    for x in (u, p, p2):
        assert x.dtype.is_floating_point is False and x.shape == (m,)
        assert int(x.min()) >= 0 and int(x.max()) < n
    # power law: the hottest row is far hotter than under uniform sampling
    top = lambda x: int(x.bincount(minlength=n).max())  # noqa: E731
    assert top(p) > 5 * top(u) and top(p2) > top(p)


def test_make_table_rows_distinct():
    import gather

    base = gather.make_table(1 << 16)
    t = base.view(__import__("torch").int32)
    assert int(t[0]) == 0 and int(t[-1]) == t.numel() - 1
    rows = base.view(__import__("torch").float32).view(-1, 4).view(__import__("torch").int32)
    assert len({tuple(r.tolist()) for r in rows[:500]}) == 500


def test_common_helpers(tmp_path):
    assert _common.median([3, 1, 2]) == 2 and _common.median([4, 1, 3, 2]) == 2.5
    assert abs(_common.gbps(2e9, 1000.0) - 2.0) < 1e-12
    calls = []
    st = _common.time_host(lambda: calls.append(1), warmup=2, iters=5, budget_s=None)
    assert st["iters"] == 5 and len(calls) == 7 and st["median_ms"] >= 0 and st["timer"] == "wall"
    assert _common.is_oom(MemoryError()) and _common.is_oom(RuntimeError("CUDA out of memory. Tried"))
    assert not _common.is_oom(ValueError("bad"))
    txt = _common.format_table(["a", "bb"], [[1, 2.5], [None, float("nan")]])
    assert "2.50" in txt and "-" in txt and "nan" in txt
    p = _common.write_json(str(tmp_path / "x" / "r.json"), {"v": float("inf"), "k": [1.0]})
    with open(p) as f:
        assert json.load(f) == {"v": None, "k": [1.0]}
    assert _common.device_tag("cpu") == "cpu"
    env = _common.env_info("cpu")
    assert env["device"] == "cpu" and env["torch"]


def test_summary_of_gather_json(tmp_path):
    d = {"benchmark": "gather", "device": "cuda", "env": {"device_name": "Fake GPU"},
         "rows": [{"row_bytes": 512, "pattern": "uniform",
                   "modes": {"unified": {"status": "ok", "gbps": 24.0}},
                   "ratios": {"unified/pcie_h2d": 0.95, "unified/cpu_gather_copy": 4.0}}],
         "targets": {"unified/pcie_h2d>=0.9 (rows>=512B)": "met"}}
    p = _common.write_json(str(tmp_path / "g.json"), d)
    s = _common.summarize(p)
    assert "Fake GPU" in s and "24.00" in s and "0.95" in s and "met" in s
    q = _common.write_json(str(tmp_path / "o.json"), {"benchmark": "sampler", "summary": {"x": 1}})
    assert "x: 1" in _common.summarize(q)


@pytest.mark.parametrize("offset", [0, 8, 64, 100])
def test_gather_table_base_offset_is_set_not_inherited(offset):
    """Large torch CPU tensors start at 64 mod 128: the benchmark places its table explicitly."""
    import torch

    import gather

    buf = torch.empty(4096 + 128, dtype=torch.uint8)
    v = gather.aligned_view(buf, 4096, offset)
    assert v.numel() == 4096 and v.data_ptr() % 128 == offset
    assert buf.data_ptr() <= v.data_ptr() and v.data_ptr() + 4096 <= buf.data_ptr() + buf.numel()


def test_hugepage_table_is_2mib_aligned_and_writable():
    t = _common.hugepage_empty(5 << 20)
    assert t.numel() == 5 << 20 and t.data_ptr() % (2 << 20) == 0
    t.fill_(7)
    assert int(t[-1]) == 7


# -- host syncs per thread (bench/_syncs.py) and the e2e baseline's GPU branch, on fake CUDA ---------
# The fake-CUDA harness (tests/fake_cuda/harness.py) patches torch.cuda for the whole process, so
# these run in a child process. Its host syncs (harness.SYNCS) are what PyTorch would sync on; the
# child makes them warn as torch.cuda.set_sync_debug_mode("warn") does on a real GPU, so the
# counter is checked against the harness's own count, thread by thread.
_FAKE_PRELUDE = r'''
import os, sys, threading, warnings, collections
REPO = sys.argv[1]
sys.path[:0] = [os.path.join(REPO, "tests", "fake_cuda"), REPO, os.path.join(REPO, "bench"),
                os.path.join(REPO, "examples")]
import harness
harness.install()
import torch
_mode = {"v": 0}
def _set(m):
    _mode["v"] = {"default": 0, "warn": 1, "error": 2}.get(m, m)
torch.cuda.set_sync_debug_mode = _set
torch.cuda.get_sync_debug_mode = lambda: _mode["v"]
_orig_sync = harness._sync
def _sync(kind):                      # PyTorch's debug mode: a UserWarning on every host sync
    _orig_sync(kind)
    if _mode["v"] == 1:
        warnings.warn("called a synchronizing CUDA operation", UserWarning)
harness._sync = _sync
from _syncs import SyncCounter
def total_syncs():
    return sum(harness.SYNCS.values())
'''

_FAKE_COUNTER = r'''
x = torch.arange(6.0, device="cuda")
before = total_syncs()
shown = []
warnings.showwarning = lambda *a, **k: shown.append(str(a[0]))
with SyncCounter() as c:
    float(x.sum().item())                        # training: 1 tensor sync
    torch.cuda.synchronize()                     # training: 1 (it also warns: counted once)
    with c.scope("model"):
        x.nonzero()                              # model: 1
    def work():
        x.cpu(); x.cpu()                         # producer: 2 tensor syncs
        torch.cuda.Event().synchronize()         # producer: 1 explicit wait (no warning)
        torch.cuda.Stream().synchronize()        # producer: 1 (warns too: counted once)
        warnings.warn("something else")          # not a sync: shown as before
    t = threading.Thread(target=work, name="samplers-DataLoader-producer-x")
    t.start(); t.join()
    assert _mode["v"] == 1
x.cpu()                                          # after the counter: not counted
assert _mode["v"] == 0, "debug mode restored"
assert shown == ["something else"], shown
assert c.by_role() == {"training": 2, "producer": 4, "model": 1}, c.counts
assert sum(c.counts.values()) == total_syncs() - before - 1, (c.counts, harness.SYNCS)
k = c.by_kind()
assert k["training"] == {"tensor sync (debug mode)": 1, "torch.cuda.synchronize": 1}, k
assert k["producer"] == {"tensor sync (debug mode)": 2, "event.synchronize": 1,
                         "stream.synchronize": 1}, k
assert c.by_thread() == {threading.current_thread().name: 3, "samplers-DataLoader-producer-x": 4}
pb = c.per_batch(2)
assert pb["training"] == 1.0 and pb["producer"] == 2.0 and pb["model"] == 0.5
assert torch.cuda.synchronize.__name__ != "wrapped" and not hasattr(torch.cuda.synchronize, "__wrapped__")

# A real DataLoader: GPU sampling and gather on its producer thread; the training thread only
# takes batches. Every sync the harness saw is counted once, on the thread that made it.
from samplers import CSCGraph, DataLoader, NeighborSampler
from samplers.datasets import papers_like
import unified_tensor as ut
ds = papers_like(3000, feat_dim=8)
g = CSCGraph.from_csc(ds.indptr, ds.indices).pin()
loader = DataLoader(g, ds.train_idx, NeighborSampler([4, 4], seed=0), batch_size=8,
                    device="cuda", features=ut.unified(ds.features), labels=ut.unified(ds.labels))
before = total_syncs()
with SyncCounter() as c:
    n = 0
    it = iter(loader)
    for _ in range(3):
        next(it)
        n += 1
    it.close()
assert sum(c.counts.values()) == total_syncs() - before, (c.counts, harness.SYNCS)
roles = c.by_role()
assert roles["training"] == 0, c.counts
assert roles["producer"] >= 1, c.counts
assert all(name.startswith("samplers-DataLoader-producer") for name in c.by_thread()), c.counts
print("OK", dict(c.by_role()))
'''

_FAKE_BASELINE = r'''
import e2e
from samplers.datasets import papers_like
ds = papers_like(3000, feat_dim=8)
pipe = e2e.StrongBaseline(ds, torch.device("cuda"), [4, 4], 16, seed=0, workers=2, prefetch=2)
before = total_syncs()
seen = 0
with SyncCounter() as c:
    for batch in pipe.loader(ds.train_idx, shuffle=True, seed=3):
        input_nodes, output_nodes, blocks, x, y = batch
        harness.assert_all_on_device((blocks, x, y), "baseline batch")
        assert torch.equal(harness.to_host(x), ds.features[input_nodes.long()])
        assert torch.equal(harness.to_host(y), ds.labels[output_nodes.long()])
        seen += y.numel()
pipe.close()
assert seen == ds.train_idx.numel(), seen
assert c.by_role() == {"training": 0, "producer": 0}, c.counts   # no host sync on any thread
assert total_syncs() == before
# the handover: every CUDA tensor of a batch got record_stream on the training stream
harness.RECORDED.clear()
it = iter(pipe.loader(ds.train_idx, shuffle=False))
batch = next(it)
harness.assert_handed_over(batch[2:], "baseline batch")
it.close()
# the staging buffers and blocks are page-locked before the non_blocking copies
from samplers import NeighborSampler
_, _, cpu_blocks = NeighborSampler([4, 4], seed=0).sample(pipe.graph, ds.train_idx[:16])
for b in cpu_blocks:
    pb = e2e._pinned_block(b, True)
    ts = [t for t in vars(pb).values() if isinstance(t, torch.Tensor)]
    ts += [t for d in vars(pb).values() if isinstance(d, dict) for t in d.values()]
    assert ts and all(t.is_pinned() for t in ts), [t.is_pinned() for t in ts]
    assert not any(t.is_pinned() for t in vars(b).values() if isinstance(t, torch.Tensor))
print("OK")
'''


def _run_fake(code: str):
    import subprocess

    p = subprocess.run([sys.executable, "-c", _FAKE_PRELUDE + code, ROOT], cwd=ROOT,
                       capture_output=True, text=True, timeout=240,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 0 and "OK" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_sync_counter_attributes_syncs_to_threads_on_fake_cuda():
    _run_fake(_FAKE_COUNTER)


def test_e2e_strong_baseline_gpu_branch_on_fake_cuda():
    _run_fake(_FAKE_BASELINE)


def test_sync_counter_without_cuda_counts_explicit_waits_only():
    import threading

    import torch

    from _syncs import SyncCounter

    c = SyncCounter()
    with pytest.raises(ValueError, match="batches"):
        c.per_batch(0)
    with c:
        c.note("custom")
        t = threading.Thread(target=lambda: c.note("custom"), name="producer-1")
        t.start()
        t.join()
        with pytest.raises(RuntimeError, match="already active"):
            c.__enter__()
    c.note("after")   # inactive: ignored
    assert c.by_role() == {"training": 1, "producer": 1}
    assert c.per_batch(1)["tensor_syncs_observed"] is torch.cuda.is_available()
    with pytest.raises(ValueError, match="role"):
        with c.scope(""):
            pass


_FAKE_OVERLAP = r'''
import types
import overlap
args = types.SimpleNamespace(loader_nodes=4000, row_bytes=32, fanouts="4,4", batch_size=16,
                             loader_batches=3, reps=3, train_ms=None)
stack = lambda k: torch.ones(8, device="cuda") * k
out = overlap.loader_section(args, torch.device("cuda"), stack, 1.0)
assert out["batches"] == 3 and out["row_bytes"] == 32 and out["nodes"] == 4000
assert out["loader_ms"] > 0 and out["train_ms"] >= 0 and out["both/sum"] > 0
s = out["syncs_per_batch"]
assert s["training"] == 0.0, s          # the training thread never waits for the GPU
assert s["producer"] > 0, s             # GPU sampling syncs on the producer (per layer, fake GPU)
assert all(n.startswith("samplers-DataLoader-producer") for n in s["by_thread"]), s
summ = overlap.summarize({"rows": [
    {"table": "torch", "cap": None, "both/sum_uncapped": 1.04, "gather/pcie_h2d": 0.9},
    {"table": "torch", "cap": 4096, "both/sum_uncapped": 0.86, "gather/pcie_h2d": 0.5}],
    "loader": out})
assert summ["kernel[torch] default (no cap) both/sum_uncapped"] == 1.04
assert summ["kernel best cap"] == 4096 and summ["loader syncs/batch training"] == 0.0
print("OK")
'''


def test_overlap_loader_section_on_fake_cuda():
    _run_fake(_FAKE_OVERLAP)
