"""CUDA against the CPU: the same `xpnet train` runs from the same seed, compared epoch by epoch.

A correct GPU run does not repeat the CPU's losses bit for bit: cuBLAS picks its own summation order for
every matrix product, and the reductions and exp/log round differently too. How far that alone moves a
run is measured on the CPU by ``ci/perturb_matmul.py``: it trains each run below again with only the
matrix products' rounding changed (and on the generic Array API path that CuPy executes) and records the
spread per epoch in ``ci/matmul_perturbation.json``. The tolerance of each comparison derives from those
figures (``tolerances``). Measured 2026-12-06 (numpy 2.4.6, OpenBLAS; largest relative change of the
epoch's training loss over the perturbations, per epoch; final test accuracy):

    tutorial-sgd     9.6e-10                   accuracy 0       -> loss within 1e-6 (the floor)
    relu-sgd-f32     1.1e-6, 1.1e-5, 2.0e-6    accuracy 0.0001  -> 1.1e-5, 1.1e-4, 1.1e-4; accuracy 0.001
    relu-sgd-f64     0, 0, 0                   accuracy 0       -> 1e-12 (the floor)
    relu-adamw-f64   1.2e-16, 0                accuracy 0       -> 1e-12 (the floor)
    mlp-adamw        2.8e-3, 5.2e-3            accuracy 0.0003  -> 2.8e-2, 5.2e-2; accuracy 0.003

So the tutorial's SGD and every float64 run are compared tightly; float32 AdamW (and, less so, ReLU SGD
at batch 128, whose kinks flip) carries a rounding difference up to half a percent within two epochs,
so it is compared by its final accuracy and a loose curve. A single rtol=1e-5 would fail a correct
AdamW run by 500x.
"""

from __future__ import annotations

import json
import os
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURES = os.path.join(HERE, "matmul_perturbation.json")

# `xpnet train` arguments of each run (each gets --device, --backend, --seed, --checkpoint-dir). Sized to fit
# the GPU script's budget: the CPU reference runs on the GPU machine's cores in the same step.
RUNS = {
    "tutorial-sgd": ("tutorial 784-200-10 sigmoid MSE, SGD 0.1, batch 1, float32, first 10,000 samples",
                     ["--model", "tutorial", "--epochs", "1", "--limit", "10000"]),
    "relu-sgd-f32": ("784-256-10 ReLU softmax CE, SGD 0.1 cosine, batch 128, float32, 3 epochs",
                     ["--model", "mlp", "--layers", "784,256,10", "--optimizer", "sgd", "--epochs", "3"]),
    "relu-sgd-f64": ("784-256-10 ReLU softmax CE, SGD 0.1 cosine, batch 128, float64, 3 epochs",
                     ["--model", "mlp", "--layers", "784,256,10", "--optimizer", "sgd", "--epochs", "3",
                      "--dtype", "float64"]),
    "relu-adamw-f64": ("784-256-10 ReLU softmax CE, AdamW 3e-3 cosine, batch 128, float64, 2 epochs",
                       ["--model", "mlp", "--layers", "784,256,10", "--epochs", "2", "--dtype", "float64"]),
    "mlp-adamw": ("mlp preset 784-512-256-10 ReLU, AdamW 3e-3 cosine, batch 128, float32, 2 epochs",
                  ["--model", "mlp", "--epochs", "2"]),
}

# A GPU changes more than the matrix products' rounding (every reduction, exp and log), so the allowed
# difference is ten times what the perturbation alone moved. Where it moved nothing measurable, the
# floors: 1e-6 (8 float32 units in the last place) and 1e-12 for float64 on the loss, 2 of MNIST's 10,000
# test images on the accuracy; a wrong gradient moves a loss by far more (1e-4 and up).
FACTOR = 10.0
LOSS_FLOOR = {"float32": 1e-6, "float64": 1e-12}
ACCURACY_FLOOR = 2e-4


def dtype_of(run_args) -> str:
    return run_args[run_args.index("--dtype") + 1] if "--dtype" in run_args else "float32"


