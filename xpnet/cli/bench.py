"""``xpnet bench``: is the GPU worth it? A few training steps of a preset or a saved model, timed on every
device and backend this machine has, on synthetic data of the model's input shape.

A step is what ``fit`` runs: the batch gathered from the data already on the device, forward, loss,
backward, the optimizer's step, and the per-step losses read back in one transfer every
:data:`CHECK_EVERY` steps. The data goes to the device once first, as ``fit`` does (``prepare_xy``), and
that time is reported apart. The clock is read only after the device has finished its queue.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np

from .. import backend, losses
from ..layers import model_input_shape
from ..model import Sequential, load
from ..train.data import read_back, take
from ..validation import output_width, prepare_xy
from .data import as_targets
from .presets import CNN_DROPOUT, OPTIMIZERS, PRESETS, cnn_network, network, optimizer_from

CHECK_EVERY = 50  # fit's default window: its losses come back in one transfer
# Without --steps: 20 timed steps, fewer (down to 3) where they would take over ~10 s, as the JAX CPU
# backend's CNN steps do (2.8 s each on a 2-core CPU).
DEFAULT_STEPS, MIN_STEPS, STEPS_BUDGET_S = 20, 3, 10.0
SKIPPED = {"array-api-strict": "a checker of the Array API standard, not a backend to train fast on "
                               "(--backends array-api-strict times it anyway)"}


def cmd_bench(args) -> int:
    spec = _spec(args)
    n = args.samples
    if n < args.batch_size:
        raise ValueError(f"--samples {n} is less than one batch (--batch-size {args.batch_size}): give more "
                         f"samples, or a smaller batch")
    rng = np.random.default_rng(0)
    X = rng.random((n, *spec.input_shape), dtype=np.float32)
    y = as_targets(rng.integers(0, max(spec.width, 2), size=n), spec.loss, spec.width, spec.dtype)
    results, skipped, failed = [], [], False
    for name, kind in candidates(args.backends):
        dev, why = (None, SKIPPED[name]) if args.backends is None and name in SKIPPED else _device(name, kind)
        if dev is None:
            skipped.append({"backend": name, "device": kind, "reason": why})
            continue
        try:
            results.append(measure(dev, spec, X, y, args.batch_size, args.steps, args.warmup))
        except Exception as exc:
            if args.debug:
                raise
            failed = True
            skipped.append({"backend": name, "device": kind, "reason": f"failed: {type(exc).__name__}: {exc}"})
        backend.free_memory_pool(dev)  # the next backend may use the same GPU
    report = _report(args, spec, results, skipped)
    print("\n".join(report["lines"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in report.items() if k != "lines"}, f, indent=1)
    if not results:
        raise ValueError("no device and backend could be measured here (see the 'not measured' lines)")
    return 1 if failed else 0


def candidates(chosen=None) -> list[tuple[str, str]]:
    """Every (backend, device kind) xpnet knows, the CPU's first; only ``chosen`` backends where given."""
    pairs = [(name, kind) for name, lib in backend.LIBRARIES.items() for kind in lib.KINDS
             if chosen is None or name in chosen]
    return sorted(pairs, key=lambda pair: pair[1] != "cpu")


def unavailable(name: str, kind: str) -> str | None:
    """Why ``name`` cannot compute on ``kind`` here (its library missing, no CUDA device it can use), else None."""
    lib = backend.LIBRARIES[name]
    why = lib.missing()
    if why is None and kind == "cuda":
        count, reason = lib.cuda_status()
        why = None if count else str(reason)
    return why


def _device(name: str, kind: str):
    """``(the Device, None)``, or ``(None, why not)``."""
    why = unavailable(name, kind)
    if why is not None:
        return None, why
    try:
        return backend.device(kind, backend=name), None
    except (backend.DeviceUnavailableError, ValueError) as exc:
        return None, str(exc)


def _spec(args) -> SimpleNamespace:
    """What is timed: how to build the model on a device, its loss, optimizer, input shape and output width."""
    if args.model_file and args.preset:
        raise ValueError(f"give a model file or --model, not both (got {args.model_file} and --model {args.preset})")
    return _file_spec(args) if args.model_file else _preset_spec(args)


