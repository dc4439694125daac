"""Smoke tests of bench/e2e.py: a tiny run of every configuration as a subprocess."""
from __future__ import annotations

import json

import pytest

from testing import run_script

TINY = ["--nodes", "20000", "--feat-dim", "16", "--classes", "4", "--batch-size", "64",
        "--fanouts", "5,5", "--hidden", "32", "--warmup", "1", "--batches", "2", "--rounds", "2",
        "--cache", "none"]
CPU_DEFAULT = {"unified", "baseline", "unified_reordered", "baseline_naive", "unified_bf16",
               "unified_int8", "unified_no_overlap"}


def _run(tmp_path, *extra, plot=False, timeout=240, tiny=TINY):
    out = tmp_path / "e2e.json"
    p = run_script("bench/e2e.py", *tiny, "--out", out, *([] if plot else ["--no-plot"]), *extra,
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


def _e2e_module():
    import os
    import sys

    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import e2e
    return e2e


def test_e2e_quick_cpu(tmp_path):
    d, stdout = _run(tmp_path, "--device", "cpu", "--configs",
                     "unified_no_overlap,baseline_naive,unified_reordered,baseline,unified",
                     plot=True)
    assert d["benchmark"] == "e2e" and d["device"] == "cpu"
    ds = d["dataset"]
    assert ds["num_nodes"] == 20000 and ds["feat_dim"] == 16 and ds["graph"] == "papers_like"
    assert ds["train"] == 220                                # papers100M's 1.1 % labelled
    rows = _check_rows(d, {"baseline", "baseline_naive", "unified", "unified_reordered",
                           "unified_no_overlap"})
    # most valuable first, whatever the order asked
    assert [r["config"] for r in d["rows"]] == ["unified", "baseline", "unified_reordered",
                                                "baseline_naive", "unified_no_overlap"]
    for k in ("unified/baseline", "unified/baseline_naive", "baseline/baseline_naive",
              "unified_reordered/unified", "unified/unified_no_overlap", "best_ours/baseline"):
        assert d["ratios"][k] > 0, k
    assert d["best_ours"] in ("unified", "unified_reordered", "unified_no_overlap")
    assert rows["unified_reordered"]["reorder"]["order"] == "community"
    assert d["targets"] == {}                               # GPU targets only
    assert "syncs_per_batch" not in rows["unified"]         # counted on a GPU only
    assert "unified/baseline" in stdout                     # the printed ratios
    assert (tmp_path / "e2e.png").stat().st_size > 1000


def test_e2e_baseline_workers_yield_every_batch_in_order_on_cpu():
    """The strong baseline on the CPU: worker threads, batches in order, rows exact."""
    import torch

    from samplers.datasets import papers_like

    e2e = _e2e_module()
    ds = papers_like(5000, feat_dim=8)
    seeds = ds.train_idx
    for workers in (1, 3):
        pipe = e2e.StrongBaseline(ds, torch.device("cpu"), [3, 3], 7, seed=0, workers=workers,
                                  prefetch=1)
        got = []
        for input_nodes, output_nodes, blocks, x, y in pipe.loader(seeds, shuffle=False):
            assert torch.equal(x, ds.features[input_nodes.long()])
            assert torch.equal(y, ds.labels[output_nodes.long()])
            assert blocks[-1].num_dst_nodes() == output_nodes.numel()
            got.append(output_nodes)
        assert torch.equal(torch.cat(got), seeds)           # every seed once, in order
        # a consumer that stops early: the workers are stopped and joined
        ep = pipe.loader(seeds, shuffle=True, seed=1)
        it = iter(ep)
        next(it)
        it.close()
        assert ep.threads == [] and ep.stop.is_set()
        pipe.close()


def test_e2e_baseline_worker_error_reaches_the_training_thread():
    import torch

    from samplers.datasets import papers_like

    e2e = _e2e_module()
    ds = papers_like(3000, feat_dim=4)
    pipe = e2e.StrongBaseline(ds, torch.device("cpu"), [2], 8, seed=0, workers=2, prefetch=1)

    def boom(seeds, key, stream):
        raise ValueError(f"bad batch {key}")
    pipe.produce = boom
    with pytest.raises(ValueError, match="bad batch 0"):
        list(pipe.loader(ds.train_idx, shuffle=False))


def test_e2e_budget_skips_later_configs(tmp_path):
    d, _ = _run(tmp_path, "--device", "cpu", "--configs", "unified,baseline_naive",
                "--budget-s", "0.01")
    rows = {r["config"]: r for r in d["rows"]}
    assert rows["unified"]["status"] == "ok"               # the first always runs
    assert rows["baseline_naive"]["status"] == "skipped"
    assert rows["baseline_naive"]["reason"].startswith("budget:")


def test_e2e_reorder_order_is_cached_beside_the_dataset(tmp_path):
    tiny = [a if a != "none" else str(tmp_path / "data") for a in TINY]
    for loaded in (False, True):
        d, _ = _run(tmp_path, "--device", "cpu", "--configs", "unified_reordered", "--order",
                    "degree", tiny=tiny)
        r = d["rows"][0]
        assert r["status"] == "ok" and r["reorder"] == {**r["reorder"], "order": "degree",
                                                        "loaded_order": loaded}
    assert len(list((tmp_path / "data").glob("*.order-degree.npy"))) == 1


def test_e2e_rejects_unknown_config(tmp_path):
    p = run_script("bench/e2e.py", *TINY, "--configs", "nope", timeout=120, check=False)
    assert p.returncode != 0 and "unknown ['nope']" in p.stderr


def test_e2e_rejects_a_cache_the_table_is_not_8x_larger_than(tmp_path):
    p = run_script("bench/e2e.py", *TINY, "--cache-fraction", "0.2", timeout=120, check=False)
    assert p.returncode == 2 and "--cache-fraction must be in (0, 1/8]" in p.stderr


def test_e2e_gpu_only_config_on_cpu_is_an_error_row(tmp_path):
    out = tmp_path / "e.json"
    p = run_script("bench/e2e.py", *TINY, "--device", "cpu", "--configs",
                   "unified,unified_graph_on_gpu", "--out", out, "--no-plot", timeout=240,
                   check=False)
    assert p.returncode == 1
    rows = {r["config"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["unified"]["status"] == "ok"
    assert rows["unified_graph_on_gpu"]["status"] == "error"
    assert "needs a CUDA device" in rows["unified_graph_on_gpu"]["error"]


def test_e2e_summary_ratios_and_gpu_targets():
    import torch

    e2e = _e2e_module()

    def row(c, sps, prod=1.0, train=0.0):
        return {"config": c, "status": "ok", "seeds_per_s": sps,
                "syncs_per_batch": {"training": train, "producer": prod, "model": 3.0}}
    rows = [row("unified", 800.0), {"config": "gpu_resident", "status": "ok",
                                    "seeds_per_s": 1000.0},
            {"config": "baseline", "status": "ok", "seeds_per_s": 300.0},
            row("unified_reordered_cached", 900.0),
            {"config": "unified_cached", "status": "oom"}]
    ratios, targets, best = e2e.summarize_rows(rows, torch.device("cuda"))
    assert best == "unified_reordered_cached"
    assert ratios["unified/baseline"] == pytest.approx(800 / 300)
    assert ratios["best_ours/gpu_resident"] == pytest.approx(0.9)
    assert ratios["gpu_resident/unified"] == pytest.approx(1.25)
    assert targets == {"unified >= 2x baseline": True,
                       "unified time within 1.15x of gpu_resident": False,
                       "best ours >= 0.87x gpu_resident": True,
                       "host syncs per batch: producer <= 1, training 0": True}
    rows[0]["syncs_per_batch"]["training"] = 1.0
    assert not e2e.summarize_rows(rows, torch.device("cuda"))[1][
        "host syncs per batch: producer <= 1, training 0"]
    assert e2e.summarize_rows(rows, torch.device("cpu"))[1] == {}


@pytest.mark.dgl
def test_e2e_quick_dgl(tmp_path):
    d, _ = _run(tmp_path, "--device", "cpu")
    rows = _check_rows(d, CPU_DEFAULT | {"dgl", "dgl_dropin"})
    assert rows["dgl"]["seeds_per_s"] > 0
    assert "unified/dgl" in d["ratios"] and "dgl_dropin/dgl" in d["ratios"]


@pytest.mark.gpu
def test_e2e_quick_gpu(tmp_path):
    d, _ = _run(tmp_path, "--device", "cuda", timeout=600)
    assert d["device"] == "cuda" and d["env"]["gpu"]["name"]
    e2e = _e2e_module()
    rows = _check_rows(d, {c for c in e2e.CONFIGS if not c.startswith("dgl")})
    for name in e2e.OURS:
        s = rows[name]["syncs_per_batch"]
        assert s["batches"] == 5 and s["tensor_syncs_observed"] is True
    assert set(d["targets"]) == {"unified >= 2x baseline",
                                 "unified time within 1.15x of gpu_resident",
                                 "best ours >= 0.87x gpu_resident",
                                 "host syncs per batch: producer <= 1, training 0"}


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
