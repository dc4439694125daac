"""Smoke test of bench/distdgl.py: a tiny two-machine DistDGL run as a subprocess, the JSON checked."""
from __future__ import annotations

import json

import pytest

from testing import run_script

pytestmark = pytest.mark.dgl


def test_distdgl_bench_tiny(tmp_path):
    from bench import _distdgl_cluster as cluster

    ok, why = cluster.can_simulate()
    if not ok:
        pytest.skip(why)
    out = tmp_path / "distdgl.json"
    run_script("bench/distdgl.py", "--nodes", "5000", "--runs", "2", "--batches", "2",
               "--batch-size", "64", "--train-fraction", "0.1", "--fanouts", "5,5",
               "--out", out, timeout=600)
    with open(out) as f:
        d = json.load(f)
    assert d["benchmark"] == "distdgl" and d["device"] == "cpu"
    assert d["dataset"]["num_nodes"] == 5000 and d["params"]["fanouts"] == [5, 5]
    assert len(d["trainers"]) == 2
    for t in d["trainers"]:
        assert t["cache_rows"] == 500 and t["cache_fill_rpc_bytes"] > 0
        for v in ("dgl", "ours", "ours_cache", "ours_cache_prefetch"):
            assert len(t["rates"][v]) == 2 and all(r > 0 for r in t["rates"][v])
        assert all(len(t["rpc_bytes_per_batch"][v]) == 2 for v in t["rates"])
        b = d["summary"][f"trainer{t['machine']}"]["rpc_bytes_per_batch"]   # medians
        # both loaders pull remote rows; the hotness cache pulls fewer (exact per-batch
        # accounting is checked in tests/samplers/loading/test_distdgl.py)
        assert b["ours"] > 0 and b["dgl"] > 0
        assert b["ours_cache"] < b["ours"]
    for s in d["summary"].values():
        assert 0 < s["rpc_bytes_cache_over_nocache"] < 1
