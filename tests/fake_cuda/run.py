"""Run fake-CUDA scenarios in this process: ``python tests/fake_cuda/run.py GROUP [NAME ...]``.

Installs the harness (patches torch.cuda for the whole process: run this only as a child
process, as tests/test_fake_cuda.py does), runs the scenarios of GROUP (or only the NAMEs), and
prints one ``@@ <name> PASS|FAIL <seconds>`` line per scenario, a traceback for each failure and
the harness's report (host syncs per site, violations). Exit status: 0 when every scenario
passed, 1 when one failed, 2 for a usage error.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))   # the checkout, as PYTHONPATH=. does


def main(argv: list) -> int:
    if not argv:
        print(__doc__)
        return 2
    import harness

    harness.install()
    import scenarios

    group, names = argv[0], argv[1:]
    todo = scenarios.SCENARIOS.get(group)
    if todo is None:
        print(f"unknown group {group!r}; groups: {sorted(scenarios.SCENARIOS)}")
        return 2
    if names:
        unknown = set(names) - {f.__name__ for f in todo}
        if unknown:
            print(f"unknown scenarios {sorted(unknown)} in group {group!r}")
            return 2
        todo = [f for f in todo if f.__name__ in names]
    warnings.simplefilter("ignore")
    failed = 0
    for fn in todo:
        start = len(harness.VIOLATIONS)
        t0 = time.perf_counter()
        try:
            fn()
            harness.assert_clean(start)
            status = "PASS"
        except BaseException:   # noqa: BLE001 - report and go on with the next scenario
            status = "FAIL"
            failed += 1
            print(f"---- {fn.__name__} failed:", flush=True)
            traceback.print_exc(file=sys.stdout)
            print(harness.report())
            _forget_leftovers()
        print(f"@@ {fn.__name__} {status} {time.perf_counter() - t0:.2f}", flush=True)
    print(harness.report())
    return 1 if failed else 0


def _forget_leftovers() -> None:
    """After a failed scenario: land its asynchronous copies and drop its pending deferred
    IndexErrors, so they do not fail the next scenario."""
    import harness
    from unified_tensor import _checks

    harness._complete()
    try:
        _checks.settle_all(block=True)
    except Exception:  # noqa: BLE001 - the failed scenario's deferred error
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
