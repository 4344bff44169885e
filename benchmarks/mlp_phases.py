#!/usr/bin/env python
"""The MNIST MLP at batch 128 (784-256-10, ReLU, softmax cross-entropy, SGD 0.1), one BLAS thread: xpnet's
step phase by phase, ``fit`` as a whole, and ``bench_mlp.py``'s hand-written NumPy loop, CPU microseconds a
step (minimum / median of interleaved epochs), on the MNIST training set (``$XPNET_DATA``).

``phases`` calls the layers, the loss and ``SGD.step`` by hand on the same batches; ``fit`` minus their sum
is ``fit``'s own per-step work (its input check, once per call, spread over the epoch's steps; the accuracy
and the loss totals).

    python benchmarks/mlp_phases.py

Not part of the test suite.
"""

from __future__ import annotations

import os
import sys
import time

BATCH = 128


def main(rounds: int = 5) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import xpnet
    from bench_mlp import plain_loop
    from xpnet import datasets

    (X, y), _ = datasets.load("mnist", download=False)
    X, y = np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32), y.astype(np.int64)
    steps = X.shape[0] // BATCH
    order = np.random.default_rng(0).permutation(X.shape[0])[:steps * BATCH]
    X_ordered, y_ordered = X[order], y[order]  # fit's batches are then slices: the same rows as the others'
    model = xpnet.Sequential([xpnet.Dense(784, 256, init="he_normal"), xpnet.ReLU(), xpnet.Dense(256, 10)], seed=0)
    start_weights = {k: v.copy() for k, v in model.state_dict().items()}
    loss, sgd = xpnet.losses.SoftmaxCrossEntropy(), xpnet.SGD(0.1)

    def phases():
        params, grads, spent = model.parameters(), model.gradients(), dict.fromkeys(
            ("gather", "forward", "loss", "backward", "sgd"), 0.0)
        for s in range(steps):
            t0 = time.process_time()
            idx = order[s * BATCH:(s + 1) * BATCH]
            xb, yb = X[idx], y[idx]
            t1 = time.process_time()
            out = model.forward(xb, training=True)
            t2 = time.process_time()
            loss.forward(out, yb)
            d = loss.backward()
            t3 = time.process_time()
            model.backward(d)
            t4 = time.process_time()
            sgd.step(params, grads)
            t5 = time.process_time()
            for key, a, b in (("gather", t0, t1), ("forward", t1, t2), ("loss", t2, t3), ("backward", t3, t4),
                              ("sgd", t4, t5)):
                spent[key] += (b - a) / steps * 1e6
        return spent

    def fit():
        start = time.process_time()
        model.fit(X_ordered, y_ordered, loss="softmax_cross_entropy", optimizer=sgd, batch_size=BATCH, epochs=1,
                  shuffle=False, verbose=0)
        return {"fit": (time.process_time() - start) / steps * 1e6}

    def loop():
        Ws, bs = [start_weights["0.W"].copy(), start_weights["2.W"].copy()], [start_weights["0.b"].copy(),
                                                                             start_weights["2.b"].copy()]
        start = time.process_time()
        plain_loop(np, X, y, Ws, bs, [order], BATCH, 0.1)
        return {"NumPy loop": (time.process_time() - start) / steps * 1e6}

    results: dict = {}
    for r in range(rounds):
        for run in (phases, fit, loop) if r % 2 == 0 else (loop, fit, phases):
            for key, us in run().items():
                results.setdefault(key, []).append(us)
    print(f"MLP 784-256-10, batch {BATCH}, one BLAS thread: CPU us a step (min / median of {rounds})")
    for key, v in results.items():
        print(f"{key:<12s} {min(v):8.1f} / {sorted(v)[rounds // 2]:8.1f}")
    parts = ("gather", "forward", "loss", "backward", "sgd")
    print(f"{'sum of phases':<12s} {sum(min(results[k]) for k in parts):8.1f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
