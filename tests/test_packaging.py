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
                 "requirements/dgl.txt", ".ci/venv.sh", ".ci/run", "Makefile", "README.md",
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
