"""How closely xpnet's GPT follows the PyTorch reference (tests/torch_gpt.py) at full size: the figures behind
tests/test_gpt.py's tiny-size tests.

    python benchmarks/gpt_agreement.py [--backend numpy] [--steps 50]

1. float64 gradients of a 2-block GPT of the baby run's width (vocabulary 65, block 64, 4 heads, 128 wide), on a
   batch of 12 windows of tiny shakespeare: the largest relative error over the parameters (max |xpnet - torch|
   / max |torch| per array), tied and untied.
2. float32 training, ``xpnet train --model gpt``'s network (4 blocks), optimizer and schedule, against
   torch_gpt's rule from the same weights on the same windows: the largest difference of the first ``--steps``
   losses.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import torch_gpt  # noqa: E402

import xpnet  # noqa: E402
from xpnet import models  # noqa: E402
from xpnet.cli.gpt import GPT, gpt_optimizer, gpt_schedule  # noqa: E402

B, T = GPT["batch_size"], GPT["block_size"]


def windows(ids, starts):
    return (np.stack([ids[s:s + T] for s in starts]).astype(np.int64),
            np.stack([ids[s + 1:s + T + 1] for s in starts]).astype(np.int64))


def gradient_error(ids, vocab, backend: str, tie: bool) -> float:
    model = models.gpt(vocab, T, 2, GPT["n_head"], GPT["n_embd"], tie=tie, dtype="float64", seed=0, backend=backend)
    X, Y = windows(ids, np.random.default_rng(0).integers(0, len(ids) - T, size=B))
    loss = xpnet.SoftmaxCrossEntropy()
    dev = model.device
    loss.forward(model.forward(dev.asarray(X, "int64"), training=True), dev.asarray(Y, "int64"))
    model.backward(loss.backward())
    net = torch_gpt.from_xpnet(model)
    net.loss(torch.from_numpy(X), torch.from_numpy(Y)).backward()
    want = torch_gpt.as_xpnet(net, grads=True)
    return max(float(np.abs(xpnet.to_numpy(model.gradients()[k]) - g).max() / np.abs(g).max()) for k, g in want.items())


class Losses(xpnet.Callback):
    def __init__(self):
        self.seen = []

    def on_batch_end(self, step, logs=None):
        self.seen.extend(logs["losses"].tolist())


def loss_difference(ids, vocab, backend: str, steps: int) -> tuple:
    model = models.gpt(vocab, T, GPT["n_layer"], GPT["n_head"], GPT["n_embd"], seed=0, backend=backend)
    net = torch_gpt.from_xpnet(model)
    opt = torch_gpt.optimizer(net)
    rng, record = copy.deepcopy(model.rng), Losses()
    model.fit(xpnet.TextWindows(ids, T), loss="softmax_cross_entropy", optimizer=gpt_optimizer(),
              schedule=gpt_schedule(steps=GPT["steps"]), batch_size=B, epochs=1, steps_per_epoch=steps, verbose=0,
              callbacks=[record], check_every=10)
    want = [torch_gpt.train_step(net, opt, *map(torch.from_numpy, windows(ids, row)), torch_gpt.lr_at(t))
            for t, row in enumerate(rng.integers(0, len(ids) - T, size=(steps, B)))]
    return float(np.abs(np.array(record.seen) - want).max()), want[0], want[-1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="numpy", help="xpnet's array library (default numpy)")
    p.add_argument("--steps", type=int, default=50, help="training steps compared (default 50)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    train, _, vocab = xpnet.datasets.load_text("shakespeare")
    for tie in (True, False):
        error = gradient_error(train, vocab.size, args.backend, tie)
        print(f"float64 gradients, 2 blocks x 128 wide, block {T}, batch {B}, {'tied' if tie else 'untied'}, "
              f"{args.backend}: largest relative error {error:.2e}")
    diff, first, last = loss_difference(train, vocab.size, args.backend, args.steps)
    print(f"float32, the CLI's GPT and rule, first {args.steps} steps ({first:.4f} -> {last:.4f}), {args.backend}: "
          f"largest loss difference {diff:.2e}")


if __name__ == "__main__":
    main()
