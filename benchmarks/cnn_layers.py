#!/usr/bin/env python
"""Where a CNN step's time goes, layer by layer: xpnet's forward and backward of each layer of the
``bench_cnn.py`` network (and the loss and AdamW) against PyTorch's, at each thread count given.

Each layer is timed alone on the activations of a real step: xpnet's ``layer.forward`` / ``layer.backward``;
PyTorch's module on a detached copy of its input, forward, then ``backward`` of its output alone (so the
autograd engine runs that layer's backward and nothing else). The thread counts are switched in one process
(threadpoolctl for BLAS, ``torch.set_num_threads``), interleaved round by round; the figures are the
minimum over ``--repeats`` rounds in milliseconds (a shared machine only ever adds time).

    python benchmarks/cnn_layers.py                          # batch 64, threads 1 and 2
    python benchmarks/cnn_layers.py --batch-size 256 --threads 1,2,4 --repeats 9

Synthetic images (uniform 0..1), so no data set is needed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

LAYER_NAMES = ("conv 1->32", "relu", "conv 32->64", "relu", "maxpool 2", "dropout .25", "flatten", "dense 9216->128",
               "relu", "dropout .5", "dense 128->10")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", default="1,2", help="thread counts to compare, comma-separated (default 1,2)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds; the minimum is kept (default 7)")
    p.add_argument("--no-torch", action="store_true", help="xpnet alone")
    return p.parse_args(argv)


def xpnet_times(model, loss, opt, X, y, times, n):
    """One step, each phase timed into ``times[(n, phase)]``."""
    a = X
    for i, layer in enumerate(model.layers):
        t = time.perf_counter()
        a = layer.forward(a, training=True)
        times.setdefault(("xpnet", n, i, "fwd"), []).append(time.perf_counter() - t)
    t = time.perf_counter()
    loss.forward(a, y)
    d = loss.backward()
    times.setdefault(("xpnet", n, "loss", ""), []).append(time.perf_counter() - t)
    for i in reversed(range(len(model.layers))):
        t = time.perf_counter()
        d = model.layers[i].backward(d)
        times.setdefault(("xpnet", n, i, "bwd"), []).append(time.perf_counter() - t)
    t = time.perf_counter()
    opt.step(model.parameters(), model.gradients())
    times.setdefault(("xpnet", n, "opt", ""), []).append(time.perf_counter() - t)


def torch_times(torch, net, loss, opt, X, y, times, n):
    a = X
    for i, module in enumerate(net):
        inp = a.detach().requires_grad_(i > 0)
        t = time.perf_counter()
        out = module(inp)
        times.setdefault(("torch", n, i, "fwd"), []).append(time.perf_counter() - t)
        grad = torch.ones_like(out)
        t = time.perf_counter()
        out.backward(grad)
        times.setdefault(("torch", n, i, "bwd"), []).append(time.perf_counter() - t)
        a = out
    loss(net(X), y).backward()  # the whole step again, untimed: AdamW needs every gradient
    t = time.perf_counter()
    opt.step()
    opt.zero_grad(set_to_none=False)
    times.setdefault(("torch", n, "opt", ""), []).append(time.perf_counter() - t)


def main(argv=None):
    args = parse_args(argv)
    counts = [int(c) for c in args.threads.split(",")]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(max(counts))
    import numpy as np
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import xpnet
    from bench_cnn import xpnet_model

    rng = np.random.default_rng(0)
    X = rng.random((args.batch_size, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    model, loss, opt = xpnet_model(0), xpnet.losses.SoftmaxCrossEntropy(), xpnet.AdamW(1e-3)
    torch = None if args.no_torch else __import__("torch")
    if torch is not None:
        from torch import nn

        net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                            nn.Linear(128, 10))
        topt, tloss = torch.optim.AdamW(net.parameters(), lr=1e-3), nn.CrossEntropyLoss()
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    times: dict = {}
    for r in range(args.repeats + 1):
        for n in counts if r % 2 == 0 else counts[::-1]:
            with threadpool_limits(limits=n, user_api="blas"):
                xpnet_times(model, loss, opt, X, y, times, n)
            if torch is not None:
                torch.set_num_threads(n)
                torch_times(torch, net, tloss, topt, tX, ty, times, n)
        if r == 0:
            times.clear()  # the first round warms up: thread pools, caches, allocators
    report(times, counts, torch is not None, args.batch_size)


def report(times, counts, with_torch, batch):
    libs = ("xpnet", "torch") if with_torch else ("xpnet",)
    head = "  ".join(f"{lib} x{n:<2d}" for n in counts for lib in libs)
    print(f"batch {batch}: minimum ms per phase\n{'phase':<24s}  {head}")
    phases = [(i, d) for i in range(len(LAYER_NAMES)) for d in ("fwd", "bwd")] + [("loss", ""), ("opt", "")]
    totals = {(lib, n): 0.0 for lib in libs for n in counts}
    for i, d in phases:
        name = f"{LAYER_NAMES[i]} {d}" if isinstance(i, int) else {"loss": "loss fwd+bwd", "opt": "AdamW step"}[i]
        cells = []
        for n in counts:
            for lib in libs:
                v = times.get((lib, n, i, d))
                ms = min(v) * 1e3 if v else float("nan")
                if v:
                    totals[(lib, n)] += ms
                cells.append(f"{ms:8.2f}")
        print(f"{name:<24s}  " + "  ".join(cells))
    print(f"{'total':<24s}  " + "  ".join(f"{totals[(lib, n)]:8.2f}" for n in counts for lib in libs))


if __name__ == "__main__":
    main()
