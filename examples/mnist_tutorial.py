"""The "Make Your Own Neural Network" MNIST walk-through (seed 002), on any xpnet device.

1. ``xpnet.tutorial.NeuralNetwork(784, 200, 10, 0.1)``, the book's class, trained one sample at a time
   in file order for ``--epochs`` epochs (inputs scaled to 0.01..1, targets 0.01 / 0.99), then scored
   on the 10,000 test images: about 0.96 after one epoch, 0.97 after five.
2. The same network (no biases, the same initial weights) as an ``xpnet.Sequential``, trained in
   mini-batches with SGD on the batch-mean 1/2 squared error. Note that Sequential follows the exact
   gradient, while the book's hidden error ``who.T @ output_errors`` leaves out the output sigmoid's
   slope ``o (1 - o)``; both learn.
3. ``backquery``: each label's output run backwards through the trained network to the image the
   network "imagines" for it, the ten saved as one PNG grid (``--out``; needs matplotlib, the ``plot``
   extra).

Needs MNIST (``--data-dir`` or ``$XPNET_DATA``, else it is downloaded). ``--limit N`` for a quick run.

    python examples/mnist_tutorial.py [--epochs 1] [--device cpu] [--limit 5000] [--out backquery.png]
"""

import argparse
import time

import numpy as np

import xpnet
from xpnet import MSE, SGD, Dense, Sequential, Sigmoid, datasets
from xpnet.cli import add_device_options, run_script
from xpnet.tutorial import NeuralNetwork


def one_hot(labels, classes=10):
    """The book's targets: 0.01 everywhere, 0.99 for the label (a sigmoid never reaches 0 or 1)."""
    t = np.full((len(labels), classes), 0.01, dtype=np.float32)
    t[np.arange(len(labels)), labels] = 0.99
    return t


def save_backquery(n, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed (pip install 'xpnet[plot]'): skipping {path}")
        return
    fig, axes = plt.subplots(2, 5, figsize=(10, 4.6))
    for label, ax in enumerate(axes.flat):
        targets = np.full(10, 0.01, dtype=np.float32)
        targets[label] = 0.99
        image = xpnet.to_numpy(n.backquery(targets)).reshape(28, 28)
        ax.imshow(image, cmap="Greys", interpolation="None")
        ax.set_title(f"backquery {label}")
        ax.axis("off")
    fig.suptitle("What the trained network imagines for each label")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"backquery images of the ten labels saved to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_options(parser)
    parser.add_argument("--data-dir", default=None, help="folder with mnist/ (default: $XPNET_DATA)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of per-sample training (default 1)")
    parser.add_argument("--lr", type=float, default=0.1, help="the book's learning rate (default 0.1)")
    parser.add_argument("--hidden", type=int, default=200, help="hidden nodes (default 200)")
    parser.add_argument("--batch-size", type=int, default=10, help="mini-batch size for part 2 (default 10)")
    parser.add_argument("--batch-lr", type=float, default=1.0, help="learning rate for part 2 (default 1.0)")
    parser.add_argument("--limit", type=int, help="use only the first N train and test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    parser.add_argument("--out", default="backquery.png", help="PNG for the backquery images ('' to skip)")
    args = parser.parse_args(argv)

    (X, y), (X_test, y_test) = datasets.load("mnist", data_dir=args.data_dir, scale="tutorial", limit=args.limit)
    targets = one_hot(y)

    # 1. The book's class, one sample at a time.
    n = NeuralNetwork(784, args.hidden, 10, args.lr, device=args.device, backend=args.backend,
                      seed=args.seed, dtype=args.dtype)
    initial = {"0.W": xpnet.to_numpy(n.wih).T.copy(), "2.W": xpnet.to_numpy(n.who).T.copy()}
    print(f"1. NeuralNetwork(784, {args.hidden}, 10, lr={args.lr}) on {n.device}, {args.dtype}: "
          f"{len(y)} training images, one at a time")
    for epoch in range(args.epochs):
        start = time.perf_counter()
        for record, target in zip(X, targets):
            n.train(record, target)
        xpnet.synchronize(n.device)
        seconds = time.perf_counter() - start
        outputs = xpnet.to_numpy(n.query(X_test))  # (10, n): one column per image, like the book
        accuracy = float((outputs.argmax(axis=0) == y_test).mean())
        print(f"   epoch {epoch + 1}/{args.epochs}: test accuracy {accuracy:.4f}  "
              f"({seconds:.1f} s, {seconds / len(y) * 1e6:.0f} us per sample)")
    print(f"   per-sample test accuracy after {args.epochs} epoch(s): {accuracy:.4f}")

    # 2. The same network and initial weights as a Sequential, trained in mini-batches.
    model = Sequential([Dense(784, args.hidden, bias=False), Sigmoid(), Dense(args.hidden, 10, bias=False),
                        Sigmoid()], device=n.device, seed=args.seed, dtype=args.dtype)
    model.load_state_dict(initial)
    history = model.fit(X, targets, loss=MSE(), optimizer=SGD(args.batch_lr), epochs=args.epochs,
                        batch_size=args.batch_size, verbose=0)
    result = model.evaluate(X_test, one_hot(y_test))
    print(f"2. Sequential, same network, mini-batches of {args.batch_size}, lr {args.batch_lr}: "
          f"test accuracy {result['accuracy']:.4f}  ({sum(history['seconds']):.1f} s)")

    # 3. Looking inside: backquery each label.
    if args.out:
        save_backquery(n, args.out)


if __name__ == "__main__":
    run_script(main)
