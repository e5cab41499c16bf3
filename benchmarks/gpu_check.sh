#!/usr/bin/env bash
# The GPU measurements and CUDA tests in one call, within a fixed wall-clock budget, on a GPU machine that has
# torch, Lightning, timm, torchmetrics and tensorboard but not the rest of the stack and no package index.
#
#   bash benchmarks/gpu_check.sh fetch          # here, with a package index: the missing pure-Python wheels -> .whl/
#   bash benchmarks/gpu_check.sh run            # there, with .whl/ carried along: results -> $OUT
#   bash benchmarks/gpu_check.sh run --smoke    # a dry run on a CPU: the same stages, CUDA parts skipped, small data
#
# Stages, in order, each under `timeout` and never past the budget (BUDGET_S, default 530 s; a device command
# may run 600 s):
#   1. the fast CUDA tests (about a minute): GPU path, no host synchronisation per step, pinned copies, Grad-CAM;
#   2. benchmarks/train_speed.py --no-ops (the op counts are the CPU's; its JSON is rewritten after every phase:
#      a stage cut by its timeout keeps what it measured);
#   3. the compile tests (torch.compile in a fit, default and reduce-overhead);
#   4. benchmarks/compile_cost.py (cold and warm compilation), only when enough of the budget is left.
# Meanwhile nvidia-smi samples utilisation and memory every 500 ms. What comes back ($OUT, default
# benchmarks/gpu_out; 8 files, none in a subfolder): versions.txt, summary.txt (stages, times, exit statuses),
# cuda_tests.log, speed.json, speed.log, compile.log, gpu_util.csv, runs.tar.gz (the timed runs' history.csv,
# fit.json, run.json, config.yaml, splits.csv and TensorBoard events; checkpoints are not kept).
#
# PYTHON picks the interpreter (default python3); BENCH_ARGS replaces train_speed.py's options (default --no-ops,
# the full run; --smoke: --quick --data-only). Exit status: 0 when every stage that ran passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-530}"

WHEELS=(
    jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0  # LightningCLI's parser
    imbalanced-learn==0.14.2 sklearn-compat==0.1.6                          # samplers, IBA/GMean references
    ttach==0.0.3                                                              # grad-cam's dependency
)
CUDA_TESTS=(tests/models/test_gpu.py tests/models/test_host_sync.py tests/data/test_device.py tests/gradcam/test_cam.py)

usage() {
    echo "usage: bash benchmarks/gpu_check.sh fetch|run [--smoke]" >&2
    exit 2
}

fetch() {
    mkdir -p .whl
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}" || exit
    "$PY" -m pip wheel --no-deps -w .whl grad-cam==1.5.7 || exit  # published as a source archive only
    ls -l .whl
}

# stage NAME CAP_S LOG COMMAND...: run COMMAND under timeout (CAP_S, or less if the budget is nearer), append
# its output to LOG, record the outcome in summary.txt. Skipped when under 20 s of the budget is left.
stage() {
    local name=$1 cap=$2 log=$3
    shift 3
    local left=$((BUDGET_S - SECONDS - 5))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 20 ]; then
        echo "$name: skipped, ${left}s of the budget left" | tee -a "$out/summary.txt"
        return 0
    fi
    local start=$SECONDS
    echo "== $name ($(date -u +%H:%M:%S) UTC, limit ${limit}s): $*" >> "$log"
    timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
    local rc=$?
    local verdict=ok
    [ "$rc" -ne 0 ] && verdict=failed && status=1
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && verdict="cut at ${limit}s"
    echo "$name: $verdict (exit $rc, $((SECONDS - start))s, ended $(date -u +%H:%M:%S) UTC)" | tee -a "$out/summary.txt"
}

versions() {
    "$PY" - <<'EOF'
import importlib, platform
import torch
print("python", platform.python_version())
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version(),
      "| CUDA available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("GPU", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
for name in ("lightning", "timm", "torchmetrics", "jsonargparse", "torchvision"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # a missing package is a result here, not an error
        print(name, "missing:", type(err).__name__)
EOF
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        nvidia-smi
    else
        echo "driver: no nvidia-smi"
    fi
}

run() {
    local smoke=$1
    out="${OUT:-benchmarks/gpu_out}"
    mkdir -p "$out"
    : > "$out/summary.txt"
    status=0
    export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
    if compgen -G ".whl/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || status=1
        export PYTHONPATH="/tmp/site:$PYTHONPATH"
    fi
    versions > "$out/versions.txt" 2>&1
    head -n 12 "$out/versions.txt"

    sampler=""
    if command -v nvidia-smi > /dev/null && [ "$smoke" -eq 0 ]; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 > "$out/gpu_util.csv" &
        sampler=$!
        trap 'kill "$sampler" 2> /dev/null' EXIT  # also when the device's time limit ends the script
    else
        echo "no GPU sampling (smoke run or no nvidia-smi)" > "$out/gpu_util.csv"
    fi

    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/breakhis-gpu-check.XXXXXX")
    local bench_args=${BENCH_ARGS:---no-ops}
    [ "$smoke" -eq 1 ] && bench_args=${BENCH_ARGS:---quick --data-only}
    # Only these test modules: collecting the others needs development tools (nbclient) the GPU machine may lack.
    stage "cuda tests" 110 "$out/cuda_tests.log" \
        "$PY" -m pytest -q -p no:cacheprovider -m gpu -k "not compiled" "${CUDA_TESTS[@]}"
    # shellcheck disable=SC2086  # BENCH_ARGS holds several options
    stage benchmark 330 "$out/speed.log" \
        "$PY" benchmarks/train_speed.py $bench_args --workdir "$work" --out "$out/speed.json"
    stage "compile tests" 150 "$out/compile.log" \
        "$PY" -m pytest -q -p no:cacheprovider -m gpu -k compiled tests/models/test_gpu.py
    if [ "$smoke" -eq 0 ] && [ $((BUDGET_S - SECONDS)) -ge 150 ]; then
        stage "compile cost" 140 "$out/compile.log" "$PY" benchmarks/compile_cost.py
    else
        echo "compile cost: skipped (smoke run or under 150s of the budget left)" | tee -a "$out/summary.txt"
    fi

    [ -n "$sampler" ] && kill "$sampler" 2> /dev/null
    # The timed runs' records, without checkpoints, as one archive (what comes back is a few flat files).
    local runs=()
    if [ -d "$work/logs" ]; then
        mapfile -t runs < <(cd "$work/logs" && find . -path "*/version_*" -type f ! -path "*/checkpoints/*" | sort)
    fi
    tar -czf "$out/runs.tar.gz" -C "${work}/logs" "${runs[@]}" 2> /dev/null || tar -czf "$out/runs.tar.gz" -T /dev/null
    echo "runs.tar.gz: ${#runs[@]} files of the timed runs" | tee -a "$out/summary.txt"
    rm -rf "$work"
    echo "total: ${SECONDS}s of a ${BUDGET_S}s budget, exit $status" | tee -a "$out/summary.txt"
    ls -l "$out"
    return "$status"
}

case "${1:-}" in
fetch)
    fetch
    ;;
run)
    case "${2:-}" in
    "") run 0 ;;
    --smoke) run 1 ;;
    *) usage ;;
    esac
    exit $?
    ;;
*)
    usage
    ;;
esac
