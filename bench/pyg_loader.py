"""What the PyG wrapping costs: samplers.pyg.NeighborLoader against the DGL-style DataLoader.

``samplers.pyg.NeighborLoader`` against ``samplers.DataLoader``, as a robust ratio (interleaved
runs, median of the per-pair ratios).

Both loaders run on the library's loading core, on the same graph (one CSC built from
``edge_index``), the same seeds in the same batches, the same per-layer fanouts and batch size:

* ``pyg``: ``samplers.pyg.NeighborLoader(data, num_neighbors, input_nodes, ...)`` with node
  features ``x`` and labels ``y`` as ``Data`` attributes; yields ``Data`` (``x``, ``y``,
  ``edge_index``, ``n_id``, ``e_id``, ...);
* ``dgl_style``: ``samplers.DataLoader(CSCGraph, seeds, NeighborSampler(fanouts), features=x,
  labels=y)``; yields ``(input_nodes, output_nodes, blocks)``.

``--fanouts`` is in DGL's order (input layer first, as every bench here); the PyG loader gets it
reversed (``num_neighbors``: hop 1 around the seeds first), so each layer has the same fanout.
The two sample different subgraphs by design: PyG's hop ``k`` samples only the nodes hop ``k - 1``
added, DGL's blocks sample every destination node of every layer again, so the PyG batch has
fewer edges (and input nodes, i.e. gathered feature rows) for the same fanouts. Every result
carries edges and nodes per batch for both, so the batches/s ratio reads honestly.

Parts (``--parts``):

* ``feat``: the comparison with features and labels (PyG: ``x`` and ``y`` of every sampled node,
  as PyG does; DGL-style: ``x`` of the input nodes, ``y`` of the seeds);
* ``nofeat``: the same without any node attribute (``Data(edge_index, num_nodes)`` / no
  ``features=``): sampling + packaging only;
* ``breakdown``: where a batch's time goes in the producer thread, each stage timed with the
  wall clock (GPU synchronised) where the producer calls it: PyG ``sample_hops`` (hop sampling),
  ``SamplerOutput``, the attribute gathers (``_select``) and the rest of ``_filter`` (``Data``
  copy, stores, ``edge_index`` stack, ``n_id`` / ``e_id``: the packaging); DGL-style
  ``sample_distinct`` (sampling into blocks) and ``_attach`` (the gathers); ``other``: the rest
  of the pass time per batch;
* ``e2e`` (default on a GPU): GraphSAGE training steps through each path, PyG's
  ``torch_geometric.nn.GraphSAGE`` on ``batch.x`` / ``batch.edge_index`` (``pyg``; and
  ``pyg_trim``, trimmed per layer with ``num_sampled_nodes_per_hop`` as PyG recommends) against
  the same model's ``SAGEConv`` layers run on the DGL-style blocks (``blocks``); same
  initialisation, same hidden width; median round of ``--e2e-batches`` steps (bench/e2e.py's
  training loop and step), the epoch time extrapolated to the training split.

Protocol: correctness first (one batch of each loader: ``batch.x == data.x[n_id]``,
``batch.y == data.y[n_id]``, seeds first, every edge a graph edge, at most ``fanout`` edges per
destination per hop; the blocks' features and labels equal the rows of their nodes); one untimed
run of each loader; then ``--runs`` runs of each, interleaved (pyg, dgl_style, pyg, ...), one run =
one pass over ``--batches`` batches, wall clock (GPU synchronised at the end of the run). Ratio per
pair: ``dgl_style time / pyg time`` = pyg batches/s over dgl_style batches/s (> 1: PyG faster);
the median is the result; the issue's target is a PyG wrapping that costs < 10%
(``median >= 0.9``). On a GPU both loaders sample over UVA (graph pinned in place) and gather
``x`` / ``y`` zero-copy.

    PYTHONPATH=. python bench/pyg_loader.py --device cpu --out bench/results/pyg_loader_cpu.json
    PYTHONPATH=. python bench/pyg_loader.py --nodes 20000 --batch-size 256 --batches 3 --runs 2
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
from _common import env_info, free_cuda, is_oom, median, print_table, write_json  # noqa: E402

logger = logging.getLogger("bench.pyg_loader")

PARTS = ("feat", "nofeat", "breakdown", "e2e")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--nodes", type=int, default=1_000_000, help="synthetic graph: nodes")
    p.add_argument("--avg-degree", type=float, default=15.0, help="synthetic graph: mean degree")
    p.add_argument("--feat-dim", type=int, default=128, help="float32 width of x")
    p.add_argument("--classes", type=int, default=16, help="synthetic graph: number of classes (y)")
    p.add_argument("--fanouts", default="15,10,5",
                   help="comma-separated fanouts in DGL's order (input layer first); the PyG "
                        "loader gets them reversed (hop 1 first)")
    p.add_argument("--batch-size", type=int, default=1024, help="seed nodes per batch")
    p.add_argument("--batches", type=int, default=20, help="batches per timed run")
    p.add_argument("--runs", type=int, default=7, help="interleaved timed runs of each loader")
    p.add_argument("--parts", default=None,
                   help=f"comma-separated subset of {','.join(PARTS)}; if not given, "
                        f"feat,nofeat,breakdown (+ e2e on a GPU)")
    p.add_argument("--device", default=None,
                   help="'cuda[:i]' or 'cpu'; if not given, cuda where available, else cpu")
    p.add_argument("--hidden", type=int, default=256, help="e2e: GraphSAGE hidden width")
    p.add_argument("--e2e-warmup", type=int, default=3, help="e2e: untimed training steps")
    p.add_argument("--e2e-batches", type=int, default=10, help="e2e: training steps per round")
    p.add_argument("--e2e-rounds", type=int, default=3, help="e2e: timed rounds (median reported)")
    p.add_argument("--seed", type=int, default=0, help="seed of the graph, loaders and model")
    p.add_argument("--out", default=None, help="JSON result path; if not given, print only")
    args = p.parse_args(argv)
    import torch   # after the parse: --help imports no torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.parts is None:
        args.parts = "feat,nofeat,breakdown" + (",e2e" if torch.device(args.device).type == "cuda"
                                                else "")
    bad = sorted(set(s for s in args.parts.split(",") if s) - set(PARTS))
    if bad:
        p.error(f"--parts: unknown {bad}; choose from {','.join(PARTS)}")
    return args


if __name__ == "__main__":
    parse_args()   # --help and option errors answer here, before the heavy imports below

import torch  # noqa: E402


# ------------------------------------------------------------------------------------ setup
class Setup:
    """The graph, its attributes and the two loaders' arguments, built once."""

    def __init__(self, args) -> None:
        from torch_geometric.data import Data

        from samplers import CSCGraph
        from samplers.datasets import synthetic_graph

        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.fanouts = [int(f) for f in args.fanouts.split(",")]
        self.num_neighbors = list(reversed(self.fanouts))
        t0 = time.perf_counter()
        ds = synthetic_graph(args.nodes, avg_degree=args.avg_degree, num_classes=args.classes,
                             feat_dim=args.feat_dim, seed=args.seed)
        self.ds = ds
        self.edge_index = ds.edge_index()
        # The same CSC the PyG loader builds from data.edge_index (int64 ids, CSC order).
        self.graph = CSCGraph.from_edge_index(self.edge_index, ds.num_nodes)
        self.x, self.y = ds.features, ds.labels
        self.data = Data(x=self.x, y=self.y, edge_index=self.edge_index, num_nodes=ds.num_nodes)
        self.data_nofeat = Data(edge_index=self.edge_index, num_nodes=ds.num_nodes)
        self.ready_s = time.perf_counter() - t0
        n = args.batches * args.batch_size
        if n > ds.train_idx.numel():
            raise SystemExit(f"--batches {args.batches} x --batch-size {args.batch_size} = {n} "
                             f"seeds > {ds.train_idx.numel()} training nodes; raise --nodes")
        self.seeds = ds.train_idx[:n]

    def pyg(self, feats: bool, seeds: Optional[torch.Tensor] = None, **kw):
        from samplers.pyg import NeighborLoader

        kw.setdefault("seed", self.args.seed)
        return NeighborLoader(self.data if feats else self.data_nofeat, self.num_neighbors,
                              input_nodes=self.seeds if seeds is None else seeds,
                              batch_size=self.args.batch_size, device=self.device, **kw)

    def dgl_style(self, feats: bool, seeds: Optional[torch.Tensor] = None, **kw):
        from samplers import DataLoader, NeighborSampler

        kw.setdefault("seed", self.args.seed)
        tables = dict(features=self.x, labels=self.y) if feats else {}
        return DataLoader(self.graph, self.seeds if seeds is None else seeds,
                          NeighborSampler(self.fanouts, seed=self.args.seed),
                          batch_size=self.args.batch_size, device=self.device,
                          use_uva=self.cuda, **tables, **kw)


