"""The ``xpnet`` command (also ``python -m xpnet``): train, evaluate, predict and info.

    xpnet train                                  # the tutorial's 784-200-10 sigmoid net, MNIST, 1 epoch
    xpnet train --dataset spirals --loss softmax_cross_entropy --optimizer adam --epochs 50 --batch-size 16
    xpnet train --epochs 5 --save mnist.npz && xpnet evaluate mnist.npz
    xpnet predict mnist.npz --input digits.csv   # one predicted class per line
    xpnet info                                   # versions, backends, CUDA devices (or why none)

Exit status: 0 on success, 2 for usage errors (argparse's), 1 for runtime errors, which are printed as
one line ``xpnet: error: <message>`` on stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import sys
import tempfile

import numpy as np

from . import __version__
from . import backend as _backend
from . import datasets as _datasets
from . import io as _io
from . import losses as _losses
from . import optim as _optim
from . import saving as _saving
from .layers import ACTIVATIONS, Dense
from .model import Sequential, load
from .training import format_epoch

HIDDEN = ("sigmoid", "relu", "tanh", "leaky_relu")
LOSSES = ("mse", "softmax_cross_entropy", "binary_cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "adam")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adam": 0.001}
IMAGES = ("mnist", "fashion-mnist", "csv")  # datasets of 0..255 pixels, where --scale applies
TARGETS = {"mse": (0.01, 0.99), "binary_cross_entropy": (0.0, 1.0)}  # one-hot (off, on) per loss


# -- argument types -----------------------------------------------------------------------------
def _device_arg(text: str) -> str:
    try:
        _backend.parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _backend_arg(text: str) -> str:
    try:
        return _backend.parse_backend(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` and ``--backend`` as the ``xpnet`` command has them (for scripts and examples)."""
    parser.add_argument("--device", type=_device_arg, default=None,
                        help="auto, cpu, cuda or cuda:N ('gpu' works too; default: $XPNET_DEVICE, else auto: "
                             "a CUDA GPU when one can be used, else the CPU)")
    parser.add_argument("--backend", type=_backend_arg, default=None,
                        help=f"array library: {', '.join(_backend.BACKENDS)} (default: $XPNET_BACKEND, else "
                             f"numpy on the CPU, cupy on CUDA)")


def _check_environment(parser: argparse.ArgumentParser) -> None:
    # A bad $XPNET_DEVICE / $XPNET_BACKEND is a usage error like a bad flag: exit 2, naming the variable.
    try:
        if os.environ.get("XPNET_DEVICE"):
            _backend.parse_device(os.environ["XPNET_DEVICE"], "$XPNET_DEVICE")
        if os.environ.get("XPNET_BACKEND"):
            _backend.parse_backend(os.environ["XPNET_BACKEND"], "$XPNET_BACKEND")
    except ValueError as exc:
        parser.error(str(exc))


