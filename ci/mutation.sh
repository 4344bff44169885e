#!/usr/bin/env bash
# Mutation testing with mutmut 3 (issue 15, part 2). It takes minutes (about 7 on 2 cores), so it is run
# by hand or on a schedule, never by .ci/run.
#
#   bash ci/mutation.sh            # fresh run: mutate, test, write mutation-report/report.md
#   bash ci/mutation.sh --keep     # reuse the results in mutants/ (only new or changed code is retested)
#   bash ci/mutation.sh --report   # only rewrite the report from mutants/
#
# What is mutated and which tests may kill it: [tool.mutmut] in pyproject.toml (the one place to edit).
# The run uses its own venv (XPNET_MUTATION_VENV, default .venv-mutation) with NumPy and
# array-api-strict only: no torch (those tests skip) and no MNIST data (XPNET_DATA is unset), so a run
# needs neither. MUTATION_TORCH=1 adds a CPU build of torch, found as ci/test.sh finds it, and with it
# the torch-parametrized tests (slower). The score is killed / (total - equivalent), the equivalent
# mutants being listed in ci/mutation-equivalents.md; the script exits 1 when the score is below
# MUTATION_MIN_SCORE (default 90).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${XPNET_MUTATION_VENV:-.venv-mutation}"
py="${PYTHON:-python3}"
mode="${1:-fresh}"
mutmut_version="3.8.1"

[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
venv="$(cd "$venv" && pwd)"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]" "mutmut==$mutmut_version"
if [ "${MUTATION_TORCH:-0}" = 1 ]; then
    wheel=$(ls "${XPNET_WHEELS:-/opt/wheels}"/torch-*+cpu-*.whl 2>/dev/null | head -n1 || true)
    if [ -n "${XPNET_TORCH_INDEX:-}" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check torch --index-url "$XPNET_TORCH_INDEX"
    elif [ -n "$wheel" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
    else
        echo "ci/mutation.sh: MUTATION_TORCH=1 but no CPU build of torch at hand" >&2; exit 2
    fi
else
    "$venv/bin/python" -m pip uninstall -q -y torch >/dev/null 2>&1 || true
fi

report() {
    [ -n "${wall:-}" ] || wall=$(cat mutants/wall-seconds 2>/dev/null || true)
    "$venv/bin/python" ci/mutation_report.py --out mutation-report --min-score "${MUTATION_MIN_SCORE:-90}" \
        --command "$(echo "${MUTATION_TORCH:+MUTATION_TORCH=$MUTATION_TORCH }bash ci/mutation.sh $*" | sed 's/ *$//')" \
        ${wall:+--wall-seconds "$wall"}
}

case "$mode" in
    --report) report --report; exit ;;
    --keep) ;;
    fresh) rm -rf mutants ;;  # mutmut keeps copies of unmutated files and old verdicts there
    *) echo "usage: bash ci/mutation.sh [--keep | --report]" >&2; exit 2 ;;
esac

unset XPNET_DATA XPNET_TEST_TORCH
jobs="${MUTATION_JOBS:-$(nproc)}"  # before OMP_NUM_THREADS is set: GNU nproc honours it
# One BLAS thread per worker: the arrays are tiny, and the workers already use every core.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
start=$(date +%s)
# mutmut exits 0 whatever the verdicts; a non-zero exit means the clean run failed (a broken test).
PATH="$venv/bin:$PATH" mutmut run --max-children "$jobs"
wall=$(( $(date +%s) - start ))
echo "$wall" > mutants/wall-seconds
report ${1:-}