# ------------------------------------------------------------------------------------ checks
def _first(loader):
    it = iter(loader)
    try:
        return next(it)
    finally:
        it.close()


def check_pyg(s: Setup) -> None:
    """One PyG batch: attributes are the rows of n_id, seeds first, edges are graph edges, at most
    ``fanout`` sampled in-edges per destination at every hop."""
    bs = s.args.batch_size
    seeds = s.seeds[:bs]
    b = _first(s.pyg(True))             # configured as the timed loader is
    n_id = b.n_id.cpu()
    assert b.batch_size == bs and torch.equal(n_id[:bs], seeds), "seeds are not first"
    assert torch.equal(b.x.cpu(), s.x[n_id]), "x differs from data.x[n_id]"
    assert torch.equal(b.y.cpu(), s.y[n_id]), "y differs from data.y[n_id]"
    ei, e_id = b.edge_index.cpu(), b.e_id.cpu()
    assert torch.equal(n_id[ei], s.edge_index[:, e_id]), "an edge is not the graph's edge e_id"
    assert sum(b.num_sampled_nodes) == n_id.numel() and sum(b.num_sampled_edges) == ei.shape[1]
    lo, start = 0, 0
    for hop, (f, ne) in enumerate(zip(s.num_neighbors, b.num_sampled_edges)):
        col = ei[1, start:start + ne]
        hi = lo + b.num_sampled_nodes[hop]
        assert ne == 0 or (int(col.min()) >= lo and int(col.max()) < hi), \
            f"hop {hop + 1} samples around nodes hop {hop} did not add"
        assert ne == 0 or int(torch.bincount(col).max()) <= f, f"hop {hop + 1}: fanout exceeded"
        lo, start = hi, start + ne