def run_script(main, argv=None) -> None:
    """Run a script's ``main(argv)`` and exit as the ``xpnet`` command does.

    An expected error (no GPU, missing data, bad input) is printed as one line ``<script>: error: ...``
    and exits 1, instead of a traceback; ``XPNET_DEBUG=1`` shows the traceback.
    """
    prog = os.path.basename(sys.argv[0]) or "xpnet"
    if os.environ.get("XPNET_DEBUG"):
        sys.exit(main(argv))
    try:
        status = main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except _EXPECTED as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status)


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
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


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
        data.add_argument("--dataset", choices=_datasets.DATASETS, default=default,
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
                    "The defaults are the tutorial's MNIST network: 784-200-10 with sigmoid hidden and output\n"
                    "layers, the 1/2 squared error, SGD with lr 0.1, one sample per step, inputs scaled to\n"
                    "0.01..1 and targets 0.01/0.99: about 0.945 test accuracy after one epoch.")
    p.add_argument("--layers", type=_layers_arg, metavar="N,N,...",
                   help="layer sizes from input to output (default: <features>,200,<classes>, which is "
                        "784,200,10 for MNIST); the first must equal the data's features")
    p.add_argument("--activation", choices=HIDDEN, default="sigmoid",
                   help="hidden-layer activation (default sigmoid)")
    p.add_argument("--loss", choices=LOSSES, default="mse",
                   help="mse (default; sigmoid output, targets 0.01/0.99), softmax_cross_entropy or "
                        "binary_cross_entropy (both on a linear output: logits)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="sgd (default), momentum (0.9) or adam")
    p.add_argument("--lr", type=_positive_float,
                   help="learning rate (default: 0.1 for sgd, 0.01 for momentum, 0.001 for adam)")
    p.add_argument("--epochs", type=_positive_int, default=1, help="passes over the training set (default 1)")
    p.add_argument("--batch-size", type=_positive_int, default=1,
                   help="samples per step (default 1, the tutorial's)")
    p.add_argument("--seed", type=int, default=0, help="seed for the initial weights and shuffling (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default float32")
    p.add_argument("--scale", choices=("tutorial", "unit"), default="tutorial",
                   help="pixel scaling: tutorial = 0.01..1 (default), unit = 0..1 (image datasets only)")
    p.add_argument("--save", metavar="PATH", help="save the trained model to PATH (.npz)")
    p.add_argument("--quiet", action="store_true", help="print only the last epoch's line")
    p.set_defaults(func=cmd_train)

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
    p.set_defaults(func=cmd_evaluate)

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
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "info", parents=[common], help="versions, backends and CUDA devices", formatter_class=raw,
        description="Show versions, usable backends and CUDA devices (or why there are none).\n\n"
                    "Also the device that 'auto' (or --device/--backend) resolves to here, and the data folders.")
    p.set_defaults(func=cmd_info)
    return parser


# -- data helpers -------------------------------------------------------------------------------
def _load(args, scale):
    scale = scale if args.dataset in IMAGES else None
    return _datasets.load(args.dataset, data_dir=args.data_dir, scale=scale or "unit", limit=args.limit,
                          download=not args.no_download, seed=getattr(args, "seed", 0))


def _targets(y, loss: str, width: int, dtype: str):
    """Labels as what ``loss`` trains on: int labels (softmax), 0/1 columns, or one-hot rows (off, on)."""
    if loss == "softmax_cross_entropy":
        return y
    off, on = TARGETS[loss]
    if width == 1:
        return np.where(y.reshape(-1, 1) > 0, on, off).astype(dtype)
    t = np.full((y.shape[0], width), off, dtype=dtype)
    t[np.arange(y.shape[0]), y] = on
    return t


def _check_widths(layers, features, classes, loss, dataset):
    if layers[0] != features:
        raise ValueError(f"--layers starts with {layers[0]} inputs, but {dataset} has {features} features "
                         f"per sample: use --layers {features},{','.join(map(str, layers[1:]))}")
    out = layers[-1]
    if loss == "softmax_cross_entropy" and out < 2:
        raise ValueError("softmax_cross_entropy needs an output layer of 2 or more units (one per class)")
    if out == 1 and classes > 2:
        raise ValueError(f"{dataset} has {classes} classes, but the output layer has 1 unit: "
                         f"end --layers with {classes}")
    if out != 1 and out < classes:
        raise ValueError(f"{dataset} has labels 0..{classes - 1}, but the output layer has only {out} units: "
                         f"end --layers with {classes}")


def tutorial_normal(shape, rng, device, dtype="float32"):
    """The book's initial weights: normal(0, 1/sqrt(nodes of the receiving layer)), e.g. 200**-0.5 for wih."""
    return device.asarray(rng.normal(0.0, shape[1] ** -0.5, size=shape), dtype)


