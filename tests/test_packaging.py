"""The sdist and the wheel: the wheel ships the CUDA sources (and the installed package finds
them), both carry the license, and the sdist holds the whole project, tests included, so pytest
collects in an unpacked sdist. Built once per module, without build isolation (no network), from
a copy of the working tree so nothing lands in the checkout."""
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAME = "unified_tensor-0.1.0"


def _unmet_build_requirements():
    """Build requirements of pyproject.toml that this environment does not satisfy."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    from packaging.requirements import Requirement

    with open(ROOT / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    unmet = []
    for req in map(Requirement, requires):
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            version = None
        if version is None or not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{req} (found {version})")
    return unmet


def _copy_project(dst: Path) -> None:
    """Copy what a commit of the working tree would hold (tracked and untracked, not ignored)."""
    res = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True)
    if res.returncode == 0 and (ROOT / ".git").exists():
        for rel in filter(None, res.stdout.decode().split("\0")):
            src = ROOT / rel
            if src.is_file():
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst / rel)
    else:  # not a git checkout (e.g. an unpacked sdist)
        skip = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache")
        shutil.copytree(ROOT, dst, ignore=skip, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist, wheel built from that sdist, unpacked sdist folder)."""
    unmet = _unmet_build_requirements()
    if unmet:
        pytest.skip(f"building without isolation needs {', '.join(unmet)}")
    tmp = tmp_path_factory.mktemp("packaging")
    src, out, unpacked = tmp / "src", tmp / "dist", tmp / "unpacked"
    src.mkdir()
    _copy_project(src)
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, check=True, capture_output=True)
    sdist, = out.glob("unified_tensor-*.tar.gz")
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12+/3.11.4+
            tar.extractall(unpacked, filter="data")
        else:
            tar.extractall(unpacked)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(unpacked / NAME)], check=True)
    wheel, = out.glob("unified_tensor-*.whl")
    return sdist, wheel, unpacked / NAME


def test_wheel_contains_kernel_sources_and_finds_them(dists, tmp_path):
    _, wheel, _ = dists
    names = zipfile.ZipFile(wheel).namelist()
    for kernel in (ROOT / "cuda").glob("*.cu*"):
        assert f"unified_tensor/kernels/{kernel.name}" in names
    assert not any(n.startswith("cuda/") for n in names)  # never a top-level `cuda` package
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True)
    env = dict(os.environ, PYTHONPATH=str(target))
    code = ("import unified_tensor, unified_tensor._kernels as k; "
            "print(unified_tensor.__file__); print(k.kernel_dir()); "
            "print(len(k.load_source('gather.cu')))")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True,
                         capture_output=True, text=True)
    mod_file, kdir, n = res.stdout.split()
    assert mod_file.startswith(str(target)) and kdir.startswith(str(target)) and int(n) > 1000


def test_wheel_ships_every_subpackage_and_imports_them(dists, tmp_path):
    """Every package folder of the checkout (``samplers/graph/`` ...) is in the wheel, and the
    installed wheel imports the public API from outside the checkout."""
    _, wheel, _ = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    for top in ("unified_tensor", "samplers"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.relative_to(ROOT).as_posix()
            assert rel in names, f"{rel} is not in the wheel (add it to pyproject's packages)"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True)
    code = ("import samplers, samplers.datasets, unified_tensor as ut; "
            "from samplers import CSCGraph, HeteroCSCGraph, NeighborSampler, DataLoader, Block, "
            "HeteroBlock, PairGraph, EdgePredictionSampler, UniformNegativeSampler, presample_hotness; "
            "from unified_tensor import KernelCompileError, CudaRuntimeError; "
            "print(samplers.__file__, ut.__version__, samplers.__version__)")
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(target)),
                         cwd=tmp_path, check=True, capture_output=True, text=True)
    where, version, samplers_version = res.stdout.split()
    assert where.startswith(str(target))
    assert version == samplers_version == NAME.split("-")[1]   # one version, from the metadata
    assert "unified_tensor/py.typed" in names and "samplers/py.typed" in names


