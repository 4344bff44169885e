#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: install xpnet with the CuPy extra that matches the driver's CUDA
# major version (12 or 13, override with XPNET_CUDA=12|13) and run the GPU tests (`pytest -m gpu`).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${XPNET_VENV:-.venv-gpu}"
cuda="${XPNET_CUDA:-$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -n1)}"
case "$cuda" in
    12|13) ;;
    *) echo "ci/gpu.sh: cannot tell the CUDA version (nvidia-smi says '${cuda:-nothing}'); set XPNET_CUDA=12 or 13" >&2
       exit 1 ;;
esac
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,cuda$cuda]"
if [ -z "${XPNET_DATA:-}" ] && [ -d ../shared/data/mnist ]; then
    XPNET_DATA="$(cd ../shared/data && pwd)"
    export XPNET_DATA
fi
exec "$venv/bin/python" -m pytest -m gpu "$@"
