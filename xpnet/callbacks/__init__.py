"""Callbacks: code that ``fit`` calls at the edges of training, epochs and read-back windows (as Keras').

Subclass :class:`Callback` and override the hooks you need; ``fit`` sets ``callback.model``,
``callback.optimizer`` (the optimizer being stepped: set its ``lr`` to change the rate) and
``callback.params`` (``epochs``, ``steps`` per epoch, ``samples``, ``check_every``, ``verbose``) before
training starts. To stop after the current epoch set ``self.model.stop_training = True``. A plain
function ``f(epoch, logs)`` is accepted too: returning ``True`` stops training.

``on_batch_end`` is called once per read-back window (every ``check_every`` steps and at the end of an
epoch), like Keras' batch hooks under ``steps_per_execution``: the step loop itself never waits for the
device. Its ``logs`` hold ``losses`` (the window's per-step losses, host float64), ``loss`` (the running
mean over the epoch so far), ``accuracy`` (likewise, for classification), ``samples`` (seen this
epoch) and ``state_finite`` (whether every parameter and buffer was finite at the window's end: it came
back in the same transfer as the losses).

A callback whose state must outlive an interrupted run (as PyTorch Lightning's do) overrides
``state_dict()`` / ``load_state_dict(state)``: ``fit(checkpoint_dir=...)`` keeps the state in each
epoch's checkpoint under the callback's class name and place (``"EarlyStopping[0]"``), and a resumed
``fit`` gives it back after ``on_train_begin``. ``EarlyStopping``, ``ModelCheckpoint`` and ``CSVLogger``
do so.

One file per callback or family: ``base.py`` the protocol, :class:`History` and :class:`LambdaCallback`;
``monitor.py`` the base of the callbacks that watch a key of the logs in a mode; ``early_stopping.py``,
``model_checkpoint.py``, ``lr_scheduler.py`` and ``csv_logger.py`` Keras' callbacks of those names, with
Keras' arguments and rules; ``divergence.py`` the divergence rollback, the loss watch and the snapshot
helpers; ``progress.py`` the progress bar and the epoch line; ``state.py`` the callbacks' states in a
checkpoint. Where Keras warns that the monitored key is missing from the logs and goes on, these raise
(a stop or a save that silently never happens is worse).
"""

from __future__ import annotations

from .base import Callback, CallbackList, History, LambdaCallback, require_matplotlib
from .csv_logger import CSVLogger
from .divergence import DivergenceRollback, LossWatch, TrainingDiverged, state_finite
from .early_stopping import EarlyStopping
from .lr_scheduler import LearningRateScheduler
from .model_checkpoint import ModelCheckpoint
from .progress import EpochLine, ProgressBar, format_epoch

__all__ = ["CSVLogger", "Callback", "CallbackList", "DivergenceRollback", "EarlyStopping", "EpochLine",
           "History", "LambdaCallback", "LearningRateScheduler", "LossWatch", "ModelCheckpoint", "ProgressBar",
           "TrainingDiverged", "format_epoch", "require_matplotlib", "state_finite"]
