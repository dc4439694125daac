"""Smoke tests of bench/sampler.py: a tiny run as a subprocess (ours; DGL rows in the dgl env)."""
from __future__ import annotations

import json

import pytest

from testing import run_script

TINY = ["--nodes", "20000", "--edges", "200000", "--batch-size", "256", "--feat-dim", "8",
        "--warmup", "1", "--batches", "2", "--rounds", "2"]


def _run(tmp_path, *extra, timeout=240):
    out = tmp_path / "sampler.json"
    run_script("bench/sampler.py", *TINY, "--out", out, *extra, timeout=timeout)
    with open(out) as f:
        return json.load(f)


def _ok_rows(d):
    for r in d["rows"]:
        assert "error" not in r, r
        assert r["batches_per_s"] > 0 and r["medges_per_s"] > 0 and r["edges_per_batch"] > 0
    return {(r["name"], r["impl"]) for r in d["rows"]}


def test_sampler_bench_quick_cpu(tmp_path):
    d = _run(tmp_path, "--no-dgl", "--no-gpu")
    assert d["benchmark"] == "sampler" and d["num_edges"] > 0
    assert _ok_rows(d) == {("sample", "ours"), ("loader", "ours"), ("loader+feat", "ours")}


@pytest.mark.dgl
def test_sampler_bench_quick_dgl(tmp_path):
    d = _run(tmp_path, "--no-gpu")
    names = _ok_rows(d)
    assert {("sample", "dgl"), ("loader", "dgl"), ("loader+feat", "dgl")} <= names
    assert any(impl.startswith("drop-in") for _, impl in names)
    assert set(d["ratios"]) == {"sample ours/dgl (medges_per_s)", "loader ours/dgl (batches_per_s)",
                                "loader+feat ours/dgl (batches_per_s)"}


@pytest.mark.dgl
def test_sampler_ratio_quick(tmp_path):
    """bench/sampler_ratio.py: interleaved runs of ours and DGL's sampler, homogeneous and
    heterogeneous, one ratio per pair and their median."""
    pytest.importorskip("dgl")
    out = tmp_path / "ratio.json"
    run_script("bench/sampler_ratio.py", "--nodes", "20000", "--edges", "200000", "--runs", "3",
               "--batches", "2", "--batch-size", "256", "--hetero", "--out", out, timeout=240)
    d = json.loads(out.read_text())
    for kind in ("homogeneous", "heterogeneous"):
        r = d[kind]
        assert len(r["ratios"]) == 3 and all(x > 0 for x in r["ratios"])
        assert min(r["ratios"]) <= r["median_ratio"] <= max(r["ratios"])
