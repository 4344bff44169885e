#!/usr/bin/env python
"""Batch 1 on the book's network (784-200-10 sigmoid, MSE, SGD 0.1): what ``fit`` costs over the book's
per-sample code, split into the training loop's share and the update order's.

Four runners, the same synthetic samples, CPU time per sample (one BLAS thread, interleaved rounds):

* ``book``: the book's ``train`` (float32), as ``bench_tutorial.py`` runs it;
* ``fit``: ``Sequential.fit(batch_size=1)``;
* ``hand loop``: the same layers' ``forward`` / ``backward``, the loss and ``SGD.step`` called in a loop:
  ``fit`` minus its own per-step work;
* ``update in backward``: the same forward and loss, each Dense weight updated inside the backward pass
  (``W += x^T (-lr dy)``: one outer product into a reused buffer and one add, no dW kept; what PyTorch's
  post-accumulate-grad hooks allow for plain SGD). A prototype for the measurement, not xpnet code.

    python benchmarks/batch1_update_order.py           # 2,000 samples, 5 rounds

Not part of the test suite.
"""

from __future__ import annotations

import os
import sys
import time


def main(samples: int = 2000, rounds: int = 5) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy as np
    from scipy.special import expit

    import xpnet

    rng = np.random.default_rng(0)
    X = rng.random((samples, 784), dtype=np.float32) * 0.99 + 0.01
    T = np.full((samples, 10), 0.01, np.float32)
    T[np.arange(samples), rng.integers(0, 10, samples)] = 0.99
    lr = np.float32(0.1)

    def model():
        return xpnet.Sequential([xpnet.Dense(784, 200), xpnet.Sigmoid(), xpnet.Dense(200, 10), xpnet.Sigmoid()],
                                seed=0)

    fitted, hand, fused, loss, sgd = model(), model(), model(), xpnet.losses.MSE(), xpnet.SGD(0.1)
    buffers = [np.empty((784, 200), np.float32), np.empty((200, 10), np.float32)]

    def fit():
        fitted.fit(X, T, loss="mse", optimizer=sgd, epochs=1, batch_size=1, shuffle=False, verbose=0)

    def hand_loop():
        params, grads = hand.parameters(), hand.gradients()
        for i in range(samples):
            loss.forward(hand.forward(X[i:i + 1], training=True), T[i:i + 1])
            hand.backward(loss.backward())
            sgd.step(params, grads)

    def update_in_backward():
        dense1, sig1, dense2, sig2 = fused.layers
        for i in range(samples):
            loss.forward(fused.forward(X[i:i + 1], training=True), T[i:i + 1])
            g = sig2.backward(loss.backward())
            gx = g @ dense2.params["W"].T  # before the weight moves
            for layer, x, buf, d in ((dense2, dense2._x, buffers[1], g), (dense1, X[i:i + 1], buffers[0], None)):
                d = sig1.backward(gx) if d is None else d
                np.dot(x.T, d * -lr, out=buf)
                layer.params["W"] += buf
                layer.params["b"] -= lr * d[0]

    def book():
        wih, who = (np.ascontiguousarray(m.params["W"].T) for m in (fitted.layers[0], fitted.layers[2]))
        for i in range(samples):
            inputs, targets = X[i:i + 1].T, T[i:i + 1].T
            h = expit(wih @ inputs)
            o = expit(who @ h)
            oe = targets - o
            he = who.T @ oe
            who += lr * np.dot(oe * o * (1.0 - o), h.T)
            wih += lr * np.dot(he * h * (1.0 - h), inputs.T)

    runners = {"book": book, "fit": fit, "hand loop": hand_loop, "update in backward": update_in_backward}
    times = {k: [] for k in runners}
    for r in range(rounds):
        for name, run in (runners.items() if r % 2 == 0 else reversed(list(runners.items()))):
            start = time.process_time()
            run()
            times[name].append((time.process_time() - start) / samples * 1e6)
    book_us = sorted(times["book"])[rounds // 2]
    print(f"{samples} samples, one BLAS thread, CPU us a sample (min / median of {rounds}; median vs the book)")
    for name, v in times.items():
        median = sorted(v)[rounds // 2]
        print(f"{name:<20s} {min(v):7.1f} / {median:7.1f}   {median / book_us:.2f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
