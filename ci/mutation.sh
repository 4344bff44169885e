#!/usr/bin/env bash
# Mutation testing with mutmut 3 (issue 15, part 2). Slow (about a quarter of an hour on 2 cores), so it
# is run by hand or on a schedule, never by .ci/run.
#
#   bash ci/mutation.sh            # fresh run: mutate, test, write mutation-report/report.md
#   bash ci/mutation.sh --keep     # reuse the results in mutants/ (only new or changed code is retested)
#   bash ci/mutation.sh --report   # only rewrite the report from mutants/
#
# What is mutated and which tests may kill it: [tool.mutmut] in pyproject.toml (the one place to edit).
# The run uses its own venv (XPNET_MUTATION_VENV, default .venv-mutation) with NumPy and
# array-api-strict only: no torch (those tests skip) and no MNIST data (XPNET_DATA is unset), so a run
# needs neither. The score is killed / (total - equivalent), with the equivalent mutants listed in
# ci/mutation-equivalents.md; the script exits 1 when it is below MUTATION_MIN_SCORE (default 90).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${XPNET_MUTATION_VENV:-.venv-mutation}"
py="${PYTHON:-python3}"
mode="${1:-fresh}"
mutmut_version="3.8.1"

[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]" "mutmut==$mutmut_version"

report() {
    "$venv/bin/python" ci/mutation_report.py --out mutation-report --min-score "${MUTATION_MIN_SCORE:-90}" \
        --command "bash ci/mutation.sh $*" ${wall:+--wall-seconds "$wall"}
}

case "$mode" in
    --report) wall=""; report --report; exit ;;
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
PATH="$PWD/$venv/bin:$PATH" mutmut run --max-children "$jobs"
wall=$(( $(date +%s) - start ))
report ${1:-}
