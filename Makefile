# Set-up and entry points. Virtual environments live outside the checkout
# (~/.cache/unified-tensor/venvs/NAME-<hash of requirements/NAME.txt>) and are reused while the
# pin file is unchanged. Everything runs from the checkout with PYTHONPATH=.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY_MODERN = $$(.ci/venv.sh modern)/bin/python
PY_DGL = $$(.ci/venv.sh dgl)/bin/python
export PYTHONPATH := $(CURDIR)
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-quick test-modern test-dgl test-cpp test-install gpu-quick gpu-check bench-cpu venvs

## The main job: GraphSAGE on the built-in synthetic graph; prints throughput and accuracy.
demo:
	$(PY_MODERN) examples/train_graphsage.py

## The whole test suite: host-compiled kernel math, the modern environment, the DGL environment.
test: test-cpp test-modern test-dgl

## Test files run in parallel (pytest-xdist, one process per core, at most 4; each file's tests
## stay in one process, so per-file fixtures and child-process groups are shared). PAR= runs serially.
PAR ?= -n auto --maxprocesses 4 --dist loadfile

## Day-to-day: the unit tests of unified_tensor/ and samplers/ in the modern environment, without
## the ported PyG/DGL suites (*_port*), the NVRTC compilation of every kernel instance, and the
## example, benchmark, packaging and fork tests (tests/*.py); `make test` before a commit.
test-quick:
	$(PY_MODERN) -m pytest -q $(PAR) -m "not dgl and not slow" --ignore-glob="*_port*.py" \
	  --ignore=tests/unified_tensor/test_kernels_compile.py tests/unified_tensor tests/samplers

## Build the wheel and install it with each documented extra into fresh venvs that see the pinned
## environments' packages (no downloads; tests marked install): modern for cuda12/pyg/test/bench,
## dgl for dgl and cuda12,dgl.
test-install:
	$(PY_MODERN) -m pytest -q --runslow -m install tests/test_packaging.py
	$(PY_DGL) -m pytest -q --runslow -m install tests/test_packaging.py

test-cpp:
	bash tests/cpp/run.sh

test-modern:
	$(PY_MODERN) -m pytest -q $(PAR) -m "not dgl" tests

test-dgl:
	rc=0; $(PY_DGL) -m pytest -q $(PAR) -m dgl tests || rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

venvs:
	.ci/venv.sh modern && .ci/venv.sh dgl

## On a GPU machine with little time (no installs, no network): the most valuable checks first,
## inside UNIFIED_TENSOR_GPU_QUICK_BUDGET seconds (default 450); results -> $$OUT if set, else bench/results/.
## Uses the machine's python3 (PYTHON=... to override). Without a GPU: a dry run (exit 0).
gpu-quick:
	$${PYTHON:-python3} bench/gpu_quick.py

## On a GPU machine with time (no installs, no network): GPU tests + full benchmarks -> bench/results/.
gpu-check:
	bash bench/gpu_check.sh

## CPU benchmarks (gather, sampler vs DGL) -> bench/results/.
bench-cpu:
	$(PY_MODERN) bench/gather.py --out bench/results/gather_cpu.json
