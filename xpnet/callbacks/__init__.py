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

``base.py`` holds the protocol and :class:`History`; ``loop.py`` the callbacks every ``fit`` runs (the
divergence rollback, the loss watch, the progress bar, the epoch line); ``keras.py`` Keras' own callbacks,
with Keras' names, arguments and rules: :class:`EarlyStopping`, :class:`ModelCheckpoint`,
:class:`LearningRateScheduler`, :class:`CSVLogger`. Where Keras warns that
the monitored key is missing from the logs and goes on, these raise (a stop or a save that silently
never happens is worse).
"""

from __future__ import annotations

from .base import Callback, CallbackList, History, LambdaCallback, require_matplotlib
from .keras import CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint
from .loop import DivergenceRollback, EpochLine, LossWatch, ProgressBar, TrainingDiverged, format_epoch
from .loop import state_finite

__all__ = ["CSVLogger", "Callback", "CallbackList", "DivergenceRollback", "EarlyStopping", "EpochLine",
           "History", "LambdaCallback", "LearningRateScheduler", "LossWatch", "ModelCheckpoint", "ProgressBar",
           "TrainingDiverged", "format_epoch", "require_matplotlib", "state_finite"]
