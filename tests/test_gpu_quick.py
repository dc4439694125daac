"""`make gpu-quick` must not rot between GPU windows: on a machine without a GPU it is a dry run
that checks every step's command line, records the versions, and exits 0 within seconds."""
import json
import os
import subprocess
import sys

import pytest

from testing import has_gpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ["probe", "gpu_tests", "e2e", "overlap", "gather", "gather_thp", "memcheck", "sampler", "demo", "pyg"]


def _run(out, *extra, env_out=None):
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("OUT", None)
    if env_out is not None:
        env["OUT"] = env_out
    return subprocess.run([sys.executable, "bench/gpu_quick.py", *extra] + (["--out", out] if out else []),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_dry_run_skips_every_gpu_step_and_exits_0(tmp_path):
    p = _run(str(tmp_path), "--dry-run")
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads((tmp_path / "gpu_quick_summary.json").read_text())
    assert summary["dry_run"] is True
    assert [s["step"] for s in summary["steps"]] == STEPS
    for s in summary["steps"]:
        assert s["status"].startswith("skipped: no GPU"), s
    assert "RESULT: OK" in p.stdout
    probe = json.loads((tmp_path / "gpu_probe.json").read_text())
    assert probe["versions"]["torch"]
    files = sorted(os.listdir(tmp_path))
    # What a remote GPU run can bring back: at most 8 plain files, no folders.
    assert len(files) <= 8 and all((tmp_path / f).is_file() for f in files), files


def test_out_env_is_the_default_results_folder(tmp_path):
    p = _run(None, "--dry-run", "--steps", "gather", env_out=str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "gpu_quick_summary.json").is_file()
    assert (tmp_path / "gpu_quick.log").is_file()


def test_a_command_line_that_no_longer_parses_fails_the_dry_run(tmp_path, monkeypatch):
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import gpu_quick

    import gather
    real = gather.parse_args

    def strict(argv=None):
        return real(list(argv or []) + ["--no-such-option"])
    monkeypatch.setattr(gpu_quick, "_load", lambda name: type("M", (), {"parse_args": staticmethod(strict)}))
    rc = gpu_quick.main(["--dry-run", "--steps", "gather", "--out", str(tmp_path)])
    assert rc == 1
    summary = json.loads((tmp_path / "gpu_quick_summary.json").read_text())
    assert summary["steps"][0]["status"].startswith("FAIL(command line")


def test_unknown_step_is_a_usage_error(tmp_path):
    p = _run(str(tmp_path), "--steps", "probe,nonsense")
    assert p.returncode == 2 and "unknown" in p.stderr


def test_budget_clips_steps(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import gpu_quick

    class A:
        budget, python = 10.0, sys.executable
    r = gpu_quick.Runner(A(), str(tmp_path), gpu=False, tag="cpu")
    st, secs, _ = r.run("gather", [sys.executable, "-c", "print('x')"])
    assert st.startswith("skipped: budget") and secs == 0.0


@pytest.mark.skipif(has_gpu(), reason="on a GPU machine the real run is make gpu-quick")
def test_without_gpu_the_default_run_is_a_dry_run(tmp_path):
    p = _run(str(tmp_path), "--steps", "probe,gather")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "dry run" in p.stdout


def test_lower_priority_results_are_folded_into_the_summary(tmp_path):
    """A remote GPU run brings back 8 files: gather_thp / sampler / pyg results go into the
    summary (and their own files away), with their headline ratios."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("_gpu_quick", os.path.join(REPO, "bench", "gpu_quick.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.Runner(argparse.Namespace(budget=60.0, python=sys.executable), str(tmp_path), False, "cpu")
    (tmp_path / "pyg_loader_cpu.json").write_text(json.dumps({"feat": {"median_ratio": 0.987}}))
    (tmp_path / "sampler_cpu.json").write_text("{not json")
    r.fold("pyg", "pyg_loader_cpu.json")
    r.fold("sampler", "sampler_cpu.json")
    r.fold("gather_thp", "gather_cpu_thp.json")        # never written: nothing to fold
    r.write_summary()
    r.log.close()
    summary = json.loads((tmp_path / "gpu_quick_summary.json").read_text())
    assert summary["results"]["pyg"] == {"feat": {"median_ratio": 0.987}}
    assert "unreadable" in summary["results"]["sampler"]["error"]
    assert "gather_thp" not in summary["results"]
    assert summary["headlines"]["pyg_loader feat pyg/dgl_style batches/s"] == 0.987
    assert sorted(os.listdir(tmp_path)) == ["gpu_quick.log", "gpu_quick_summary.json"]


def test_headlines_keep_old_names_and_add_the_issue_18_figures(tmp_path):
    """Old headline names stay for the same things; the new ones say what changed."""
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import gpu_quick

    (tmp_path / "gather_cpu.json").write_text(json.dumps({"rows": [{
        "row_bytes": 512, "base_offset": 0,
        "ratios": {"unified/pcie_h2d": 0.8, "unified/unified_novalidate": 0.97},
        "modes": {"unified": {"gbps": 20.0}, "unified_novalidate": {"gbps": 20.6},
                  "pcie_h2d": {"gbps": 25.0}}}]}))
    (tmp_path / "e2e_cpu.json").write_text(json.dumps({
        "dataset": {"graph": "papers_like", "num_nodes": 16000000},
        "rows": [{"config": c, "status": "ok", "seeds_per_s": v,
                  **({"syncs_per_batch": {"training": 0.0, "producer": 1.0, "model": 3.0}}
                     if c.startswith("unified") else {})}
                 for c, v in (("unified", 80.0), ("gpu_resident", 100.0), ("baseline", 40.0),
                              ("baseline_naive", 10.0), ("unified_reordered_cached", 90.0))]
        + [{"config": "unified_cached", "status": "skipped", "reason": "budget"}],
        "ratios": {"best_ours/gpu_resident": 0.9}, "best_ours": "unified_reordered_cached",
        "targets": {"unified >= 2x baseline": True, "best ours >= 0.87x gpu_resident": True}}))
    (tmp_path / "overlap_cpu.json").write_text(json.dumps({"summary": {"loader both/sum": 0.7}}))
    h = gpu_quick.headlines(str(tmp_path), "cpu")
    assert h["gather 512B@0 unified/unified_novalidate"] == 0.97
    assert h["gather 512B@0 unified_novalidate GB/s"] == 20.6 and h["gather 512B@0 unified GB/s"] == 20.0
    assert h["e2e unified/baseline"] == 2.0 and h["e2e gpu_resident/unified"] == 1.25   # old names
    assert h["e2e unified/baseline_naive"] == 8.0 and h["e2e baseline/baseline_naive"] == 4.0
    assert h["e2e unified_reordered_cached/gpu_resident"] == 0.9
    assert h["e2e best_ours/gpu_resident"] == 0.9 and h["e2e best_ours"] == "unified_reordered_cached"
    assert h["e2e unified syncs/batch training,producer,model"] == [0.0, 1.0, 3.0]
    assert h["e2e target unified >= 2x baseline"] == "met"
    assert h["e2e graph"] == "papers_like 16000000 nodes"
    assert "e2e unified_cached seeds/s" not in h
    assert h["overlap loader both/sum"] == 0.7


def test_dry_run_checks_the_e2e_and_overlap_command_lines(tmp_path, monkeypatch):
    """The e2e step's command line (papers_like graph, every GPU configuration most valuable
    first, the order and its own budget) and the overlap step's parse with the scripts' parsers."""
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import gpu_quick

    parsed = {}
    real = gpu_quick._load

    def spy(name):
        mod = real(name)

        def parse(argv=None, _p=mod.parse_args, _n=name):
            parsed[_n] = _p(argv)
            return parsed[_n]
        return type("M", (), {"parse_args": staticmethod(parse)})
    monkeypatch.setattr(gpu_quick, "_load", spy)
    assert gpu_quick.main(["--dry-run", "--steps", "e2e,overlap", "--out", str(tmp_path),
                           "--e2e-nodes", "1000000", "--e2e-order", "community"]) == 0
    summary = json.loads((tmp_path / "gpu_quick_summary.json").read_text())
    assert [s["status"] for s in summary["steps"]] == ["skipped: no GPU"] * 2
    e = parsed["e2e"]
    e2e = real("e2e")
    assert e.graph == "papers_like" and e.nodes == 1_000_000 and e.order == "community"
    assert e.configs.split(",") == [c for c in e2e.CONFIGS if not c.startswith("dgl")]
    assert e.budget_s == gpu_quick.CAPS["e2e"] - gpu_quick.E2E_MARGIN_S
    assert e.cache_fraction == 0.1 and e.sync_batches == 5 and e.cache == "none"
    assert parsed["overlap"].sections == ["kernel", "loader"]
