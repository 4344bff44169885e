#!/usr/bin/env bash
# The one command for a GPU machine: a verdict on xpnet's GPU claims (PASS / FAIL / NOT RUN, each step's
# with its reason) in one call of at most ~6 minutes, written as it goes, so that a run cut off keeps
# what it decided.
#
#   bash ci/gpu.sh [OUT_DIR]      # OUT_DIR: $1, else $GPU_OUT, else $OUT (set by the device tool), else ./gpu-report
#
# Without an NVIDIA GPU (no nvidia-smi, or it lists none) it prints one line, writes nothing and exits 0.
#
# THE DEVICE CALL (a lent GPU machine: one H100 or H200, no internet; its python3 has CuPy, PyTorch, JAX,
# pytest and hypothesis, and lacks array-api-compat, array-api-strict, pooch and platformdirs):
#   1. here, with internet:  bash ci/gpu_carry.sh    (fills the git-ignored .gpu-carry/: those wheels for
#      Python 3.12, and MNIST and tiny Shakespeare; ~13 MB, within the tool's 64 MiB)
#   2. the device tool, once, the kind left out:
#        run(command="XPNET_GPU_PYTHON=python3 bash ci/gpu.sh", carry=[".gpu-carry"], timeout_s=450)
#      The script installs the carried wheels itself (pip --target, a few seconds) and writes to $OUT.
#      A lease is 15 minutes in all: a start (1-2 min), this call (6 min, killed at 7.5), and time for
#      one rerun. Read report.md first; give the machine back unless rerunning at once.
#
# What it writes in OUT_DIR (three files; the device tool brings back at most eight):
#   report.md   line 1 the verdict, then a row per step (verdict, seconds, limit, why) and each step's
#               details (failed tests, skip reasons, the loss-curve table, the benchmark tables);
#               rewritten before and after every step (a step cut off shows RUNNING)
#   gpu.log     every step's output, appended as it comes
#   steps.tgz   the work folder, refreshed after every step: <step>.log, <step>.verdict.json,
#               probe.json, curves.json, the benchmarks' JSON
# Exit status: 0 PASS (probe, gpu-tests and cupy-suite passed, no step failed), 1 FAIL (a step failed),
# 2 NOT RUN (nothing decided: no GPU that CuPy can use, or the time ran out first). The decisions are
# ci/gpu_report.py's (begin, judge, report).
#
# The steps, decisive first, each under `timeout` with the limit in seconds below, all within
# XPNET_GPU_BUDGET seconds (default 360, counted from the first step; a step is NOT RUN when under 20 s
# are left, and gets no more than what is left):
STEPS="
probe          45  CuPy, torch and JAX on CUDA, alone and through xpnet's probe; versions
gpu-tests      60  pytest tests/test_gpu.py: training vs NumPy, OOM recovery, the CLI on CUDA, moves, JAX
cupy-suite    120  pytest -m 'gpu and not slow' -k cupy-cuda0: every backend-parametrized test on CuPy
curves         90  loss curves CUDA vs CPU (ci/gpu_curves.py): SGD and float64 tight, AdamW accuracy and loose
op-counts      30  ops and host syncs per training step, measured on CUDA (benchmarks/op_count.py)
bench-mlp      90  benchmarks/bench_mlp.py --device cuda: MLP throughput and memory vs PyTorch CUDA
bench-cnn      75  benchmarks/bench_cnn.py --device cuda: the CNN preset vs PyTorch CUDA
cnn-accuracy   60  xpnet train --model cnn --epochs 1 --device cuda: MNIST test accuracy >= 0.977
bench-gpt      60  the GPT preset vs PyTorch CUDA (benchmarks/bench_gpt.py)
torch-suite    90  pytest -m 'gpu and not slow' -k torch-cuda0: the suite on torch-CUDA (duplicates, last)
"
# A pytest step counts the CUDA tests that ran from pytest -v's lines, one per test as it ends (so a
# timeout keeps the count): none ran is FAIL where the probe found a usable GPU, NOT RUN where not.
# A step whose tool does not exist (--requires) is NOT RUN "not built yet"; bench-gpt reads tiny
# Shakespeare from $XPNET_DATA/shakespeare (ci/gpu_carry.sh carries it) and fails, saying so, without it.
# op-counts fails where a training step syncs with the host (op_count.py exits 1).
# 0.977 is the CPU's one-epoch figure (0.9824, BENCHMARKS.md) less 0.005 for other dropout masks (CuPy
# draws them).
#
# Settings: XPNET_GPU_PYTHON=python3 uses that Python from this source tree (no venv; carried wheels in
# .gpu-carry/ are installed for it); otherwise a venv (XPNET_VENV, default .venv-gpu) gets xpnet with the
# CuPy extra of the driver's CUDA major (XPNET_CUDA=12|13 to choose) and torch, from the internet or
# from XPNET_WHEELS=DIR (outside the budget: minutes). XPNET_DATA: the folder holding mnist/ (default
# .gpu-carry/data, then ../shared/data). XPNET_GPU_SUITE: the test paths of the two suite steps (default
# tests; the CPU rehearsal in tests/test_gpu_script.py narrows it). XPNET_GPU_ONLY=curves,bench-cnn runs
# only those steps (and the probe, which the others read): a rerun on the same warm machine. Extra
# arguments after OUT_DIR go to every pytest step.
set -uo pipefail
out="${1:-${GPU_OUT:-${OUT:-gpu-report}}}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
shift $(( $# > 0 ? 1 : 0 ))
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "ci/gpu.sh: no NVIDIA GPU here (nvidia-smi not found): nothing to check"
    exit 0
fi
if ! gpus=$(nvidia-smi -L 2>/dev/null) || ! grep -q '^GPU ' <<<"$gpus"; then
    echo "ci/gpu.sh: no NVIDIA GPU here (nvidia-smi -L lists none${gpus:+: ${gpus%%$'\n'*}}): nothing to check"
    exit 0
fi

mkdir -p "$out" && rm -f "$out/report.md" "$out/gpu.log" "$out/steps.tgz" || exit 1
work="$(mktemp -d)" && site="$(mktemp -d)" || exit 1
trap 'rm -rf "$work" "$site"' EXIT
setup_failed() {  # the report too, so that a caller who reads only OUT_DIR sees why
    echo "ci/gpu.sh: $1" >&2
    printf '# GPU verdict: FAIL: setup: %s\n' "$1" >"$out/report.md"
    exit 1
}

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX would take 75 % of the GPU inside the pytest process
if [ -n "${XPNET_GPU_PYTHON:-}" ]; then
    py="$XPNET_GPU_PYTHON"
    if compgen -G ".gpu-carry/*.whl" >/dev/null; then
        timeout 120 "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
            --target "$site" .gpu-carry/*.whl >>"$out/gpu.log" 2>&1 ||
            setup_failed "installing the carried wheels (.gpu-carry/*.whl) into $py failed: see $out/gpu.log"
        export PYTHONPATH="$site:$PYTHONPATH"
    fi
    # CuPy, torch and JAX are left out: each one missing makes its steps NOT RUN, saying so
    if ! missing=$("$py" -c '
import importlib.util
need = ["numpy", "array_api_compat", "tqdm", "pooch", "threadpoolctl", "pytest", "hypothesis"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))') || [ -n "$missing" ]; then
        setup_failed "XPNET_GPU_PYTHON=$py lacks ${missing:-what it needs}: install them, or carry them as wheels \
(ci/gpu_carry.sh)"
    fi
else
    venv="${XPNET_VENV:-.venv-gpu}"
    cuda="${XPNET_CUDA:-$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -n1)}"
    case "$cuda" in
        12|13) ;;
        *) setup_failed "cannot tell the driver's CUDA version (nvidia-smi says '${cuda:-nothing}'); \
set XPNET_CUDA=12 or 13" ;;
    esac
    pip_from=()
    [ -n "${XPNET_WHEELS:-}" ] && pip_from=(--no-index --find-links "$XPNET_WHEELS")
    { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } &&
        "$venv/bin/python" -m pip install -q --disable-pip-version-check ${pip_from[@]+"${pip_from[@]}"} \
            -e ".[test,cuda$cuda]" torch >>"$out/gpu.log" 2>&1 ||
        setup_failed "installing xpnet[test,cuda$cuda] and torch into $venv failed: see $out/gpu.log"
    py="$venv/bin/python"
fi
if [ -z "${XPNET_DATA:-}" ]; then
    for d in .gpu-carry/data ../shared/data; do
        [ -d "$d/mnist" ] && { XPNET_DATA="$(cd "$d" && pwd)"; break; }
    done
fi
export XPNET_DATA="${XPNET_DATA:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$work/nvidia-smi.txt" 2>&1
awk 'NF { print $1 "\t" $2 "\t" substr($0, index($0, $3)) }' <<<"$STEPS" >"$work/plan.tsv"

report() {  # report [--final]: the report and the work folder's archive, as they are now
    "$py" ci/gpu_report.py report --logs "$work" --output "$out/report.md" "$@"
    local verdict=$?
    tar -czf "$out/steps.tgz.tmp" -C "$work" . 2>/dev/null && mv -f "$out/steps.tgz.tmp" "$out/steps.tgz"
    return "$verdict"
}

limit_of() { awk -v s="$1" '$1 == s { print $2 }' "$work/plan.tsv"; }

start=$SECONDS
budget="${XPNET_GPU_BUDGET:-360}"
B=() J=()  # each step's options for `gpu_report.py begin` (may it run?) and `judge` (what did it prove?)
step() {  # step NAME COMMAND...: begin, run it under timeout (output to its log and gpu.log), judge, report
    local name="$1"; shift
    local left=$(( budget - (SECONDS - start) )) limit
    limit="$(limit_of "$name")"
    (( limit > left )) && limit=$(( left > 0 ? left : 0 ))
    echo "== $name (limit $limit s): $*" >>"$out/gpu.log"
    if "$py" ci/gpu_report.py begin "$name" --logs "$work" --timeout "$limit" --left "$left" \
            --only "${XPNET_GPU_ONLY:-}" ${B[@]+"${B[@]}"} 2>&1 | tee -a "$out/gpu.log"
            [ "${PIPESTATUS[0]}" = 0 ]; then
        date +%s >"$work/$name.running"
        report
        local t0=$SECONDS
        timeout -k 10 "$limit" "$@" </dev/null 2>&1 | tee -a "$out/gpu.log" >"$work/$name.log"
        local code=${PIPESTATUS[0]}
        "$py" ci/gpu_report.py judge "$name" --logs "$work" --exit "$code" --timeout "$limit" \
            --seconds $(( SECONDS - t0 )) --command "$*" ${J[@]+"${J[@]}"} 2>&1 | tee -a "$out/gpu.log"
        [ -e "$work/$name.verdict.json" ] ||  # judge itself broke: say so rather than leave it RUNNING
            printf '{"step": "%s", "verdict": "FAIL", "reason": "%s"}\n' "$name" \
                "ci/gpu_report.py judge failed: see gpu.log" >"$work/$name.verdict.json"
    fi
    report
}

pytest=("$py" -m pytest -p no:cacheprovider -v -rs --tb=short --color=no "$@")
suite=(${XPNET_GPU_SUITE:-tests})
data=(--data "$XPNET_DATA")

B=() J=(--kind probe)
step probe "$py" ci/gpu_report.py probe --json "$work/probe.json"
B=() J=(--kind pytest --needs cupy)
step gpu-tests "${pytest[@]}" tests/test_gpu.py
B=() J=(--kind pytest --needs cupy --cuda-ids cupy-cuda)
step cupy-suite "${pytest[@]}" -m "gpu and not slow" -k cupy-cuda0 "${suite[@]}"
B=(--needs cupy "${data[@]}") J=(--kind curves)
step curves "$py" ci/gpu_report.py curves --json "$work/curves.json"
B=(--needs cupy) J=()
step op-counts "$py" benchmarks/op_count.py --device cuda --json "$work/op-counts.json"
B=(--needs cupy "${data[@]}") J=()
step bench-mlp "$py" benchmarks/bench_mlp.py --device cuda --batch-size 128,8192 --peers torch,cupy --repeats 3 \
    --retries 0 --json "$work/bench-mlp.json"
step bench-cnn "$py" benchmarks/bench_cnn.py --device cuda --batch-size 64,256 --steps 40 --repeats 3 \
    --json "$work/bench-cnn.json"
J=(--kind accuracy --min-accuracy 0.977)
step cnn-accuracy "$py" -m xpnet train --dataset mnist --model cnn --epochs 1 --device cuda --no-download --quiet
B=(--requires benchmarks/bench_gpt.py --needs cupy) J=()
step bench-gpt "$py" benchmarks/bench_gpt.py --device cuda --json "$work/bench-gpt.json"
B=() J=(--kind pytest --needs torch --cuda-ids torch-cuda)
step torch-suite "${pytest[@]}" -m "gpu and not slow" -k torch-cuda0 "${suite[@]}"

report --final
verdict=$?
sed '/^## Machine/,$d' "$out/report.md"
echo "ci/gpu.sh: report in $out/report.md, every step's output in $out/gpu.log and $out/steps.tgz"
exit "$verdict"
