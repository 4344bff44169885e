"""Keras' ModelCheckpoint: save the model at each epoch's end, or only when the monitored value improves."""

from __future__ import annotations

import math
import os

from .. import saving
from .monitor import MonitorCallback
from .state import float_from_state, float_to_state


class ModelCheckpoint(MonitorCallback):
    """Save the model (:func:`xpnet.save`, atomic) at the end of each epoch (``keras.callbacks.ModelCheckpoint``).

    ``filepath`` may hold ``{epoch}`` (from 1) and any key of the epoch's logs, formatted as Keras does:
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``. Missing folders are made. With ``save_best_only`` a
    file is written only when ``monitor`` beats the best so far (``<`` in mode ``min``, ``>`` in
    ``max``; ``auto`` picks ``max`` for accuracies); the best is kept across ``fit`` calls, as in Keras,
    and in ``fit``'s checkpoints, so a resumed run does not overwrite the best file with a worse epoch.
    ``xpnet.load(path)`` reads the file back.
    """

    owner = "ModelCheckpoint"
    rank_zero_only = True  # a distributed fit runs it on rank 0 only (the weights are the same on all)

    def __init__(self, filepath, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 mode: str = "auto"):
        self.filepath, self.verbose = os.fspath(filepath), verbose
        self.save_best_only = bool(save_best_only)
        super().__init__(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot format filepath {self.filepath!r} ({exc!r}); it may use "
                             f"{{epoch}} and the log keys {sorted(logs)}") from exc
        if self.save_best_only:
            current = self.monitored(logs)
            if not self.improves(current, self.best):
                if self.verbose > 0:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}", flush=True)
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving the model to {path}", flush=True)
            self.best = current
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving the model to {path}", flush=True)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        saving.save(self.model, path)

    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "mode": self.mode, "best": float_to_state(self.best)}

    def load_state_dict(self, state: dict) -> None:
        if self.same_watch(state):
            self.best = float_from_state("ModelCheckpoint", "best", state.get("best"))
