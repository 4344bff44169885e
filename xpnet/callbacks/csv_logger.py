"""Keras' CSVLogger: one row per epoch in a CSV file, which a resumed fit goes on with."""

from __future__ import annotations

import csv
import os

from ..validation import warn
from .base import Callback
from .state import count_from_state


def _same_file(path: str, saved) -> bool:
    if not isinstance(saved, str):
        return False
    try:
        return os.path.samefile(path, saved)
    except OSError:  # the checkpoint's file is gone
        return os.path.abspath(path) == saved


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file (``keras.callbacks.CSVLogger``).

    Columns: ``epoch`` (from 0, as Keras) then the logs' keys in sorted order. ``append=True`` adds to
    an existing file (its header is written only if the file was empty); without it the file is emptied
    when the run's first row is written. Each row is flushed when it is written, so an interrupted run
    keeps its rows. A resumed ``fit`` (``resume_from``) goes on with the file the checkpoint's run wrote,
    whatever ``append`` says: the earlier epochs' rows stay, the header is not written again, and rows
    written after the checkpoint (of epochs the resumed run trains again) are replaced, with a warning.
    """

    rank_zero_only = True  # a distributed fit runs it on rank 0 only (the weights are the same on all)

    def __init__(self, filename, separator: str = ",", append: bool = False):
        self.filename, self.sep, self.append = os.fspath(filename), separator, bool(append)
        self.file, self.writer, self.keys, self.empty_first = None, None, None, False

    def on_train_begin(self, logs=None):
        # Opened without emptying it: a resumed fit goes on with its rows (load_state_dict comes next).
        self.file = open(self.filename, "a", newline="", encoding="utf-8")
        self.writer, self.keys, self.empty_first = None, None, not self.append

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.writer is None:
            if self.empty_first:
                self.file.truncate(0)
            self.keys = self.keys or sorted(logs)
            self.writer = csv.DictWriter(self.file, fieldnames=["epoch", *self.keys], delimiter=self.sep,
                                         lineterminator="\n")
            if self._size() == 0:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None:
            self.file.close()
        self.file, self.writer = None, None

    def _size(self) -> int:
        if self.file is not None:
            return os.fstat(self.file.fileno()).st_size
        return os.path.getsize(self.filename) if os.path.exists(self.filename) else 0

    def state_dict(self) -> dict:
        # The file's length when the checkpoint is written: its rows are those of the epochs the checkpoint holds.
        return {"filename": os.path.abspath(self.filename), "bytes": self._size(), "keys": self.keys}

    def load_state_dict(self, state: dict) -> None:
        if not _same_file(self.filename, state.get("filename")):
            warn(f"CSVLogger: the checkpoint's run wrote {state.get('filename')}, this one writes {self.filename}: "
                 f"that file is started as a new one")
            return
        saved, keys = count_from_state("CSVLogger", state, "bytes"), state.get("keys")
        if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise ValueError(f"CSVLogger: keys {keys!r} in the checkpoint is not a list of column names")
        self.empty_first, self.keys = False, keys
        size = self._size()
        if size < saved:
            warn(f"CSVLogger: {self.filename} is shorter ({size} bytes) than when the checkpoint was written "
                 f"({saved} bytes); the resumed run's rows are added after what it holds")
        elif size > saved:
            self._cut(saved)

    def _cut(self, saved: int) -> None:
        """Drop the rows written after the checkpoint (the run stopped between a row and its checkpoint):
        the resumed run writes those epochs' rows again. Only at a row's end, else the file is left as it is."""
        with open(self.filename, "rb") as f:
            f.seek(max(saved - 1, 0))
            tail = f.read()
        if saved == 0 or not tail.startswith(b"\n"):
            warn(f"CSVLogger: {self.filename} has changed since the checkpoint was written ({saved} bytes then, "
                 f"not the end of a row now); the resumed run's rows are added after what it holds")
            return
        rows = tail[1:].count(b"\n")
        warn(f"CSVLogger: {self.filename} holds {rows} row(s) written after the checkpoint, of epochs the resumed "
             f"run trains again; they are replaced by its own")
        self.file.truncate(saved)