def _preset_spec(args) -> SimpleNamespace:
    name = args.preset or "mlp"
    preset = PRESETS[name]
    args.batch_size = args.batch_size or preset["batch_size"]
    hidden, act, loss = preset["hidden"], preset["activation"], preset["loss"]
    widths = [784, *hidden, 10]  # MNIST's, as xpnet train builds the preset

    def build(dev):
        layers = (cnn_network(784, 10, hidden[0], act, loss, CNN_DROPOUT, False, "mnist") if name == "cnn"
                  else network(widths, act, loss))
        return Sequential(layers, device=dev, seed=0)

    shape = f"28x28 conv32-conv64-maxpool-{hidden[0]}-10" if name == "cnn" else "-".join(map(str, widths))
    return SimpleNamespace(title=f"the {name} preset, {shape} {act}", build=build, loss=loss,
                           optimizer=(preset["optimizer"], preset["lr"]), input_shape=(784,), width=10,
                           dtype="float32", label=f"--model {name}", note="")


def _file_spec(args) -> SimpleNamespace:
    model = load(args.model_file, device="cpu")
    meta = model.metadata
    shape = tuple(args.input_shape or model_input_shape(model.layers) or ())
    if not shape:
        raise ValueError(f"{args.model_file} starts with a layer that takes more than one input shape: give one "
                         f"sample's shape with --input-shape (e.g. 28,28 or 1,28,28)")
    width = output_width(model, (1, *shape)) or int(model.predict(np.zeros((1, *shape), model.dtype)).shape[-1])
    loss = model.loss.name if model.loss is not None and model.loss.name in losses.LOSSES else meta.get("loss")
    known = {"loss": loss in losses.LOSSES, "optimizer": meta.get("optimizer") in OPTIMIZERS}
    guessed = [what for what, ok in known.items() if not ok]
    loss = loss if loss in losses.LOSSES else "softmax_cross_entropy" if width > 1 else "binary_cross_entropy"
    optimizer = (meta["optimizer"], meta.get("lr") or 1e-3) if known["optimizer"] else ("adamw", 1e-3)
    args.batch_size = args.batch_size or meta.get("batch_size") or 128
    said = f" (assumed: the file does not record its {' and '.join(guessed)})" if guessed else ""
    return SimpleNamespace(title=f"{args.model_file} ({len(model.layers)} layers)", note=said,
                           build=lambda dev: load(args.model_file, device=dev), loss=loss, optimizer=optimizer,
                           input_shape=shape, width=width, dtype=model.dtype, label=args.model_file)


def measure(dev, spec, X, y, batch: int, steps: int | None, warmup: int) -> dict:
    """Time training steps of ``spec``'s model on ``dev``, after the data's move there (see the module)."""
    with dev.context():
        model = spec.build(dev)
        loss = losses.get(spec.loss)
        optimizer = optimizer_from(SimpleNamespace(optimizer=spec.optimizer[0], lr=spec.optimizer[1],
                                                   weight_decay=None))
        prepare_xy(model, X[:2], y[:2], loss, "bench")  # what a first use costs (JAX compiles) is not the move
        backend.synchronize(dev)
        start = time.perf_counter()
        Xd, yd, _ = prepare_xy(model, X, y, loss, "bench")
        backend.synchronize(dev)
        upload = time.perf_counter() - start
        order = dev.asarray(np.random.default_rng(0).permutation(X.shape[0]), "int64")
        seconds, steps = _time_steps(_stepper(model, loss, optimizer, Xd, yd, order, batch), steps, warmup)
    return {"backend": dev.backend, "device": "cpu" if dev.kind == "cpu" else f"cuda:{dev.index}", "name": str(dev),
            "ms_per_step": 1000 * seconds, "samples_per_s": batch / seconds, "upload_ms": 1000 * upload,
            "steps": steps}


