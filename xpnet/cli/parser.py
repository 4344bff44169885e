"""The ``xpnet`` command's arguments: the parser, its argument types, and ``add_device_options`` for scripts."""

from __future__ import annotations

import argparse
import os

from .. import backend, datasets
from .._version import __version__
from ..validation import check_positive_int
from .export import add_export_parser
from .presets import HIDDEN, LOSSES, OPTIMIZERS, PRESETS, SCHEDULES


# -- argument types -----------------------------------------------------------------------------
def _device_arg(text: str) -> str:
    try:
        backend.parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _backend_arg(text: str) -> str:
    try:
        return backend.parse_backend(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` and ``--backend`` as the ``xpnet`` command has them (for scripts and examples)."""
    parser.add_argument("--device", type=_device_arg, default=None,
                        help="auto, cpu, cuda or cuda:N ('gpu' works too; default: $XPNET_DEVICE, else auto: "
                             "a CUDA GPU when one can be used, else the CPU)")
    parser.add_argument("--backend", type=_backend_arg, default=None,
                        help=f"array library: {', '.join(backend.BACKENDS)} (default: $XPNET_BACKEND, else "
                             f"numpy on the CPU, cupy on CUDA)")


def _check_environment(parser: argparse.ArgumentParser) -> None:
    # A bad $XPNET_DEVICE / $XPNET_BACKEND is a usage error like a bad flag: exit 2, naming the variable.
    try:
        if os.environ.get("XPNET_DEVICE"):
            backend.parse_device(os.environ["XPNET_DEVICE"], "$XPNET_DEVICE")
        if os.environ.get("XPNET_BACKEND"):
            backend.parse_backend(os.environ["XPNET_BACKEND"], "$XPNET_BACKEND")
    except ValueError as exc:
        parser.error(str(exc))


def _layers_arg(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"invalid layer sizes {text!r}: give two or more positive ints "
                                         f"separated by commas, e.g. 784,200,10")
    return sizes


def _positive_int(text: str) -> int:
    try:
        return check_positive_int("value", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None


def _float_in(text: str, low: float, high: float, closed_low: bool, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # fails every comparison below
    if not ((low <= value if closed_low else low < value) and value < high):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _float_in(text, 0.0, float("inf"), False, "a positive number")


def _non_negative_float(text: str) -> float:
    return _float_in(text, 0.0, float("inf"), True, "a number >= 0")


def _probability(text: str) -> float:
    return _float_in(text, 0.0, 1.0, True, "a number in [0, 1)")


# -- the parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xpnet", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and run neural networks from scratch on NumPy, CuPy, PyTorch or array-api-strict.",
        epilog="Run 'xpnet <command> --help' for a command's options. Exit status: 0 ok, 1 runtime error,\n"
               "2 usage error.")
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True

    common = argparse.ArgumentParser(add_help=False)
    add_device_options(common)
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    def data_options(default):
        data = argparse.ArgumentParser(add_help=False)
        data.add_argument("--dataset", choices=datasets.DATASETS, default=default,
                          help=f"{default or 'the one the model was trained on'} (default), or any of: mnist, "
                               f"fashion-mnist, csv (the tutorial's 100/10-row CSV), and the synthetic 2-D sets "
                               f"spirals and moons (no files needed)")
        data.add_argument("--data-dir", metavar="DIR",
                          help="folder holding mnist/, fashion-mnist/, mnist-csv/ (default: $XPNET_DATA, "
                               "then the download cache)")
        data.add_argument("--limit", type=_positive_int, metavar="N",
                          help="use only the first N train and test samples")
        data.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")
        return data

    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "train", parents=[common, data_options("mnist")], help="train a network on a dataset", formatter_class=raw,
        description="Train a network on a dataset; print loss and train/test accuracy after each epoch.\n\n"
                    "--model picks a preset; every option below overrides it:\n"
                    "  mlp (default)  784-512-256-10 ReLU, softmax cross-entropy, AdamW lr 0.003 with a cosine\n"
                    "                 schedule over the run, batch 128, inputs 0..1: about 0.975 MNIST test\n"
                    "                 accuracy after one epoch, in seconds on a laptop CPU (and a sensible\n"
                    "                 batch on a GPU)\n"
                    "  cnn            Reshape(1,28,28) - Conv 32 3x3 - ReLU - Conv 64 3x3 - ReLU - MaxPool 2 -\n"
                    "                 Dropout 0.25 - Dense 128 - ReLU - Dropout 0.5 - Dense 10, AdamW lr 0.001,\n"
                    "                 cosine, batch 128: >= 0.991 MNIST test accuracy in 5 epochs (minutes a\n"
                    "                 CPU epoch)\n"
                    "  tutorial       the book's 784-200-10 sigmoid network: the 1/2 squared error, SGD lr 0.1,\n"
                    "                 one sample per step, inputs 0.01..1, targets 0.01/0.99 (about 0.945)")
    p.add_argument("--model", choices=tuple(PRESETS), default="mlp",
                   help="preset: mlp (default), cnn or tutorial (see above)")
    p.add_argument("--layers", type=_layers_arg, metavar="N,N,...",
                   help="layer sizes from input to output (default: the preset's hidden sizes between the "
                        "data's features and classes, e.g. 784,512,256,10); the first must equal the features")
    p.add_argument("--activation", choices=HIDDEN, help="hidden-layer activation (mlp: relu, tutorial: sigmoid)")
    p.add_argument("--loss", choices=LOSSES,
                   help="mse (sigmoid output, targets 0.01/0.99; tutorial), softmax_cross_entropy (mlp) or "
                        "binary_cross_entropy (both on a linear output: logits)")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="sgd (tutorial), momentum (0.9), adam, adamw (mlp) or rmsprop")
    p.add_argument("--lr", type=_positive_float,
                   help="learning rate (default: the preset's; for another --optimizer 0.1 for sgd, 0.01 for "
                        "momentum and rmsprop, 0.001 for adam and adamw)")
    p.add_argument("--weight-decay", type=_non_negative_float, metavar="WD",
                   help="weight decay: decoupled for adamw (default 0.01), L2 in the gradient for the others "
                        "(default 0)")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule, per step: constant (tutorial), cosine (mlp: from lr down to 0 "
                        "over the run), step (x0.1 every third of the run) or exponential (x0.01 over the run)")
    p.add_argument("--warmup", type=_non_negative_float, metavar="EPOCHS",
                   help="linear warm-up from 0 to lr over this many epochs (fractions allowed) before the "
                        "schedule (default 0)")
    p.add_argument("--dropout", type=_probability, metavar="P",
                   help="dropout after each hidden activation, with probability P (default 0: none; cnn: 0.25 "
                        "after the pooling and 0.5 after the dense layer, both P when given)")
    p.add_argument("--batchnorm", action="store_true",
                   help="BatchNorm1d after each hidden Dense layer (before its activation); cnn: BatchNorm2d "
                        "after each convolution too")
    p.add_argument("--epochs", type=_positive_int, default=1, help="passes over the training set (default 1)")
    p.add_argument("--batch-size", type=_positive_int,
                   help="samples per step (mlp: 128; tutorial: 1, the book's)")
    p.add_argument("--val-split", type=_probability, metavar="F",
                   help="hold out the last fraction F of the training set for validation (reported as val_*; "
                        "early stopping watches its loss). The test set is reported either way")
    p.add_argument("--early-stopping", type=_positive_int, metavar="N",
                   help="stop when the validation loss has not improved for N epochs, and keep the best weights")
    p.add_argument("--seed", type=int, default=0, help="seed for the initial weights and shuffling (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default float32")
    p.add_argument("--scale", choices=("tutorial", "unit"),
                   help="pixel scaling: unit = 0..1 (mlp), tutorial = 0.01..1 (tutorial); image datasets only")
    p.add_argument("--save", metavar="PATH", help="save the trained model to PATH (.npz)")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="write DIR/last.npz after every epoch: model, optimizer state, schedule, epoch and "
                        "random state, so that --resume continues exactly")
    p.add_argument("--resume", metavar="PATH",
                   help="continue a run from its checkpoint (DIR/last.npz) up to --epochs in all; give the same "
                        "options as the interrupted run")
    p.add_argument("--plot", metavar="PNG", help="draw loss and accuracy curves to PNG (needs xpnet[plot])")
    p.add_argument("--quiet", action="store_true", help="print only the last epoch's line")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of an MPI job: mpiexec -n N xpnet train --distributed "
                        "... (or srun). --batch-size is the global batch, split across the N ranks; rank 0 "
                        "prints and writes the files; one GPU per rank on CUDA. Needs pip install 'xpnet[mpi]'")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="data-parallel over N threads of this process, on the CPU: each thread trains on its shard "
                        "of every batch with one BLAS thread, so that all of NumPy's work runs on N cores "
                        "(the weights match a one-thread run to rounding; Dropout masks differ per thread)")

    p = sub.add_parser(
        "evaluate", parents=[common, data_options(None)], help="loss and accuracy of a saved model",
        formatter_class=raw,
        description="Report a saved model's loss and accuracy on a dataset's test (or train) split.\n\n"
                    "The dataset defaults to the one the model was trained on; inputs are scaled and targets\n"
                    "made as they were in training (models saved by 'xpnet train' record both).")
    p.add_argument("model", metavar="MODEL", help="a model file written by 'xpnet train --save' or xpnet.save")
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split (default test)")
    p.add_argument("--loss", choices=LOSSES,
                   help="the loss to report (default: the one saved with the model; files that do not record "
                        "it need this option)")
    p.add_argument("--batch-size", type=_positive_int, default=1024,
                   help="samples per forward pass (default 1024)")

    p = sub.add_parser(
        "predict", parents=[common], help="predict the class of each input row", formatter_class=raw,
        description="Print the predicted class of each sample in a .npy or .csv file, one per line.\n\n"
                    "Integer input (uint8 pixels 0..255, a CSV of whole numbers) is scaled as the model's\n"
                    "training data was; float input is taken as already scaled. Input far outside the range\n"
                    "the model was trained on is an error, not a guess (see --scale).")
    p.add_argument("model", metavar="MODEL", help="a model file written by 'xpnet train --save' or xpnet.save")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="samples as rows: .npy (n, features) or (n, 28, 28), or .csv of comma-separated "
                        "values (a leading label column, as in the tutorial's CSV, is dropped)")
    p.add_argument("--scale", choices=("auto", "tutorial", "unit", "none"), default="auto",
                   help="auto (default): integers (uint8 pixels, a CSV of whole numbers) are scaled as the "
                        "model's training data was, floats are taken as already scaled; tutorial (x/255*0.99 "
                        "+ 0.01) or unit (x/255) scale any input; none feeds the values unchanged")
    p.add_argument("--raw", dest="scale", action="store_const", const="none", help="the same as --scale none")

    p = sub.add_parser(
        "info", parents=[common], help="versions, backends and CUDA devices", formatter_class=raw,
        description="Show versions, usable backends and CUDA devices (or why there are none).\n\n"
                    "Also the device that 'auto' (or --device/--backend) resolves to here, and the data folders.")
    add_export_parser(sub)
    return parser
