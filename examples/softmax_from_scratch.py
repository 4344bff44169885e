"""Seed 003's SASE network: one sigmoid hidden layer, a softmax output and the cross-entropy error.

The SASE Labs workshop ("Making a Neural Network from Scratch", after Alpaydin) computes
``Z = f(W X)``, ``Y = softmax(V Z)`` and updates ``V += eta (r - y) z`` and the hidden weights with the
same error sent back through ``V``. That ``(r - y)`` is exactly the gradient of the cross-entropy of a
softmax, which xpnet computes from the logits in one stable step: ``SoftmaxCrossEntropy`` after a
linear output layer (no separate Softmax layer).

Runs on MNIST when the data is found (``--data-dir`` or ``$XPNET_DATA``), else on the 2-D spirals.

    python examples/softmax_from_scratch.py [--dataset mnist|spirals] [--device cpu] [--epochs 1]
"""

import argparse

import numpy as np

import xpnet
from xpnet import SGD, Dense, Sequential, Sigmoid, SoftmaxCrossEntropy, datasets
from xpnet.cli import add_device_options, run_script

DEFAULTS = {  # epochs, batch size, learning rate, hidden units: a few seconds on a laptop CPU
    "mnist": (1, 32, 0.5, 100),
    "spirals": (300, 16, 1.0, 64),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_options(parser)
    parser.add_argument("--dataset", choices=("mnist", "spirals"), default=None,
                        help="mnist if its files are found, else spirals")
    parser.add_argument("--data-dir", default=None, help="folder with mnist/ (default: $XPNET_DATA)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--hidden", type=int, help="hidden units")
    parser.add_argument("--limit", type=int, help="use only the first N train and test samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    name = args.dataset
    if name in (None, "mnist"):
        try:
            data = datasets.load("mnist", data_dir=args.data_dir, limit=args.limit, download=name == "mnist")
            name = "mnist"
        except datasets.DatasetError as exc:
            if name == "mnist":
                raise SystemExit(f"softmax_from_scratch: {exc}")
            print(f"MNIST not found (set XPNET_DATA or --data-dir): using the spirals instead")
            name = None
    if name in (None, "spirals"):
        name = "spirals"
        data = datasets.load("spirals", limit=args.limit, seed=args.seed)
    (X, y), (X_test, y_test) = data
    epochs, batch, lr, hidden = DEFAULTS[name]
    epochs, batch = args.epochs or epochs, args.batch_size or batch
    lr, hidden = args.lr or lr, args.hidden or hidden
    classes = int(y.max()) + 1

    model = Sequential([Dense(X.shape[1], hidden), Sigmoid(), Dense(hidden, classes)],
                       device=args.device, backend=args.backend, seed=args.seed)
    print(f"{name}: {X.shape[1]}-{hidden}-{classes} (sigmoid hidden, softmax output), cross-entropy, "
          f"SGD lr {lr}, batch {batch}, {epochs} epochs, on {model.device}")
    history = model.fit(X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr), epochs=epochs, batch_size=batch,
                        verbose=0)
    result = model.evaluate(X_test, y_test)
    probs = xpnet.to_numpy(xpnet.layers.softmax(model.predict(X_test[:1])))[0].astype(float)
    print(f"train loss {history['loss'][-1]:.4f}, train accuracy {history['accuracy'][-1]:.4f} "
          f"({sum(history['seconds']):.1f} s)")
    print(f"test accuracy {result['accuracy']:.4f} on {len(y_test)} samples")
    print(f"first test sample: label {int(y_test[0])}, softmax probabilities {np.round(probs, 3).tolist()}")


if __name__ == "__main__":
    run_script(main)
