"""``fit(checkpoint_dir=DIR)``'s checkpoint: ``DIR/last.npz`` written at the end of every epoch, by a callback
that fit puts after all the others (as Keras' ``BackupAndRestore``), so that a run one of them stops is saved too.
"""

from __future__ import annotations

import errno
import os

from .. import checkpoint, io
from ..callbacks import Callback


class Backup(Callback):
    """Write the run to ``path`` (:func:`xpnet.checkpoint.save_checkpoint`) at the end of every epoch.

    ``step`` is the optimizer steps taken before the first epoch (a resumed run's), ``steps`` those of an
    epoch; ``callbacks`` the callbacks given to fit, whose states the checkpoint keeps (on every rank's count).
    """

    def __init__(self, path: str, optimizer, schedule, history, callbacks, run: dict | None, step: int, steps: int):
        self.path, self.saved_optimizer, self.schedule, self.history = path, optimizer, schedule, history
        self.callbacks, self.run, self.step, self.steps = callbacks, run, step, steps

    def on_epoch_end(self, epoch, logs=None):
        self.step += self.steps
        checkpoint.save_checkpoint(self.path, self.model, self.saved_optimizer, epoch=epoch + 1, step=self.step,
                                   schedule=self.schedule, history=self.history.history, callbacks=self.callbacks,
                                   run=self.run)


def checkpoint_path(checkpoint_dir) -> str:
    """``checkpoint_dir/last.npz``, after making the folder and checking it can be written (before training)."""
    checkpoint_dir = os.fspath(checkpoint_dir)
    if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        raise NotADirectoryError(f"checkpoint_dir={checkpoint_dir!r} is a file; give a folder (fit writes "
                                 f"{checkpoint.LAST} into it every epoch)")
    path = os.path.join(checkpoint_dir, checkpoint.LAST)
    try:
        os.makedirs(checkpoint_dir, exist_ok=True)
        io.check_writable(path)
    except OSError as exc:
        raise _unwritable(checkpoint_dir, exc) from None
    return path


_WHY = {errno.EROFS: "it is on a read-only file system", errno.EACCES: "no permission to write there",
        errno.EPERM: "no permission to write there", errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up"}


def _unwritable(checkpoint_dir, exc: OSError) -> OSError:
    """The same kind of OSError, naming the folder, the cause and the fix instead of ``[Errno 30] ...``."""
    why = _WHY.get(exc.errno) or exc.strerror or str(exc)
    found = type(exc)(f"checkpoint_dir {checkpoint_dir!r} cannot be written ({why}), so fit could save no "
                      f"checkpoint; nothing was trained. Give a folder you can write to (checkpoint_dir=..., "
                      f"--checkpoint-dir DIR on the command line)")
    found.errno = exc.errno  # set after: str() of a one-argument OSError is its message alone
    return found
