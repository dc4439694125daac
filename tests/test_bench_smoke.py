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
             "unified_sorted", "unified_checked", "unified_synccheck", "gpu_resident", "unified_1row"}


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
