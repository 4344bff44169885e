"""What fit refuses before it trains: a loss that does not fit the model's last layer, a schedule it could not
use, a callback watching a figure it never computes; and, without a loss, the message that names one."""

from __future__ import annotations

from .. import losses, schedules
from ..callbacks import CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint
from ..layers import Sigmoid, Softmax, model_input_shape
from ..validation import output_width, warn


def check_schedule(schedule, callbacks) -> None:
    """Refuse a schedule that fit could not use, before anything is loaded or trained."""
    if schedule is None:
        return
    if any(isinstance(cb, LearningRateScheduler) for cb in callbacks):
        raise ValueError("fit: schedule= and a LearningRateScheduler callback would both set the learning rate; "
                         "use one of them")
    schedules.get(schedule)


def bind_schedule(schedule, optimizer, epochs: int, steps_per_epoch: int, callbacks):
    """fit's schedule with its base lr (the optimizer's, unless given) and its total length filled in."""
    if schedule is None:
        return None
    check_schedule(schedule, callbacks)
    schedule = schedules.get(schedule)
    total = epochs * steps_per_epoch if schedule.per == "step" else epochs
    return schedule.bind(lr=optimizer.lr, total=max(total, 1))



def ends_in(model, kinds) -> bool:
    return any(isinstance(layer, kinds) for layer in model.layers[-1:])


def check_output_layer(model, loss) -> None:
    if isinstance(loss, losses.CrossEntropy):
        _check_probabilities(model)
    elif isinstance(loss, losses.SoftmaxCrossEntropy) and ends_in(model, Softmax):
        warn("fit: the model ends in Softmax() and SoftmaxCrossEntropy applies softmax itself (it takes "
             "logits), so softmax is applied twice and training crawls. Remove the final Softmax() "
             "(predict_proba gives probabilities), or use loss='cross_entropy', which takes probabilities.")
    elif isinstance(loss, losses.BinaryCrossEntropy) and ends_in(model, Sigmoid):
        warn("fit: the model ends in Sigmoid() and BinaryCrossEntropy applies the sigmoid itself (it takes "
             "logits), so the sigmoid is applied twice. Remove the final Sigmoid() (predict_proba gives "
             "probabilities).")


def _check_probabilities(model) -> None:
    """CrossEntropy takes probabilities: refuse an xpnet layer at the end that does not give them (on logits
    the loss goes negative and accuracy stays at chance). A user's own last layer is left to LossWatch,
    which stops fit at the first negative window loss."""
    last = model.layers[-1] if model.layers else None
    if isinstance(last, Softmax) or not type(last).__module__.startswith("xpnet."):
        return
    if isinstance(last, Sigmoid):
        raise ValueError(
            "fit: loss='cross_entropy' after Sigmoid() pulls only the true class's output up (-t log p has no "
            "term for the others), so every output drifts to 1 and accuracy falls to chance. For one output "
            "(0/1 labels) remove the final Sigmoid() and use loss='binary_cross_entropy', which takes logits; "
            "for one class per row end the model in Softmax() instead.")
    raise ValueError(
        f"fit: loss='cross_entropy' takes probabilities, but the model ends in {last!r}, whose outputs are not "
        f"probabilities (the loss would go negative and accuracy stay at chance). End the model in Softmax(), "
        f"or use loss='softmax_cross_entropy', which takes these outputs as logits and applies softmax itself.")


def no_loss_message(model) -> str:
    """fit without a loss: the choices, and the one that fits the model's last layer first."""
    last, sample = (model.layers[-1] if model.layers else None), model_input_shape(model.layers)
    width = None if sample is None else output_width(model, (None, *sample))
    if isinstance(last, Softmax):
        fits = "loss='cross_entropy' (the model ends in Softmax(), which gives probabilities)"
    elif isinstance(last, Sigmoid):
        fits = ("loss='mse' (the model ends in Sigmoid(), as the tutorial's), or remove the Sigmoid() and use "
                "loss='binary_cross_entropy' for 0/1 labels")
    elif width == 1:
        fits = ("loss='binary_cross_entropy' for 0/1 labels (it takes the output as a logit), or loss='mse' for "
                "regression")
    else:
        fits = ("loss='softmax_cross_entropy' for class labels (it takes the outputs as logits), or loss='mse' for "
                "regression")
    return (f"fit: no loss given; pass {fits}. The choices: "
            f"{', '.join(losses.LOSSES)}, or a Loss instance.")


def check_monitors(callbacks, validating: bool) -> None:
    """Refuse, before anything trains, a callback that would watch a val_ figure fit never computes.

    Only while every callback before it is one of xpnet's Keras callbacks: a user's own (or a plain
    function) may put val_ figures of its own into the logs, as tests and custom evaluations do.
    """
    if validating:
        return
    for cb in callbacks:
        watches = isinstance(cb, EarlyStopping) or (isinstance(cb, ModelCheckpoint) and cb.save_best_only)
        if watches and cb.monitor.startswith("val_"):
            raise ValueError(
                f"fit: {type(cb).__name__} monitors {cb.monitor!r}, a figure on held-out data, but fit was given "
                f"neither validation_data nor validation_split. Pass validation_data=(X_val, y_val) or "
                f"validation_split=0.2, or watch the training loss: {type(cb).__name__}(monitor='loss', ...).")
        if not isinstance(cb, (CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint)):
            return

