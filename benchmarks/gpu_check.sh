#!/usr/bin/env bash
# Issue 5's GPU measurements in one call, on a GPU machine that has torch, Lightning, timm, torchmetrics and
# tensorboard but not the rest of the stack, and cannot reach a package index (like this workplace's H200).
#
#   bash benchmarks/gpu_check.sh fetch   # here, with a package index: the missing pure-Python wheels -> .whl/
#   bash benchmarks/gpu_check.sh run     # there, with .whl/ carried along: results -> $OUT (or benchmarks/gpu_out)
#
# PYTHON picks the interpreter (default python3); BENCH_ARGS adds options to train_speed.py (a CPU dry run of
# this script: `PYTHON=.venv/bin/python BENCH_ARGS=--quick bash benchmarks/gpu_check.sh run`).
#
# `run` installs .whl/*.whl into /tmp/site (no index, no dependencies), runs the full benchmark
# (benchmarks/train_speed.py: about 6 min on an H200; its JSON is rewritten after every phase, so a run cut off
# by a time limit keeps what it measured) and then the CUDA tests (tests marked gpu, 1-2 min), and copies
# nvidia-smi's report. Exit status: the benchmark's, or the tests' if they failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

WHEELS=(
    jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0  # LightningCLI's parser
    imbalanced-learn==0.14.2 sklearn-compat==0.1.6                          # samplers, IBA/GMean references
    ttach==0.0.3                                                              # grad-cam's dependency
)

case "${1:-}" in
fetch)
    mkdir -p .whl
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}" || exit
    "$PY" -m pip wheel --no-deps -w .whl grad-cam==1.5.7 || exit  # published as a source archive only
    ls -l .whl
    ;;
run)
    out="${OUT:-benchmarks/gpu_out}"
    mkdir -p "$out"
    export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
    if compgen -G ".whl/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || exit
        export PYTHONPATH="/tmp/site:$PYTHONPATH"
    fi
    nvidia-smi > "$out/nvidia-smi.txt" 2>&1
    "$PY" -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'timm', timm.__version__, 'cuda', torch.cuda.is_available())" | tee "$out/versions.txt"
    "$PY" benchmarks/train_speed.py ${BENCH_ARGS:-} --out "$out/speed.json" 2>&1 | tee "$out/speed.log"
    bench=$?
    # Only the GPU test modules: collecting the rest needs development tools (nbclient) the machine may lack.
    "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/models/test_gpu.py tests/models/test_host_sync.py \
        tests/data/test_device.py tests/gradcam/test_cam.py 2>&1 \
        | tee "$out/gpu_tests.log"
    tests=$?
    [ "$tests" -ne 0 ] && exit "$tests"
    exit "$bench"
    ;;
*)
    echo "usage: bash benchmarks/gpu_check.sh fetch|run" >&2
    exit 2
    ;;
esac
