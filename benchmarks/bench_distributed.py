#!/usr/bin/env python
"""Data-parallel training over MPI: 1 rank against 2 ranks on one machine, and the all-reduce's share.

Three set-ups train the same MNIST MLP (``--layers``, default 784-256-10, softmax cross-entropy, SGD lr 0.1,
float32) on the same data with the same seed, at each ``--batch-size`` (the global batch):

    1r x 1t   one process, 1 BLAS thread          (plain fit: the baseline of the scaling figures)
    2r x 1t   mpiexec -n 2, 1 BLAS thread a rank  (fit(distributed=True))
    1r x 2t   one process, 2 BLAS threads         (what the same two cores give without MPI)
    1r x 1t, half batch                           (one rank's share of the 2-rank step: its compute alone)

Each set-up runs in fresh processes, interleaved (A B C, C B A, ...) over ``--repeats``, each after one
untimed warm-up epoch; a repeat times ``--epochs`` epochs. Scaling efficiency is
``throughput(2 ranks) / (2 x throughput(1 rank, 1 thread))``, per repeat (paired), then the median.

The all-reduce is timed two ways on the 2-rank runs: *in the step* (the seconds ``fit`` spends in the
gradients' all-reduce, ``Communicator.allreduce_seconds``: the transfer plus any wait for the slower
rank) and *alone* (after training, ``--allreduce-reps`` all-reduces of the same flat buffer, each after
a barrier: the transfer alone). Both are given per step, against the step time. On free cores a 2-rank
step would take about ``half-batch step + all-reduce alone``: the "expected" efficiency line computes
that bound from the same runs, so a loaded machine's figures can be read against it.

    python benchmarks/bench_distributed.py                            # batch 128 and 512, 5 repeats
    python benchmarks/bench_distributed.py --batch-size 128 --repeats 3 --json dist.json

Needs mpi4py and an mpiexec (the ``mpich`` wheel puts one next to the Python); MNIST from ``--data-dir``
or ``$XPNET_DATA``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# name: (ranks, threads per rank, batch divisor)
SETUPS = {"1r x 1t": (1, 1, 1), "2r x 1t": (2, 1, 1), "1r x 2t": (1, 2, 1), "1r x 1t, half batch": (1, 1, 2)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", default="128,512", help="global batch sizes, comma-separated")
    p.add_argument("--layers", default="784,256,10")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per repeat (default 2)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--allreduce-reps", type=int, default=300)
    p.add_argument("--data-dir", default=os.environ.get("XPNET_DATA"))
    p.add_argument("--json", help="write every run's figures here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def mpiexec() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else "mpiexec"


def launch(ranks: int, threads: int, divisor: int, batch: int, args) -> dict:
    batch //= divisor
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, __file__, "--worker", "--batch-size", str(batch), "--layers", args.layers,
           "--epochs", str(args.epochs), "--allreduce-reps", str(args.allreduce_reps)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker(args) -> None:
    import numpy as np

    import xpnet
    from xpnet.datasets import load_mnist
    from xpnet.layers import Dense, ReLU

    comm = None
    try:
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_size() > 1:
            comm = xpnet.distributed.Communicator()
    except ImportError:
        pass
    (X, y), _ = load_mnist(data_dir=args.data_dir)
    sizes = [int(s) for s in args.layers.split(",")]
    stack = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        stack += [Dense(a, b, init="he_normal")] + ([ReLU()] if i < len(sizes) - 2 else [])
    model = xpnet.Sequential(stack, device="cpu", seed=0)
    opt = xpnet.SGD(0.1)
    batch = int(args.batch_size)

    def run(epochs):
        return model.fit(X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=epochs, batch_size=batch,
                         verbose=0, distributed=comm)

    run(1)  # warm-up: libraries loaded, caches filled, the MPI connection made
    if comm is not None:
        comm.allreduce_seconds, comm.allreduce_calls = 0.0, 0
    start = time.perf_counter()
    history = run(args.epochs)
    seconds = time.perf_counter() - start
    steps = args.epochs * -(-X.shape[0] // batch)
    out = {"seconds": seconds, "samples_per_s": args.epochs * X.shape[0] / seconds, "steps": steps,
           "step_ms": 1e3 * seconds / steps, "loss": history.history["loss"][-1]}
    if comm is not None:
        out["allreduce_in_step_ms"] = 1e3 * comm.allreduce_seconds / comm.allreduce_calls
        buf = np.zeros(sum(int(np.prod(p.shape)) for p in model.parameters().values()), dtype="float32")
        times = []
        for _ in range(args.allreduce_reps):
            comm.comm.Barrier()
            t = time.perf_counter()
            comm.allreduce_(buf)
            times.append(time.perf_counter() - t)
        out["allreduce_alone_ms"] = 1e3 * statistics.median(times)
        out["buffer_mb"] = buf.nbytes / 2**20
        if not comm.is_root:
            return
    print(json.dumps(out), flush=True)


def uptime() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    results = {"load_before": uptime(), "runs": {}}
    print(f"load average before: {results['load_before']} ({os.cpu_count()} cores)", flush=True)
    for batch in [int(b) for b in args.batch_size.split(",")]:
        runs = {name: [] for name in SETUPS}
        for rep in range(args.repeats):
            order = list(SETUPS) if rep % 2 == 0 else list(reversed(SETUPS))
            for name in order:
                runs[name].append(launch(*SETUPS[name], batch, args))
        results["runs"][batch] = runs
        report(batch, runs)
    results["load_after"] = uptime()
    print(f"load average after: {results['load_after']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def report(batch: int, runs: dict) -> None:
    med = lambda xs: statistics.median(xs)  # noqa: E731
    base, two, wide = runs["1r x 1t"], runs["2r x 1t"], runs["1r x 2t"]
    print(f"\nbatch {batch} (global), {len(base)} repeats: median samples/s, ms/step")
    for name, rs in runs.items():
        line = (f"  {name:20s}: {med([r['samples_per_s'] for r in rs]):8,.0f} samples/s  "
                f"{med([r['step_ms'] for r in rs]):6.2f} ms/step (best {min(r['step_ms'] for r in rs):.2f})")
        if "allreduce_in_step_ms" in rs[0]:
            line += (f"  all-reduce in step {med([r['allreduce_in_step_ms'] for r in rs]):.3f} ms, alone "
                     f"{med([r['allreduce_alone_ms'] for r in rs]):.3f} ms ({rs[0]['buffer_mb']:.2f} MB)")
        print(line)
    half = runs["1r x 1t, half batch"]
    eff = [t["samples_per_s"] / (2 * b["samples_per_s"]) for t, b in zip(two, base)]
    speed = [t["samples_per_s"] / b["samples_per_s"] for t, b in zip(two, base)]
    versus = [t["samples_per_s"] / w["samples_per_s"] for t, w in zip(two, wide)]
    print(f"  2 ranks / 1 rank (1 thread each): speed-up {med(speed):.2f}x, scaling efficiency {med(eff):.0%} "
          f"(paired, per repeat: {', '.join(f'{e:.0%}' for e in eff)})")
    print(f"  2 ranks x 1 thread / 1 rank x 2 threads: {med(versus):.2f}x")
    # On two free cores: a rank's half-batch step (two of them per global step) plus the all-reduce alone.
    bound = [b["step_ms"] / (2 * (h["step_ms"] + t["allreduce_alone_ms"]))
             for b, h, t in zip(base, half, two)]
    print(f"  expected on 2 free cores (1 rank's step / 2 x (half-batch step + all-reduce alone)): "
          f"{med(bound):.0%}")


if __name__ == "__main__":
    sys.exit(main())
