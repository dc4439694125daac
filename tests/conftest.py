"""Shared pytest set-up: markers `gpu`, `dgl`, `slow` and the skips that go with them."""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from testing import has_gpu, has_dgl  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU, CuPy and the CUDA path enabled")
    skip_dgl = pytest.mark.skip(reason="needs DGL (run in the dgl environment: make test-dgl)")
    skip_slow = pytest.mark.skip(reason="slow; pass --runslow")
    gpu, dgl = has_gpu(), has_dgl()
    for item in items:
        if "gpu" in item.keywords and not gpu:
            item.add_marker(skip_gpu)
        if "dgl" in item.keywords and not dgl:
            item.add_marker(skip_dgl)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
