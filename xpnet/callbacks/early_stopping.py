"""Keras' EarlyStopping: stop when the monitored value has stopped improving, and optionally put back the
weights of the best epoch."""

from __future__ import annotations

from ..arguments import check_count
from ..parameters import check_names_and_shapes
from ..validation import warn
from .divergence import model_state, put_back, snapshot
from .monitor import MonitorCallback
from .state import count_from_state, float_from_state, float_to_state


class EarlyStopping(MonitorCallback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (``keras.callbacks.EarlyStopping``).

    An epoch improves on the best so far when ``current < best - min_delta`` (mode ``min``) or
    ``current > best + min_delta`` (mode ``max``; ``auto`` picks ``max`` for accuracies). After
    ``patience`` epochs in a row without improvement training stops (``patience=0``: at the first).
    With ``restore_best_weights`` the weights of the best epoch are copied on the device after each
    improvement and copied back into the model when training ends (stopped early or not), as Keras 3
    does. ``baseline``: training stops unless the monitor beats it within ``patience`` epochs.
    ``start_from_epoch``: epochs before it are not watched (a warm-up). ``stopped_epoch`` and
    ``best_epoch`` say what happened (from 0; ``stopped_epoch`` stays 0 if it never stopped). With
    ``verbose=1`` it prints one line when training ends, if it stopped training or put back the weights of
    an earlier epoch than the last: ``EarlyStopping: stopped at epoch 7 of 30 (val_loss: 3 epochs without
    improvement); best epoch 4 (val_loss 0.2310) restored``.

    A checkpoint (``fit(checkpoint_dir=...)``) keeps its ``wait``, ``best``, ``best_epoch`` and the best
    weights (a second copy of the model in the file), so a resumed ``fit`` stops at the epoch, and with
    the weights, of the run that never stopped.
    """

    owner = "EarlyStopping"
    _PARTS = ("params", "buffers")  # the halves of model_state(model), as the checkpoint names its arrays

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0):
        super().__init__(monitor, mode)
        self.verbose = verbose
        self.min_delta = abs(float(min_delta))
        self.patience = check_count("EarlyStopping: patience", patience, low=0)
        self.baseline = baseline
        self.restore_best_weights, self.start_from_epoch = bool(restore_best_weights), int(start_from_epoch)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch, self.best, self.best_weights = 0, 0, 0, None, None
        self._stopped = False  # by this run (a resumed one loads stopped_epoch, but has not stopped yet)
        self._last = None  # this run's last epoch

    def on_epoch_end(self, epoch, logs=None):
        self._last = epoch
        if epoch < self.start_from_epoch:
            return
        current = self.monitored(logs)
        improved = self.improves(current, self.best, self.min_delta)
        if self.restore_best_weights and (improved or self.best_weights is None):
            # Keras: the first watched epoch stands in as the best (even a NaN) until one beats it. The copy
            # overwrites this run's previous one in place where it can: one copy of the weights, no allocation.
            self.best_weights = snapshot(model_state(self.model), self.best_weights, finite=True)
        self.wait += 1
        if improved:
            self.best, self.best_epoch = current, epoch
            if self.baseline is None or self.improves(current, self.baseline, self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = self._stopped = True

    def on_train_end(self, logs=None):
        restored = self.restore_best_weights and self.best_weights is not None
        if restored:
            put_back(model_state(self.model), self.best_weights, copy=True)
        if self.verbose > 0 and (self._stopped or restored and self.best_epoch != self._last):
            print(self._report(restored), flush=True)

    def _report(self, restored: bool) -> str:
        """The one line that says what it did: where it stopped, and whose weights the model now has."""
        value = "?" if self.best is None else f"{self.best:.4f}"
        best = f"best epoch {self.best_epoch + 1} ({self.monitor} {value})"
        if not self._stopped:
            return f"EarlyStopping: did not stop; {best} restored"
        stopped = (f"EarlyStopping: stopped at epoch {self.stopped_epoch + 1} of {self.params['epochs']} "
                   f"({self.monitor}: {self.wait} epoch{'s' * (self.wait != 1)} without improvement)")
        if restored:
            return f"{stopped}; {best} restored"
        return f"{stopped}; {best}, not restored (restore_best_weights=False): the model has epoch " \
               f"{self.stopped_epoch + 1}'s weights"

    def state_dict(self) -> dict:
        state = {"monitor": self.monitor, "mode": self.mode, "wait": self.wait, "best": float_to_state(self.best),
                 "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch}
        if self.best_weights is not None:
            state["arrays"] = {f"{self._PARTS[i]}/{k}": v for (i, k), v in self.best_weights.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        if not self.same_watch(state):
            return
        wait, best_epoch, stopped_epoch = (count_from_state("EarlyStopping", state, k)
                                           for k in ("wait", "best_epoch", "stopped_epoch"))
        best = float_from_state("EarlyStopping", "best", state.get("best"), optional=True)
        weights, arrays = None, state.get("arrays") or {}
        if self.restore_best_weights and arrays:
            weights = self._weights_from(arrays)
        elif self.restore_best_weights and best is not None:
            warn(f"EarlyStopping: the checkpoint holds no best weights (its EarlyStopping did not restore "
                 f"them), so those of epoch {best_epoch + 1} are lost: the next watched epoch's stand in")
        self.wait, self.best, self.best_epoch, self.stopped_epoch = wait, best, best_epoch, stopped_epoch
        self.best_weights = weights

    def _weights_from(self, arrays: dict) -> dict:
        """The checkpoint's best weights (host arrays), checked against the model, as copies on its device."""
        state = model_state(self.model)
        names = {f"{self._PARTS[i]}/{k}": (i, k) for i, part in enumerate(state) for k in part}
        check_names_and_shapes(
            {name: state[i][k] for name, (i, k) in names.items()}, arrays,
            lambda missing, extra: ValueError(f"EarlyStopping: the checkpoint's best weights are {sorted(arrays)}, "
                                              f"the model's arrays {sorted(names)}"),
            lambda name, shape, want: ValueError(f"EarlyStopping: the best weights' {name} has shape {tuple(shape)}, "
                                                 f"the model's {want}"))
        dev = self.model.device
        return {(i, k): dev.xp.asarray(dev.asarray(arrays[name], self.model.dtype, c_order=True), copy=True)
                for name, (i, k) in names.items()}
