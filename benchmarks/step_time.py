"""CPU milliseconds per training step of ``fit``, for whichever xpnet is on ``PYTHONPATH``: compare two trees.

    for t in OLD_TREE NEW_TREE; do PYTHONPATH=$t python benchmarks/step_time.py mlp; done

``mlp``: 784-256-10 ReLU, batch 128, 40 steps; ``cnn``: the ``xpnet train --model cnn`` network for MNIST,
batch 64, 12 steps. AdamW, synthetic data, one BLAS thread, after one warm-up epoch; process CPU time (less
sensitive to other processes than wall time, which is printed too). Run the trees alternately, several rounds.
"""

import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import xpnet  # noqa: E402
from xpnet import Dense, ReLU, Sequential  # noqa: E402


def cnn_layers():
    from xpnet.cli import presets
    try:
        table, dropout = presets.PRESETS, presets.CNN_DROPOUT
    except AttributeError:  # trees from before the presets moved out of cli/parser.py
        from xpnet.cli import parser
        table, dropout = parser.PRESETS, parser.CNN_DROPOUT
    p = table["cnn"]
    return presets.cnn_network(784, 10, p["hidden"][0], p["activation"], p["loss"], dropout, False, "mnist")


def main(which: str) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.random((128 * 40, 784), dtype=np.float32), rng.integers(0, 10, 128 * 40)
    if which == "mlp":
        layers, batch, steps = [Dense(784, 256), ReLU(), Dense(256, 10)], 128, 40
    else:
        layers, batch, steps = cnn_layers(), 64, 12
    model = Sequential(layers, device="cpu", seed=0)
    kw = dict(loss="softmax_cross_entropy", optimizer=xpnet.AdamW(1e-3), batch_size=batch, verbose=0)
    model.fit(X[:batch * 2], y[:batch * 2], epochs=1, **kw)
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(X[:batch * steps], y[:batch * steps], epochs=1, **kw)
    print(json.dumps({"network": which, "cpu_ms_per_step": 1000 * (time.process_time() - cpu) / steps,
                      "wall_ms_per_step": 1000 * (time.perf_counter() - wall) / steps}))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("mlp", "cnn"):
        sys.exit(__doc__)
    main(sys.argv[1])
