"""A model as a file's header and arrays, and back again, on top of the file format in :mod:`xpnet.io`.

:func:`save` describes a model in a header (its layers' classes and configs, its dtype, loss, input range,
metadata, and where the random streams of its Dropout layers have got to) and writes it with its
``state_dict()`` (parameters and buffers). Loading (:func:`xpnet.load`, in :mod:`xpnet.model`) reads a file
with :func:`xpnet.io.read`, rebuilds the layers here by class name from the layer registry
(:func:`xpnet.layers.register_layer`) and the loss from xpnet's own losses (never ``eval``, never pickle),
builds the model without drawing weights, and lets it load the saved ones into itself (:func:`restore`).

    >>> xpnet.save(model, "mnist.npz")
    >>> model = xpnet.load("mnist.npz", device="cuda")     # any device or backend, whatever saved it
"""

from __future__ import annotations

import json
import os

from . import io
from . import losses
from .io import ModelFormatError
from .layers import LAYERS
from .parameters import check_names_and_shapes

CALLBACK_PREFIX = "callbacks/"
"""Where a checkpoint's callbacks keep their arrays (``EarlyStopping``'s best weights); not the model's."""

# The losses load() rebuilds, by class name: xpnet's own (not the Loss base class, not a user's subclass).
LOSSES: dict[str, type] = {cls.__name__: cls for cls in losses.LOSSES.values()}


# -- save ---------------------------------------------------------------------------------------
def save(model, path, *, metadata: dict | None = None) -> None:
    """Write ``model`` (architecture and weights) to ``path`` as one ``.npz`` file, atomically.

    The arrays are copied to the host first, so a model on any device or backend can be saved. The
    file name is used as given (no ``.npz`` is appended). ``metadata`` is a JSON-serializable dict kept
    in the header (default: ``model.metadata`` if the model has one; the ``xpnet`` command records the
    dataset and input scaling there); :func:`xpnet.load` gives it back as ``model.metadata``. The model's
    ``loss`` and ``input_range`` (set by ``fit``) are kept too; a loss that is not one of xpnet's own is
    recorded as none, since :func:`xpnet.load` could not rebuild it.

    Raises ``TypeError`` for a layer whose class :func:`xpnet.load` could not rebuild, ``ValueError`` for a
    config that is not JSON-serializable, and ``OSError`` when the folder is not writable (the previous
    file, if any, is left untouched).
    """
    for i, layer in _every_layer(model.layers):
        name = type(layer).__name__
        if LAYERS.get(name) is not type(layer):
            raise TypeError(f"save: layer {i} is a {type(layer).__module__}.{name}, which load() cannot "
                            f"rebuild; register it first with xpnet.layers.register_layer({name})")
    state = model.state_dict()
    if metadata is None:
        metadata = getattr(model, "metadata", None) or {}
    if not isinstance(metadata, dict):
        raise TypeError(f"save: metadata must be a dict, got {type(metadata).__name__}")
    io.write(path, header(model, metadata), state)


def _every_layer(layers, prefix=""):
    """``("<i>", layer)`` for each layer, then ``("<i>.<j>", ...)`` for the layers inside it (a Residual's)."""
    for i, layer in enumerate(layers):
        yield f"{prefix}{i}", layer
        inner = getattr(layer, "layers", None)
        if isinstance(inner, list):
            yield from _every_layer(inner, f"{prefix}{i}.")


def header(model, metadata: dict) -> dict:
    """What the file says about ``model`` besides its arrays (:func:`xpnet.io.write` adds the rest)."""
    loss = getattr(model, "loss", None)
    if loss is not None and LOSSES.get(type(loss).__name__) is not type(loss):
        loss = None  # a custom loss: load() could not rebuild it, and the weights matter more than the loss
    input_range = getattr(model, "input_range", None)
    # where the random streams of layers that draw while training (Dropout) have got to: a loaded model
    # goes on training with the masks the saved one would have drawn next
    streams = {str(i): layer.rng_state() for i, layer in enumerate(model.layers)
               if callable(getattr(layer, "rng_state", None))}
    return {
        **({"layer_rng": streams} if streams else {}),
        "metadata": metadata,
        # what evaluate() and predict_proba() need to give the same answers after a load as before it
        "loss": None if loss is None else {"class": type(loss).__name__, "config": loss.get_config()},
        "input_range": None if input_range is None else [float(v) for v in input_range],
        "dtype": model.dtype,
        "architecture": {"layers": model.get_config()["layers"]},
    }


