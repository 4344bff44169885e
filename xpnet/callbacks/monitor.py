"""The base of the callbacks that watch one key of the epoch's logs in a mode (``min`` or ``max``), as
Keras' do: :class:`~xpnet.callbacks.EarlyStopping` and :class:`~xpnet.callbacks.ModelCheckpoint`."""

from __future__ import annotations

from ..validation import warn
from .base import Callback


def watch_mode(owner: str, monitor: str, mode: str) -> str:
    """``"min"`` or ``"max"``; ``"auto"`` follows Keras: ``max`` for a name with ``acc`` in it, else ``min``."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


class MonitorCallback(Callback):
    """A callback that watches ``logs[monitor]`` at each epoch's end, better when lower (mode ``min``) or
    higher (``max``). ``owner`` names it in its messages."""

    owner = "MonitorCallback"

    def __init__(self, monitor: str, mode: str):
        self.monitor = monitor
        self.mode = watch_mode(self.owner, monitor, mode)

    def monitored(self, logs) -> float:
        """``logs[monitor]`` as a float; a ``ValueError`` naming the keys the logs hold if it is missing."""
        monitor = self.monitor
        if not logs or monitor not in logs:
            hint = " (val_ keys need validation_data or validation_split in fit)" if monitor.startswith("val_") else ""
            raise ValueError(f"{self.owner}: monitor={monitor!r} is not in the epoch's logs{hint}; they hold "
                             f"{sorted(logs or {})}")
        return float(logs[monitor])

    def improves(self, current: float, reference, min_delta: float = 0.0) -> bool:
        """Whether ``current`` beats ``reference`` by more than ``min_delta`` (any value beats ``None``)."""
        if reference is None:
            return True
        if self.mode == "min":
            return current + min_delta < reference
        return current - min_delta > reference

    def same_watch(self, state: dict) -> bool:
        """Whether a checkpoint's state watched what this callback watches; a warning if not."""
        if (state.get("monitor"), state.get("mode")) == (self.monitor, self.mode):
            return True
        warn(f"{self.owner}: the checkpoint's watched {state.get('monitor')!r} (mode {state.get('mode')!r}), this "
             f"one {self.monitor!r} (mode {self.mode!r}); its best so far does not carry over, so it starts afresh")
        return False
