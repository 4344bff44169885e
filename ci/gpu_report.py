#!/usr/bin/env python
"""The parts of ``ci/gpu.sh`` that are Python: the CUDA-vs-CPU loss curves, and the Markdown report.

    python ci/gpu_report.py curves --json curves.json              # README's MNIST runs, cuda vs cpu
    python ci/gpu_report.py curves --device cpu --limit 600        # the same code, on the CPU alone (a dry run)
    python ci/gpu_report.py report --logs DIR --output gpu-report.md

``curves`` trains each run with ``xpnet train`` (in this process, through ``xpnet.cli.main``) on
``--device`` and on ``--reference`` from the same seed, each writing a checkpoint, and compares the
training loss of every epoch that the checkpoints' histories hold: equal within ``--rtol`` (1e-5)
relative. ``report`` reads what ``ci/gpu.sh`` left in ``--logs`` (``<step>.log``, ``<step>.status``,
``curves.json``) and writes one Markdown file: versions, the GPU, each check with its figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

# The README's MNIST networks, as `xpnet train` arguments (each gets --device, --seed, --checkpoint-dir).
RUNS = {
    "tutorial 784-200-10 sigmoid, batch 1, 1 epoch": ["--dataset", "mnist", "--model", "tutorial", "--epochs", "1"],
    "mlp preset 784-512-256-10, batch 128, 2 epochs": ["--dataset", "mnist", "--model", "mlp", "--epochs", "2"],
    "784-256-10 relu softmax CE, batch 128, 5 epochs": [
        "--dataset", "mnist", "--layers", "784,256,10", "--activation", "relu", "--loss", "softmax_cross_entropy",
        "--batch-size", "128", "--epochs", "5"],
}


def _losses(run_args, device, seed, limit, folder):
    from xpnet import cli
    from xpnet.checkpoint import _decode_history, read_checkpoint

    extra = ["--limit", str(limit)] if limit else []
    code = cli.main(["train", *run_args, *extra, "--device", device, "--seed", str(seed), "--quiet",
                     "--checkpoint-dir", folder])
    if code != 0:
        raise RuntimeError(f"xpnet train {' '.join(run_args)} --device {device} exited with {code}")
    path = os.path.join(folder, "last.npz")
    entry, _, _ = read_checkpoint(path)
    return [float(v) for v in _decode_history(path, entry["history"])["loss"]]


def curves(args) -> int:
    results, ok = [], True
    for name, run_args in RUNS.items():
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            got = _losses(run_args, args.device, args.seed, args.limit, a)
            ref = _losses(run_args, args.reference, args.seed, args.limit, b)
        worst = max(abs(g - r) / max(abs(r), 1e-30) for g, r in zip(got, ref))
        passed = len(got) == len(ref) and worst <= args.rtol
        ok &= passed
        results.append({"run": name, "device": args.device, "reference": args.reference, "losses": got,
                        "reference_losses": ref, "max_rel_diff": worst, "rtol": args.rtol, "passed": passed})
        print(f"{'ok  ' if passed else 'FAIL'} {name}: max relative loss difference {worst:.2e} "
              f"({args.device} vs {args.reference}, rtol {args.rtol:g})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if ok else 1


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def _versions() -> list[str]:
    from importlib import metadata

    lines = [f"- python {platform.python_version()} ({sys.executable})"]
    for package in ("xpnet", "numpy", "array-api-compat", "cupy-cuda12x", "cupy-cuda13x", "torch"):
        try:
            lines.append(f"- {package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    try:
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        for gpu in subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip().splitlines():
            lines.append(f"- GPU: {gpu}")
    except (OSError, subprocess.SubprocessError) as exc:
        lines.append(f"- GPU: nvidia-smi failed ({exc})")
    return lines


def _bench_tables(log: str) -> str:
    """The bench's tables (each from its 'batch N (...' header to the blank line after it) and ratios."""
    keep, inside = [], False
    for line in log.splitlines():
        if line.startswith("batch "):
            inside = True
        if inside:
            keep.append(line)
            if not line.strip():
                inside = False
    return "\n".join(keep).strip()


def report(args) -> int:
    logs = args.logs

    def status(step):
        code = _read(os.path.join(logs, f"{step}.status"), "").strip()
        return "passed" if code == "0" else f"FAILED (exit {code})" if code else "not run"

    out = [f"# xpnet on a GPU: `bash ci/gpu.sh` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)",
           "", *_versions(), ""]
    pytest_log = _read(os.path.join(logs, "pytest.log")).strip().splitlines()
    out += ["## `pytest -m gpu` (GPU checks; the backend-parametrized suite on CuPy and torch-CUDA)", "",
            f"{status('pytest')}: {pytest_log[-1] if pytest_log else 'no output'}", ""]
    skipped = [line for line in pytest_log if line.startswith("SKIPPED")]
    if skipped:
        out += ["Skipped:", "", "```", *skipped, "```", ""]
    out += ["## Loss curves, CUDA against the CPU from the same seed", "", f"{status('curves')}", "",
            "| run | epochs | max relative difference | rtol | |", "|---|---|---|---|---|"]
    for r in json.loads(_read(os.path.join(logs, "curves.json"), "[]")):
        out.append(f"| {r['run']} | {len(r['losses'])} | {r['max_rel_diff']:.2e} | {r['rtol']:g} | "
                   f"{'ok' if r['passed'] else 'FAIL'} |")
    bench = _bench_tables(_read(os.path.join(logs, "bench.log")))
    out += ["", "## benchmarks/bench_mlp.py --device cuda (batch 128 and 8192; targets: xpnet >= 1.0x PyTorch "
            "CUDA eager throughput at 128, >= 0.9x at 8192)", "", status("bench"), "", "```",
            bench or "no tables", "```", ""]
    cnn = _read(os.path.join(logs, "cnn.log"))
    cnn = cnn[cnn.find("CNN training"):].strip() if "CNN training" in cnn else ""
    out += ["## benchmarks/bench_cnn.py --device cuda (the `--model cnn` network, batch 64 and 256; target: xpnet "
            ">= 0.5x PyTorch CUDA throughput)", "", status("cnn"), "", "```", cnn or "no table", "```", ""]
    with open(args.output, "w") as f:
        f.write("\n".join(out))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("curves", help="train the README's MNIST runs on two devices and compare the losses")
    c.add_argument("--device", default="cuda")
    c.add_argument("--reference", default="cpu")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--rtol", type=float, default=1e-5)
    c.add_argument("--limit", type=int, default=0, help="train on the first N samples (a quick dry run)")
    c.add_argument("--json", default=None)
    r = sub.add_parser("report", help="write the Markdown report from ci/gpu.sh's logs")
    r.add_argument("--logs", required=True)
    r.add_argument("--output", required=True)
    args = p.parse_args(argv)
    return curves(args) if args.command == "curves" else report(args)


if __name__ == "__main__":
    sys.exit(main())
