"""Every write route into a read-only table is refused before it writes (issue 19, item 1): the
tensor passed by keyword, functionals with ``inplace=True``, ``out=`` tuples, views, ``.data``,
``detach()``, ``numpy()``. Without this they kill the process (``PROT_READ`` pages of
``np.load(mmap_mode="r")``) or change an immutable ``bytes`` object, so each kind runs in a child
process and a crash fails the test instead of the run. Cached tables: tests/fake_cuda (scenario
``cache_every_write_route_refreshes``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import unified_tensor as ut
from testing import REPO_ROOT

ROUTES = textwrap.dedent('''
    import json, sys
    import numpy as np, torch, torch.nn.functional as F
    import unified_tensor as ut

    kind, path = sys.argv[1], sys.argv[2]
    np.save(path, np.arange(12, dtype=np.float32).reshape(4, 3))
    keep = []

    def make():
        if kind == "memmap":
            return ut.unified(np.load(path, mmap_mode="r"))
        if kind == "memmap-slice":
            return ut.unified(np.load(path, mmap_mode="r")[1:3])
        b = np.arange(12, dtype=np.float32).tobytes()
        keep.append((b, bytes(b)))
        return ut.unified(np.frombuffer(b, np.float32).reshape(4, 3))

    routes = {
        "init.normal_(t)": lambda t: torch.nn.init.normal_(t),
        "init.normal_(tensor=t)": lambda t: torch.nn.init.normal_(tensor=t),
        "init.uniform_": lambda t: torch.nn.init.uniform_(t),
        "init.constant_(t, 2.5)": lambda t: torch.nn.init.constant_(t, 2.5),
        "init.kaiming_uniform_": lambda t: torch.nn.init.kaiming_uniform_(t),
        "F.relu(inplace)": lambda t: F.relu(t, inplace=True),
        "F.dropout(inplace)": lambda t: F.dropout(t, 0.5, training=True, inplace=True),
        "F.leaky_relu(inplace)": lambda t: F.leaky_relu(t, inplace=True),
        "F.hardtanh(inplace)": lambda t: F.hardtanh(t, inplace=True),
        "sort(out=(t, idx))": lambda t: torch.sort(torch.randn(t.shape), dim=0,
                                                   out=(t, torch.empty(t.shape, dtype=torch.long))),
        "max(out=(t, idx))": lambda t: torch.max(torch.randn((5,) + tuple(t.shape)), dim=0,
                                                 out=(t, torch.empty(t.shape, dtype=torch.long))),
        "t[0:2].mul_(2)": lambda t: t[0:2].mul_(2),
        "t[0].fill_(-1)": lambda t: t[0].fill_(-1),
        "t[0:2][1].add_(1)": lambda t: t[0:2][1].add_(1),
        "t.T.zero_()": lambda t: t.T.zero_(),
        "t.detach().add_(1)": lambda t: t.detach().add_(1),
        "t.data.add_(1)": lambda t: t.data.add_(1),
        "t[0] = 5": lambda t: t.__setitem__(0, 5.0),
        "t += 1": lambda t: t.__iadd__(1),
        "t.unbind(0)[1].zero_()": lambda t: t.unbind(0)[1].zero_(),
        "t.numpy()[0] = 3": lambda t: t.numpy().__setitem__(0, 3.0),
        "t.copy_(x)": lambda t: t.copy_(torch.zeros(t.shape)),
        "torch.add(out=t)": lambda t: torch.add(torch.ones(t.shape), 1, out=t),
        "torch.add(out=t[0])": lambda t: torch.add(torch.ones(3), 1, out=t[0]),
        "t.view(-1)[3].neg_()": lambda t: t.view(-1)[3].neg_(),
    }
    report = {}
    for name, fn in routes.items():
        t = make()
        before = t._ut_plain.clone()
        try:
            fn(t)
            outcome = "written"
        except (RuntimeError, ValueError) as exc:
            outcome = "refused" if "read-only" in str(exc) else "error: " + str(exc)[:200]
        report[name] = [outcome, bool(torch.equal(t._ut_plain, before))]
    report["bytes intact"] = all(b == copy for b, copy in keep)
    report["file intact"] = np.load(path).tolist() == np.arange(12, dtype=np.float32).reshape(4, 3).tolist()
    print(json.dumps(report))
''')


@pytest.mark.parametrize("kind", ["memmap", "memmap-slice", "frombuffer-bytes"])
def test_every_write_route_into_read_only_memory_is_refused(kind, tmp_path):
    script = tmp_path / "routes.py"
    script.write_text(ROUTES)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    res = subprocess.run([sys.executable, str(script), kind, str(tmp_path / "ro.npy")], env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, f"child exited {res.returncode} (a signal is negative):\n{res.stderr[-3000:]}"
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report.pop("bytes intact") and report.pop("file intact")
    bad = {k: v for k, v in report.items() if v != ["refused", True]}
    assert not bad, bad


def test_reads_and_views_still_behave_like_tensors(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(4, 3))
    t = ut.unified(np.load(path, mmap_mode="r"))
    ref = torch.arange(12, dtype=torch.float32).view(4, 3)
    v = t[1:3]
    assert repr(v) == repr(ref[1:3])
    assert torch.equal(v, ref[1:3]) and v.tolist() == ref[1:3].tolist()
    for r in (v * 2, v.sum(0), v.clone(), torch.cat([t[0:1], v]), t.mean(0), v[torch.tensor([1])]):
        assert type(r) is torch.Tensor                         # results never carry the subclass
    assert type(t[torch.tensor([2, 0])]) is torch.Tensor      # the gather path is unchanged
    assert torch.equal(t[torch.tensor([2, 0])], ref[[2, 0]])
    c = v.clone()
    c.mul_(2)                                                  # a copy is the user's to write
    assert torch.equal(c, ref[1:3] * 2)
    assert not t.numpy().flags.writeable
    out = torch.empty(2, 3)
    torch.mul(v, 2, out=out)                                   # reading a view into another tensor
    assert torch.equal(out, ref[1:3] * 2)


def test_views_of_a_writable_uncached_table_stay_plain_and_write_through():
    x = torch.zeros(4, 3)
    t = ut.unified(x)
    v = t[0:2]
    assert type(v) is torch.Tensor
    v.fill_(1.0)
    torch.nn.init.constant_(tensor=t[3], val=2.0)
    assert x[:2].eq(1).all() and x[3].eq(2).all()
    torch.nn.functional.relu(t, inplace=True)
    assert ut.is_unified(t) and t.data_ptr() == x.data_ptr()