def check_dgl_style(s: Setup) -> None:
    from sampler import check_ours

    bs = s.args.batch_size
    inp, out, blocks = _first(s.dgl_style(True))
    assert torch.equal(out.cpu().long(), s.seeds[:bs]), "output nodes are not the seeds"
    check_ours(blocks, inp, out, s.x, s.y, s.fanouts)
    for i, b in enumerate(blocks):
        ei = b.edge_index.cpu()
        src, dst = b.srcdata["_ID"].cpu().long(), b.dstdata["_ID"].cpu().long()
        assert torch.equal(src[:dst.numel()], dst), f"block {i}: dst nodes are not the first srcs"
        assert ei.numel() == 0 or (int(ei[0].max()) < src.numel()
                                   and int(ei[1].max()) < dst.numel()), \
            f"block {i}: edge_index out of range ({b})"
        eid = b.edata.get("_ID")
        if eid is not None:
            assert torch.equal(torch.stack([src[ei[0]], dst[ei[1]]]),
                               s.edge_index[:, eid.cpu().long()]), \
                f"block {i}: an edge is not the graph's edge _ID"


# ------------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Pass:
    """One timed pass of a loader: seconds, and sampled edges / nodes per layer summed."""

    def __init__(self, loader, kind: str, device: torch.device) -> None:
        self.loader, self.kind, self.device = loader, kind, device

    def __call__(self) -> dict:
        edges: List[int] = []
        nodes = batches = 0
        _sync(self.device)
        t0 = time.perf_counter()
        for batch in self.loader:
            if self.kind == "pyg":
                per_layer = batch.num_sampled_edges
                n = batch.n_id.numel()          # rows gathered for x (and y)
            else:
                inp, _, blocks = batch
                per_layer = [b.num_edges() for b in blocks]
                n = inp.numel()                 # rows gathered for x
            if not edges:
                edges = [0] * len(per_layer)
            edges = [a + int(e) for a, e in zip(edges, per_layer)]
            nodes += n
            batches += 1
        _sync(self.device)
        return {"s": time.perf_counter() - t0, "batches": batches, "edges": edges, "nodes": nodes}


