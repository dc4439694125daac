"""The layout of ``samplers/`` (issue 16): one subpackage per concern, imports pointing only down
``graph <- sampling <- loading`` (``datasets`` beside them, on ``graph`` only), and no import
cycle between files, lazy (in-function) imports included. Read from the source with ``ast``, so a
violation fails here, not at a user's import."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "samplers"

# Which subpackages each subpackage may import (besides itself); the top-level modules
# (samplers/__init__.py, samplers/pyg.py) are the public entry points and may import any.
ALLOWED = {
    "graph": set(),
    "sampling": {"graph"},
    "loading": {"graph", "sampling"},
    "datasets": {"graph"},
}


def _modules() -> dict:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: set) -> set:
    """The ``samplers`` modules that ``name`` imports anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` names the module pkg.sub when there is one, else pkg
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("samplers"):
                found.add(t)
    return found


def _graph() -> dict:
    mods = _modules()
    return {n: _imports(n, p, set(mods)) for n, p in mods.items()}


def _concern(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else ""


def test_every_module_sits_in_a_concern():
    flat = [n for n in _modules() if n.count(".") == 1 and _concern(n) == ""]
    assert sorted(flat) == ["samplers.pyg"], (
        f"modules directly under samplers/ besides the public entry points: {flat}")
    assert set(_concern(n) for n in _modules()) - {""} == set(ALLOWED)


@pytest.mark.parametrize("concern", sorted(ALLOWED))
def test_imports_point_down_the_chain(concern):
    bad = []
    for name, deps in _graph().items():
        if _concern(name) != concern:
            continue
        for d in deps:
            c = _concern(d)
            if c and c != concern and c not in ALLOWED[concern]:
                bad.append(f"{name} imports {d}")
            if not c and d != "samplers.graph":   # the top level (samplers, samplers.pyg)
                bad.append(f"{name} imports the top-level {d}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_files():
    graph = _graph()
    # packages import their own modules to re-export them: drop package -> own-module edges
    edges = {n: {d for d in deps if not d.startswith(n + ".")} for n, deps in graph.items()}
    seen, stack, cycles = set(), [], []

    def visit(n):
        if n in stack:
            cycles.append(stack[stack.index(n):] + [n])
            return
        if n in seen:
            return
        seen.add(n)
        stack.append(n)
        for d in sorted(edges.get(n, ())):
            visit(d)
        stack.pop()

    for n in sorted(edges):
        visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_public_api_is_where_it_was():
    import samplers
    import samplers.datasets as ds

    for name in ("CSCGraph", "HeteroCSCGraph", "NeighborSampler", "EdgePredictionSampler",
                 "UniformNegativeSampler", "Block", "HeteroBlock", "PairGraph", "DataLoader",
                 "presample_hotness"):
        assert name in samplers.__all__ and getattr(samplers, name) is not None
    for name in ("NodeDataset", "synthetic_graph", "load_ogb", "csc_from_edges", "FEAT_DTYPES",
                 "HeteroDataset", "synthetic_mag"):
        assert name in ds.__all__ and getattr(ds, name) is not None
    pyg = pytest.importorskip("torch_geometric")
    assert pyg is not None
    from samplers.pyg import LinkNeighborLoader, NeighborLoader
    from samplers.loading._core import _LoaderCore

    assert issubclass(NeighborLoader, _LoaderCore) and issubclass(LinkNeighborLoader, _LoaderCore)
