"""``xpnet train``: build the network its options describe, fit it on a dataset, then report, plot and save.
:func:`_train` reads as the run's steps; each step is a function below it, in the order they run."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile

from .. import backend, io, losses, saving
from .. import callbacks as callbacks_mod
from ..callbacks import format_epoch
from ..distributed.threads import Threads
from ..model import Sequential
from .data import IMAGES, as_targets, load_data
from .gpt import train_gpt
from .presets import apply_preset, cnn_network, network, optimizer_from, schedule_from
from .resume import EpochTracker, on_interrupt


def cmd_train(args) -> int:
    gpt = args.model == "gpt"  # (a text and a next-character model: its own steps, cli/gpt.py)
    if not gpt:
        apply_preset(args)
    if args.distributed and args.threads:
        raise ValueError("--distributed (MPI ranks) and --threads (threads of one process) exclude each other; "
                         "under mpiexec each rank can use its cores through BLAS (OMP_NUM_THREADS)")
    comm = None
    if args.distributed:
        from ..distributed import Communicator

        comm = Communicator()
    with contextlib.nullcontext() if comm is None else comm.guard("xpnet train"):
        return train_gpt(args, comm, _prepare, _device, _save_or_rescue) if gpt else _train(args, comm)


def _train(args, comm) -> int:
    root = comm is None or comm.is_root  # the one process that prints and writes files
    _prepare(args, root)
    dev = _device(args, comm)
    (X, y), (X_test, y_test) = _data(args, comm)
    features, classes = X.shape[1], int(max(y.max(), y_test.max())) + 1
    stack, layers, shape = _network(args, features, classes)
    model = Sequential(stack, device=dev, seed=args.seed, dtype=args.dtype)
    loss, optimizer = losses.get(args.loss), optimizer_from(args)
    n_train = X.shape[0] - int(X.shape[0] * (args.val_split or 0.0))
    schedule = schedule_from(args, args.lr, -(-n_train // args.batch_size))
    width = layers[-1]
    tracker = EpochTracker()  # where Ctrl-C stopped the run, and whether an epoch ran at all
    held_out = "val" if args.val_split else "test"  # without --val-split, fit's validation_data is the test set
    callbacks = _callbacks(args, tracker, held_out)
    if not args.quiet:
        print(_headline(args, shape, optimizer, dev, comm, X.shape[0], X_test.shape[0]), flush=True)
    test = (X_test, as_targets(y_test, args.loss, width, args.dtype))
    try:
        history = model.fit(X, as_targets(y, args.loss, width, args.dtype), loss=loss, optimizer=optimizer,
                            epochs=args.epochs, batch_size=args.batch_size, schedule=schedule,
                            validation_split=args.val_split or 0.0,
                            validation_data=None if args.val_split else test,
                            callbacks=callbacks, checkpoint_dir=args.checkpoint_dir, resume_from=args.resume,
                            verbose=0 if args.quiet else 1,
                            distributed=comm if comm is not None else Threads(args.threads) if args.threads else None)
    except KeyboardInterrupt as exc:
        return on_interrupt(exc, args, tracker, root, mpi=comm is not None)
    if not root:
        return 0
    _report(args, model, history, test, tracker, dev, held_out)
    if args.save:
        _save_or_rescue(model, args.save, _metadata(args, classes, layers))
        if not args.quiet:
            print(f"xpnet: saved the model to {args.save}")
    return 0


def _prepare(args, root: bool) -> None:
    """Quiet the other ranks; check the files the run will write, and --plot's matplotlib, up front."""
    if not root:
        args.quiet, args.save, args.plot = True, None, None
        logging.getLogger("xpnet").setLevel(logging.WARNING)
    for path in (args.save, args.plot):
        if path:
            io.check_writable(path)  # before training, not after an hour of it
    if args.plot:
        callbacks_mod.require_matplotlib("--plot")


def _device(args, comm):
    dev = backend.device(args.device, backend=args.backend) if comm is None else comm.device(args.device, args.backend)
    if dev.kind == "cuda" and args.batch_size == 1 and not args.quiet:  # (GPU defaults, issue 11)
        print(f"xpnet: batch 1 (the book's per-sample rule) on {dev}: each sample launches its own kernels, so "
              f"a GPU runs this slower than the CPU; --batch-size 128 (or --model mlp) puts the GPU to work",
              file=sys.stderr, flush=True)
    return dev


def _data(args, comm):
    with contextlib.nullcontext() if comm is None else comm.root_first():  # one rank downloads
        (X, y), (X_test, y_test) = load_data(args, args.scale)
    if X.shape[0] == 0 or X_test.shape[0] == 0:
        raise ValueError(f"{args.dataset}: no samples to train or test on")
    return (X, y), (X_test, y_test)


