"""A built wheel ships the CUDA sources, and the installed package finds them."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _has_setuptools():
    try:
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_setuptools(), reason="needs setuptools and wheel")
def test_wheel_contains_kernel_sources_and_finds_them(tmp_path):
    build = tmp_path / "src"
    # Build from a copy so no build/ or egg-info lands in the checkout.
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(build)], check=False)
    if not (build / "pyproject.toml").exists():
        import shutil
        shutil.copytree(ROOT, build, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info"))
    for sub in ("unified_tensor", "samplers", "cuda", "pyproject.toml", "README.md"):
        src = ROOT / sub  # the working tree, committed or not
        dst = build / sub
        if src.is_dir():
            import shutil
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            dst.write_bytes(src.read_bytes())
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(build)], check=True)
    wheel, = out.glob("unified_tensor-*.whl")
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
