"""The callback protocol (:class:`Callback`), how ``fit`` calls a list of them, and :class:`History`."""

from __future__ import annotations

import os

class Callback:
    """Base class: every hook does nothing. ``model``, ``optimizer`` and ``params`` are set by ``fit``."""

    model = None
    optimizer = None
    params: dict = {}
    rank_zero_only = False  # distributed fit: True for a callback that writes files, run on rank 0 alone

    def on_train_begin(self, logs=None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        pass

    def on_batch_end(self, step: int, logs=None) -> None:
        """Called once per read-back window; ``step`` is the window's last step in the epoch (from 0)."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        pass

    def on_train_end(self, logs=None) -> None:
        pass

    # -- what a checkpoint keeps (fit(checkpoint_dir=...), fit(resume_from=...)) ---------------------
    def state_dict(self) -> dict | None:
        """What a resumed ``fit`` needs to go on as if it had never stopped (``None``: nothing, the default).

        JSON values (numbers, strings, lists, dicts; a non-finite float as its ``repr``, which JSON has
        not), plus an optional ``"arrays"`` entry, a flat ``{name: array}`` of host or device arrays (the
        checkpoint keeps them among its arrays). Called at each epoch's end, after ``on_epoch_end``.
        """
        return None

    def load_state_dict(self, state: dict) -> None:
        """Take back what :meth:`state_dict` gave, its ``"arrays"`` as host NumPy arrays (``{}`` if none).

        A resumed ``fit`` calls it after ``on_train_begin``, so it overrides what that set up. Raise
        ``ValueError`` for a state that does not fit; warn and keep a fresh state for one that is of
        another kind of run (another ``monitor``, say).
        """


class LambdaCallback(Callback):
    """A plain function ``f(epoch, logs)`` as a callback: returning ``True`` (exactly) stops training."""

    def __init__(self, function):
        self.function = function

    def on_epoch_end(self, epoch, logs=None):
        if self.function(epoch, logs) is True:
            self.model.stop_training = True

    def __repr__(self):
        return f"LambdaCallback({self.function!r})"


class CallbackList:
    """Calls each hook on every callback, in order; wraps plain functions in :class:`LambdaCallback`."""

    def __init__(self, callbacks, model, params: dict, optimizer=None):
        self.callbacks = [cb if isinstance(cb, Callback) else LambdaCallback(cb) for cb in callbacks]
        for cb in self.callbacks:
            cb.model, cb.params, cb.optimizer = model, params, optimizer

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_batch_end(self, step, logs=None):
        for cb in self.callbacks:
            cb.on_batch_end(step, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)


class History(Callback):
    """Per-epoch metrics, like Keras': ``history["loss"]``, ``history["val_accuracy"]``, ...

    Keys: ``loss``, ``accuracy`` (classification only, or the names of fit's ``metrics``), the same with
    ``val_`` in front (with ``validation_data`` or ``validation_split``), ``seconds``, ``samples_per_s``
    and ``lr`` (the optimizer's learning rate at the epoch's last step). ``fit`` returns it.
    """

    def __init__(self):
        self.history: dict[str, list] = {}

    def append(self, logs: dict) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def on_epoch_end(self, epoch, logs=None):
        self.append(logs)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __repr__(self):
        return f"History({self.history!r})"

    def plot(self, path=None, metrics=("loss", "accuracy")):
        """Draw each metric per epoch, training and validation (``val_``) curves side by side.

        One panel per metric of ``metrics`` that the history holds (a regression has no accuracy).
        Writes a PNG to ``path`` when given; returns the ``matplotlib.figure.Figure`` either way. Made
        without pyplot, so it needs no display and leaves pyplot's global state alone. Needs the
        ``plot`` extra: ``pip install 'xpnet[plot]'``.
        """
        Figure = _figure_class("History.plot")
        if isinstance(metrics, str):
            metrics = (metrics,)
        shown = [m for m in metrics if m in self.history or f"val_{m}" in self.history]
        if not shown:
            raise ValueError(f"History.plot: none of {list(metrics)} is in this history; it holds "
                             f"{sorted(self.history)}")
        fig = Figure(figsize=(5.0 * len(shown), 4.0), layout="constrained")
        for ax, name in zip(fig.subplots(1, len(shown), squeeze=False)[0], shown):
            for key, label, style in ((name, "train", "o-"), (f"val_{name}", "validation", "s--")):
                if key in self.history:
                    values = self.history[key]
                    ax.plot(range(1, len(values) + 1), values, style, label=label)
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.set_title(name)
            ax.grid(True, alpha=0.3)
            if len(ax.get_lines()) > 1:
                ax.legend()
            ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)  # epochs are whole numbers
            ax.set_xlim(0.5, max(len(v) for k, v in self.history.items() if k.endswith(name)) + 0.5)
        if path is not None:
            fig.savefig(os.fspath(path), dpi=100)
        return fig


def _figure_class(who: str):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"{who} needs matplotlib, which is not installed: pip install 'xpnet[plot]' "
                          f"(or pip install matplotlib)") from exc
    return Figure


def require_matplotlib(who: str) -> None:
    """Raise the ``ImportError`` that :meth:`History.plot` would, now (before an hour of training)."""
    _figure_class(who)
