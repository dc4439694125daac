"""Smoke tests of the example scripts: each one runs as a subprocess on a tiny synthetic graph
(in RAM, a few seconds of training) and must learn: the loss falls, the test accuracy (AUC for link
prediction) is well above chance, the throughput is reported. The modern environment runs the
PyTorch and PyG examples, the dgl environment (``-m dgl``) the DGL one. Their command lines
(``--help``, the one-line exits when PyG, DGL or an OGB folder is missing) are tested in
``test_cli_help.py``."""
from __future__ import annotations

import json
import os

import pytest

from testing import REPO_ROOT, run_script

EXAMPLES = os.path.join(REPO_ROOT, "examples")

# 3000 nodes, 4 classes, 16 features: about 0.1 s per epoch after the first; most of each run is
# interpreter start-up and imports.
TINY = ["--nodes", "3000", "--feat-dim", "16", "--classes", "4", "--epochs", "3",
        "--batch-size", "256", "--hidden", "64", "--lr", "0.01", "--cache", "none", "--no-progress"]


# The synthetic ogbn-mag look-alike: 3000 papers (4500 authors, 35 institutions, 250 fields).
TINY_MAG = ["--papers", "3000", "--feat-dim", "16", "--classes", "4", "--epochs", "3",
            "--batch-size", "256", "--hidden", "32", "--lr", "0.01", "--no-progress"]


def run_example(script: str, args, tmp_path, timeout: int = 300, tiny=TINY,
                expect=("test acc", "seeds/s")) -> dict:
    """Run ``examples/<script> tiny args --json ...`` and return the JSON it wrote; its output
    must mention every string of ``expect``."""
    tag = "_".join(a.lstrip("-") for a in args)
    out = tmp_path / f"{os.path.splitext(script)[0]}_{tag}.json"
    p = run_script(f"examples/{script}", *tiny, *args, "--json", out, timeout=timeout)
    assert all(e in p.stdout for e in expect), p.stdout
    with open(out) as fh:
        return json.load(fh)