def interleave(pyg: Pass, dgl: Pass, runs: int) -> Dict[str, object]:
    pyg(), dgl()   # warm-up: Numba / CUDA kernels compiled, tables pinned, caches filled
    rp, rd = [], []
    for _ in range(runs):
        rp.append(pyg())
        rd.append(dgl())
    ratios = [d["s"] / p["s"] for p, d in zip(rp, rd)]

    def side(rs: List[dict]) -> Dict[str, object]:
        nb = sum(r["batches"] for r in rs)
        per_layer = [sum(r["edges"][i] for r in rs) / nb for i in range(len(rs[0]["edges"]))]
        bps = [r["batches"] / r["s"] for r in rs]
        return {"run_s": [r["s"] for r in rs], "batches_per_run": rs[0]["batches"],
                "batches_per_s": median(bps), "ms_per_batch": 1e3 / median(bps),
                "edges_per_batch": sum(per_layer), "edges_per_batch_per_layer": per_layer,
                "nodes_per_batch": sum(r["nodes"] for r in rs) / nb,
                "medges_per_s": median(bps) * sum(per_layer) / 1e6}

    out = {"pyg": side(rp), "dgl_style": side(rd), "ratios": ratios, "median_ratio": median(ratios)}
    out["edges_per_s_ratio"] = out["pyg"]["medges_per_s"] / out["dgl_style"]["medges_per_s"]
    return out


# ------------------------------------------------------------------------------------ breakdown
class _Timer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ms: Dict[str, float] = {}

    def wrap(self, name: str, fn: Callable, sub: Optional[Callable] = None) -> Callable:
        """``fn`` timed into ``ms[name]`` (and into ``ms[name + "_" + sub(*args)]`` with ``sub``)."""
        def timed(*a, **kw):
            _sync(self.device)
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                _sync(self.device)
                dt = 1e3 * (time.perf_counter() - t0)
                self.ms[name] = self.ms.get(name, 0.0) + dt
                if sub is not None:
                    k = f"{name}_{sub(*a, **kw)}"
                    self.ms[k] = self.ms.get(k, 0.0) + dt
        return timed


def breakdown(s: Setup, rounds: int = 3) -> Dict[str, object]:
    """Per-batch ms of each stage of the producer, loaders as timed above (producer thread).

    Stages are wrapped with a wall-clock timer (GPU synchronised) where the producer calls them:
    PyG ``sample_hops`` (the hop sampling: kernels and relabelling), the rest of ``_sample``
    (``SamplerOutput``), ``_select`` (the attribute gathers) and the rest of ``_filter`` (the
    packaging: ``Data`` copy, stores, ``edge_index`` stack, ``n_id`` / ``e_id``); DGL-style
    ``sample_distinct`` (sampling and blocks) and ``_attach`` (the gathers). ``total``: the pass
    time per batch; ``other``: what no stage covers (batching seeds, the queue, the consumer).
    One untimed pass, then ``rounds`` passes of each (interleaved); medians per batch."""
    import samplers.loading._pyg as spyg  # the module whose sample_hops the loader calls

    loaders, timers = {}, {}
    for kind in ("pyg", "dgl_style"):
        loader = getattr(s, kind)(True)
        t = _Timer(s.device)
        if kind == "pyg":
            loader._sample = t.wrap("sample_call", loader._sample)
            loader._filter = t.wrap("filter", loader._filter)
            # _select(cache_key, store, key, value, index): one attribute; split per key (x, y)
            loader._select = t.wrap("gather", loader._select, sub=lambda *a, **kw: a[2])
        else:
            loader.graph_sampler.sample_distinct = t.wrap("sample",
                                                          loader.graph_sampler.sample_distinct)
            loader._attach = t.wrap("gather", loader._attach)
        loaders[kind], timers[kind] = Pass(loader, kind, s.device), t
    real_hops = spyg.sample_hops
    spyg.sample_hops = timers["pyg"].wrap("sample", real_hops)
    per: Dict[str, List[Dict[str, float]]] = {"pyg": [], "dgl_style": []}
    try:
        for r in range(rounds + 1):
            for kind in ("pyg", "dgl_style"):
                t = timers[kind]
                t.ms.clear()
                out = loaders[kind]()
                if r == 0:
                    continue            # warm-up pass
                n = out["batches"]
                ms = {k: v / n for k, v in t.ms.items()}
                row = {"total_ms": 1e3 * out["s"] / n, "sample_ms": ms.get("sample", 0.0),
                       "gather_ms": ms.get("gather", 0.0)}
                if kind == "pyg":
                    row.update({f"{k}_ms": v for k, v in ms.items() if k.startswith("gather_")})
                    row["sampler_output_ms"] = ms.get("sample_call", 0.0) - row["sample_ms"]
                    row["package_ms"] = ms.get("filter", 0.0) - row["gather_ms"]
                    row["other_ms"] = (row["total_ms"] - ms.get("sample_call", 0.0)
                                       - ms.get("filter", 0.0))
                else:
                    row["package_ms"] = 0.0
                    row["other_ms"] = row["total_ms"] - row["sample_ms"] - row["gather_ms"]
                per[kind].append(row)
    finally:
        spyg.sample_hops = real_hops
    res: Dict[str, object] = {}
    for kind, rows in per.items():
        res[kind] = {k: median([row[k] for row in rows]) for k in rows[0]}
        res[kind]["rounds"] = rows
    p = res["pyg"]
    res["pyg_package_share"] = p["package_ms"] / p["total_ms"]
    res["pyg_wrapping_ms"] = p["package_ms"] + p["sampler_output_ms"]
    gc.collect()
    return res


