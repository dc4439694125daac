#!/usr/bin/env bash
# One command for a GPU machine: GPU tests, memcheck, benchmarks -> bench/results/.
# No installs, no network; run from anywhere inside the checkout:
#
#     bash bench/gpu_check.sh                 # or: make gpu-check
#     PYTHON=/path/to/venv/bin/python bash bench/gpu_check.sh
#
# Steps (each bounded by a timeout; a failing step does not stop the next ones):
#   1. preflight      torch/CuPy/ut.cuda_available()                 -> bench/results/gpu_preflight.log
#   2. gpu_tests      pytest -m gpu -q tests                        -> bench/results/gpu_tests.log
#   3. memcheck       compute-sanitizer memcheck, pytest -m gpu -x (library tests) -> bench/results/gpu_memcheck.log
#   4. bench_gather   bench/gather.py (JSON + PNG)                   -> bench/results/gather_<gpu>.json
#   5. bench_sampler  bench/sampler.py, if present                   -> bench/results/sampler_<gpu>.json
#   6. bench_e2e      bench/e2e.py, if present                       -> bench/results/e2e_<gpu>.json
# then a summary table (also in bench/results/gpu_check_summary.txt). Exit status 1 if any step
# failed or timed out. Timeouts (seconds) can be overridden: TESTS_TIMEOUT, MEMCHECK_TIMEOUT,
# GATHER_TIMEOUT, SAMPLER_TIMEOUT, E2E_TIMEOUT; extra arguments for the benchmarks: GATHER_ARGS,
# SAMPLER_ARGS, E2E_ARGS (e.g. GATHER_ARGS="--table-gb 16"); SKIP_MEMCHECK=1 skips step 3.
# STEPS picks steps (comma-separated, default all): preflight,gpu_tests,memcheck,gather,sampler,e2e.
# Where one command may run at most 10 minutes, split the run, e.g.
#     STEPS=preflight,gpu_tests bash bench/gpu_check.sh
#     STEPS=memcheck bash bench/gpu_check.sh
#     STEPS=gather,sampler bash bench/gpu_check.sh
#     STEPS=e2e bash bench/gpu_check.sh
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
RES="${RESULTS_DIR:-bench/results}"  # override for a dry run elsewhere
mkdir -p "$RES"

TESTS_TIMEOUT="${TESTS_TIMEOUT:-300}"
MEMCHECK_TIMEOUT="${MEMCHECK_TIMEOUT:-600}"
GATHER_TIMEOUT="${GATHER_TIMEOUT:-420}"
SAMPLER_TIMEOUT="${SAMPLER_TIMEOUT:-300}"
E2E_TIMEOUT="${E2E_TIMEOUT:-600}"  # the first run also generates the 10M-node graph (cached)

STEPS="${STEPS:-preflight,gpu_tests,memcheck,gather,sampler,e2e}"
want() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

NAMES=(); STATUS=(); SECS=(); LOGS=()
FAILED=0

record() {  # name status seconds log
    NAMES+=("$1"); STATUS+=("$2"); SECS+=("$3"); LOGS+=("$4")
    case "$2" in FAIL*|TIMEOUT*) FAILED=1 ;; esac
    echo ">>> $1: $2 (${3}s, log $4)"
}

# run_step NAME TIMEOUT LOG CMD...: runs CMD under `timeout`, output to the terminal and LOG.
run_step() {
    local name="$1" limit="$2" log="$3"; shift 3
    echo
    echo "=== $name: $* (timeout ${limit}s)"
    local t0=$SECONDS rc
    timeout --signal=TERM --kill-after=30 "$limit" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    local dt=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then STEP_STATUS="PASS"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then STEP_STATUS="TIMEOUT"
    else STEP_STATUS="FAIL(rc=$rc)"; fi
    STEP_SECS=$dt
}

# pytest reports rc 0 when every GPU test was skipped (no CuPy, CUDA path off): that is a failure here.
check_pytest_ran() {  # log
    if ! grep -Eq "[0-9]+ passed" "$1"; then STEP_STATUS="FAIL(no test passed: GPU tests skipped?)"; fi
}

echo "gpu_check: repo $ROOT, python $PY, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
command -v nvidia-smi >/dev/null && nvidia-smi -L