def _network(args, features: int, classes: int):
    """The preset's layers for this data: the stack, the widths from input to output, and its name."""
    if args.model == "cnn":
        side = math.isqrt(features)
        layers = [features, *args.hidden, classes]
        stack = cnn_network(features, classes, args.hidden[0], args.activation, args.loss, args.dropout,
                            args.batchnorm, args.dataset)
        shape = f"{side}x{side} conv32-conv64-maxpool-{'-'.join(map(str, layers[1:]))}"
    else:
        layers = args.layers or [features, *args.hidden, classes]
        _check_widths(layers, features, classes, args.loss, args.dataset)
        stack = network(layers, args.activation, args.loss, args.dropout, args.batchnorm)
        shape = '-'.join(map(str, layers))
    return stack, layers, shape


def _check_widths(layers, features, classes, loss, dataset):
    if layers[0] != features:
        raise ValueError(f"--layers starts with {layers[0]} inputs, but {dataset} has {features} features "
                         f"per sample: use --layers {features},{','.join(map(str, layers[1:]))}")
    out = layers[-1]
    if loss == "softmax_cross_entropy" and out < 2:
        raise ValueError("softmax_cross_entropy needs an output layer of 2 or more units (one per class)")
    if out == 1 and classes > 2:
        raise ValueError(f"{dataset} has {classes} classes, but the output layer has 1 unit: "
                         f"end --layers with {classes}")
    if out != 1 and out < classes:
        raise ValueError(f"{dataset} has labels 0..{classes - 1}, but the output layer has only {out} units: "
                         f"end --layers with {classes}")


def _callbacks(args, tracker: EpochTracker, held_out: str) -> list:
    callbacks = [tracker, callbacks_mod.EpochLine(held_out)]
    if args.early_stopping:
        callbacks.append(callbacks_mod.EarlyStopping(patience=args.early_stopping, restore_best_weights=True,
                                                     verbose=0 if args.quiet else 1))
    return callbacks


def _headline(args, shape: str, optimizer, dev, comm, n_train: int, n_test: int) -> str:
    """The line that says what this run trains, on what, and how."""
    scale = f", inputs scaled {args.scale}" if args.dataset in IMAGES else ""
    dropout = "/".join(f"{p:g}" for p in args.dropout) if isinstance(args.dropout, tuple) else f"{args.dropout:g}"
    extras = "".join([f", dropout {dropout}" if args.dropout else "", ", batchnorm" if args.batchnorm else ""])
    return (f"xpnet: training {shape} ({args.activation} hidden{extras}, "
            f"{'sigmoid' if args.loss == 'mse' else 'linear'} output), {args.loss}, {args.optimizer} lr {args.lr:g}"
            f"{f' weight decay {optimizer.weight_decay:g}' if optimizer.weight_decay else ''}, "
            f"{args.schedule} schedule{f' after {args.warmup:g} warm-up epochs' if args.warmup else ''}, "
            f"batch {args.batch_size}, on {args.dataset}: {n_train} train / {n_test} test "
            f"samples{scale}, {dev}, {args.dtype}"
            f"{f', {comm.size} ranks (batch {args.batch_size} over all)' if comm else ''}"
            f"{f', {args.threads} threads (batch {args.batch_size} over all)' if args.threads else ''}")


def _report(args, model, history, test, tracker: EpochTracker, dev, held_out: str) -> None:
    """After fit, on the root: the last epoch's line (--quiet), the test set's, and the curves (--plot)."""
    if args.quiet:
        last = {k: v[-1] for k, v in history.history.items()}
        print(format_epoch(len(history["loss"]) - 1, args.epochs, last, dev, held_out), flush=True)
    # the epoch lines showed the held-out split (or no epoch ran: a finished run resumed); the test set's turn
    if args.val_split or (tracker.epoch is None and not args.quiet):
        result = model.evaluate(*test)
        print("test " + "  ".join(f"{k} {v:.4f}" for k, v in result.items()), flush=True)
    if args.plot:
        history.plot(args.plot)
        if not args.quiet:
            print(f"xpnet: drew the learning curves to {args.plot}")


def _metadata(args, classes: int, layers) -> dict:
    """What the model file records of its training: evaluate and predict read the data's scale and loss."""
    return {"dataset": args.dataset, "scale": args.scale if args.dataset in IMAGES else None,
            "loss": args.loss, "classes": classes, "layers": layers, "model": args.model,
            "activation": args.activation, "optimizer": args.optimizer, "lr": args.lr,
            "schedule": args.schedule,
            "dropout": list(args.dropout) if isinstance(args.dropout, tuple) else args.dropout,
            "batchnorm": args.batchnorm,
            "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}


def _save_or_rescue(model, path, metadata: dict) -> None:
    """Save to ``path``; if that fails now (after it was checked), keep the trained model in a temp file."""
    try:
        saving.save(model, path, metadata=metadata)
    except OSError as exc:
        fd, rescue = tempfile.mkstemp(prefix="xpnet-rescued-", suffix=".npz")
        os.close(fd)
        saving.save(model, rescue, metadata=metadata)
        raise OSError(exc.errno, f"{exc.strerror or exc}; the trained model was saved to {rescue} instead") from None