# ------------------------------------------------------------------------------------ e2e
class _Pipe:
    """What bench/e2e.py's ``steps`` drives: ``loader()`` and ``unpack(batch)``; one loader built
    once (shuffled, reseeded per epoch by the loader itself)."""

    def __init__(self, loader, unpack: Callable) -> None:
        self._loader, self.unpack = loader, unpack

    def loader(self, seeds, shuffle, seed=None):
        return self._loader


class _PyGModel(torch.nn.Module):
    """``torch_geometric.nn.GraphSAGE`` on a PyG batch, as ``_util.train_step`` calls a model:
    ``model(batch, x)`` -> logits of the seeds."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int, trim: bool) -> None:
        super().__init__()
        from torch_geometric.nn import GraphSAGE

        self.sage = GraphSAGE(in_dim, hidden, num_layers, out_dim, dropout=0.5)
        self.trim = trim

    def forward(self, batch, x: torch.Tensor) -> torch.Tensor:
        if self.trim:
            out = self.sage(x, batch.edge_index,
                            num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                            num_sampled_edges_per_hop=batch.num_sampled_edges)
        else:
            out = self.sage(x, batch.edge_index)
        return out[:batch.batch_size]


class _BlocksModel(torch.nn.Module):
    """The same ``torch_geometric.nn.GraphSAGE`` (its ``convs``, activation and dropout) run over
    DGL-style blocks: layer ``i`` maps block ``i``'s source rows to its destination rows (the first
    ``num_dst_nodes()`` sources), as ``model(blocks, x)``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        from torch_geometric.nn import GraphSAGE

        self.sage = GraphSAGE(in_dim, hidden, num_layers, out_dim, dropout=0.5)

    def forward(self, blocks, x: torch.Tensor) -> torch.Tensor:
        h, last = x, len(blocks) - 1
        for i, (conv, block) in enumerate(zip(self.sage.convs, blocks)):
            n_src, n_dst = block.num_src_nodes(), block.num_dst_nodes()
            h = conv((h, h[:n_dst]), block.edge_index, size=(n_src, n_dst))
            if i < last:
                h = self.sage.dropout(self.sage.act(h))
        return h