def _stepper(model, loss, optimizer, X, y, order, batch: int):
    """``run(first, count)``: fit's steps ``first`` to ``first + count`` (cycling over the data), then a
    wait for the device."""
    dev, xp = model.device, model.device.xp
    params, grads = model.parameters(), model.gradients()
    per_epoch = X.shape[0] // batch

    def run(first: int, count: int) -> None:
        window = []
        for step in range(first, first + count):
            lo = step % per_epoch * batch
            xb, yb = take(xp, X, order, lo, lo + batch), take(xp, y, order, lo, lo + batch)
            window.append(loss.forward(model.forward(xb, training=True), yb))
            model.backward(loss.backward())
            optimizer.step(params, grads)
            if len(window) == CHECK_EVERY or step == first + count - 1:
                read_back(xp, window, [])
                window = []
        backend.synchronize(dev)
    return run


def _time_steps(run, steps: int | None, warmup: int) -> tuple[float, int]:
    """Seconds per step over ``steps`` steps after ``warmup`` untimed ones, and the steps; ``steps=None``:
    :data:`DEFAULT_STEPS`, fewer where the last warm-up step says they would take over STEPS_BUDGET_S."""
    one = None
    if warmup:
        run(0, warmup - 1)
        last = time.perf_counter()
        run(warmup - 1, 1)
        one = time.perf_counter() - last
    if steps is None:
        steps = DEFAULT_STEPS if one is None else max(MIN_STEPS, min(DEFAULT_STEPS, int(STEPS_BUDGET_S / one)))
    start = time.perf_counter()
    run(warmup, steps)
    return (time.perf_counter() - start) / steps, steps


def _report(args, spec, results, skipped) -> dict:
    """The table, the lines of what was not measured and the verdict; the same as JSON."""
    results = sorted(results, key=lambda r: r["ms_per_step"])
    best = results[0]["ms_per_step"] if results else 0.0
    for r in results:
        r["vs_fastest"] = r["ms_per_step"] / best
    timed, warm = args.steps or f"up to {DEFAULT_STEPS}", f"{args.warmup} warm-up step{'s' * (args.warmup != 1)}"
    lines = [f"xpnet bench: {spec.title}, {spec.loss}, {spec.optimizer[0]}{spec.note}, batch {args.batch_size}, "
             f"{spec.dtype}, on {args.samples:,} synthetic samples: {warm}, then {timed} timed"]
    if results:
        lines.append(f"{'backend':17s} {'device':7s} {'ms/step':>9s} {'samples/s':>10s} {'vs fastest':>10s} "
                     f"{'steps':>5s} {'data upload':>12s}")
    lines += [f"{r['backend']:17s} {r['device']:7s} {r['ms_per_step']:9.2f} {r['samples_per_s']:10,.0f} "
              f"{r['vs_fastest']:9.2f}x {r['steps']:5d} {r['upload_ms']:9.1f} ms" for r in results]
    lines += [f"not measured: {s['backend']} on {s['device']}: {s['reason']}" for s in skipped]
    verdict = _verdict(results)
    if results:
        lines += [f"A step gathers its batch from the data on the device and reads the losses back every "
                  f"{CHECK_EVERY} steps, as fit does; data upload: the {args.samples:,} samples moved to the "
                  f"device once, as fit does before its first epoch.", verdict]
    return {"model": spec.label, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
            "samples": args.samples, "input_shape": list(spec.input_shape), "loss": spec.loss,
            "optimizer": spec.optimizer[0], "results": results, "not_measured": skipped, "verdict": verdict,
            "lines": lines}


def _verdict(results) -> str:
    if not results:
        return "fastest: none (nothing could be measured here)"
    first = results[0]
    if len(results) == 1:
        return f"fastest: {first['name']}, the only one measured here"
    second = results[1]
    ratio = second["ms_per_step"] / first["ms_per_step"]
    if ratio < 1.05:  # closer than two runs of one backend on a busy machine tend to be
        return f"fastest: {first['name']}, within 5% of {second['name']}"
    return f"fastest: {first['name']}, {ratio:.1f}x faster than {second['name']}"
