"""Smoke tests of bench/e2e.py: a tiny run of every configuration as a subprocess."""
from __future__ import annotations

import json

import pytest

from testing import run_script

TINY = ["--nodes", "6000", "--feat-dim", "16", "--classes", "4", "--batch-size", "256",
        "--fanouts", "5,5", "--hidden", "32", "--warmup", "1", "--batches", "2", "--rounds", "2",
        "--cache", "none"]


def _run(tmp_path, *extra, plot=False, timeout=240):
    out = tmp_path / "e2e.json"
    p = run_script("bench/e2e.py", *TINY, "--out", out, *([] if plot else ["--no-plot"]), *extra,
                   timeout=timeout)
    with open(out) as f:
        return json.load(f), p.stdout


def _check_rows(d, expected):
    rows = {r["config"]: r for r in d["rows"]}
    assert set(rows) == set(expected)
    for name, r in rows.items():
        assert r["status"] == "ok", (name, r)
        assert r["seeds_per_s"] > 0 and r["ms_per_step"] > 0 and r["epoch_s_est"] > 0
        assert len(r["round_s"]) == 2 and all(t > 0 for t in r["round_s"])
        assert all(l > 0 for l in r["mean_loss"])          # cross-entropy of a real model
    return rows


def test_e2e_quick_cpu(tmp_path):
    d, stdout = _run(tmp_path, "--device", "cpu", "--configs", "baseline,unified,unified_no_overlap",
                     plot=True)
    assert d["benchmark"] == "e2e" and d["device"] == "cpu"
    assert d["dataset"]["num_nodes"] == 6000 and d["dataset"]["feat_dim"] == 16
    _check_rows(d, {"baseline", "unified", "unified_no_overlap"})
    assert d["ratios"]["unified/baseline"] > 0 and d["ratios"]["unified/unified_no_overlap"] > 0
    assert d["targets"] == {}                               # GPU targets only
    assert "unified/baseline" in stdout                     # the printed ratios
    assert (tmp_path / "e2e.png").stat().st_size > 1000


def test_e2e_rejects_unknown_config(tmp_path):
    p = run_script("bench/e2e.py", *TINY, "--configs", "nope", timeout=120, check=False)
    assert p.returncode != 0 and "unknown ['nope']" in p.stderr


@pytest.mark.dgl
def test_e2e_quick_dgl(tmp_path):
    d, _ = _run(tmp_path, "--device", "cpu")
    rows = _check_rows(d, {"baseline", "unified", "unified_no_overlap", "dgl", "dgl_dropin"})
    assert rows["dgl"]["seeds_per_s"] > 0
    assert "unified/dgl" in d["ratios"] and "dgl_dropin/dgl" in d["ratios"]


@pytest.mark.gpu
def test_e2e_quick_gpu(tmp_path):
    d, _ = _run(tmp_path, "--device", "cuda")
    assert d["device"] == "cuda" and d["env"]["gpu"]["name"]
    _check_rows(d, {"baseline", "unified", "unified_no_overlap", "gpu_resident"})
    assert set(d["targets"]) == {"unified >= 2x baseline",
                                 "unified time within 1.15x of gpu_resident"}


def test_guarded_records_system_exit_and_the_run_goes_on():
    """A configuration that exits (e.g. --loader gpu without CUDA) is recorded, not fatal."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
    import e2e

    def boom():
        raise SystemExit("needs a CUDA device")
    row = e2e.guarded("gpu_resident", boom)
    assert row["status"] == "error" and "needs a CUDA device" in row["error"]
