#!/usr/bin/env bash
# Install xpnet with its test extras into a virtual environment and run the CPU test suite
# (NumPy and array-api-strict always; PyTorch when XPNET_TEST_TORCH=1 and a CPU wheel can be had; JAX's CPU
# build from PyPI when XPNET_TEST_JAX=1; onnx, onnxruntime, scikit-learn, matplotlib, the bare CuPy wheel,
# mpi4py and the MPICH wheel when XPNET_TEST_OPTIONAL=1; tests marked `gpu` are reported as skipped). Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${XPNET_VENV:-.venv}"
py="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
if [ "${XPNET_TEST_TORCH:-0}" = 1 ]; then
    # A CPU build only (torch from PyPI pulls several GB of CUDA libraries): from the index named by
    # XPNET_TORCH_INDEX (GitHub Actions), or a CPU wheel in the local wheel folder (pip's find-links).
    wheel=$(ls "${XPNET_WHEELS:-/opt/wheels}"/torch-*+cpu-*.whl 2>/dev/null | head -n1 || true)
    if [ -n "${XPNET_TORCH_INDEX:-}" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check torch --index-url "$XPNET_TORCH_INDEX"
    elif [ -n "$wheel" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
    else
        echo "ci/test.sh: no CPU build of torch at hand; the torch backend tests are skipped"
    fi
fi
if [ "${XPNET_TEST_JAX:-0}" = 1 ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[jax]"
fi
if [ "${XPNET_TEST_OPTIONAL:-0}" = 1 ]; then
    # The optional parts: ONNX export and ONNX Runtime (its tests compare the two), scikit-learn for
    # xpnet.sklearn, matplotlib for History.plot / --plot, SciPy for NumPy's batch-1 SGD step. Without them their
    # tests skip, with the reason (the SGD step runs through NumPy).
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[onnx,sklearn,plot,blas]" onnxruntime \
        || echo "ci/test.sh: the optional packages could not be installed; their tests are skipped"
    # The CuPy wheel alone (136 MB, about 7 s to fetch and install; no CUDA libraries, no driver here): the
    # laptop case, where `auto` must pick the CPU and say why, an explicit `cuda` must name the cause and
    # its fix (not "install CuPy"), and `pytest -m gpu` must skip with that reason.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check cupy-cuda12x \
        || echo "ci/test.sh: cupy-cuda12x could not be installed; the CuPy-without-a-GPU checks are skipped"
    # MPI for xpnet.distributed: mpi4py and the MPICH wheel (its mpiexec lands next to the venv's python,
    # where tests/test_distributed.py looks for it); its tests launch `mpiexec -n 2` on the CPU.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[mpi]" mpich \
        || echo "ci/test.sh: mpi4py or mpich could not be installed; the MPI tests are skipped"
fi
if [ -z "${XPNET_DATA:-}" ] && [ -d ../shared/data/mnist ]; then
    XPNET_DATA="$(cd ../shared/data && pwd)"
    export XPNET_DATA
fi
exec "$venv/bin/python" -m pytest "$@"
