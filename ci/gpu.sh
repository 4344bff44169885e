#!/usr/bin/env bash
# The one command for a GPU machine: proves or disproves every GPU claim of the README, and writes one
# Markdown report (default gpu-report.md; XPNET_GPU_REPORT=path) that BENCHMARKS.md can take as its GPU table.
#
#   1. installs xpnet with the CuPy extra of the driver's CUDA major version (12 or 13, or XPNET_CUDA=12|13)
#      and PyTorch (its default, CUDA, build) into $XPNET_VENV (default .venv-gpu); with XPNET_WHEELS=DIR
#      it installs from the wheels in DIR only (no internet needed);
#   2. runs `pytest -m gpu` (the GPU checks, and the whole backend-parametrized suite on CuPy and on
#      torch-CUDA: the dev fixture's cupy-cuda0 and torch-cuda0 entries carry the gpu marker);
#   3. trains the README's MNIST networks on CUDA and on the CPU from the same seed and compares the loss
#      of every epoch (relative 1e-5; ci/gpu_report.py);
#   4. runs benchmarks/bench_mlp.py --device cuda against PyTorch CUDA eager and a raw CuPy loop at batch
#      128 and 8192;
#   5. runs benchmarks/bench_cnn.py --device cuda: the `--model cnn` network against PyTorch CUDA (cuDNN) at
#      batch 64 and 256.
# Every step runs even when one before failed; the exit status is 1 if any failed. Extra arguments go to
# pytest. Without an NVIDIA GPU (no nvidia-smi, or it lists none) it prints one line and exits 0.
#
# On a machine that already has CuPy, PyTorch and pytest but no internet (a lent GPU machine), skip step 1:
# XPNET_GPU_PYTHON=python3 runs everything with that Python, from this source tree, installing nothing.
# xpnet's own pure-Python dependencies that it lacks travel as wheels (`bash ci/gpu_carry.sh` gathers them,
# and MNIST for step 3, in the git-ignored folder .gpu-carry/; its header says how to use them there).
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "ci/gpu.sh: no NVIDIA GPU here (nvidia-smi not found): nothing to check"
    exit 0
fi
if ! gpus=$(nvidia-smi -L 2>/dev/null) || ! grep -q '^GPU ' <<<"$gpus"; then
    echo "ci/gpu.sh: no NVIDIA GPU here (nvidia-smi -L lists none${gpus:+: ${gpus%%$'\n'*}}): nothing to check"
    exit 0
fi

set -e
report="${XPNET_GPU_REPORT:-gpu-report.md}"
if [ -n "${XPNET_GPU_PYTHON:-}" ]; then
    py="$XPNET_GPU_PYTHON"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    if ! missing=$("$py" -c '
import importlib.util
need = ["cupy", "torch", "pytest", "numpy", "array_api_compat", "tqdm", "pooch"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))') || [ -n "$missing" ]; then
        echo "ci/gpu.sh: XPNET_GPU_PYTHON=$py lacks ${missing:-what it needs}: install them, or carry them as wheels (ci/gpu_carry.sh)" >&2
        exit 1
    fi
else
    venv="${XPNET_VENV:-.venv-gpu}"
    cuda="${XPNET_CUDA:-$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -n1)}"
    case "$cuda" in
        12|13) ;;
        *) echo "ci/gpu.sh: cannot tell the driver's CUDA version (nvidia-smi says '${cuda:-nothing}'); set XPNET_CUDA=12 or 13" >&2
           exit 1 ;;
    esac
    pip_from=()
    if [ -n "${XPNET_WHEELS:-}" ]; then
        pip_from=(--no-index --find-links "$XPNET_WHEELS")
    fi
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    py="$venv/bin/python"
    "$py" -m pip install -q --disable-pip-version-check ${pip_from[@]+"${pip_from[@]}"} -e ".[test,cuda$cuda]" torch
fi
set +e

if [ -z "${XPNET_DATA:-}" ] && [ -d ../shared/data/mnist ]; then
    XPNET_DATA="$(cd ../shared/data && pwd)"
fi
export XPNET_DATA="${XPNET_DATA:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0

step() {  # step NAME COMMAND...: run it, keep its output for the report, remember a failure
    local name="$1"; shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$work/$name.log"
    local status=${PIPESTATUS[0]}
    echo "$status" >"$work/$name.status"
    [ "$status" = 0 ] || failed=1
}

step pytest "$py" -m pytest -m gpu -rs -q -p no:cacheprovider "$@"
step curves "$py" ci/gpu_report.py curves --json "$work/curves.json"
step bench "$py" benchmarks/bench_mlp.py --device cuda --batch-size 128,8192 --peers torch,cupy \
    --json "$work/bench.json"
step cnn "$py" benchmarks/bench_cnn.py --device cuda --batch-size 64,256 --steps 40 --repeats 3 \
    --json "$work/cnn.json"
"$py" ci/gpu_report.py report --logs "$work" --output "$report" || failed=1
echo "ci/gpu.sh: report written to $report ($([ "$failed" = 0 ] && echo "every check passed" || echo "some checks FAILED"))"
exit "$failed"