def e2e(s: Setup) -> Dict[str, object]:
    from e2e import steps          # bench/e2e.py's training loop (examples/_util.train_step)

    a, ds = s.args, s.ds
    L = len(s.fanouts)
    rows = {}
    for name in ("pyg", "pyg_trim", "blocks"):
        row: Dict[str, object] = {}
        gen = None
        try:
            torch.manual_seed(a.seed)
            if name == "blocks":
                loader = s.dgl_style(True, ds.train_idx, shuffle=True)
                pipe = _Pipe(loader, lambda b: (b[2], b[2][0].srcdata["feat"],
                                                b[2][-1].dstdata["label"]))
                model = _BlocksModel(ds.feat_dim, a.hidden, ds.num_classes, L)
            else:
                loader = s.pyg(True, ds.train_idx, shuffle=True)
                pipe = _Pipe(loader, lambda b: (b, b.x, b.y[:b.batch_size]))
                model = _PyGModel(ds.feat_dim, a.hidden, ds.num_classes, L, name == "pyg_trim")
            model = model.to(s.device)
            opt = torch.optim.Adam(model.parameters(), lr=3e-3)
            gen = steps(model, opt, pipe, ds.train_idx, a.seed)
            for _ in range(a.e2e_warmup):
                next(gen)
            rounds = []
            for _ in range(a.e2e_rounds):
                _sync(s.device)
                t0, n, losses = time.perf_counter(), 0, []
                for _ in range(a.e2e_batches):
                    k, loss = next(gen)
                    n += k
                    losses.append(loss)
                _sync(s.device)
                rounds.append((time.perf_counter() - t0, n, float(torch.stack(losses).mean())))
            dt, n = median([r[0] for r in rounds]), median([r[1] for r in rounds])
            row.update(status="ok", seeds_per_s=n / dt, ms_per_step=1e3 * dt / a.e2e_batches,
                       epoch_s_est=ds.train_idx.numel() * dt / n,
                       round_s=[r[0] for r in rounds], mean_loss=[r[2] for r in rounds])
        except Exception as exc:  # recorded, not crashed on (OOM, a PyG layer that refuses, ...)
            row.update(status="oom" if is_oom(exc) else "error",
                       error=f"{type(exc).__name__}: {exc}")
            logger.warning("e2e %s failed: %s", name, row["error"])
            free_cuda()
        finally:
            if gen is not None:
                gen.close()
        rows[name] = row
        gc.collect()
    ratios = {}
    for x, y in (("pyg", "blocks"), ("pyg_trim", "blocks"), ("pyg_trim", "pyg")):
        if rows[x].get("status") == "ok" and rows[y].get("status") == "ok":
            ratios[f"{x}/{y} (seeds/s)"] = rows[x]["seeds_per_s"] / rows[y]["seeds_per_s"]
    return {"rows": rows, "ratios": ratios, "train_seeds": int(ds.train_idx.numel())}