def test_wheel_and_sdist_carry_the_license(dists):
    sdist, wheel, _ = dists
    license_text = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in license_text and b"Version 2.0, January 2004" in license_text
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read(f"{NAME}.dist-info/licenses/LICENSE") == license_text
        meta = zf.read(f"{NAME}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta.splitlines()
    assert "License-File: LICENSE" in meta.splitlines()
    with tarfile.open(sdist) as tar:
        assert tar.extractfile(f"{NAME}/LICENSE").read() == license_text


def test_sdist_holds_the_project_but_not_benchmark_results(dists):
    sdist, _, _ = dists
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for path in ("tests/conftest.py", "tests/testing.py", "tests/test_packaging.py",
                 "tests/unified_tensor/test_gather.py", "tests/samplers/sampling/test_sampler.py",
                 "tests/cpp/run.sh", "tests/cpp/check.h", "bench/README.md", "bench/gather.py",
                 "bench/gpu_check.sh", "examples/train_graphsage.py", "requirements/modern.txt",
                 "requirements/dgl.txt", ".ci/venv.sh", ".ci/run", "Makefile", "README.md", "CHANGELOG.md",
                 "MANIFEST.in", "cuda/gather.cu", "pyproject.toml", "LICENSE"):
        assert path in names, path
    assert not any(n.startswith("bench/results") or "__pycache__" in n for n in names)
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode == 0 and (ROOT / ".git").exists():  # every tracked file but results
        tracked = {p for p in listed.stdout.split() if (ROOT / p).is_file()}
        missing = {p for p in tracked if not p.startswith("bench/results/") and p != ".gitignore"}
        assert missing - names == set()


def test_unpacked_sdist_collects_its_tests(dists):
    _, _, unpacked = dists
    env = dict(os.environ, PYTHONPATH=str(unpacked))
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests"], cwd=unpacked, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for folder in ("tests/unified_tensor/", "tests/samplers/", "tests/test_packaging.py"):
        assert folder in res.stdout, folder
    assert "error" not in res.stdout.splitlines()[-1].lower()


# ------------------------------------------------------------------------------------------------
# The wheel installed with each documented extra into a fresh virtual environment, importing what
# the README imports (marked `install` and `slow`: `make test-install`, in both environments).
#
# Nothing is downloaded: the fresh venv sees this environment's packages through a .pth file (as a
# venv made with --system-site-packages sees the system's), and pip installs with --no-index, so
# an extra whose requirements (names and versions) this environment does not meet fails to
# install. Each environment checks the extras it is built for (modern: cuda12, pyg; dgl: dgl,
# cuda12 + dgl, the README's DGL path); an extra whose packages are not installed here at all is
# skipped, naming them.

IMPORTS = {
    "": ("import torch, unified_tensor as ut, samplers\n"
         "from samplers import (CSCGraph, HeteroCSCGraph, NeighborSampler, EdgePredictionSampler,\n"
         "                      DataLoader, reorder)\n"
         "from samplers.datasets import load_ogb, synthetic_graph, synthetic_mag\n"
         "t = ut.unified(torch.arange(40.0).view(10, 4))\n"
         "assert t[torch.tensor([2])].tolist() == [[8.0, 9.0, 10.0, 11.0]]\n"
         "print('where', ut.__file__, samplers.__file__)\n"),
    "cuda12": ("import cupy\n"
               "from unified_tensor import _kernels\n"
               "_kernels._ensure_nvrtc()\n"
               "from cupy_backends.cuda.libs import nvrtc\n"
               "assert nvrtc.getVersion()[0] == 12, nvrtc.getVersion()\n"
               "assert int(cupy.__version__.split('.')[0]) >= 13\n"),
    "cuda13": ("import cupy\n"
               "from unified_tensor import _kernels\n"
               "_kernels._ensure_nvrtc()\n"
               "from cupy_backends.cuda.libs import nvrtc\n"
               "assert nvrtc.getVersion()[0] == 13, nvrtc.getVersion()\n"),
    "dgl": ("import dgl, dgl.dataloading, torch\n"
            "from samplers import DataLoader\n"
            "g = dgl.graph((torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0])))\n"
            "g.ndata['feat'] = torch.arange(8.0).view(4, 2)\n"
            "sampler = dgl.dataloading.NeighborSampler([2], prefetch_node_feats=['feat'])\n"
            "batches = list(DataLoader(g, torch.arange(4), sampler, batch_size=2))\n"
            "assert len(batches) == 2 and batches[0][2][0].srcdata['feat'].shape[1] == 2\n"),
    "pyg": ("import torch_geometric\n"
            "from samplers.pyg import NeighborLoader, LinkNeighborLoader\n"),
    "test": "import pytest, scipy\n",
    "bench": "import matplotlib, tqdm, scipy\n",
}
# Every extra of pyproject.toml, and the README's DGL install line.
EXTRA_SETS = ["", "cuda12", "cuda13", "dgl", "pyg", "test", "bench", "cuda12,dgl"]


def _wheel_requirements(wheel: Path, extras: str):
    """The wheel's requirements for ``extras`` (comma-separated) on this interpreter."""
    from email.parser import Parser
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        meta = Parser().parsestr(zf.read(f"{NAME}.dist-info/METADATA").decode())
    chosen = [e for e in extras.split(",") if e]
    reqs = []
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in chosen or [""]):
            reqs.append(req)
    return reqs


