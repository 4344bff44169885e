"""Seed 001's two-layer toy network: 3 inputs, 4 sigmoid hidden units, 1 sigmoid output, no biases.

The seed (Alex Punnen, "A Simple NeuralNet with Back Propagation", after iamtrask) trains on four
rows whose target is 1 when exactly two inputs are 1, with learning rate 1 for 1000 full-batch
iterations, starting from ``np.random.seed(1); np.random.random(...)`` weights. xpnet starts from the
same weights, so it prints the seed's numbers: initial outputs 0.758 0.771 0.791 0.801, trained
outputs about 0.028 0.925 0.925 0.090.

The seed's error gradient is summed over the 4 rows; xpnet's MSE averages over the batch, so the
seed's learning rate 1 is xpnet's lr 4 (= 1 x batch size).

    python examples/two_layer_toy.py [--device cpu] [--backend array-api-strict] [--epochs 1000]
"""

import argparse

import numpy as np

import xpnet
from xpnet import MSE, SGD, Dense, Sequential, Sigmoid
from xpnet.cli import add_device_options, run_script


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_options(parser)
    parser.add_argument("--epochs", type=int, default=1000, help="full-batch iterations (default 1000)")
    parser.add_argument("--dtype", default="float64", help="float64 (default, as the seed) or float32")
    args = parser.parse_args(argv)
    np.set_printoptions(formatter={"float": "{: 0.3f}".format})

    x = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float64)
    y = np.array([[0, 1, 1, 0]], dtype=np.float64).T
    legacy = np.random.RandomState(1)  # the stream of the seed's np.random.seed(1); np.random.random(...)
    weight1, weight2 = legacy.random_sample((3, 4)), legacy.random_sample((4, 1))

    model = Sequential([Dense(3, 4, bias=False), Sigmoid(), Dense(4, 1, bias=False), Sigmoid()],
                       device=args.device, backend=args.backend, dtype=args.dtype)
    model.load_state_dict({"0.W": weight1, "2.W": weight2})
    print(f"3-4-1 sigmoid network, no biases, on {model.device} ({args.dtype})")
    print("Initial output\n", xpnet.to_numpy(model.predict(x)))
    model.fit(x, y, loss=MSE(), optimizer=SGD(lr=1.0 * len(x)), epochs=args.epochs, batch_size=len(x),
              shuffle=False, verbose=0)
    print(f"Output after {args.epochs} iterations\n", xpnet.to_numpy(model.predict(x)))
    print("Targets\n", y)
    two_ones = np.array([[1.0, 0.0, 1.0]])
    print("Output for [1, 0, 1] (two ones: should be 1)\n", xpnet.to_numpy(model.predict(two_ones)))


if __name__ == "__main__":
    run_script(main)