# ------------------------------------------------------------------------------------ main
def _numba_threads() -> Dict[str, object]:
    try:
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:            # no parallel region has run yet
            layer = None
        return {"num_threads": numba.get_num_threads(), "layer": layer}
    except ImportError:
        return {}


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available")
    parts = [x for x in args.parts.split(",") if x]
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    env = env_info("cuda" if device.type == "cuda" else "cpu")
    s = Setup(args)
    logger.info("graph: %d nodes, %d edges, x %s, ready in %.1f s; fanouts %s (DGL order) = "
                "num_neighbors %s (PyG order), batch %d", s.ds.num_nodes, s.ds.num_edges,
                tuple(s.x.shape), s.ready_s, s.fanouts, s.num_neighbors, args.batch_size)
    check_pyg(s)
    check_dgl_style(s)
    logger.info("correctness: pyg and dgl_style batches check out")

    payload: Dict[str, object] = {
        "benchmark": "pyg_loader", "device": device.type, "env": env, "params": vars(args),
        "graph": {"name": s.ds.name, "num_nodes": s.ds.num_nodes, "num_edges": s.ds.num_edges,
                  "feat_dim": s.ds.feat_dim, "train": int(s.ds.train_idx.numel()),
                  "ready_s": s.ready_s},
        "fanouts": {"dgl_style": s.fanouts, "pyg_num_neighbors": s.num_neighbors},
        "threads": {"torch": torch.get_num_threads(), "numba": _numba_threads(),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
        "check": "ok"}

    def save(partial: bool) -> None:
        payload["partial"] = partial
        payload["loadavg_start"] = [round(v, 2) for v in load_start]
        payload["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        payload["wall_s"] = time.perf_counter() - t_start
        if args.out:
            write_json(args.out, payload)

    table = []
    for part in ("feat", "nofeat"):
        if part not in parts:
            continue
        logger.info("== %s: %d interleaved runs of %d batches each", part, args.runs, args.batches)
        feats = part == "feat"
        r = interleave(Pass(s.pyg(feats), "pyg", device),
                       Pass(s.dgl_style(feats), "dgl_style", device), args.runs)
        payload[part] = r
        for k in ("pyg", "dgl_style"):
            table.append([part, k, r[k]["batches_per_s"], r[k]["ms_per_batch"],
                          r[k]["edges_per_batch"] / 1e3, r[k]["nodes_per_batch"] / 1e3,
                          r[k]["medges_per_s"]])
        logger.info("%s: pyg/dgl_style batches/s per pair %s, median %.3f", part,
                    [round(x, 3) for x in r["ratios"]], r["median_ratio"])
        save(True)
        gc.collect()
    if table:
        print_table(["part", "loader", "batches/s", "ms/batch", "k edges/batch", "k nodes/batch",
                     "M edges/s"], table)
    if "breakdown" in parts:
        logger.info("== breakdown: producer stages per batch")
        b = breakdown(s)
        payload["breakdown"] = b
        print_table(["loader", "total ms", "sample ms", "SamplerOutput ms", "gather ms",
                     "package ms", "other ms"],
                    [[k, b[k]["total_ms"], b[k]["sample_ms"], b[k].get("sampler_output_ms"),
                      b[k]["gather_ms"], b[k]["package_ms"], b[k]["other_ms"]]
                     for k in ("pyg", "dgl_style")])
        save(True)
    if "e2e" in parts:
        logger.info("== e2e GraphSAGE")
        e = e2e(s)
        payload["e2e"] = e
        print_table(["path", "seeds/s", "ms/step", "epoch s (est.)", "status"],
                    [[k, r.get("seeds_per_s"), r.get("ms_per_step"), r.get("epoch_s_est"),
                      r["status"] if r["status"] == "ok" else r["error"][:60]]
                     for k, r in e["rows"].items()])
        save(True)

    summary, targets = [], {}
    for part in ("feat", "nofeat"):
        if part in payload:
            r = payload[part]
            summary.append(f"{part}: pyg/dgl_style batches/s {r['median_ratio']:.2f}x (per pair "
                           f"{', '.join(f'{x:.2f}' for x in r['ratios'])}); edges/batch "
                           f"{r['pyg']['edges_per_batch']:,.0f} vs "
                           f"{r['dgl_style']['edges_per_batch']:,.0f}, nodes/batch "
                           f"{r['pyg']['nodes_per_batch']:,.0f} vs "
                           f"{r['dgl_style']['nodes_per_batch']:,.0f}")
    if "feat" in payload:
        targets["PyG wrapping costs < 10% (median pyg/dgl_style batches/s >= 0.9)"] = \
            payload["feat"]["median_ratio"] >= 0.9
    if "breakdown" in payload:
        b = payload["breakdown"]
        split = ", ".join(f"{k[7:-3]} {v:.1f}" for k, v in b["pyg"].items()
                          if k.startswith("gather_") and k != "gather_ms")
        summary.append(f"pyg per batch: sampling {b['pyg']['sample_ms']:.1f} ms, gathers "
                       f"{b['pyg']['gather_ms']:.1f} ms ({split}), packaging (SamplerOutput + _filter "
                       f"minus gathers) {b['pyg_wrapping_ms']:.2f} ms of "
                       f"{b['pyg']['total_ms']:.1f} ms; dgl_style: sampling "
                       f"{b['dgl_style']['sample_ms']:.1f} ms, gathers "
                       f"{b['dgl_style']['gather_ms']:.1f} ms of "
                       f"{b['dgl_style']['total_ms']:.1f} ms")
    if "e2e" in payload:
        summary += [f"e2e {k}: {v:.2f}x" for k, v in payload["e2e"]["ratios"].items()]
    payload["targets"] = targets
    payload["summary"] = "; ".join(summary)
    for line in summary:
        print(line, flush=True)
    for k, v in targets.items():
        print(f"target {k}: {'met' if v else 'NOT met'}", flush=True)
    save(False)
    if args.out:
        logger.info("wrote %s (%.0f s)", args.out, payload["wall_s"])
    failed = [f"{k}: {r['error']}" for k, r in payload.get("e2e", {}).get("rows", {}).items()
              if r.get("status") == "error"]
    if failed:   # recorded in the JSON above; out-of-memory rows are not failures
        raise SystemExit("pyg_loader: e2e failed: " + "; ".join(failed))
    return payload


if __name__ == "__main__":
    main()
