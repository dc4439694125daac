"""samplers.DataLoader over a DistDGL DistGraph (samplers/loading/_distdgl.py).

A graph partitioned in 2 with ``dgl.distributed.partition_graph``; 2 simulated machines on
localhost, each with one KVStore server and one trainer started as DGL's launch tool starts them
(bench/_distdgl_cluster.py: a private /dev/shm per machine, so the two servers' shared memory does
not collide). Checked in the trainers: every seed exactly once, features and labels equal to the
original table's rows, the same batches and rows as DGL's own DistNodeDataLoader + DistTensor
reads, the same accuracy as DGL's loader, local rows read from the KVStore's shared memory and
only remote rows over RPC, the hotness cache cutting RPC rows; and a server or trainer that dies
ends the job with an error instead of a hang.
"""
from __future__ import annotations

import time

import pytest
import torch

pytestmark = pytest.mark.dgl

from bench import _distdgl_cluster as cluster  # the repository root is on sys.path (conftest)

N, CLASSES, DIM = 3000, 4, 8
FANOUTS = [5, 5]
BATCH = 128


def _synthetic(seed: int = 0):
    """Homophilous graph: 8 in-edges per node, 80% from its own class; features are the class
    one-hot plus noise, so both the features and the neighbourhood carry the label."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (N,), generator=g)
    dst = torch.arange(N).repeat_interleave(8)
    src = torch.randint(0, N, (dst.numel(),), generator=g)
    same = torch.rand(dst.numel(), generator=g) < 0.8
    by_class = [torch.nonzero(y == c).squeeze(1) for c in range(CLASSES)]
    for c in range(CLASSES):
        sel = same & (y[dst] == c)
        pool = by_class[c]
        src[sel] = pool[torch.randint(0, pool.numel(), (int(sel.sum()),), generator=g)]
    x = torch.nn.functional.one_hot(y, DIM).float() * 1.0 + torch.randn(N, DIM, generator=g) * 1.2
    train = torch.rand(N, generator=g) < 0.6
    return src, dst, x, y, train


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    ok, why = cluster.can_simulate()
    if not ok:
        pytest.skip(why)
    import dgl

    src, dst, x, y, train = _synthetic()
    g = dgl.graph((src, dst), num_nodes=N)
    g.ndata["feat"] = x
    g.ndata["label"] = y
    g.ndata["train_mask"] = train
    g.ndata["val_mask"] = ~train
    cfg, orig_nid = cluster.partition(g, str(tmp_path_factory.mktemp("parts")))
    return cfg, orig_nid, x, y


# --- trainer functions (run in the simulated machines' trainer processes) ---------------------
def _model():
    import dgl.nn as dglnn

    class SAGE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = dglnn.SAGEConv(DIM, 16, "mean")
            self.l2 = dglnn.SAGEConv(16, CLASSES, "mean")

        def forward(self, blocks, h):
            h = torch.relu(self.l1(blocks[0], h))
            return self.l2(blocks[1], h)

    return SAGE()


def _train_eval(g, loader_of, train_nid, val_nid, fetch):
    """Train 3 epochs and return validation accuracy. ``fetch(g, blocks, input_nodes,
    output_nodes)`` -> (x, y)."""
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(3):
        for inp, out, blocks in loader_of(train_nid, True):
            x, y = fetch(g, blocks, inp, out)
            loss = torch.nn.functional.cross_entropy(model(blocks, x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    correct = total = 0
    with torch.no_grad():
        for inp, out, blocks in loader_of(val_nid, False):
            x, y = fetch(g, blocks, inp, out)
            correct += int((model(blocks, x).argmax(1) == y).sum())
            total += y.numel()
    return correct / total


def _checks(m, g, orig_nid, x_orig, y_orig):
    import dgl
    import samplers
    from samplers.loading._distdgl import DistNodeDataLoader

    res = {}
    gpb = g.get_partition_book()
    train_nid = dgl.distributed.node_split(g.ndata["train_mask"], gpb, force_even=True)
    val_nid = dgl.distributed.node_split(g.ndata["val_mask"], gpb, force_even=True)
    sampler = dgl.dataloading.NeighborSampler(FANOUTS)

    # 1. exactly once, rows equal the original table's, local rows from shared memory
    loader = samplers.DataLoader(g, train_nid, sampler, batch_size=BATCH, shuffle=True,
                                 features="feat", labels="label")
    res["type"] = type(loader).__name__
    res["len"] = (len(loader), -(-train_nid.numel() // BATCH))
    local = g.ndata["feat"].local_partition
    res["zero_copy"] = loader.readers["feat"].local_data_ptr == local.data_ptr()
    own = gpb.partid2nids(gpb.partid)
    lo, hi = int(own[0]), int(own[-1]) + 1
    seen, bad_x, bad_y, batches, n_local, n_remote = [], 0, 0, 0, 0, 0
    for inp, out, blocks in loader:
        is_local = (inp >= lo) & (inp < hi)
        n_local += int(is_local.sum())
        n_remote += int((~is_local).sum())
        assert isinstance(blocks[0], dgl.DGLGraph)
        seen.append(out)
        bad_x += int((blocks[0].srcdata["feat"] != x_orig[orig_nid[inp]]).any(1).sum())
        bad_y += int((blocks[-1].dstdata["label"] != y_orig[orig_nid[out]]).sum())
        batches += 1
    res["seeds"] = torch.cat(seen)
    res["train_nid"] = train_nid
    res["bad_x"], res["bad_y"], res["batches"] = bad_x, bad_y, batches
    res["stats"] = dict(loader.readers["feat"].stats)
    res["expected_split"] = (n_local, n_remote)

    # 2. the same batches and rows as DGL's DistNodeDataLoader + DistTensor reads
    torch.manual_seed(123)
    ours = [(inp, out, b[0].srcdata["feat"]) for inp, out, b in
            samplers.DataLoader(g, train_nid, sampler, batch_size=BATCH, shuffle=True,
                                features="feat")]
    torch.manual_seed(123)
    theirs = [(inp, out, g.ndata["feat"][inp]) for inp, out, _ in
              dgl.dataloading.DistNodeDataLoader(g, train_nid, sampler, batch_size=BATCH,
                                                 shuffle=True)]
    res["same_seed_order"] = len(ours) == len(theirs) and all(
        torch.equal(a[1], b[1]) for a, b in zip(ours, theirs))
    res["rows_equal_dgl"] = all(torch.equal(a[2], g.ndata["feat"][a[0]]) for a in ours)

    # 3. hotness cache: hot remote rows served from the cache, RPC rows cut, rows unchanged
    cached = samplers.DataLoader(g, train_nid, sampler, batch_size=BATCH, shuffle=True,
                                 features="feat", cache_rows=0.1)
    reader = cached.readers["feat"]
    cache_ok = True
    for inp, _, blocks in cached:
        cache_ok &= torch.equal(blocks[0].srcdata["feat"], x_orig[orig_nid[inp]])
    res["cache"] = dict(reader.stats, size=reader.cache_size, ok=cache_ok,
                        fill=reader.cache_fill_rpc_bytes)

    # 4. the same accuracy as DGL's own distributed loader on the same partitions
    def dgl_loader(nids, shuffle):
        return dgl.dataloading.DistNodeDataLoader(g, nids, sampler, batch_size=BATCH,
                                                  shuffle=shuffle)

    def dgl_fetch(g, blocks, inp, out):
        return g.ndata["feat"][inp], g.ndata["label"][out]

    def our_loader(nids, shuffle):
        return samplers.DataLoader(g, nids, sampler, batch_size=BATCH, shuffle=shuffle,
                                   features="feat", labels="label", cache_rows=0.1)

    def our_fetch(g, blocks, inp, out):
        return blocks[0].srcdata["feat"], blocks[-1].dstdata["label"]

    res["acc_dgl"] = _train_eval(g, dgl_loader, train_nid, val_nid, dgl_fetch)
    res["acc_ours"] = _train_eval(g, our_loader, train_nid, val_nid, our_fetch)

    # 5. bad input: clear exceptions
    errors = {}
    for name, kwargs, exc in [
            ("float_seeds", dict(indices=train_nid.float()), TypeError),
            ("out_of_range", dict(indices=torch.tensor([g.num_nodes()])), IndexError),
            ("unknown_feature", dict(features="nope"), KeyError),
            ("use_ddp", dict(use_ddp=True), ValueError),
            ("num_workers", dict(num_workers=2), ValueError),
            ("cache_share", dict(features="feat", cache_rows=1.5), ValueError),
            ("bad_kwarg", dict(collate_fn=len), TypeError)]:
        args = dict(indices=train_nid, batch_size=BATCH)
        args.update(kwargs)
        try:
            DistNodeDataLoader(g, args.pop("indices"), sampler, **args)
            errors[name] = "no error"
        except exc as e:
            errors[name] = "ok" if str(e) else "empty message"
    res["errors"] = errors
    return res


def test_distdgl_two_machines(parts):
    cfg, orig_nid, x, y = parts
    t0 = time.monotonic()
    results = cluster.run(cfg, _checks, (orig_nid, x, y), timeout=600)
    elapsed = time.monotonic() - t0
    all_seeds = []
    for m, r in enumerate(results):
        assert r["type"] == "DistNodeDataLoader"
        assert r["len"][0] == r["len"][1] == r["batches"]
        assert r["zero_copy"]
        assert r["bad_x"] == 0 and r["bad_y"] == 0
        seeds = r["seeds"]
        assert torch.equal(torch.sort(seeds).values, torch.sort(r["train_nid"]).values)
        all_seeds.append(seeds)
        st = r["stats"]
        # this partition's rows came from shared memory, only the others over RPC
        assert (st["rows_local"], st["rows_rpc"]) == r["expected_split"]
        assert st["rows_local"] > 0 and st["rows_rpc"] > 0 and st["rows_cached"] == 0
        assert st["rpc_bytes"] == st["rows_rpc"] * DIM * 4
        assert r["same_seed_order"] and r["rows_equal_dgl"]
        c = r["cache"]
        assert c["ok"] and c["size"] == int(0.1 * N) and c["fill"] > 0
        assert c["rows_cached"] > 0 and c["rows_rpc"] < st["rows_rpc"]
        assert r["errors"] == {k: "ok" for k in r["errors"]}, r["errors"]
        assert r["acc_dgl"] > 0.6, r
        assert abs(r["acc_ours"] - r["acc_dgl"]) <= 0.05, (r["acc_ours"], r["acc_dgl"])
    # every training seed exactly once over both trainers
    cat = torch.cat(all_seeds)
    assert cat.unique().numel() == cat.numel()
    print(f"two-machine DistDGL job: {elapsed:.1f} s")


def _kill_server_after_one_batch(m, g):
    import dgl
    import samplers

    nid = dgl.distributed.node_split(g.ndata["train_mask"], g.get_partition_book())
    loader = samplers.DataLoader(g, nid, dgl.dataloading.NeighborSampler(FANOUTS),
                                 batch_size=32, features="feat")
    for i, _ in enumerate(loader):
        if m == 1 and i == 0:
            cluster.kill_local_server()
        time.sleep(0.2)
    for _ in range(1000):              # keep the job alive: only the launcher may end it
        time.sleep(0.5)


def _trainer_dies(m, g):
    import dgl
    import samplers

    nid = dgl.distributed.node_split(g.ndata["train_mask"], g.get_partition_book())
    loader = samplers.DataLoader(g, nid, dgl.dataloading.NeighborSampler(FANOUTS),
                                 batch_size=32, features="feat")
    for i, _ in enumerate(loader):
        if m == 1 and i == 1:
            raise RuntimeError("trainer 1 crashed on purpose")
    for _ in range(1000):
        time.sleep(0.5)


@pytest.mark.parametrize("fn,who", [(_kill_server_after_one_batch, "server"),
                                    (_trainer_dies, "trainer")])
def test_distdgl_failure_ends_job(parts, fn, who):
    cfg = parts[0]
    t0 = time.monotonic()
    with pytest.raises(cluster.ClusterError, match="exited with code") as err:
        cluster.run(cfg, fn, (), timeout=400)
    print(err.value)
    # ended by the failure, not by the timeout
    assert time.monotonic() - t0 < 390


def test_is_dist_graph_without_dgl_objects():
    from samplers.loading._distdgl import is_dist_graph
    import samplers

    assert not is_dist_graph(object())
    g = samplers.CSCGraph.from_edge_index(torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
    assert not is_dist_graph(g)
    assert type(samplers.DataLoader(g, torch.tensor([0, 1]), samplers.NeighborSampler([1]),
                                    batch_size=1)).__name__ == "DataLoader"
