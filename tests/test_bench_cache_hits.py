"""Smoke test of bench/cache_hits.py: a tiny run as a subprocess, the JSON checked."""
from __future__ import annotations

import json

from testing import run_script

TINY = ["--nodes", "5000", "--batches", "3", "--presample-batches", "3", "--batch-size", "64",
        "--fanouts", "5,5", "--cache", "none"]


def test_cache_hits_quick(tmp_path):
    out = tmp_path / "cache_hits.json"
    p = run_script("bench/cache_hits.py", *TINY, "--fractions", "0,0.01,0.1,0.5,1", "--out", out,
                   timeout=240)
    with open(out) as f:
        d = json.load(f)
    assert d["benchmark"] == "cache_hits" and d["device"] == "cpu"
    assert d["env"]["cpu_count"] >= 1 and d["params"]["nodes"] == 5000
    assert d["dataset"]["num_nodes"] == 5000 and d["dataset"]["train"] > 0
    m = d["measured"]
    assert m["batches"] == 3 and m["row_bytes"] == 512 and m["presample_batches"] == 3
    assert m["reads"] > 0 and m["presample_reads"] > 0
    assert m["mean_input_nodes_per_batch"] == m["reads"] / 3
    assert 0 < m["distinct_rows_read"] <= min(5000, m["reads"])
    assert set(d["sources"]) == {"out_degree", "presample", "random", "oracle"}

    fractions = [0.0, 0.01, 0.1, 0.5, 1.0]
    rows = d["rows"]
    assert len(rows) == len(fractions) * len(d["sources"])
    for r in rows:
        assert 0.0 <= r["hit_rate"] <= 1.0
        assert r["cached_rows"] == int(r["fraction"] * 5000)
        assert r["reads"] == m["reads"] and r["hits"] == round(r["hit_rate"] * m["reads"])
        saved, left = r["pcie_bytes_saved_per_batch"], r["pcie_bytes_left_per_batch"]
        assert saved >= 0 and left >= 0
        assert abs(saved + left - m["pcie_bytes_per_batch_uncached"]) < 1e-6 * (saved + left + 1)
    by = {s: [next(r for r in rows if r["source"] == s and r["fraction"] == f)["hit_rate"]
              for f in fractions] for s in d["sources"]}
    for s, rates in by.items():
        assert rates[0] == 0.0 and rates[-1] == 1.0, s          # no cache / everything cached
        assert all(a <= b for a, b in zip(rates, rates[1:])), s  # nondecreasing in the fraction
    for i in range(len(fractions)):                              # no static cache beats oracle
        assert all(by[s][i] <= by["oracle"][i] + 1e-12 for s in d["sources"])
    assert set(d["summary"]) == {f"f={f}" for f in fractions}
    assert "out_degree" in p.stdout and "hit rate" in p.stdout   # the printed table


def test_cache_hits_rejects_bad_fraction(tmp_path):
    p = run_script("bench/cache_hits.py", *TINY, "--fractions", "0.1,2", timeout=120, check=False)
    assert p.returncode != 0 and "--fractions must be in [0, 1]" in p.stderr
