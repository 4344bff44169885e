#!/usr/bin/env bash
# Gathers, in the git-ignored folder .gpu-carry/, what `ci/gpu.sh` needs on a GPU machine that has CuPy,
# PyTorch and pytest but no internet: the wheels of xpnet's pure-Python dependencies such a machine lacks
# and copies of MNIST (for the loss curves, the benchmarks and the CNN's accuracy) and of tiny Shakespeare
# (for the GPT benchmark). Send the folder along (the device tool: carry=[".gpu-carry"]) and run there
#
#   XPNET_GPU_PYTHON=python3 bash ci/gpu.sh
#
# which installs the wheels for that Python (pip --target a temporary folder) and reads the data from
# .gpu-carry/data. ci/gpu.sh's header has the whole device call. The wheels are for that machine's Python
# (XPNET_GPU_PY, default 3.12). Delete .gpu-carry/ afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu-carry
mkdir -p "$dest"
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "${XPNET_GPU_PY:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" array-api-compat array-api-strict pooch platformdirs
data="${XPNET_DATA:-../shared/data}"
if [ -d "$data/mnist" ]; then
    mkdir -p "$dest/data"
    cp -r "$data/mnist" "$dest/data/"
else
    echo "ci/gpu_carry.sh: no mnist/ under $data (set XPNET_DATA): the loss-curve step will have no data" >&2
fi
if [ -d "$data/shakespeare" ]; then  # tiny Shakespeare (1.1 MB), for the bench-gpt step
    mkdir -p "$dest/data"
    cp -r "$data/shakespeare" "$dest/data/"
else
    echo "ci/gpu_carry.sh: no shakespeare/ under $data (set XPNET_DATA): the bench-gpt step will have no text" >&2
fi
echo "ci/gpu_carry.sh: $(du -sh "$dest" | cut -f1) in $dest/:" $(ls "$dest")