def _network(layers, activation, loss):
    # Sigmoid nets start like the book's (with 1/sqrt(fan_in) they reach ~0.939 instead of ~0.946 after
    # one MNIST epoch); ReLU-family ones with He's init, tanh with LeCun's.
    inits = {"sigmoid": tutorial_normal, "relu": "he_normal", "leaky_relu": "he_normal"}
    init = inits.get(activation, "lecun_normal")
    stack = []
    for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
        stack.append(Dense(n_in, n_out, init=init))
        if i < len(layers) - 2:
            stack.append(ACTIVATIONS[activation]())
    if loss == "mse":
        stack.append(ACTIVATIONS["sigmoid"]())  # the tutorial's output; the other losses take logits
    return stack


def _output_width(model) -> int:
    return next(layer.out_features for layer in reversed(model.layers) if isinstance(layer, Dense))


def _input_width(model) -> int:
    return next(layer.in_features for layer in model.layers if isinstance(layer, Dense))


# -- the commands -------------------------------------------------------------------------------
def cmd_train(args) -> int:
    if args.save:
        _io.check_writable(args.save)  # before training, not after an hour of it
    dev = _backend.device(args.device, backend=args.backend)
    (X, y), (X_test, y_test) = _load(args, args.scale)
    if X.shape[0] == 0 or X_test.shape[0] == 0:
        raise ValueError(f"{args.dataset}: no samples to train or test on")
    features, classes = X.shape[1], int(max(y.max(), y_test.max())) + 1
    layers = args.layers or [features, 200, classes]
    _check_widths(layers, features, classes, args.loss, args.dataset)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    model = Sequential(_network(layers, args.activation, args.loss), device=dev, seed=args.seed, dtype=args.dtype)
    loss, optimizer = _losses.get(args.loss), _optim.get(args.optimizer, lr)
    width = layers[-1]
    if not args.quiet:
        scale = f", inputs scaled {args.scale}" if args.dataset in IMAGES else ""
        print(f"xpnet: training {'-'.join(map(str, layers))} ({args.activation} hidden, "
              f"{'sigmoid' if args.loss == 'mse' else 'linear'} output), {args.loss}, {args.optimizer} lr {lr:g}, "
              f"batch {args.batch_size}, on {args.dataset}: {X.shape[0]} train / {X_test.shape[0]} test "
              f"samples{scale}, {dev}, {args.dtype}", flush=True)
    history = model.fit(X, _targets(y, args.loss, width, args.dtype), loss=loss, optimizer=optimizer,
                        epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(X_test, _targets(y_test, args.loss, width, args.dtype)),
                        verbose=0 if args.quiet else 1)
    if args.quiet:
        last = {k: v[-1] for k, v in history.history.items()}
        print(format_epoch(len(history["loss"]) - 1, args.epochs, last, dev), flush=True)
    if args.save:
        model.metadata = {"dataset": args.dataset, "scale": args.scale if args.dataset in IMAGES else None,
                          "loss": args.loss, "classes": classes, "layers": layers,
                          "activation": args.activation, "optimizer": args.optimizer, "lr": lr,
                          "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
        _save_or_rescue(model, args.save)
        if not args.quiet:
            print(f"xpnet: saved the model to {args.save}")
    return 0


def _save_or_rescue(model, path) -> None:
    """Save to ``path``; if that fails now (after it was checked), keep the trained model in a temp file."""
    try:
        _saving.save(model, path)
    except OSError as exc:
        fd, rescue = tempfile.mkstemp(prefix="xpnet-rescued-", suffix=".npz")
        os.close(fd)
        _saving.save(model, rescue)
        raise OSError(exc.errno, f"{exc.strerror or exc}; the trained model was saved to {rescue} instead") from None


def cmd_evaluate(args) -> int:
    model = load(args.model, device=args.device, backend=args.backend)
    meta = model.metadata
    if args.dataset is None:
        args.dataset = meta.get("dataset") if meta.get("dataset") in _datasets.DATASETS else "mnist"
    loss_name = args.loss or _loss_name(model, args.model)
    train, test = _load(args, meta.get("scale") or "tutorial")
    X, y = test if args.split == "test" else train
    if X.shape[0] == 0:
        raise ValueError(f"{args.dataset}: the {args.split} split is empty")
    if X.shape[1] != _input_width(model):
        raise ValueError(f"{args.model} takes {_input_width(model)} inputs, but {args.dataset} has "
                         f"{X.shape[1]} features per sample")
    width = _output_width(model)
    if int(y.max()) >= max(width, 2):
        raise ValueError(f"{args.dataset} has labels up to {int(y.max())}, but {args.model} has only {width} "
                         f"outputs")
    result = model.evaluate(X, _targets(y, loss_name, width, model.dtype), loss=loss_name,
                            batch_size=args.batch_size)
    acc = f"  accuracy {result['accuracy']:.4f}" if "accuracy" in result else ""
    print(f"{args.split} loss {result['loss']:.4f}{acc}  ({X.shape[0]} samples of {args.dataset}, "
          f"{loss_name}, {model.device})")
    return 0


def _loss_name(model, path) -> str:
    """The loss a saved model was trained with: from the file's loss field, else its metadata."""
    if model.loss is not None and model.loss.name in _losses.LOSSES:
        return model.loss.name
    if model.metadata.get("loss") in _losses.LOSSES:
        return model.metadata["loss"]
    raise ValueError(f"{path} does not record the loss it was trained with: pass --loss "
                     f"({' or '.join(LOSSES)})")


def _read_input(path: str) -> tuple[np.ndarray, bool]:
    """The samples in ``path`` as rows (integers kept as integers), and whether it was a CSV (labels?)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such input file: {path}")
    lower = path.lower()
    if lower.endswith(".npy"):
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
        csv = False
    elif lower.endswith((".csv", ".txt")):
        a = _read_csv(path)
        csv = True
    else:
        raise ValueError(f"{path}: --input must be a .npy or .csv file")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{path}: holds {a.dtype} values, not numbers")
    if a.ndim == 0:
        raise ValueError(f"{path}: holds a single number (a 0-d array); save samples as rows, "
                         f"shape (n, features)")
    if a.size == 0:
        raise ValueError(f"{path}: holds no samples (shape {a.shape})")
    return (a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1)), csv


def _read_csv(path: str) -> np.ndarray:
    # Whole numbers ("0,255,...", the tutorial's CSV) are pixels to scale; any "0.5" makes it floats.
    with open(path) as f:
        text = f.read()
    if not text.strip():
        raise ValueError(f"{path}: the file is empty; give one sample per line, values separated by commas")
    for dtype in (np.int64, np.float64):
        try:
            return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=dtype)
        except (ValueError, OverflowError) as exc:
            error = exc
    raise ValueError(f"{path}: not comma-separated numbers ({error})") from None


_SCALES = {"tutorial": (0.01, 1.0), "unit": (0.0, 1.0)}


def _scaled(X: np.ndarray, args, model) -> np.ndarray:
    """``X`` as the model's inputs: integers scaled as in training, floats as given (see ``--scale``)."""
    trained = model.metadata.get("scale") if model.metadata.get("scale") in _SCALES else None
    scale = args.scale
    if scale == "auto":
        if X.dtype.kind in "biu":
            if trained is None:
                raise ValueError(f"{args.input} holds integers, but {args.model} does not record how its "
                                 f"inputs were scaled: pass --scale tutorial (x/255*0.99+0.01), --scale unit "
                                 f"(x/255) or --scale none")
            scale = trained
        else:
            scale = "none"
    X = X.astype(np.float64)
    if scale == "tutorial":
        X = X / 255.0 * 0.99 + 0.01
    elif scale == "unit":
        X = X / 255.0
    expected = model.input_range or _SCALES.get(trained)
    if expected is not None:
        lo, hi = float(X.min()), float(X.max())
        margin = (expected[1] - expected[0]) / 2
        if lo < expected[0] - margin or hi > expected[1] + margin:
            hint = (" They look like raw 0..255 pixels stored as floats: save them as integers (uint8), which "
                    "are scaled as in training, or pass --scale " + (trained or "unit") + "."
                    if hi > 2 and scale == "none" else " Check the file, or --scale.")
            raise ValueError(f"{args.input}: the inputs (after --scale {scale}) range from {lo:g} to {hi:g}, but "
                             f"{args.model} was trained on inputs from {expected[0]:g} to {expected[1]:g}; "
                             f"its predictions would be meaningless.{hint}")
    return X


def cmd_predict(args) -> int:
    model = load(args.model, device=args.device, backend=args.backend)
    X, csv = _read_input(args.input)
    features = _input_width(model)
    if csv and X.shape[1] == features + 1:
        X = X[:, 1:]  # the tutorial CSV's rows start with the label
    if X.shape[1] != features:
        raise ValueError(f"{args.input}: rows of {X.shape[1]} values, but the model takes {features} inputs")
    if model.loss is None and model.metadata.get("loss") in _losses.LOSSES:
        model.loss = _losses.get(model.metadata["loss"])  # files from before the loss had its own field
    classes = _backend.to_numpy(model.predict_classes(_scaled(X, args, model).astype(model.dtype)))
    sys.stdout.write("".join(f"{c}\n" for c in classes.tolist()))
    return 0


def _cuda_devices() -> str:
    count, why = _backend._cuda_status()
    if count:
        import cupy

        names = [cupy.cuda.runtime.getDeviceProperties(i)["name"] for i in range(count)]
        return ", ".join(f"cuda:{i} {n.decode() if isinstance(n, bytes) else n}" for i, n in enumerate(names))
    reasons = [f"CuPy: {why}"]
    try:
        tcount, twhy = _backend._torch_cuda_status()
        if tcount:
            return f"{tcount} seen by PyTorch only ({why}); use --backend torch"
        reasons.append(twhy)
    except ImportError:
        pass
    return "none (" + "; ".join(reasons) + ")"


def cmd_info(args) -> int:
    import array_api_compat

    print(f"xpnet {__version__} ({os.path.dirname(os.path.abspath(__file__))})")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"numpy {np.__version__}")
    print(f"array-api-compat {array_api_compat.__version__}")
    print("backends:")
    for name, status in _backend.available_backends().items():
        print(f"  {name:17s} {status}")
    print(f"CUDA devices: {_cuda_devices()}")
    try:
        chosen = str(_backend.device(args.device, backend=args.backend))
    except (_backend.DeviceUnavailableError, ValueError) as exc:
        chosen = f"unavailable: {exc}"
    print(f"device {args.device or os.environ.get('XPNET_DEVICE') or 'auto'}"
          f"{f' --backend {args.backend}' if args.backend else ''} -> {chosen}")
    for var in ("XPNET_DEVICE", "XPNET_BACKEND", "XPNET_DATA", "XPNET_CACHE"):
        print(f"{var}={os.environ.get(var, '')}")
    print(f"data folders searched: {', '.join(map(str, _datasets.data_dirs()))}")
    return 0


# -- entry point --------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each message: pytest, notebooks and redirections swap it."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


_EXPECTED = (_backend.DeviceUnavailableError, _datasets.DatasetError, _io.ModelFormatError, ValueError, OSError,
             FloatingPointError, TypeError, MemoryError)


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_environment(parser)
    log = logging.getLogger("xpnet")
    if not getattr(args, "quiet", False) and not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        if args.debug:
            return args.func(args)
        # NumPy's overflow/invalid warnings would only repeat, less clearly, what the one-line error
        # (TrainingDiverged, say) reports; --debug shows them.
        with np.errstate(all="ignore"):
            return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (xpnet predict ... | head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:
        if args.debug:
            raise
        hint = "" if isinstance(exc, _EXPECTED) else f" ({type(exc).__name__}; run with --debug for the traceback)"
        print(f"xpnet: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return 1