def check_learns(rec: dict) -> None:
    """The loss falls, the test accuracy is more than twice chance, throughput is positive."""
    epochs, final = rec["epochs"], rec["final"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert epochs[-1]["loss"] < epochs[0]["loss"], [e["loss"] for e in epochs]
    assert final["chance"] == pytest.approx(0.25)
    assert final["test_acc"] > 2 * final["chance"], final
    assert final["seeds_per_s"] > 0 and all(e["seeds_per_s"] > 0 and e["time_s"] > 0
                                            for e in epochs)
    for e in epochs:
        assert 0.0 <= e["train_acc"] <= 1.0 and 0.0 <= e["val_acc"] <= 1.0
    assert rec["params"]["num_nodes"] == 3000


# ------------------------------------------------------------------------------ PyTorch
def test_graphsage_unified_and_baseline(tmp_path):
    """Both loaders learn, and they see the same data: the sampler and the shuffling are seeded,
    so the first epoch's loss is the same whether features come through the loader (unified) or
    are gathered in the training loop (baseline)."""
    unified = run_example("train_graphsage.py", ["--loader", "unified", "--device", "cpu"],
                          tmp_path)
    baseline = run_example("train_graphsage.py", ["--loader", "baseline", "--device", "cpu"],
                           tmp_path)
    check_learns(unified)
    check_learns(baseline)
    assert unified["params"]["loader"] == "unified" and baseline["params"]["loader"] == "baseline"
    assert unified["epochs"][0]["loss"] == pytest.approx(baseline["epochs"][0]["loss"], rel=1e-4)


@pytest.mark.gpu
def test_graphsage_unified_cuda(tmp_path):
    rec = run_example("train_graphsage.py", ["--loader", "unified", "--device", "cuda"], tmp_path)
    check_learns(rec)
    assert rec["params"]["device"].startswith("cuda")
    assert rec["params"]["fanouts"] == "15,10,5"


# ------------------------------------------------------------------------------ R-GCN
def check_rgcn_learns(rec: dict) -> None:
    epochs, final = rec["epochs"], rec["final"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert epochs[-1]["loss"] < epochs[0]["loss"], [e["loss"] for e in epochs]
    assert final["chance"] == pytest.approx(0.25)
    assert final["test_acc"] > 2 * final["chance"], final
    assert final["seeds_per_s"] > 0 and all(e["seeds_per_s"] > 0 for e in epochs)
    assert all(0.0 <= e["val_acc"] <= 1.0 for e in epochs)
    assert rec["params"]["num_nodes"]["paper"] == 3000


def test_rgcn_unified_and_baseline(tmp_path):
    """Heterogeneous node classification learns with both loaders, from the same batches (seeded
    sampler and shuffling: the first epoch's loss agrees)."""
    kw = dict(tiny=TINY_MAG)
    unified = run_example("train_rgcn.py", ["--loader", "unified", "--device", "cpu"], tmp_path,
                          **kw)
    baseline = run_example("train_rgcn.py", ["--loader", "baseline", "--device", "cpu"], tmp_path,
                           **kw)
    check_rgcn_learns(unified)
    check_rgcn_learns(baseline)
    assert unified["epochs"][0]["loss"] == pytest.approx(baseline["epochs"][0]["loss"], rel=1e-4)


@pytest.mark.gpu
def test_rgcn_unified_cuda(tmp_path):
    rec = run_example("train_rgcn.py", ["--loader", "unified", "--device", "cuda"], tmp_path,
                      tiny=TINY_MAG)
    check_rgcn_learns(rec)
    assert rec["params"]["device"].startswith("cuda")


# ------------------------------------------------------------------------------ link prediction
def check_link_pred_learns(rec: dict) -> None:
    epochs, final = rec["epochs"], rec["final"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert epochs[-1]["loss"] < epochs[0]["loss"], [e["loss"] for e in epochs]
    assert final["chance_auc"] == 0.5 and final["test_auc"] > 0.6, final
    assert final["test_mrr"] > final["chance_mrr"], final
    assert final["seeds_per_s"] > 0 and all(e["seeds_per_s"] > 0 for e in epochs)
    assert all(0.0 <= e["val_auc"] <= 1.0 and 0.0 < e["val_mrr"] <= 1.0 for e in epochs)
    assert rec["params"]["num_train_edges"] > 0 and rec["params"]["num_test_edges"] > 0


def test_link_pred_unified_and_baseline(tmp_path):
    """GraphSAGE link prediction (reverse edges excluded, uniform negatives) beats chance on
    held-out edges with both loaders, from the same batches."""
    kw = dict(expect=("test AUC", "seed edges/s"))
    unified = run_example("train_link_pred.py", ["--loader", "unified", "--device", "cpu"],
                          tmp_path, **kw)
    baseline = run_example("train_link_pred.py", ["--loader", "baseline", "--device", "cpu"],
                           tmp_path, **kw)
    check_link_pred_learns(unified)
    check_link_pred_learns(baseline)
    assert unified["epochs"][0]["loss"] == pytest.approx(baseline["epochs"][0]["loss"], rel=1e-4)


@pytest.mark.gpu
def test_link_pred_unified_cuda(tmp_path):
    rec = run_example("train_link_pred.py", ["--loader", "unified", "--device", "cuda"], tmp_path,
                      expect=("test AUC", "seed edges/s"))
    check_link_pred_learns(rec)
    assert rec["params"]["device"].startswith("cuda")


# ------------------------------------------------------------------------------ PyG
def test_pyg(tmp_path):
    pytest.importorskip("torch_geometric")
    check_learns(run_example("train_pyg.py", ["--device", "cpu"], tmp_path))


# ------------------------------------------------------------------------------ DGL
@pytest.mark.dgl
def test_dgl_both_loaders(tmp_path):
    """The same DGL script with DGL's DataLoader and with ours: both learn, to the same band."""
    pytest.importorskip("dgl")
    ours = run_example("train_dgl.py", ["--loader", "unified", "--device", "cpu"], tmp_path)
    theirs = run_example("train_dgl.py", ["--loader", "dgl", "--device", "cpu"], tmp_path)
    check_learns(ours)
    check_learns(theirs)
    assert ours["params"]["loader"] == "unified" and theirs["params"]["loader"] == "dgl"
    assert abs(ours["final"]["test_acc"] - theirs["final"]["test_acc"]) < 0.15, \
        (ours["final"], theirs["final"])


def test_unified_table_falls_back_to_a_pinned_copy(monkeypatch, capsys):
    """Where a driver refuses to pin memmap pages in place, the examples pin a copy and say so."""
    import torch
    import unified_tensor as ut
    from unified_tensor._cudart import CudaRuntimeError

    monkeypatch.syspath_prepend(EXAMPLES)
    import _util

    real, seen = ut.unified, []

    def refuse_first(t):
        seen.append(t)
        if len(seen) == 1:
            raise CudaRuntimeError("cudaHostRegister: cudaErrorInvalidValue (invalid argument)")
        return real(t)

    monkeypatch.setattr(ut, "unified", refuse_first)
    table = torch.arange(12.0).view(6, 2)
    out = _util.unified_table(table, "features")
    assert len(seen) == 2 and seen[1].data_ptr() != table.data_ptr()   # the copy was pinned
    assert torch.equal(out, table)
    assert "cannot pin the features in place" in capsys.readouterr().out
    ut.unpin(out)
