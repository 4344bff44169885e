"""``Sequential``: a stack of layers on one device, with forward, backward, fit, evaluate and predict;
:func:`load` makes one from a file (the format is :mod:`xpnet.io`, the header's meaning :mod:`xpnet.saving`)."""

from __future__ import annotations

import os

from . import backend as _backend
from . import checkpoint, io
from . import losses as losses_mod
from . import rngstate
from . import sampling, saving
from . import summary as _summary
from . import train
from .layers import Layer
from .parameters import ParameterDict, check_names_and_shapes, dict_of


class Sequential:
    """Layers applied in order, all on one device; the model of every seed network.

        >>> model = Sequential([Dense(784, 200), Sigmoid(), Dense(200, 10), Sigmoid()],
        ...                    device="cpu", seed=0)
        >>> history = model.fit(X, y, loss=MSE(), optimizer=SGD(0.1), epochs=1, batch_size=32)
        >>> model.evaluate(X_test, y_test)["accuracy"]

    ``device`` is anything :func:`xpnet.device` takes (``"auto"``, ``"cpu"``, ``"cuda:0"``, a
    ``Device``), ``backend`` picks the array library, ``seed`` makes the initial weights (drawn on the
    host: identical on every backend), ``dtype`` is ``"float32"`` (default) or ``"float64"``.
    ``init=False`` allocates the weights without drawing them, for a model whose weights are loaded next
    (:meth:`load_state_dict`), as :func:`xpnet.load` does.
    """

    def __init__(self, layers, device=None, seed=None, dtype: str = "float32", backend: str | None = None,
                 *, init: bool = True):
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: layer {i} is {layer!r}, not an xpnet Layer")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"Sequential: dtype must be 'float32' or 'float64', got {dtype!r}")
        self.layers = layers
        self.dtype = dtype
        self.seed = seed
        self.device = _backend.device(device, backend=backend)
        rng = _backend.host_rng(seed)
        with self.device.context():
            for layer in layers:
                layer.tie(layers)  # a layer that uses another's weights (a tied head) finds it here
                layer.build(self.device, rng, dtype, init=init)
        self.rng = rng  # the same stream goes on to shuffle the data in fit
        self._link()
        self.loss = None  # set by fit (and by load); evaluate and predict_proba go by it
        self.input_range = None  # (min, max) of the inputs fit has seen; predict warns far outside it
        self.metadata: dict = {}  # free-form, JSON-serializable; saved in the file's header

    def trained_with(self, loss, input_range=None) -> None:
        """Record ``fit``'s loss and its inputs' ``(min, max)``, widening a range recorded before (a resumed run's;
        ``None``: the range stays as it was)."""
        old, self.loss = self.input_range, loss
        if input_range is not None:
            self.input_range = (input_range if old is None
                                else (min(old[0], input_range[0]), max(old[1], input_range[1])))

    def restored_with(self, loss, input_range, metadata: dict) -> None:
        """What a file says the model was trained with (:func:`xpnet.load`, a checkpoint), replacing what it had."""
        self.loss, self.input_range, self.metadata = loss, input_range, metadata

    def _link(self):
        # Layers before the first one with weights need no backward at all, and that one needs no
        # input gradient: on 784-256-10 this skips a 128x256x784 GEMM per step.
        trainable = [i for i, layer in enumerate(self.layers) if layer.params]
        self._first = trainable[0] if trainable else len(self.layers)
        for i, layer in enumerate(self.layers):
            layer.input_grad = i > self._first
        with self.device.context():  # parameters as views of one flat buffer per dtype (parameters.py)
            self._params = ParameterDict(self.layers, "params", flat=True)
        self._grads = ParameterDict(self.layers, "grads", keys_from="params")
        self._buffers = ParameterDict(self.layers, "buffers")

    # -- the math -------------------------------------------------------------------------------
    def forward(self, x, training: bool = False):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    __call__ = forward
    generate = sampling.generate  # a next-token model's sampling (a GPT's), nanoGPT's loop

    def backward(self, dy):
        """Back-propagate ``dL/doutput`` through every layer, filling each layer's ``grads``."""
        for layer in reversed(self.layers[self._first:]):
            dy = layer.backward(dy)
        return dy

    def parameters(self) -> ParameterDict:
        """All parameters as a flat ``{"<layer>.<name>": array}`` dict (write-through), the mapping that
        optimizers step: iterating it gives the names, ``.values()`` the arrays, ``.items()`` both.
        PyTorch's ``parameters()`` yields the arrays: here that is ``parameters().values()``."""
        return self._params

    def named_parameters(self):
        """``(name, array)`` pairs, one per parameter, as PyTorch's ``named_parameters()``."""
        yield from self._params.items()

    def gradients(self) -> ParameterDict:
        """The gradients of the last ``backward``, keyed like :meth:`parameters`."""
        return self._grads

    def buffers(self) -> ParameterDict:
        """The layers' non-trained state (BatchNorm's running statistics), keyed like :meth:`parameters`
        (``"1.running_mean"``). Optimizers never see it: it is not in :meth:`parameters`."""
        return self._buffers

    def _state(self) -> dict:
        # layer by layer, each layer's parameters before its buffers: the order of PyTorch's state_dict
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for arrays in (layer.params, dict_of(layer, "buffers")) for k, v in arrays.items()}

    def state_dict(self) -> dict:
        """The parameters and the buffers as host NumPy arrays (copies), keyed like :meth:`parameters` and
        :meth:`buffers` (as PyTorch's ``state_dict`` holds both)."""
        return {k: _backend.to_numpy(v).copy() for k, v in self._state().items()}

    def load_state_dict(self, state: dict) -> None:
        """Set the parameters and buffers from host (or device) arrays keyed like :meth:`state_dict`."""
        with self.device.context():
            self._load_state_dict(state)

    def _load_state_dict(self, state: dict) -> None:
        check_names_and_shapes(
            self._state(), state,
            lambda missing, extra: ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {extra}"),
            lambda k, shape, want: ValueError(f"load_state_dict: {k} has shape {tuple(shape)}, the model expects "
                                              f"{want}"))
        for k, v in state.items():
            # Always a copy of its own: training updates parameters in place, and the array asarray gives
            # may be the caller's (NumPy) or share its memory (torch.asarray, array-api-strict on NumPy data).
            into = self._params if k in self._params else self._buffers
            into[k] = self.device.xp.asarray(self.device.asarray(v, self.dtype, c_order=True), copy=True)

    def get_rng_state(self) -> dict:
        """The state of every random generator training draws from, as JSON: ``{"shuffle": ..., "layers": ...}``
        (:func:`xpnet.rngstate.rng_state`). A checkpoint saves it, so a resumed run draws what the
        uninterrupted one would have."""
        return rngstate.rng_state(self)

    def set_rng_state(self, state: dict) -> None:
        """Put back a :meth:`get_rng_state`; raises ``ValueError`` if it does not fit this model's layers."""
        rngstate.set_rng_state(self, state)

    def to(self, device=None, backend: str | None = None) -> "Sequential":
        """Move every parameter and buffer to another device (or backend); returns the model itself."""
        new, moved = _backend.device(device, backend=backend), []
        with new.context():
            for layer in self.layers:
                for arrays in (layer.params, dict_of(layer, "buffers")):
                    for k, v in arrays.items():
                        arrays[k] = new.asarray(v, self.dtype, c_order=True)
                        moved.append(arrays[k] is not v)
                layer.grads.clear()
        self.device = new
        if any(moved):
            self._link()  # the moved parameters into flat buffers on the new device
        return self

    def __getstate__(self):  # a copy (pickle, deepcopy) takes the values; _link makes the views again
        return {k: v for k, v in self.__dict__.items() if k not in ("_params", "_grads", "_buffers")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._link()

    # -- training and inference ----------------------------------------------------------------
    def fit(self, X, y=None, loss=None, optimizer=None, epochs: int = 1, batch_size: int = 32,
            shuffle: bool = True, validation_data=None, verbose="auto", callbacks=(), lr=None, *,
            validation_split: float = 0.0, metrics=None, schedule=None, checkpoint_dir=None, resume_from=None,
            distributed=None, check_every: int = 50, steps_per_epoch=None, validation_steps=None,
            evaluate_train: bool = False):
        """Train; returns a :class:`~xpnet.callbacks.History` with per-epoch loss and accuracy.

        ``X``/``y`` (NumPy arrays or arrays of the model's backend) move to the device once; each epoch is
        shuffled by a permutation drawn on the host (from ``seed``) and batches are gathered on the device.
        ``loss`` (a name such as ``"softmax_cross_entropy"`` or a :class:`~xpnet.losses.Loss`) must be given
        unless resuming; ``optimizer`` defaults to ``"sgd"`` (when resuming, the checkpoint's).

        ``checkpoint_dir``: write ``checkpoint_dir/last.npz`` (:mod:`xpnet.checkpoint`) after every epoch's
        callbacks: weights, optimizer state, schedule, history, random state and the callbacks' states
        (``EarlyStopping``'s patience and best weights, ``ModelCheckpoint``'s best value, ``CSVLogger``'s
        place). ``resume_from``: a checkpoint to go on from; ``epochs`` counts the total (Keras'
        ``initial_epoch``), so a run stopped after epoch k and resumed with the same callbacks ends as one
        that never stopped, bit for bit on the CPU, history and callbacks' files included. Arguments and
        data are checked before the checkpoint is loaded; an optimizer of another class than the
        checkpoint's is a ``ValueError``, of the same class it takes the checkpoint's configuration and
        state (a warning names what differed).

        ``validation_split`` holds out the last fraction of the rows (before shuffling, as Keras) and
        reports ``val_`` metrics on them; ``validation_data=(X_val, y_val)`` gives them instead.
        ``metrics``: ``"accuracy"``, ``"top_5_accuracy"`` (any k), :class:`~xpnet.metrics.TopKAccuracy`
        (default: accuracy for class targets). ``schedule`` (a name or a :mod:`xpnet.schedules` object)
        sets ``lr`` per epoch or per step. ``callbacks``: :mod:`xpnet.callbacks` objects or functions
        ``f(epoch, logs)``. ``check_every``: read the losses back every this many steps and at each
        epoch's end, for the progress bar, ``on_batch_end`` and the divergence check (default 50).

        ``distributed``: ``True`` (or an :class:`xpnet.distributed.Communicator`) trains data-parallel on
        the ranks of an MPI job, ``batch_size`` being the global batch (``pip install "xpnet[mpi]"``);
        ``xpnet.distributed.Threads(n)`` does the same on ``n`` threads of this process. N ranks end with
        the weights one process would have (:mod:`xpnet.distributed`).
        ``X`` may be a source, :class:`xpnet.TextWindows` (no ``y``): ``steps_per_epoch`` steps an epoch (Keras'
        endless datasets), ``validation_steps`` batches of a source's ``validation_data``; ``evaluate_train`` logs
        ``train_loss`` (see :func:`xpnet.train.fit`). Plain SGD on the CPU steps Dense layers inside backward.
        """
        try:
            return train.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                             shuffle=shuffle, validation_data=validation_data, verbose=verbose,
                             callbacks=callbacks, lr=lr, validation_split=validation_split, metrics=metrics,
                             schedule=schedule, checkpoint_dir=checkpoint_dir, resume_from=resume_from,
                             distributed=distributed, check_every=check_every, steps_per_epoch=steps_per_epoch,
                             validation_steps=validation_steps, evaluate_train=evaluate_train)
        except _backend.DeviceOutOfMemoryError as exc:
            # Out here the failed step's frames are finished: release their arrays, then give the pool's
            # blocks back to the driver, so the process (or another library on the GPU) can go on.
            train.release(exc)
            _backend.free_memory_pool(self.device)
            raise

    def predict(self, X, batch_size: int = 1024):
        """The network's output for ``X``, as an array of the model's backend on its device."""
        return train.predict(self, X, batch_size)

    def predict_proba(self, X, batch_size: int = 1024):
        """Class probabilities for ``X``: the softmax (or, for one output, the sigmoid) the loss implies.

        A model trained on logits (``SoftmaxCrossEntropy``, ``BinaryCrossEntropy``) gets the softmax or
        sigmoid of its output; one that ends in a ``Softmax`` or ``Sigmoid`` layer returns that output.
        For one output unit the result is ``(n, 1)``: the probability of class 1.
        """
        return train.predict_proba(self, X, batch_size)

    def predict_classes(self, X, batch_size: int = 1024):
        """The predicted class of each row of ``X`` as int64 labels ``(n,)``, on the model's device.

        The argmax of the outputs, or for one output unit the threshold that ``evaluate``'s accuracy
        uses (0 on the logits of ``BinaryCrossEntropy``, 0.5 on probabilities).
        """
        return train.predict_classes(self, X, batch_size)

    def evaluate(self, X, y=None, loss=None, batch_size: int = 1024, *, metrics=None, steps=None) -> dict:
        """``{"loss": float, "accuracy": float}`` on ``(X, y)`` (accuracy for classification targets).

        ``metrics`` as in :meth:`fit` (e.g. ``["accuracy", "top_5_accuracy"]``). ``loss`` defaults to the one
        the model was trained with (``fit`` and ``load`` record it).
        ``X`` may be a :class:`xpnet.TextWindows` source, evaluated on ``steps`` (default 20) fixed batches.
        """
        if loss is None and self.loss is None:
            raise ValueError("evaluate: no loss given, and this model has none recorded (it was not trained "
                             "with fit, nor loaded from a file that names its loss): pass loss=..., e.g. "
                             "loss='softmax_cross_entropy'")
        return train.evaluate(self, X, y, losses_mod.get(loss if loss is not None else self.loss), batch_size,
                              metrics=metrics, steps=steps)

    def save(self, path, *, metadata: dict | None = None) -> None:
        """Save architecture and weights to one ``.npz`` file (see :func:`xpnet.save`)."""
        saving.save(self, path, metadata=metadata)

    def summary(self, input_shape=None, print_fn=None) -> None:
        """Print a table of the layers, as Keras' ``model.summary()``: each layer's type, output shape
        (batch axis ``None``), parameter count and arguments, then the totals (in values and bytes), the
        device and the dtype.

        ``input_shape`` is one sample's shape, e.g. ``(1, 28, 28)``; without it the shape is read from the
        first layer that fixes it (a ``Dense``'s ``in_features``, a ``Reshape``), else the output shapes
        are ``?``. "Trainable" counts :meth:`parameters`, "non-trainable" :meth:`buffers` (BatchNorm's
        running statistics). ``print_fn`` gets each line instead of ``print`` (``lines.append``).
        """
        for line in _summary.summary_lines(self, input_shape):
            (print if print_fn is None else print_fn)(line)

    def get_config(self) -> dict:
        return {"layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
                "dtype": self.dtype}

    def __repr__(self):
        return f"Sequential([{', '.join(map(repr, self.layers))}], device={str(self.device)!r})"


def load(path, device=None, backend: str | None = None) -> Sequential:
    """Read a model written by :func:`xpnet.save` onto ``device`` / ``backend`` (what :func:`xpnet.device` takes).

    Returns a :class:`Sequential` whose parameters equal the saved ones bit for bit, in the saved dtype,
    with the saved ``metadata`` dict as ``model.metadata``. Raises ``FileNotFoundError`` if ``path`` does
    not exist and :class:`~xpnet.io.ModelFormatError` if it is not a model file this version of xpnet can read.
    """
    path = os.fspath(path)
    header, arrays = io.read(path)
    # Built without drawing: the weights are overwritten at once, by the model itself.
    model = Sequential(saving.layers_from(path, header, arrays), device=device, backend=backend,
                       dtype=header["dtype"], init=False)
    saving.restore(path, model, header, checkpoint.model_arrays(header, arrays))
    return model
