#!/usr/bin/env python
"""Where an MLP step's matrix products should run on the NumPy backend: on BLAS's own threads, or cut over
xpnet's pool of threads (each block on one BLAS thread). The figures behind ``SPLIT_MACS`` in
``xpnet/backend/_numpy_layers.py``.

An MNIST-sized MLP step (784-256-10, ReLU, softmax cross-entropy, SGD: forward, loss, backward, step) at
batch 128 and 1024 on synthetic data, the configurations interleaved in one process, ms a step:

* ``blas``: every product on BLAS's threads (as NumPy runs them);
* ``split 2**25`` (the default until the GPT measured its products slower on the pool; now 2**26): products of 2**25 multiply-adds or more on the pool, smaller on BLAS's threads;
* ``split 2**22``: from 2**22 on the pool, and from 2**18 (where OpenBLAS starts its threads) on one BLAS thread.

    python benchmarks/blas_threads.py                  # 2 threads (OPENBLAS_NUM_THREADS), 8 rounds

Run it on a quiet machine and on a busy one: BLAS's threads hand off faster when the cores are free, the
pool's survive a core taken by another process. Not part of the test suite.
"""

from __future__ import annotations

import os
import sys
import time

CONFIGS = {"blas": (None, 2**62), "split 2**25": (None, 2**25), "split 2**22": (2**18, 2**22)}


def main(threads: int = 2, rounds: int = 8) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    import numpy as np
    from threadpoolctl import threadpool_limits

    import xpnet
    from xpnet.backend import _numpy_layers, _pool, arrays

    numpy_backend, pooled = type(xpnet.backend.LIBRARIES["numpy"]), _numpy_layers.matmul

    def use(single, split):
        """Dense's products through SPLIT_MACS = split, and from ``single`` up to it on one BLAS thread."""
        def matmul(a, b):
            macs = a.shape[0] * a.shape[1] * b.shape[1] if a.ndim == 2 and b.ndim == 2 else 0
            if single is not None and single <= macs < split:
                with threadpool_limits(limits=1, user_api="blas"):
                    return np.matmul(a, b)
            return pooled(a, b)

        _numpy_layers.SPLIT_MACS = split
        numpy_backend.matmul = staticmethod(matmul)
        arrays._ROUTINES.clear()  # the routine table looks the backend's function up once

    rng = np.random.default_rng(0)
    results: dict = {}
    for batch, steps in ((128, 40), (1024, 10)):
        X, y = rng.random((batch, 784), dtype=np.float32), rng.integers(0, 10, batch)
        model = xpnet.Sequential([xpnet.Dense(784, 256), xpnet.ReLU(), xpnet.Dense(256, 10)], seed=0)
        loss, opt = xpnet.losses.SoftmaxCrossEntropy(), xpnet.SGD(0.1)
        params, grads = model.parameters(), model.gradients()
        for r in range(rounds):
            for name, (single, split) in (CONFIGS.items() if r % 2 == 0 else reversed(list(CONFIGS.items()))):
                use(single, split)
                for i in range(steps + 2):  # two untimed steps first
                    if i == 2:
                        start = time.perf_counter()
                    out = model.forward(X, training=True)
                    loss.forward(out, y)
                    model.backward(loss.backward())
                    opt.step(params, grads)
                results.setdefault((batch, name), []).append((time.perf_counter() - start) / steps * 1e3)
    print(f"MLP 784-256-10 step, {_pool.threads()} threads, ms (min / median of {rounds} rounds)")
    for (batch, name), v in results.items():
        print(f"batch {batch:<5d} {name:<12s} {min(v):7.3f} / {sorted(v)[len(v) // 2]:7.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
