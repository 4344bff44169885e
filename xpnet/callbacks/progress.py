"""What ``fit`` shows while it trains: :class:`ProgressBar` within each epoch, :class:`EpochLine` (through
:func:`format_epoch`) at each epoch's end.

``time`` is imported as a module so that a test can give :class:`ProgressBar` a fake clock
(``monkeypatch.setattr(progress, "time", ...)``)."""

from __future__ import annotations

import sys
import time

from .base import Callback


class ProgressBar(Callback):
    """Progress through each epoch on stderr, once per read-back window, when ``verbose == 1``
    (``verbose=2`` is Keras' "one line per epoch": the epoch lines alone).

    On a terminal, a tqdm bar per epoch. Elsewhere (a log file, CI, a batch job) a plain line
    ``epoch 1/5  step 400/469  loss 0.3100  1,234 samples/s  ~0:45 left in the epoch`` at most every
    ``interval`` seconds, the first ``interval`` seconds into an epoch (one shorter than that shows only
    its epoch line). Both come from the losses the window already read back: no extra wait on the device.
    """

    interval = 30.0  # seconds between plain lines: a slow epoch shows it is alive, a fast one stays quiet

    def __init__(self):
        self.bar = None
        self.start = self.said = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.params["verbose"] != 1:
            return
        if not sys.stderr.isatty():
            self.start = self.said = time.monotonic()
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params["samples"], desc=f"epoch {epoch + 1}/{self.params['epochs']}",
                        unit="sample", leave=False, dynamic_ncols=True, file=sys.stderr)

    def on_batch_end(self, step, logs=None):
        if self.bar is not None:
            self.bar.update(logs["samples"] - self.bar.n)
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}")
        elif self.said is not None and step < self.params["steps"] - 1:  # the epoch line reports the last
            now = time.monotonic()
            if now - self.said >= self.interval:
                self.said = now
                print(self._line(step, logs, now - self.start), file=sys.stderr, flush=True)

    def _line(self, step, logs, seconds: float) -> str:
        rate = logs["samples"] / seconds
        left = round((self.params["samples"] - logs["samples"]) / rate) if rate > 0 else 0
        return (f"epoch {self.epoch + 1}/{self.params['epochs']}  step {step + 1}/{self.params['steps']}  "
                f"loss {logs['loss']:.4f}  {rate:,.0f} samples/s  ~{format_seconds(left)} left in the epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.close()

    def close(self):
        self.said = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def format_seconds(seconds: int) -> str:
    """A whole number of seconds as a clock shows it: ``"1:05"``, ``"1:02:05"`` from an hour on."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class EpochLine(Callback):
    """Prints one line per epoch (loss, accuracies, throughput, device) when ``verbose >= 1``.

    ``held_out`` names the ``val_`` figures in the line: ``"val"`` (the default, as the history's keys),
    or e.g. ``"test"`` when ``validation_data`` is the test set. ``fit`` prints with its own
    ``EpochLine()`` unless ``callbacks`` holds one: ``callbacks=[EpochLine(held_out="test")]``.
    """

    def __init__(self, held_out: str = "val"):
        self.held_out = held_out

    def on_epoch_end(self, epoch, logs=None):
        if self.params["verbose"] >= 1:
            print(format_epoch(epoch, self.params["epochs"], logs, self.model.device, self.held_out), flush=True)


def format_epoch(epoch: int, epochs: int, logs: dict, dev, held_out: str = "val") -> str:
    """One line per epoch: loss, accuracies, throughput and device. ``loss`` is the mean over the epoch's steps
    (as Keras'); ``train loss``, where fit evaluated the training data after the epoch (``evaluate_train``), is
    nanoGPT's "train loss" (the model at the epoch's end, in evaluation mode).

    ``held_out`` names the ``val_`` figures: ``"val"`` (``validation_data`` or ``validation_split``, as
    the history's keys), or ``"test"`` where the held-out set is the test set (the ``xpnet`` command).
    """
    parts = [f"epoch {epoch + 1}/{epochs}", f"loss {logs['loss']:.4f}"]
    if "accuracy" in logs:
        parts.append(f"train acc {logs['accuracy']:.4f}")
    if "train_loss" in logs:  # fit(evaluate_train=True): the training data evaluated after the epoch
        parts.append(f"train loss {logs['train_loss']:.4f}")
    if "val_loss" in logs:
        parts.append(f"{held_out} loss {logs['val_loss']:.4f}")
    if "val_accuracy" in logs:
        parts.append(f"{held_out} acc {logs['val_accuracy']:.4f}")
    for key in logs:  # fit's other metrics (top-k), after the ones the CLI's readers parse
        if key.startswith(("top_", "val_top_")):
            parts.append(f"{key.replace('val_', held_out + ' ').replace('_', ' ')} {logs[key]:.4f}")
    parts += [f"{logs['samples_per_s']:,.0f} samples/s", f"{logs['seconds']:.2f} s", f"{dev}"]
    return "  ".join(parts)
