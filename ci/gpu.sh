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
#      128 and 8192.
# Every step runs even when one before failed; the exit status is 1 if any failed. Extra arguments go to
# pytest. Without an NVIDIA GPU (no nvidia-smi, or it lists none) it prints one line and exits 0.
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
venv="${XPNET_VENV:-.venv-gpu}"
report="${XPNET_GPU_REPORT:-gpu-report.md}"
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
"$py" ci/gpu_report.py report --logs "$work" --output "$report" || failed=1
echo "ci/gpu.sh: report written to $report ($([ "$failed" = 0 ] && echo "every check passed" || echo "some checks FAILED"))"
exit "$failed"
