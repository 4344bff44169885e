"""A hidden layer solves XOR: 2 inputs, 4 sigmoid hidden units, 1 sigmoid output (seed 002's "2 lines!").

XOR is not linearly separable (see examples/perceptron.py), but each hidden unit draws one line and
the output unit combines them. Trained full-batch with SGD on the seeds' 1/2 squared error.

    python examples/xor.py [--device cpu] [--backend torch] [--epochs 3000]
"""

import argparse

import numpy as np

import xpnet
from xpnet import MSE, SGD, Dense, Sequential, Sigmoid
from xpnet.cli import add_device_options, run_script


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_options(parser)
    parser.add_argument("--epochs", type=int, default=3000, help="full-batch steps (default 3000)")
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    model = Sequential([Dense(2, 4, init="he_normal"), Sigmoid(), Dense(4, 1), Sigmoid()],
                       device=args.device, backend=args.backend, seed=args.seed)
    history = model.fit(X, y, loss=MSE(), optimizer=SGD(args.lr), epochs=args.epochs, batch_size=4,
                        shuffle=False, verbose=0)
    out = xpnet.to_numpy(model.predict(X)).reshape(-1)
    right = int(((out > 0.5) == (y.reshape(-1) > 0.5)).sum())
    print(f"2-4-1 sigmoid network on {model.device}, {args.epochs} epochs, lr {args.lr}: "
          f"final loss {history['loss'][-1]:.5f}")
    for (a, b), t, o in zip(X.astype(int).tolist(), y.reshape(-1).astype(int).tolist(), out.tolist()):
        print(f"  {a} XOR {b} = {t}   network: {o:.3f} -> {int(o > 0.5)}")
    print(f"{right}/4 correct" + ("" if right == 4 else " (try more --epochs or another --seed)"))


if __name__ == "__main__":
    run_script(main)