# 1. preflight --------------------------------------------------------------------------------------
if want preflight; then
run_step preflight 120 "$RES/gpu_preflight.log" "$PY" - <<'EOF'
import sys, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), "count", torch.cuda.device_count())
try:
    import cupy
    print("cupy", cupy.__version__, "runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "driver", cupy.cuda.runtime.driverGetVersion())
except Exception as exc:
    print("cupy import failed:", repr(exc))
import unified_tensor as ut
ok = ut.cuda_available()
print("ut.cuda_available()", ok)
if ok:
    t = ut.unified(torch.arange(12.0).view(4, 3))
    r = t[torch.tensor([3, 0], device="cuda")]
    print("smoke gather", r.tolist())
    assert r.cpu().equal(torch.tensor([[9.0, 10.0, 11.0], [0.0, 1.0, 2.0]]))
sys.exit(0 if ok else 1)
EOF
record preflight "$STEP_STATUS" "$STEP_SECS" "$RES/gpu_preflight.log"
fi

TAG="$("$PY" bench/_common.py tag 2>/dev/null || echo gpu)"
[ -n "$TAG" ] || TAG=gpu

# 2. GPU tests --------------------------------------------------------------------------------------
if want gpu_tests; then
    run_step gpu_tests "$TESTS_TIMEOUT" "$RES/gpu_tests.log" "$PY" -m pytest -m gpu -q tests
    check_pytest_ran "$RES/gpu_tests.log"
    record gpu_tests "$STEP_STATUS" "$STEP_SECS" "$RES/gpu_tests.log"
fi

# 3. memcheck ---------------------------------------------------------------------------------------
SAN="$(command -v compute-sanitizer || true)"
for c in "${CUDA_HOME:-}/bin/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer \
         /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -z "$SAN" ] && [ -x "$c" ] && SAN="$c"
done
if ! want memcheck; then
    :
elif [ "${SKIP_MEMCHECK:-0}" = "1" ]; then
    record memcheck "SKIP(SKIP_MEMCHECK=1)" 0 "-"
elif [ -z "$SAN" ]; then
    echo "compute-sanitizer not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)" | tee "$RES/gpu_memcheck.log"
    record memcheck "SKIP(no compute-sanitizer)" 0 "$RES/gpu_memcheck.log"
else
    # The caching allocator hides out-of-bounds accesses inside its blocks: turn it off. API errors
    # the library provokes on purpose (bad-input tests) are not memory errors: not reported. Only
    # the library's own tests (tests/unified_tensor, tests/samplers) run: the benchmark and example
    # smoke tests are subprocesses running whole workloads, too slow under memcheck.
    SAN_OPTS=(--tool memcheck --target-processes all --error-exitcode 97)
    "$SAN" --help 2>/dev/null | grep -q -- "--report-api-errors" && SAN_OPTS+=(--report-api-errors no)
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 run_step memcheck "$MEMCHECK_TIMEOUT" "$RES/gpu_memcheck.log" \
        "$SAN" "${SAN_OPTS[@]}" "$PY" -m pytest -m gpu -q -x -p no:cacheprovider \
        tests/unified_tensor tests/samplers
    check_pytest_ran "$RES/gpu_memcheck.log"
    if grep -Eq "ERROR SUMMARY: [1-9]" "$RES/gpu_memcheck.log"; then
        STEP_STATUS="FAIL($(grep -Eo 'ERROR SUMMARY: [0-9]+ errors?' "$RES/gpu_memcheck.log" | tail -1))"
    fi
    record memcheck "$STEP_STATUS" "$STEP_SECS" "$RES/gpu_memcheck.log"
fi

# 4-6. benchmarks -----------------------------------------------------------------------------------
JSONS=()
bench() {  # name script timeout extra-args
    local name="$1" script="$2" limit="$3" extra="${4:-}"
    want "$name" || return 0
    local out="$RES/${name}_${TAG}.json" log="$RES/${name}_${TAG}.log"
    if [ ! -f "$script" ]; then
        record "bench_$name" "SKIP(no $script)" 0 "-"
        return
    fi
    rm -f "$out"
    # shellcheck disable=SC2086  # extra args are word-split on purpose
    run_step "bench_$name" "$limit" "$log" "$PY" "$script" --out "$out" $extra
    [ -f "$out" ] && JSONS+=("$out")
    [ -f "$out" ] || { case "$STEP_STATUS" in PASS) STEP_STATUS="FAIL(no $out)";; esac; }
    record "bench_$name" "$STEP_STATUS" "$STEP_SECS" "$log"
}
bench gather bench/gather.py "$GATHER_TIMEOUT" "${GATHER_ARGS:-}"
bench sampler bench/sampler.py "$SAMPLER_TIMEOUT" "${SAMPLER_ARGS:-}"
bench e2e bench/e2e.py "$E2E_TIMEOUT" "${E2E_ARGS:-}"

# summary -------------------------------------------------------------------------------------------
{
    echo
    echo "=================== gpu_check summary ($(date -u +%Y-%m-%dT%H:%M:%SZ)) ==================="
    if [ "${#JSONS[@]}" -gt 0 ]; then
        "$PY" bench/_common.py summary "${JSONS[@]}" || echo "(summary of JSONs failed)"
    fi
    printf "%-14s %-44s %7s  %s\n" step status seconds log
    for i in "${!NAMES[@]}"; do
        printf "%-14s %-44s %7s  %s\n" "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${LOGS[$i]}"
    done
    if [ "$FAILED" -ne 0 ]; then echo "RESULT: FAILED"; else echo "RESULT: OK"; fi
} | tee "$RES/gpu_check_summary.txt"
exit "$FAILED"
