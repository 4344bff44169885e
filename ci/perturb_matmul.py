#!/usr/bin/env python
"""How far a correct change of the matrix products' rounding moves each run of ci/gpu_curves.py (CPU only).

A GPU computes every matrix product in its own summation order (cuBLAS picks an algorithm per shape), so
its losses differ from the CPU's by a rounding difference that training then carries or amplifies. This
trains each run of ``gpu_curves.RUNS`` on array-api-strict (the generic Array API code path, the one CuPy
executes) from the same seed:

- ``reference``: as is;
- ``float64-round``: every float32 product computed in float64, then rounded to float32 (correct rounding,
  as a GPU's wider accumulation would get closer to);
- ``split-k``: every product as the sum of two half-depth products (another summation order, as a
  split-K cuBLAS kernel has);
- ``numpy``: on the NumPy backend, whose own routines (BLAS outer products) replace some generic lines,
  as the CPU reference of the GPU comparison does;

and prints, per epoch, the largest relative difference of the training loss from the reference, and of
the final test accuracy. ``--json`` writes them where ``gpu_curves.tolerances`` reads them:

    python ci/perturb_matmul.py --json ci/matmul_perturbation.json     # all runs, a few minutes
    python ci/perturb_matmul.py --runs tutorial-sgd --limit 2000        # a quick look, nothing written
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_curves  # noqa: E402


def _float64_round(a, b):
    if a.dtype != np.float32:
        return None  # float64 has no wider type with a BLAS: this perturbation is the identity there
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)


def _split_k(a, b):
    k = a.shape[-1]
    if k < 2:
        return None  # an outer product sums nothing
    h = k // 2
    return np.matmul(a[..., :h], b[..., :h, :]) + np.matmul(a[..., h:], b[..., h:, :])


PERTURBATIONS = {"float64-round": _float64_round, "split-k": _split_k}


@contextlib.contextmanager
def perturbed(how):
    """array-api-strict's matrix products (``@`` and ``xp.matmul``) computed by ``how`` while inside."""
    import array_api_strict
    from array_api_strict._array_object import Array

    originals = {"op": Array.__matmul__, "fn": array_api_strict.matmul}

    def wrap(original):
        def matmul(x1, x2, /):
            out = original(x1, x2)  # the strict checks, the device and the result's type
            value = how(x1._array, x2._array) if x1.ndim >= 2 and x2.ndim >= 2 else None
            return out if value is None else Array._new(value.astype(out._array.dtype), device=out.device)
        return matmul

    Array.__matmul__ = wrap(originals["op"])
    array_api_strict.matmul = wrap(originals["fn"])
    try:
        yield
    finally:
        Array.__matmul__ = originals["op"]
        array_api_strict.matmul = originals["fn"]


def spread(name, run_args, limit=None, seed=0) -> dict:
    """Each variant's run and the largest relative loss difference per epoch and accuracy difference."""
    ref = gpu_curves.train(run_args, backend="array-api-strict", seed=seed, limit=limit)
    variants = {}
    for label, how in PERTURBATIONS.items():
        if label == "float64-round" and gpu_curves.dtype_of(run_args) != "float32":
            continue
        with perturbed(how):
            variants[label] = gpu_curves.train(run_args, backend="array-api-strict", seed=seed, limit=limit)
    variants["numpy"] = gpu_curves.train(run_args, backend="numpy", seed=seed, limit=limit)
    rel = {label: [abs(g - r) / abs(r) for g, r in zip(v["loss"], ref["loss"])] for label, v in variants.items()}
    acc = {label: abs(v["accuracy"] - ref["accuracy"]) for label, v in variants.items()}
    return {"args": list(run_args), "reference": ref, "variants": variants, "rel_diff": rel, "accuracy_diff": acc,
            "loss_spread": [max(per[e] for per in rel.values()) for e in range(len(ref["loss"]))],
            "accuracy_spread": max(acc.values())}


def _print(name, r):
    print(f"\n{name}: {' '.join(r['args'])}")
    labels = list(r["rel_diff"])
    print(f"  epoch  {'loss':>10}  " + "  ".join(f"{label:>13}" for label in labels) + "  (relative difference)")
    for e, loss in enumerate(r["reference"]["loss"]):
        print(f"  {e + 1:>5}  {loss:10.6f}  " + "  ".join(f"{r['rel_diff'][label][e]:13.2e}" for label in labels))
    print(f"  final test accuracy {r['reference']['accuracy']:.4f}; differences: "
          + ", ".join(f"{label} {d:.4f}" for label, d in r["accuracy_diff"].items()))
    print(f"  spread per epoch: {', '.join(f'{s:.2e}' for s in r['loss_spread'])}; accuracy {r['accuracy_spread']:.4f}",
          flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=",".join(gpu_curves.RUNS), help="comma-separated names (default: all)")
    p.add_argument("--limit", type=int, default=None, help="override each run's sample count (a quick look)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the figures here (ci/matmul_perturbation.json)")
    args = p.parse_args(argv)
    if args.json and args.limit:
        p.error("--limit changes the runs: figures measured so do not describe them, so --json refuses it")
    names = args.runs.split(",")
    unknown = [n for n in names if n not in gpu_curves.RUNS]
    if unknown:
        p.error(f"unknown run {', '.join(unknown)}; the runs are {', '.join(gpu_curves.RUNS)}")
    results = {}
    for name in names:
        results[name] = spread(name, gpu_curves.RUNS[name][1], args.limit, args.seed)
        _print(name, results[name])
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        with open(args.json, "w") as f:
            json.dump({"written_by": "python ci/perturb_matmul.py --json ci/matmul_perturbation.json",
                       "date": f"{datetime.date.today()}", "commit": commit, "numpy": np.__version__,
                       "seed": args.seed, "runs": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
