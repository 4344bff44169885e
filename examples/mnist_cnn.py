"""A convolutional network on MNIST (or Fashion-MNIST), on any xpnet device.

The images come as ``(n, 1, 28, 28)`` arrays (``datasets.load(..., flat=False)``), NCHW as ``Conv2D``
takes them:

    Conv2D(1, 32, 3) - ReLU - Conv2D(32, 64, 3) - ReLU - MaxPool2D(2) - Dropout(0.25) - Flatten -
    Dense(9216, 128) - ReLU - Dropout(0.5) - Dense(128, 10)

trained with AdamW (lr 1e-3) and a per-step cosine decay over the run, batch 128: the ``xpnet train
--model cnn`` preset, written out. Prints the test accuracy after each epoch and the per-class errors.
The weights have PyTorch's layouts (``W`` is ``(out, in, kh, kw)``), so ``model.state_dict()`` loads into
the same ``torch.nn`` network.

Needs MNIST (``--data-dir`` or ``$XPNET_DATA``, else it is downloaded). ``--limit N`` for a quick run.

    python examples/mnist_cnn.py [--epochs 5] [--device cpu] [--limit 5000] [--dataset fashion-mnist]
"""

import argparse

import numpy as np

import xpnet
from xpnet import (AdamW, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sequential, SoftmaxCrossEntropy,
                   datasets, schedules)
from xpnet.cli import add_device_options, run_script


def convnet(classes=10):
    return [Conv2D(1, 32, 3), ReLU(), Conv2D(32, 64, 3), ReLU(), MaxPool2D(2), Dropout(0.25), Flatten(),
            Dense(64 * 12 * 12, 128, init="he_normal"), ReLU(), Dropout(0.5), Dense(128, classes)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_options(parser)
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    parser.add_argument("--data-dir", default=None, help="folder with mnist/ (default: $XPNET_DATA)")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training set (default 5)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW's peak learning rate (default 0.001)")
    parser.add_argument("--limit", type=int, help="use only the first N train and test images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    (X, y), (X_test, y_test) = datasets.load(args.dataset, data_dir=args.data_dir, limit=args.limit, flat=False)
    model = Sequential(convnet(), device=args.device, backend=args.backend, seed=args.seed)
    print(f"{args.dataset}: {X.shape[0]} training images of shape {X.shape[1:]}, {X_test.shape[0]} test; "
          f"{sum(int(np.prod(p.shape)) for p in model.parameters().values())} weights on {model.device}")
    history = model.fit(X, y, loss=SoftmaxCrossEntropy(), optimizer=AdamW(args.lr), epochs=args.epochs,
                        batch_size=args.batch_size, schedule=schedules.CosineDecay(per="step"),
                        validation_data=(X_test, y_test), verbose=0,
                        callbacks=[lambda epoch, logs: print(
                            f"epoch {epoch + 1}/{args.epochs}: loss {logs['loss']:.4f}  test accuracy "
                            f"{logs['val_accuracy']:.4f}  ({logs['seconds']:.1f} s)", flush=True)])
    predicted = xpnet.to_numpy(model.predict_classes(X_test))
    errors = np.bincount(y_test[predicted != y_test], minlength=10)
    print(f"test accuracy {float((predicted == y_test).mean()):.4f} after {len(history['loss'])} epoch(s); "
          f"errors per class: {errors.tolist()}")


if __name__ == "__main__":
    run_script(main)
