"""Everything ``fit`` trains with, checked before anything changes: then, when resuming, the checkpoint
restored; then the callbacks fit runs around the user's (the checkpoint writer last)."""

from __future__ import annotations

import functools

from .. import losses, metrics as metrics_mod, optim
from ..callbacks import CallbackList, DivergenceRollback, EpochLine, History, LossWatch, ProgressBar
from .backup import Backup, checkpoint_path
from .checks import bind_schedule, check_monitors, check_schedule, no_loss_message
from .data import batches, prepare_data, training_set, uploading
from .resume import Resume, run_entry
from .sources import TextWindows


class Training:
    """What fit's loop needs: the data, loss, optimizer, schedule and metrics, the steps of an epoch, the
    callbacks (``callbacks``, and the user's as given: ``given``), the epoch to start from and the resume."""

    def __init__(self, model, X, y, strategy, *, loss, optimizer, epochs, batch_size, validation_data,
                 validation_split, metrics, schedule, verbose, callbacks, lr, check_every, checkpoint_dir,
                 resume_from, shuffle=True, steps_per_epoch=None, validation_steps=None, evaluate_train=False):
        self.given = list(callbacks)  # iterated more than once (a generator would be spent by the first)
        # the checkpoint to resume from, read and checked against the model, which it does not change yet:
        # bad data below must leave the model as it was
        self.resume = None if resume_from is None else Resume(model, resume_from, loss, optimizer, lr,
                                                               say=strategy.is_root)
        if self.resume is None:
            if loss is None:
                raise ValueError(no_loss_message(model))
            loss, optimizer = losses.get(loss), optim.get("sgd" if optimizer is None else optimizer, lr)
        path = None if checkpoint_dir is None or not strategy.is_root else checkpoint_path(checkpoint_dir)
        with uploading(model.device, "fit", X, y):
            self.data, classify, self.val, span = prepare_data(
                model, X, y, self.resume.loss if self.resume else loss, epochs, batch_size, check_every,
                validation_data, validation_split, shuffle=shuffle, steps_per_epoch=steps_per_epoch,
                validation_steps=validation_steps)
            self.train_eval = training_set(model, self.data, classify, batch_size, validation_steps, evaluate_train)
        # a language model reports its loss; the fraction of next ids right is there for the asking
        no_default = metrics is None and isinstance(X, TextWindows)
        self.metrics = metrics_mod.get_all([] if no_default else metrics, classify, "fit")
        check_schedule(schedule, self.given)
        check_monitors(self.given, self.val is not None)
        # -- every argument checked: the model changes from here on -------------------------------------
        found = None if self.resume is None else self.resume.restore()
        self.loss = loss if found is None else found.loss
        self.optimizer = optimizer if found is None else found.optimizer
        self.first_epoch, step = (0, 0) if found is None else (found.epoch, found.step)
        model.trained_with(self.loss, span)
        self.batch_size, self.rows, self.device, self.dtype = batch_size, self.data.rows, model.device, model.dtype
        self.steps = ([(0, batch_size)] * steps_per_epoch if steps_per_epoch is not None
                      else list(batches(self.rows, batch_size)))
        self.params, self.grads = model.parameters(), model.gradients()
        # what the run is asked for and trains on: kept in its checkpoints, compared with the one resumed
        run = None if path is None and found is None else run_entry(self.data, epochs, batch_size, len(self.steps))
        if found is not None:  # the checkpoint's schedule, bound to the first run's base lr (stretched)
            self.resume.compare_runs(run)
            schedule = self.resume.schedule(schedule, run)
        self.schedule = bind_schedule(schedule, self.optimizer, epochs, len(self.steps), self.given)
        self.history, self.progress = History(), ProgressBar()
        backup = [] if path is None else [Backup(path, self.optimizer, self.schedule, self.history, self.given, run,
                                                 step, len(self.steps))]
        self.callbacks = self._callbacks(model, strategy, epochs, verbose, check_every, backup)

    def _callbacks(self, model, strategy, epochs, verbose, check_every, backup) -> CallbackList:
        """fit's own callbacks around the user's: the divergence rollback and the loss watch first, then the
        progress bar, the history and the epoch line (unless the user gave one), the checkpoint writer last."""
        verbose = 1 if verbose == "auto" else verbose  # Keras' rule: epoch lines everywhere, the bar on a terminal
        verbose, self.active = strategy.local(verbose, self.given)
        if self.resume is not None:  # the returned history holds every epoch, those before the checkpoint too
            self.history.history = self.resume.found.history
            self.resume.say_if_done(epochs, verbose)
        line = [] if any(isinstance(cb, EpochLine) for cb in self.active) else [EpochLine()]  # the caller's wins
        watchers = [DivergenceRollback(), LossWatch(say=strategy.is_root)]
        return CallbackList([*watchers, self.progress, self.history, *line, *self.active, *backup], model, {
            "epochs": epochs, "steps": len(self.steps), "samples": self.rows, "check_every": check_every,
            "verbose": verbose}, self.optimizer)

    @functools.cached_property
    def nothing(self):
        """A zero loss, for a step in which this rank has no rows (its shard of a short last batch)."""
        return self.device.asarray(0.0, self.dtype)

    def set_lr(self, epoch: int, step: int | None = None) -> None:
        """The schedule's learning rate before an epoch (``step=None``) or before a step, whichever it is per."""
        if self.schedule is not None and (step is None) == (self.schedule.per != "step"):
            self.optimizer.lr = self.schedule(epoch if step is None else epoch * len(self.steps) + step)

    def restore_callbacks(self) -> None:
        """When resuming: the callbacks' states, after ``on_train_begin`` (which sets up a fresh run)."""
        if self.resume is not None:
            self.resume.restore_callbacks(self.given, active=self.active)