def test_extras_are_the_documented_ones(dists):
    """Every extra the wheel declares is installed by the test below, and the other way round."""
    _, wheel, _ = dists
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(f"{NAME}.dist-info/METADATA").decode().splitlines()
    declared = {line.split(":", 1)[1].strip() for line in meta
                if line.startswith("Provides-Extra:")}
    tested = {e for s in EXTRA_SETS for e in s.split(",") if e}
    assert declared == tested
    # The dgl extra pins the stack DGL 2.1 imports with (torchdata 0.11, NumPy 2 and a missing
    # pandas each broke `import dgl` after `pip install ".[cuda12,dgl]"`).
    dgl = {r.name: str(r.specifier) for r in _wheel_requirements(wheel, "dgl")}
    assert dgl["torch"] == "==2.2.1" and dgl["torchdata"] == "==0.7.1" and "<2" in dgl["numpy"]
    assert {"pandas", "pydantic", "pyyaml"} <= set(dgl)


@pytest.mark.slow
@pytest.mark.install
@pytest.mark.parametrize("extras", EXTRA_SETS, ids=lambda e: e or "none")
def test_wheel_installs_with_extra_into_a_fresh_venv(dists, tmp_path, extras):
    _, wheel, _ = dists
    missing = []
    for req in _wheel_requirements(wheel, extras):
        try:
            metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(req.name)
    if missing:
        pytest.skip(f"[{extras}] needs {', '.join(missing)}, not installed in this environment")
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(py), "-c", purelib], check=True, capture_output=True,
                          text=True).stdout.strip()
    here = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    Path(site, "_outer_environment.pth").write_text("".join(f"{p}\n" for p in here))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    res = subprocess.run([str(py), "-m", "pip", "install", "--no-index", "--no-cache-dir",
                          "--disable-pip-version-check", target],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"pip install {target}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert "unified-tensor" in res.stdout.lower() or "unified_tensor" in res.stdout.lower()
    code = IMPORTS[""] + "".join(IMPORTS[e] for e in extras.split(",") if e)
    res = subprocess.run([str(py), "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"[{extras}] imports:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    where = res.stdout.split("where", 1)[1].split()
    assert all(w.startswith(site) for w in where), where   # the installed wheel, not the checkout
