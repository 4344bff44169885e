"""A single perceptron learns AND and OR, and cannot learn XOR (seed 002's "Perceptron" slides).

The perceptron is ``Dense(2, 1)`` followed by a ``Step`` threshold, trained with SGD on the 1/2 squared
error. ``Step`` passes the error straight through in its backward pass, which turns SGD into
Rosenblatt's rule ``w += lr (t - y) x`` (and ``b += lr (t - y)``).

    python examples/perceptron.py [--device cpu] [--backend array-api-strict] [--epochs 20]
"""

import argparse

import numpy as np

import xpnet
from xpnet import SGD, Dense, Sequential, Step
from xpnet.cli import add_device_options, run_script

TABLES = {"AND": [0, 0, 0, 1], "OR": [0, 1, 1, 1], "XOR": [0, 1, 1, 0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_options(parser)
    parser.add_argument("--epochs", type=int, default=20, help="passes over the 4 rows (default 20)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    device = xpnet.device(args.device, backend=args.backend)
    print(f"single perceptron y = step(w1 a + w2 b + bias) on {device}, {args.epochs} epochs, lr {args.lr}")
    for name, table in TABLES.items():
        targets = np.array(table, dtype=np.float32).reshape(-1, 1)
        model = Sequential([Dense(2, 1, init="zeros"), Step()], device=device, seed=args.seed)
        model.fit(X, targets, loss="mse", optimizer=SGD(args.lr), epochs=args.epochs, batch_size=1, verbose=0)
        out = xpnet.to_numpy(model.predict(X)).reshape(-1).astype(int)
        right = int((out == np.array(table)).sum())
        w = xpnet.to_numpy(model.parameters()["0.W"]).reshape(-1)
        b = float(xpnet.to_numpy(model.parameters()["0.b"])[0])
        verdict = "learned" if right == 4 else "NOT learned"
        print(f"{name:3s}: targets {table}, outputs {out.tolist()}: {right}/4 correct, accuracy {right / 4:.2f} "
              f"-> {verdict} (w = [{w[0]:+.2f}, {w[1]:+.2f}], bias {b:+.2f})")
    print("XOR is not linearly separable: no straight line puts (0,1) and (1,0) on one side and (0,0), (1,1) "
          "on the other, so a single perceptron gets at most 3 of 4 right. A hidden layer fixes it: "
          "see examples/xor.py.")


if __name__ == "__main__":
    run_script(main)
