"""Block: accessors, edge_index layout, moves, DGL conversion, validation."""
from __future__ import annotations

import pytest
import torch

from samplers import Block
from testing import IDTYPES, has_dgl


def make_block(idtype=torch.int64):
    src = torch.tensor([10, 20, 30, 40], dtype=idtype)
    dst = torch.tensor([10, 20], dtype=idtype)
    return Block(src, dst, torch.tensor([2, 3, 1, 0]), torch.tensor([0, 0, 1, 1]),
                 edge_ids=torch.tensor([7, 8, 9, 5]))


@pytest.mark.parametrize("idtype", IDTYPES)
def test_accessors(idtype):
    b = make_block(idtype)
    assert (b.num_src_nodes(), b.num_dst_nodes(), b.num_edges()) == (4, 2, 4)
    assert (b.number_of_src_nodes(), b.number_of_dst_nodes(), b.number_of_edges()) == (4, 2, 4)
    u, v = b.edges()
    assert u.dtype == v.dtype == torch.int64
    assert u.tolist() == [2, 3, 1, 0] and v.tolist() == [0, 0, 1, 1]
    assert b.edge_index.shape == (2, 4) and b.edge_index.dtype == torch.int64
    assert torch.equal(b.edge_index[0], u) and torch.equal(b.edge_index[1], v)
    u2, v2, e = b.edges(form="all")
    assert e.tolist() == [0, 1, 2, 3] and torch.equal(b.edges(form="eid"), e)
    assert b.srcdata["_ID"].dtype == idtype and b.idtype == idtype
    assert b.dstdata["_ID"].tolist() == [10, 20] and b.edata["_ID"].tolist() == [7, 8, 9, 5]
    assert b.in_degrees().tolist() == [2, 2]
    assert b.device == torch.device("cpu") and b.is_block
    assert repr(b) == "Block(num_src_nodes=4, num_dst_nodes=2, num_edges=4, device=cpu)"
    with pytest.raises(ValueError, match=r"form must be 'uv', 'all' or 'eid', got 'csr'"):
        b.edges(form="csr")


def test_to_moves_everything():
    b = make_block()
    b.srcdata["feat"] = torch.randn(4, 3)
    b.dstdata["label"] = torch.tensor([1, 0])
    c = b.to("cpu", non_blocking=False)
    assert c is not b and c.device == torch.device("cpu")
    assert set(c.srcdata) == {"_ID", "feat"} and set(c.dstdata) == {"_ID", "label"}
    assert torch.equal(c.edge_index, b.edge_index)
    c.srcdata["extra"] = torch.zeros(4)
    assert "extra" not in b.srcdata  # new dicts


def test_validation():
    s, d = torch.tensor([1, 2, 3]), torch.tensor([1])
    with pytest.raises(ValueError, match=r"edge_src and edge_dst must have the same length, got 2 and 1"):
        Block(s, d, torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(TypeError, match=r"edge_src must have dtype torch.int32 or torch.int64, got torch.float32"):
        Block(s, d, torch.tensor([0.0]), torch.tensor([0]))
    with pytest.raises(TypeError, match=r"src_nodes must be a torch.Tensor, got list"):
        Block([1, 2], d, torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"got 3 dst nodes > 1 src nodes"):
        Block(d, s, torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"edge_ids must have one entry per edge \(1\), got 2"):
        Block(s, d, torch.tensor([0]), torch.tensor([0]), edge_ids=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"dst_nodes must be 1-D"):
        Block(s, d[None], torch.tensor([0]), torch.tensor([0]))


@pytest.mark.skipif(has_dgl(), reason="DGL is installed")
def test_to_dgl_without_dgl():
    with pytest.raises(ImportError, match=r"Block.to_dgl\(\) needs DGL"):
        make_block().to_dgl()


@pytest.mark.dgl
@pytest.mark.parametrize("idtype", IDTYPES)
def test_to_dgl(idtype):
    import dgl

    b = make_block(idtype)
    b.srcdata["feat"] = torch.randn(4, 3)
    d = b.to_dgl()
    assert d.is_block and d.idtype == idtype
    assert (d.num_src_nodes(), d.num_dst_nodes(), d.num_edges()) == (4, 2, 4)
    assert torch.equal(d.srcdata[dgl.NID], b.srcdata["_ID"])
    assert torch.equal(d.dstdata[dgl.NID], b.dstdata["_ID"])
    assert torch.equal(d.edata[dgl.EID], b.edata["_ID"])
    assert torch.equal(d.srcdata["feat"], b.srcdata["feat"])
    u, v = d.edges()
    assert u.tolist() == [2, 3, 1, 0] and v.tolist() == [0, 0, 1, 1]
    # A DGL SAGEConv runs on it.
    conv = dgl.nn.SAGEConv(3, 2, "mean")
    assert conv(d, (d.srcdata["feat"], d.srcdata["feat"][:2])).shape == (2, 2)


@pytest.mark.gpu
def test_block_to_cuda():
    b = make_block().to("cuda", non_blocking=True)
    assert b.device.type == "cuda" and b.srcdata["_ID"].is_cuda and b.edata["_ID"].is_cuda
