"""The project's environment variables: one prefix, ``UNIFIED_TENSOR_``.

Every variable the library, the examples and the benchmarks read goes through :func:`env` (or
:func:`env_flag`), which reads ``UNIFIED_TENSOR_<NAME>``. A few variables had other names before
(``UT_DATA_ROOT``, ``GPU_QUICK_BUDGET``, ``UT_VENV_ROOT``); those names still work while the new
one is unset, with a ``FutureWarning`` (once per name and process) that names the variable to set
instead. When both are set, the new name wins.

========================================  ==========================================================
``UNIFIED_TENSOR_DISABLE_CUDA``           ``1``: the CUDA path is off, everything runs on the CPU
``UNIFIED_TENSOR_SYNC_CHECKS``            ``1``: CUDA gathers check their indices before the launch
``UNIFIED_TENSOR_KERNEL_DIR``             folder of the ``.cu`` sources (default: the shipped ones)
``UNIFIED_TENSOR_DATA_ROOT``              where the examples and benchmarks cache generated graphs
``UNIFIED_TENSOR_GPU_QUICK_BUDGET``       ``bench/gpu_quick.py``'s time budget in seconds
========================================  ==========================================================

(``UNIFIED_TENSOR_VENV_ROOT``, read by ``.ci/venv.sh``, follows the same rule in the shell.)
Reading is all this module does: nothing is read or written at import.

>>> from unified_tensor._env import env
>>> env("DATA_ROOT", "~/.cache/unified-tensor/datasets")   # doctest: +SKIP
'~/.cache/unified-tensor/datasets'
"""
from __future__ import annotations

import os
import threading
import warnings
from typing import Dict, Optional, Set

__all__ = ["PREFIX", "OLD_NAMES", "DEFAULT_DATA_ROOT", "env", "env_flag", "data_root"]

PREFIX = "UNIFIED_TENSOR_"
#: ``NAME`` (the part after the prefix) -> the name it had before, still read as a fallback.
OLD_NAMES: Dict[str, str] = {
    "DATA_ROOT": "UT_DATA_ROOT",
    "GPU_QUICK_BUDGET": "GPU_QUICK_BUDGET",
    "VENV_ROOT": "UT_VENV_ROOT",
}
_FALSE = ("", "0", "false", "no", "off")
#: Where generated datasets are cached when ``UNIFIED_TENSOR_DATA_ROOT`` is unset.
DEFAULT_DATA_ROOT = "~/.cache/unified-tensor/datasets"

_warned: Set[str] = set()
_lock = threading.Lock()


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not name or name != name.upper() or name.startswith(PREFIX):
        raise ValueError(f"name must be the upper-case part after {PREFIX!r} (e.g. 'DATA_ROOT'), "
                         f"got {name!r}")
    return name


def env(name: str, default: Optional[str] = None) -> Optional[str]:
    """The value of ``UNIFIED_TENSOR_<name>``; if that is unset, of the variable's old name (with
    a one-time ``FutureWarning`` naming the new one); if neither is set, ``default``.

    Parameters
    ----------
    name : str
        The variable's name without the prefix, e.g. ``'DATA_ROOT'``.
    default : str, optional
        What to return when the variable is set under neither name.

    Returns
    -------
    str or None
        The value as written in the environment (a set but empty variable gives ``''``).

    >>> env("DISABLE_CUDA", "0")   # doctest: +SKIP
    '0'
    """
    _check_name(name)
    key = PREFIX + name
    value = os.environ.get(key)
    if value is not None:
        return value
    old = OLD_NAMES.get(name)
    if old is None or old == key:
        return default
    value = os.environ.get(old)
    if value is None:
        return default
    with _lock:
        first = old not in _warned
        _warned.add(old)
    if first:
        warnings.warn(f"the environment variable {old} is deprecated and will stop working in a "
                      f"future release; set {key} instead", FutureWarning, stacklevel=2)
    return value


def env_flag(name: str) -> bool:
    """Whether ``UNIFIED_TENSOR_<name>`` is set to anything but ``''``, ``0``, ``false``, ``no``
    or ``off`` (any case, surrounding spaces ignored), as :func:`env` reads it."""
    value = env(name)
    return value is not None and value.strip().lower() not in _FALSE


def data_root() -> str:
    """The folder the examples and benchmarks cache generated datasets in, ``~`` expanded:
    ``UNIFIED_TENSOR_DATA_ROOT`` (when set and not empty), else :data:`DEFAULT_DATA_ROOT`."""
    return os.path.expanduser(env("DATA_ROOT") or DEFAULT_DATA_ROOT)
