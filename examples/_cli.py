"""The example scripts' command-line options, built with ``argparse`` alone.

Nothing here imports torch, NumPy, a GNN framework or this library, so a script can build its
parser and answer ``--help`` (or reject a bad option) in a fraction of a second, before its heavy
imports. Each script does::

    from _cli import add_data_args, add_train_args

    def parse_args(argv=None): ...          # options only

    if __name__ == "__main__":
        parse_args()      # --help and option errors answer here, before the imports below

    import torch          # the heavy imports, then the model and the training loop

and ``main()`` parses again (cheaply) when the script runs. Values that need the environment or
the hardware (the default data folder, ``--fanouts`` on a GPU or a CPU) are settled after the
parse, where the script has its imports: ``None`` means "decide when running", as the help says.
The training helpers (loading, epochs, reporting) live in ``_util.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Optional, Tuple

__all__ = ["add_data_args", "add_train_args", "add_mag_args", "add_pyg_args", "link_parser",
           "set_option", "fail", "require_framework"]


def add_data_args(p: argparse.ArgumentParser, nodes: int = 100_000) -> None:
    """The dataset options: the synthetic graph's size and cache, or an OGB dataset on disk."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="synthetic",
                   help="'synthetic' (built in, generated once and cached) or an OGB node-property "
                        "dataset already on disk under --ogb-root, e.g. ogbn-products")
    g.add_argument("--nodes", type=int, default=nodes, help="synthetic graph: number of nodes")
    g.add_argument("--avg-degree", type=float, default=15.0, help="synthetic graph: mean degree")
    g.add_argument("--feat-dim", type=int, default=128, help="synthetic graph: feature width")
    g.add_argument("--classes", type=int, default=16, help="synthetic graph: number of classes")
    g.add_argument("--data-seed", type=int, default=0, help="synthetic graph: generator seed")
    g.add_argument("--cache", default=None,
                   help="folder where the synthetic graph is written once as .npy memmaps and "
                        "reopened afterwards ('none': keep it in RAM); if not given, "
                        "$UNIFIED_TENSOR_DATA_ROOT, else ~/.cache/unified-tensor/datasets")
    g.add_argument("--ogb-root", default=None,
                   help="folder holding the OGB dataset folder (e.g. <root>/ogbn_products/), "
                        "needed for an ogbn-... dataset")
    g.add_argument("--ogb-split", default=None,
                   help="OGB split folder to use (<root>/<dataset>/split/<name>/); if not given, "
                        "OGB's split of the dataset (e.g. sales_ranking for ogbn-products, time "
                        "for ogbn-arxiv), or the only folder there for another dataset")


def add_train_args(p: argparse.ArgumentParser, epochs: int = 3) -> argparse._ArgumentGroup:
    """The training options every example shares; returns the group for script-specific ones."""
    t = p.add_argument_group("training")
    t.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:i]'")
    t.add_argument("--fanouts", default=None,
                   help="comma-separated neighbours per layer (input layer first); if not given, "
                        "15,10,5 on a GPU and 10,5 on the CPU")
    t.add_argument("--batch-size", type=int, default=1024, help="seed nodes per minibatch")
    t.add_argument("--hidden", type=int, default=256, help="hidden width of the GraphSAGE layers")
    t.add_argument("--dropout", type=float, default=0.5, help="dropout between layers")
    t.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    t.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    t.add_argument("--max-batches", type=int, default=None,
                   help="stop each epoch after this many batches (benchmarks, smoke tests); "
                        "if not given, the whole epoch")
    t.add_argument("--eval-batches", type=int, default=None,
                   help="evaluate on at most this many batches of val/test seeds; if not given, "
                        "on all of them")
    t.add_argument("--seed", type=int, default=0,
                   help="seed of the model, the shuffling and the sampler")
    t.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    t.add_argument("--json", default=None,
                   help="write per-epoch records to this JSON file; if not given, print only")
    return t


def add_mag_args(p: argparse.ArgumentParser, papers: int) -> None:
    """Options of the synthetic ogbn-mag-like graph (``samplers.datasets.synthetic_mag``)."""
    g = p.add_argument_group("data (synthetic ogbn-mag-like graph, generated in RAM)")
    g.add_argument("--papers", type=int, default=papers,
                   help="number of papers; authors, institutions and fields follow ogbn-mag's "
                        "proportions (1.5x, 1/85, 1/12)")
    g.add_argument("--feat-dim", type=int, default=128, help="width of the paper features")
    g.add_argument("--classes", type=int, default=16,
                   help="number of paper classes (planted communities)")
    g.add_argument("--data-seed", type=int, default=0, help="generator seed")


def add_pyg_args(t: argparse._ArgumentGroup) -> None:
    """``--loader``, shared by the PyG examples."""
    t.add_argument("--loader", choices=("ours", "pyg"), default="ours",
                   help="where NeighborLoader comes from: 'ours': samplers.pyg (the library's "
                        "sampler; on a GPU sampling over UVA and zero-copy gathers, no pyg-lib or "
                        "torch-sparse needed); 'pyg': torch_geometric.loader (needs pyg-lib or "
                        "torch-sparse)")


def link_parser(doc: str) -> Tuple[argparse.ArgumentParser, argparse._ArgumentGroup]:
    """The options every link-prediction example shares (data, training, sizes); returns the
    parser and its training group for the script's own options."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_args(p, nodes=30_000)
    set_option(p, "avg_degree", avg_degree=10.0)
    t = add_train_args(p, epochs=3)
    set_option(p, "batch_size", help="seed edges (positive pairs) per minibatch", batch_size=512)
    set_option(p, "hidden", help="hidden and embedding width of the GraphSAGE layers", hidden=128)
    set_option(p, "dropout", dropout=0.1)
    set_option(p, "eval_batches", help="evaluate on at most this many batches of held-out edges; "
                                       "if not given, on all of them")
    return p, t


def set_option(p: argparse.ArgumentParser, dest: str, *, help: Optional[str] = None,
               **defaults: object) -> None:
    """Reword the help of a shared option (``add_train_args``) for one script, and/or change its
    default (``set_option(p, "batch_size", help="seed edges per minibatch", batch_size=512)``)."""
    actions = [a for a in p._actions if a.dest == dest]
    if not actions:
        raise ValueError(f"the parser has no option with dest {dest!r}")
    if help is not None:
        actions[0].help = help
    if defaults:
        p.set_defaults(**defaults)


def fail(message: str) -> NoReturn:
    """Exit like an argparse error, in one line and with status 2: ``<script>: error: message``
    on stderr (no usage block, no traceback)."""
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def require_framework(name: str, error: Optional[BaseException], install: str) -> None:
    """Exit with one line (status 2) when the framework a script needs did not import.

    The scripts import their framework in a ``try`` after parsing and keep the exception, so that
    ``--help`` works without it; ``main()`` calls this right after parsing the arguments.
    """
    if error is not None:
        detail = " ".join(f"{type(error).__name__}: {error}".split())  # one line
        fail(f"this script needs {name}, which does not import here ({detail}); "
             f"install it with `{install}`")