def train(run_args, device="cpu", backend=None, seed=0, limit=None) -> dict:
    """One `xpnet train` run in this process: {"loss": per-epoch training loss, "accuracy": final test accuracy}."""
    from xpnet import cli
    from xpnet.checkpoint import _decode_history, read_checkpoint

    extra = (["--backend", backend] if backend else []) + (["--limit", str(limit)] if limit else [])
    with tempfile.TemporaryDirectory() as folder:
        argv = ["train", *run_args, *extra, "--device", device, "--seed", str(seed), "--quiet", "--no-download",
                "--checkpoint-dir", folder]
        code = cli.main(argv)
        if code != 0:
            raise RuntimeError(f"xpnet {' '.join(argv)} exited with {code}")
        path = os.path.join(folder, "last.npz")
        entry, _, _ = read_checkpoint(path)
        history = _decode_history(path, entry["history"])
    return {"loss": [float(v) for v in history["loss"]], "accuracy": float(history["val_accuracy"][-1])}


def load_figures(path=FIGURES) -> dict:
    with open(path) as f:
        return json.load(f)


def tolerances(figures: dict, name: str, run_args) -> dict:
    """The allowed relative loss difference per epoch and the allowed accuracy difference of one run."""
    if name not in figures.get("runs", {}):
        raise KeyError(f"{FIGURES} has no perturbation figures for the run {name!r}: rerun "
                       f"`python ci/perturb_matmul.py --json ci/matmul_perturbation.json` after changing RUNS")
    run = figures["runs"][name]
    if run["args"] != list(run_args):
        raise KeyError(f"{FIGURES}: the figures for {name!r} were measured with {run['args']}, the run is now "
                       f"{list(run_args)}: rerun `python ci/perturb_matmul.py --json ci/matmul_perturbation.json`")
    floor = LOSS_FLOOR[dtype_of(run_args)]
    # the largest spread up to each epoch: one perturbation's curve wobbles (1e-5 then 2e-6), the
    # difference it stands for does not shrink
    reach = [max(run["loss_spread"][:e + 1]) for e in range(len(run["loss_spread"]))]
    return {"loss_rtol": [max(FACTOR * s, floor) for s in reach],
            "accuracy_atol": max(FACTOR * run["accuracy_spread"], ACCURACY_FLOOR)}


def compare(got: dict, ref: dict, tol: dict) -> dict:
    """Epoch by epoch, each relative loss difference within its tolerance, and the final accuracies."""
    rel = [abs(g - r) / max(abs(r), 1e-30) for g, r in zip(got["loss"], ref["loss"])]
    problems = []
    if len(got["loss"]) != len(ref["loss"]) or len(rel) != len(tol["loss_rtol"]):
        problems.append(f"{len(got['loss'])} epochs against {len(ref['loss'])} (tolerances for "
                        f"{len(tol['loss_rtol'])})")
    problems += [f"epoch {e + 1}: loss differs by {d:.2e} relative > {t:.1e}"
                 for e, (d, t) in enumerate(zip(rel, tol["loss_rtol"])) if not d <= t]
    acc = abs(got["accuracy"] - ref["accuracy"])
    if not acc <= tol["accuracy_atol"]:
        problems.append(f"final test accuracy {got['accuracy']:.4f} against {ref['accuracy']:.4f}: "
                        f"{acc:.4f} apart > {tol['accuracy_atol']:.4f}")
    return {"rel_diff": rel, "accuracy_diff": acc, "problems": problems, "passed": not problems}


def curves(device="cuda", reference="cpu", seed=0, limit=None, json_path=None, figures_path=FIGURES) -> int:
    figures = load_figures(figures_path)
    results, ok = [], True
    for name, (title, run_args) in RUNS.items():
        tol = tolerances(figures, name, run_args)
        got = train(run_args, device, seed=seed, limit=limit)
        ref = train(run_args, reference, seed=seed, limit=limit)
        verdict = compare(got, ref, tol)
        ok &= verdict["passed"]
        results.append({"run": name, "title": title, "device": device, "reference": reference, "got": got,
                        "ref": ref, **tol, **verdict})
        worst = max(verdict["rel_diff"], default=float("nan"))
        print(f"{'ok  ' if verdict['passed'] else 'FAIL'} {name}: loss {worst:.2e} relative (allowed "
              f"{max(tol['loss_rtol']):.1e}), accuracy {verdict['accuracy_diff']:.4f} apart (allowed "
              f"{tol['accuracy_atol']:.4f}); {device} vs {reference}"
              + "".join(f"\n     {p}" for p in verdict["problems"]), flush=True)
        if json_path:  # after every run: a timeout keeps what was compared
            with open(json_path, "w") as f:
                json.dump(results, f, indent=1)
    return 0 if ok else 1
