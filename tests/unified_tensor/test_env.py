"""The project's environment variables (``unified_tensor._env``): one prefix, ``UNIFIED_TENSOR_``;
an old name still works while the new one is unset, with one ``FutureWarning`` that names the new
variable; the new name wins when both are set."""
from __future__ import annotations

import os
import warnings

import pytest

from unified_tensor import _checks, _deps, _env, _kernels

OLD = sorted(_env.OLD_NAMES.items())


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No project variable set, and every old name not yet warned about."""
    for name, old in _env.OLD_NAMES.items():
        monkeypatch.delenv(_env.PREFIX + name, raising=False)
        monkeypatch.delenv(old, raising=False)
    for name in ("DISABLE_CUDA", "SYNC_CHECKS", "KERNEL_DIR"):
        monkeypatch.delenv(_env.PREFIX + name, raising=False)
    monkeypatch.setattr(_env, "_warned", set())


@pytest.mark.parametrize("name, old", OLD)
def test_new_name(monkeypatch, name, old):
    monkeypatch.setenv(_env.PREFIX + name, "/new")
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no warning for the new name
        assert _env.env(name) == "/new"
        assert _env.env(name, "/default") == "/new"


@pytest.mark.parametrize("name, old", OLD)
def test_old_name_still_works_and_warns_once(monkeypatch, name, old):
    monkeypatch.setenv(old, "/old")
    with pytest.warns(FutureWarning) as record:
        assert _env.env(name, "/default") == "/old"
    assert len(record) == 1
    message = str(record[0].message)
    assert old in message and _env.PREFIX + name in message and "deprecated" in message
    assert record[0].filename == __file__           # stacklevel: the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # once per name and process
        assert _env.env(name) == "/old"


@pytest.mark.parametrize("name, old", OLD)
def test_new_name_wins_over_the_old(monkeypatch, name, old):
    monkeypatch.setenv(old, "/old")
    monkeypatch.setenv(_env.PREFIX + name, "/new")
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # the old name is not even read
        assert _env.env(name) == "/new"


def test_unset_gives_the_default():
    assert _env.env("DATA_ROOT") is None
    assert _env.env("DATA_ROOT", "/d") == "/d"
    assert _env.env("KERNEL_DIR", "x") == "x"       # a variable without an old name


def test_set_but_empty_is_set(monkeypatch):
    monkeypatch.setenv("UNIFIED_TENSOR_KERNEL_DIR", "")
    assert _env.env("KERNEL_DIR", "x") == ""


@pytest.mark.parametrize("bad, exc", [(3, TypeError), ("", ValueError), ("data_root", ValueError),
                                      ("UNIFIED_TENSOR_DATA_ROOT", ValueError)])
def test_bad_names(bad, exc):
    with pytest.raises(exc, match="name"):
        _env.env(bad)


@pytest.mark.parametrize("value, on", [("1", True), ("yes", True), (" TRUE ", True), ("on", True),
                                       ("", False), ("0", False), ("false", False),
                                       ("No", False), (" off ", False)])
def test_env_flag(monkeypatch, value, on):
    monkeypatch.setenv("UNIFIED_TENSOR_SYNC_CHECKS", value)
    assert _env.env_flag("SYNC_CHECKS") is on


def test_env_flag_unset():
    assert _env.env_flag("SYNC_CHECKS") is False


def test_library_switches_read_through_env(monkeypatch, tmp_path):
    """DISABLE_CUDA, SYNC_CHECKS and KERNEL_DIR, as the library reads them."""
    assert not _deps.cuda_disabled_by_env() and not _checks.sync_checks_forced()
    monkeypatch.setenv("UNIFIED_TENSOR_DISABLE_CUDA", "1")
    monkeypatch.setenv("UNIFIED_TENSOR_SYNC_CHECKS", "yes")
    assert _deps.cuda_disabled_by_env() and not _deps.cuda_available()
    assert _checks.sync_checks_forced()
    monkeypatch.setenv("UNIFIED_TENSOR_KERNEL_DIR", str(tmp_path))
    assert _kernels.kernel_dir() == tmp_path


def test_data_root(monkeypatch, tmp_path):
    assert _env.data_root() == os.path.expanduser(_env.DEFAULT_DATA_ROOT)
    monkeypatch.setenv("UNIFIED_TENSOR_DATA_ROOT", "")              # empty: the default
    assert _env.data_root() == os.path.expanduser(_env.DEFAULT_DATA_ROOT)
    monkeypatch.setenv("UT_DATA_ROOT", str(tmp_path / "old"))
    monkeypatch.delenv("UNIFIED_TENSOR_DATA_ROOT")
    with pytest.warns(FutureWarning, match="UNIFIED_TENSOR_DATA_ROOT"):
        assert _env.data_root() == str(tmp_path / "old")
    monkeypatch.setenv("UNIFIED_TENSOR_DATA_ROOT", "~/x")
    assert _env.data_root() == os.path.expanduser("~/x")

