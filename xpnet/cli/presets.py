"""What ``xpnet train``'s options mean and build: the presets of ``--model`` and the choices of the other
options, then the network of a preset (MLP, tutorial or CNN), its optimizer and its learning-rate schedule
over the run."""

from __future__ import annotations

import math

from .. import datasets, optim, schedules
from ..layers import (ACTIVATIONS, BatchNorm1d, BatchNorm2d, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Reshape,
                      Sigmoid)

HIDDEN = ("sigmoid", "relu", "tanh", "leaky_relu")
LOSSES = ("mse", "softmax_cross_entropy", "binary_cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adam": 0.001, "adamw": 0.001, "rmsprop": 0.01}
SCHEDULES = ("constant", "cosine", "step", "exponential")

# What `xpnet train --model NAME` means; each option given on the command line overrides its entry.
# mlp's batch of 128 suits a CPU (BLAS-sized products) and a GPU alike (a few kernels per step, not
# per sample); one epoch of cosine decay from 3e-3 takes it past 0.97 on MNIST (0.976 measured).
PRESETS = {
    "mlp": {"hidden": (512, 256), "activation": "relu", "loss": "softmax_cross_entropy", "optimizer": "adamw",
            "lr": 0.003, "batch_size": 128, "scale": "unit", "schedule": "cosine"},
    # The classic Keras/PyTorch MNIST convnet (conv 32 - conv 64 - max-pool - dense 128), on flat rows
    # reshaped by its first layer; AdamW at 1e-3 with a cosine over the run.
    "cnn": {"hidden": (128,), "activation": "relu", "loss": "softmax_cross_entropy", "optimizer": "adamw",
            "lr": 0.001, "batch_size": 128, "scale": "unit", "schedule": "cosine"},
    "tutorial": {"hidden": (200,), "activation": "sigmoid", "loss": "mse", "optimizer": "sgd", "lr": 0.1,
                 "batch_size": 1, "scale": "tutorial", "schedule": "constant"},
}
CNN_DROPOUT = (0.25, 0.5)  # the cnn preset's dropout after its pooling and after its dense layer
GPT_ONLY = ("steps", "block_size", "n_layer", "n_head", "n_embd", "eval_interval", "eval_iters")  # cli/gpt.py's


def tutorial_normal(shape, rng, device, dtype="float32"):
    """The book's initial weights: normal(0, 1/sqrt(nodes of the receiving layer)), e.g. 200**-0.5 for wih."""
    return device.asarray(rng.normal(0.0, shape[1] ** -0.5, size=shape), dtype)


def network(layers, activation, loss, dropout=0.0, batchnorm=False):
    # Sigmoid nets start like the book's (with 1/sqrt(fan_in) they reach ~0.939 instead of ~0.946 after
    # one MNIST epoch); ReLU-family ones with He's init, tanh with LeCun's.
    inits = {"sigmoid": tutorial_normal, "relu": "he_normal", "leaky_relu": "he_normal"}
    init = inits.get(activation, "lecun_normal")
    stack = []
    for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
        stack.append(Dense(n_in, n_out, init=init))
        if i < len(layers) - 2:
            if batchnorm:
                stack.append(BatchNorm1d(n_out))
            stack.append(ACTIVATIONS[activation]())
            if dropout:
                stack.append(Dropout(dropout))
    if loss == "mse":
        stack.append(ACTIVATIONS["sigmoid"]())  # the tutorial's output; the other losses take logits
    return stack


def cnn_network(features, classes, hidden, activation, loss, dropout, batchnorm, dataset):
    """The cnn preset: flat rows of a square image reshaped to (1, side, side), two 3x3 convolutions (32 and
    64 channels), a 2x2 max-pool, a dense layer of ``hidden`` units and the output; ``dropout`` is a pair
    (after the pooling, after the dense layer) or one P for both."""
    side = math.isqrt(features)
    if side * side != features or side < 6:
        raise ValueError(f"--model cnn takes square images of at least 6x6 pixels as rows (MNIST's 784 = 28x28), "
                         f"but {dataset} has {features} features per sample: use --model mlp")
    after_pool, after_dense = dropout if isinstance(dropout, tuple) else (dropout, dropout)
    act = ACTIVATIONS[activation]
    norm2d = (lambda c: [BatchNorm2d(c)]) if batchnorm else (lambda c: [])
    pooled = (side - 4) // 2
    stack = [Reshape((1, side, side)), Conv2D(1, 32, 3), *norm2d(32), act(), Conv2D(32, 64, 3), *norm2d(64), act(),
             MaxPool2D(2), *([Dropout(after_pool)] if after_pool else []), Flatten(),
             Dense(64 * pooled * pooled, hidden, init="he_normal"), *([BatchNorm1d(hidden)] if batchnorm else []),
             act(), *([Dropout(after_dense)] if after_dense else []), Dense(hidden, classes)]
    if loss == "mse":
        stack.append(Sigmoid())
    return stack


def schedule_from(args, lr: float, steps_per_epoch: int):
    """``--schedule`` (and ``--warmup``) as a per-step schedule over the whole run."""
    total = args.epochs * steps_per_epoch
    if args.schedule == "cosine":
        warmup = round(args.warmup * steps_per_epoch)
        if warmup >= total:
            raise ValueError(f"--warmup {args.warmup:g} epochs is {warmup} steps, but the run has only {total}: "
                             f"the cosine needs steps after the warm-up (more --epochs, or less --warmup)")
        return schedules.CosineDecay(lr, total=total, warmup=warmup, per="step")
    if args.schedule == "step":  # a tenth of the rate after each third of the run
        return schedules.StepDecay(lr, step_size=max(1, -(-total // 3)), gamma=0.1, per="step")
    if args.schedule == "exponential":  # down to a hundredth at the end
        return schedules.ExponentialDecay(lr, gamma=0.01 ** (1.0 / total), per="step")
    return schedules.Constant(lr, per="step")


def optimizer_from(args):
    kwargs = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    if args.optimizer == "momentum":
        return optim.SGD(args.lr, momentum=0.9, **kwargs)
    return optim.OPTIMIZERS[args.optimizer](args.lr, **kwargs)


def apply_preset(args) -> None:
    """Fill every ``train`` option left unset with its ``--model`` preset's value (in place)."""
    preset = PRESETS[args.model]
    gpt_only = [name for name in GPT_ONLY if getattr(args, name, None) is not None]
    if gpt_only:
        raise ValueError(f"{', '.join('--' + n.replace('_', '-') for n in gpt_only)}: for --model gpt only; --model "
                         f"{args.model} trains for --epochs")
    args.dataset = args.dataset or "mnist"
    if args.dataset not in datasets.DATASETS:
        raise ValueError(f"{args.dataset} is a text: train a language model on it with --model gpt")
    for name in ("activation", "loss", "scale", "schedule", "batch_size"):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    if args.optimizer is None:
        args.optimizer = preset["optimizer"]
        args.lr = preset["lr"] if args.lr is None else args.lr
    elif args.lr is None:
        args.lr = preset["lr"] if args.optimizer == preset["optimizer"] else DEFAULT_LR[args.optimizer]
    args.hidden = preset["hidden"]
    if args.model == "cnn" and args.layers:
        raise ValueError("--layers sets the sizes of an MLP's layers; --model cnn has its own (see xpnet train "
                         "--help): use --model mlp with --layers")
    args.dropout = (CNN_DROPOUT if args.model == "cnn" else 0.0) if args.dropout is None else args.dropout
    args.warmup = args.warmup or 0.0