# -- load ---------------------------------------------------------------------------------------
def layers_from(path, header: dict, arrays: dict) -> list:
    """The layers a header describes, unbuilt, each checked against its weights before anything is allocated."""
    path = os.fspath(path)
    layers = []
    for i, spec in enumerate(header["architecture"]["layers"]):
        name, config = spec["class"], dict(spec.get("config", {}))
        cls = LAYERS.get(name)
        if cls is None:
            raise ModelFormatError(f"{path}: layer {i} has unknown class {name!r}; known: "
                                   f"{', '.join(sorted(LAYERS))} (register custom layers with "
                                   f"xpnet.layers.register_layer)")
        try:
            layer = cls.from_config(config)
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: layer {i} ({name}) cannot be rebuilt from its config "
                                   f"{spec.get('config')!r}: {exc}") from None
        # A hostile config can ask for terabytes: the first parameter's shape is what the config sizes, so
        # check it against the stored array before the model allocates anything (restore checks the rest).
        shapes = layer.param_shapes()
        if shapes:
            key, want = next(iter(shapes.items()))
            stored = arrays.get(f"{i}.{key}")
            if stored is None or stored.shape != tuple(want):
                raise ModelFormatError(f"{path}: layer {i} is {name}{tuple(want)} but its weights "
                                       f"{'are missing' if stored is None else f'have shape {stored.shape}'}")
        layers.append(layer)
    return layers


def restore(path, model, header: dict, arrays: dict) -> None:
    """Load a file's arrays into ``model`` (built from its header) and give it the header's loss and metadata;
    ``arrays`` are the model's alone (a checkpoint's: :func:`xpnet.checkpoint.model_arrays`)."""
    path = os.fspath(path)
    # the parameters and the buffers (running statistics); a file from before buffers has none, and
    # neither has a model of the layers such a file can name
    state = {**model.parameters(), **model.buffers()}
    what = "parameters and buffers" if len(model.buffers()) else "parameters"
    check_names_and_shapes(
        state, arrays,
        lambda missing, extra: ModelFormatError(f"{path}: the architecture has {what} {sorted(state)} but the file "
                                                f"holds arrays {sorted(arrays)}"),
        lambda k, shape, want: ModelFormatError(f"{path}: array {k!r} has shape {shape}, but the layer it belongs "
                                                f"to needs {want}"))
    loss = loss_from(path, header.get("loss"))  # before the weights: a file refused changes nothing
    model.load_state_dict(arrays)
    _restore_streams(path, model, header.get("layer_rng"))
    span = header.get("input_range")
    model.restored_with(loss, None if span is None else (float(span[0]), float(span[1])), header.get("metadata") or {})


def _restore_streams(path, model, streams) -> None:
    """Continue each saved random stream (``layer_rng``: layer index -> ``rng_state()``); files without
    one (written before it, or of models that draw nothing) keep the streams the model was built with."""
    if streams is None:
        return
    if not isinstance(streams, dict):
        raise ModelFormatError(f"{path}: garbled xpnet header (layer_rng is not a dict)")
    for index, state in streams.items():
        i = int(index) if index.isascii() and index.isdigit() else -1
        set_state = getattr(model.layers[i], "set_rng_state", None) if 0 <= i < len(model.layers) else None
        if set_state is None:
            raise ModelFormatError(f"{path}: garbled xpnet header (layer_rng names layer {index!r}, which "
                                   f"draws no random numbers)")
        try:
            set_state(state)
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: garbled xpnet header (the random state of layer {index}: "
                                   f"{exc})") from None


def loss_from(path, spec):
    """The loss a header names (``{"class", "config"}``), rebuilt; ``None`` for none."""
    if spec is None:
        return None
    cls = LOSSES.get(spec["class"])
    if cls is None:
        raise ModelFormatError(f"{path}: unknown loss {spec['class']!r} in the header; known: "
                               f"{', '.join(sorted(LOSSES))}")
    try:
        return cls(**spec.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: the loss {spec['class']} cannot be rebuilt: {exc}") from None


def check_architecture(path, model, header) -> None:
    """A checkpoint's header against the model it goes on training: the same layers and dtype."""
    want = json.loads(json.dumps(model.get_config()["layers"]))  # tuples become lists, as in the file
    have = header["architecture"]["layers"]
    if want != have:
        differ = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
        detail = (f"; layer {differ} is {_layer(want, differ)} in the model, {_layer(have, differ)} in the "
                  f"checkpoint")
        raise ValueError(f"resume from {path}: the model's layers {_layers(want)} are not the checkpoint's "
                         f"{_layers(have)}{detail}; build the same model (or xpnet.load({path!r}))")
    if header["dtype"] != model.dtype:
        raise ValueError(f"resume from {path}: the checkpoint is {header['dtype']} but the model is "
                         f"{model.dtype}; a resumed run must compute in the same dtype")


def _layer(specs, i) -> str:
    if i >= len(specs):
        return "missing"
    args = ", ".join(f"{k}={v!r}" for k, v in specs[i].get("config", {}).items())
    return f"{specs[i]['class']}({args})"


def _layers(specs) -> str:
    return "[" + ", ".join(s["class"] for s in specs) + "]"
