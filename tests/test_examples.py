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


@pytest.mark.gpu
def test_graphsage_unified_cuda_with_cache(tmp_path):
    rec = run_example("train_graphsage.py", ["--loader", "unified", "--device", "cuda",
                                             "--cache-fraction", "0.2"], tmp_path)
    check_learns(rec)
    assert rec["params"]["cache_fraction"] == 0.2


# ------------------------------------------------------------------------------ multi-GPU (DDP)
def test_multi_gpu_ddp_on_cpu_ranks(tmp_path):
    """Two DDP ranks (CPU processes, gloo) train from one shared host copy of the features: every
    rank reports the table in shared memory (not a private copy), and the model learns."""
    rec = run_example("train_multi_gpu.py", ["--device", "cpu", "--world-size", "2"], tmp_path,
                      expect=("test acc", "seeds/s", "rank 0: cpu, features in shared memory",
                              "rank 1: cpu, features in shared memory"))
    check_learns(rec)
    assert rec["params"]["world_size"] == 2


def test_multi_gpu_under_torchrun_maps_one_cached_copy(tmp_path):
    """Under torchrun every rank maps the dataset's cached .npy files (one copy in the page
    cache); rank 0 generates them first. Same training as under mp.spawn."""
    import subprocess
    import sys

    out = tmp_path / "torchrun.json"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", "2", os.path.join(EXAMPLES, "train_multi_gpu.py"),
                        *TINY, "--cache", str(tmp_path / "data"), "--device", "cpu",
                        "--json", str(out)],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for r in (0, 1):
        assert f"rank {r}: cpu, features in file-backed memmap" in p.stdout, p.stdout
    with open(out) as fh:
        rec = json.load(fh)
    check_learns(rec)
    assert rec["params"]["world_size"] == 2


@pytest.mark.gpu
def test_multi_gpu_ddp_cuda_with_cache(tmp_path):
    rec = run_example("train_multi_gpu.py", ["--device", "cuda", "--world-size", "1",
                                             "--cache-fraction", "0.1"], tmp_path,
                      expect=("test acc", "rank 0: cuda:0, features in shared memory"))
    check_learns(rec)


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
PYG_EXAMPLES = ["train_pyg.py", "train_pyg_hetero.py", "train_pyg_link.py"]


def pyg_sampling_backend() -> bool:
    """Whether PyG's own loaders can sample here (they need pyg-lib or torch-sparse)."""
    import importlib.util
    return any(importlib.util.find_spec(m) is not None for m in ("pyg_lib", "torch_sparse"))


def test_pyg(tmp_path):
    """PyG's GraphSAGE script on samplers.pyg.NeighborLoader learns; --trim (PyG's trim_to_layer,
    which needs the batches' per-hop node and edge counts in hop order) changes the work, not the
    result: the same seeded batches give the same losses."""
    pytest.importorskip("torch_geometric")
    plain = run_example("train_pyg.py", ["--device", "cpu"], tmp_path)
    trim = run_example("train_pyg.py", ["--device", "cpu", "--trim"], tmp_path)
    check_learns(plain)
    check_learns(trim)
    assert plain["params"]["loader"] == "ours" and trim["params"]["trim"]
    assert [e["loss"] for e in trim["epochs"]] == pytest.approx(
        [e["loss"] for e in plain["epochs"]], rel=1e-4)


def test_pyg_hetero(tmp_path):
    """HeteroData + to_hetero(GraphSAGE) on the ogbn-mag look-alike, batches from
    samplers.pyg.NeighborLoader(input_nodes=("paper", mask)): learns, well above chance."""
    pytest.importorskip("torch_geometric")
    check_rgcn_learns(run_example("train_pyg_hetero.py", ["--device", "cpu"], tmp_path,
                                  tiny=TINY_MAG))


def check_pyg_link_learns(rec: dict) -> None:
    epochs, final = rec["epochs"], rec["final"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert epochs[-1]["loss"] < epochs[0]["loss"], [e["loss"] for e in epochs]
    assert final["chance_auc"] == 0.5 and final["test_auc"] > 0.65, final
    assert final["seeds_per_s"] > 0 and all(e["seeds_per_s"] > 0 for e in epochs)
    assert all(0.0 <= e["val_auc"] <= 1.0 for e in epochs)
    assert rec["params"]["num_train_edges"] > 0 and rec["params"]["num_test_edges"] > 0


def test_pyg_link(tmp_path):
    """RandomLinkSplit + samplers.pyg.LinkNeighborLoader (binary negatives) + GraphSAGE with a
    dot-product decoder: the held-out edges outscore their negatives (AUC well above 0.5)."""
    pytest.importorskip("torch_geometric")
    check_pyg_link_learns(run_example("train_pyg_link.py", ["--device", "cpu"], tmp_path,
                                      expect=("test AUC", "seed edges/s")))


@pytest.mark.parametrize("script", PYG_EXAMPLES)
def test_pyg_own_loader(script, tmp_path):
    """--loader pyg runs the same script with PyG's loader: where pyg-lib and torch-sparse are
    both missing (this project's environments) it stops with one line naming what to install;
    where one is installed it learns like ours."""
    pytest.importorskip("torch_geometric")
    tiny = TINY_MAG if script == "train_pyg_hetero.py" else TINY
    if pyg_sampling_backend():
        rec = run_example(script, ["--loader", "pyg", "--device", "cpu"], tmp_path, tiny=tiny,
                          expect=("test",))
        assert rec["epochs"][-1]["loss"] < rec["epochs"][0]["loss"]
        return
    p = run_script(f"examples/{script}", *tiny, "--loader", "pyg", "--device", "cpu",
                   check=False, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]        # before it, at most PyG's own warning
    assert last.startswith(f"{script}: error: --loader pyg: "), last
    assert "pyg-lib" in last and "torch-sparse" in last and "--loader ours" in last, last


@pytest.mark.gpu
@pytest.mark.parametrize("script", PYG_EXAMPLES)
def test_pyg_cuda(script, tmp_path):
    """The PyG examples with device="cuda": sampling on the GPU over UVA, attributes gathered
    zero-copy."""
    pytest.importorskip("torch_geometric")
    args = ["--device", "cuda"]
    if script == "train_pyg.py":
        rec = run_example(script, args, tmp_path)
        check_learns(rec)
    elif script == "train_pyg_hetero.py":
        rec = run_example(script, args, tmp_path, tiny=TINY_MAG)
        check_rgcn_learns(rec)
    else:
        rec = run_example(script, args, tmp_path, expect=("test AUC", "seed edges/s"))
        check_pyg_link_learns(rec)
    assert rec["params"]["device"].startswith("cuda")


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
