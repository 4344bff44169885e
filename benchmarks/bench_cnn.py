#!/usr/bin/env python
"""CNN training speed and memory, side by side: xpnet against PyTorch on the same network.

Both runners train the ``xpnet train --model cnn`` network on MNIST images ``(N, 1, 28, 28)``:

    Conv2D(1, 32, 3) - ReLU - Conv2D(32, 64, 3) - ReLU - MaxPool2D(2) - Dropout(0.25) - Flatten -
    Dense(9216, 128) - ReLU - Dropout(0.5) - Dense(128, 10),  softmax cross-entropy, AdamW(1e-3)

from the same initial weights (xpnet's, copied into ``torch.nn``: the conv layouts are PyTorch's, the
dense ones transposed), on the same ``--steps`` batches in the same order. ``xpnet`` is
``Sequential.fit(X, y, epochs=1, shuffle=False)`` as a user calls it; ``torch`` is the idiomatic
``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.AdamW`` loop. Each runner lives in its own warm worker
process (the thread pools never meet); after one untimed warm-up pass the timed passes are interleaved
A B, B A, ... so a slow stretch of a shared machine hits both alike. The table gives the median and best
seconds per pass, samples per second, and ``xpnet / torch`` (ratio of medians). ``cpu s`` is the median
CPU time of a pass (all the process's threads; ``time.process_time``) and ``cpu ratio`` its ratio: on a
shared machine a descheduled thread stalls the other at every synchronization of a multi-threaded BLAS
or OpenMP loop, which inflates the wall time of both libraries erratically; with ``--threads 1`` the
CPU time is the figure that load disturbs least.

With ``--threads`` above 1 on the CPU a third runner, ``xpnet-threads``, is the same ``fit`` with
``distributed=xpnet.distributed.Threads(threads)``: each thread trains on its shard of every batch with
one BLAS thread (NumPy's elementwise work runs on one core otherwise).

Memory: each runner also runs one pass in a fresh process that resets the kernel's high-water mark
(``/proc/self/clear_refs``) once data, libraries and weights are loaded, and reports ``VmHWM - VmRSS``
afterwards: the resident memory one pass adds at its peak (Linux only).

``--device cuda`` (or ``cuda:N``) runs both on the GPU instead: xpnet on CuPy, PyTorch eager on CUDA with its
defaults (cuDNN, ``torch.backends.cudnn.benchmark`` off), the data moved to the GPU once before timing, and
each pass ends with a device synchronization. Peak memory is then the growth of what each library's memory
pool holds over one pass in a fresh process (CuPy's ``MemoryPool.total_bytes()``, torch's
``max_memory_reserved``), and the summary gives xpnet's throughput as a fraction of PyTorch's (issue 13's
target: >= 0.5x). The CUDA mode has not run yet: no GPU was at hand when it was written.

    python benchmarks/bench_cnn.py                          # batch 64 and 256, 40 steps, 3 repeats
    python benchmarks/bench_cnn.py --batch-size 128 --steps 100 --repeats 5 --threads 2 --json cnn.json
    python benchmarks/bench_cnn.py --device cuda --steps 100 --repeats 5

Data: MNIST from ``--data-dir`` or ``$XPNET_DATA`` (xpnet.datasets.load_mnist). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

RUNNERS = ("xpnet", "torch")
THREADS_RUNNER = "xpnet-threads"  # fit(distributed=Threads(--threads)): each thread its shard of a batch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", default="64,256", help="one or more, comma-separated (default 64,256)")
    p.add_argument("--steps", type=int, default=40, help="training steps per timed pass (default 40)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed passes per runner (default 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both libraries")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where both runners train")
    p.add_argument("--data-dir", default=None, help="folder with mnist/ (default: $XPNET_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # runner,batch: timed passes on stdin
    p.add_argument("--memory", default=None, help=argparse.SUPPRESS)  # runner,batch: one pass, peak RSS
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_size.split(",")]
    return args


def set_threads(n: int) -> None:
    # Read by OpenBLAS, MKL and OpenMP when they load: before numpy or torch is imported.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


# -- the two runners ------------------------------------------------------------------------------------
def xpnet_model(seed, device="cpu"):
    import xpnet
    from xpnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

    layers = [Conv2D(1, 32, 3), ReLU(), Conv2D(32, 64, 3), ReLU(), MaxPool2D(2), Dropout(0.25), Flatten(),
              Dense(9216, 128, init="he_normal"), ReLU(), Dropout(0.5), Dense(128, 10)]
    return xpnet.Sequential(layers, device=device, seed=seed)


class XpnetRunner:
    def __init__(self, X, y, batch, seed, device):
        import xpnet

        self.xpnet, self.batch = xpnet, batch
        self.distributed = None
        self.model = xpnet_model(seed, device)
        self.device = self.model.device
        # on the model's device once, as a user would (on the CPU: the same arrays, no copy)
        self.X, self.y = self.device.asarray(X), self.device.asarray(y, "int64")
        self.initial = self.model.state_dict()

    def reset(self):
        self.model.load_state_dict(self.initial)

    def train(self):
        self.model.fit(self.X, self.y, loss="softmax_cross_entropy", optimizer=self.xpnet.AdamW(1e-3), epochs=1,
                       batch_size=self.batch, shuffle=False, verbose=0, distributed=self.distributed)
        self.xpnet.synchronize(self.device)

    def gpu_pool_bytes(self):
        return self.xpnet.backend.memory_pool_bytes(self.device)


class TorchRunner:
    def __init__(self, X, y, batch, seed, device):
        import torch
        from torch import nn

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
        self.torch, self.dev = torch, torch.device(device)
        self.net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                                 nn.Linear(128, 10)).to(self.dev)
        state = xpnet_model(seed).state_dict()  # the same initial weights (drawn on the CPU, as xpnet's are)
        self.initial = {"0.weight": state["0.W"], "0.bias": state["0.b"], "2.weight": state["2.W"],
                        "2.bias": state["2.b"], "7.weight": state["7.W"].T, "7.bias": state["7.b"],
                        "10.weight": state["10.W"].T, "10.bias": state["10.b"]}
        self.X, self.y, self.batch = torch.from_numpy(X).to(self.dev), torch.from_numpy(y).to(self.dev), batch
        self.loss = nn.CrossEntropyLoss()

    def reset(self):
        self.net.load_state_dict({k: self.torch.tensor(v.copy(), device=self.dev) for k, v in self.initial.items()})
        self.opt = self.torch.optim.AdamW(self.net.parameters(), lr=1e-3)

    def train(self):
        self.net.train()
        for lo in range(0, self.X.shape[0], self.batch):
            xb, yb = self.X[lo:lo + self.batch], self.y[lo:lo + self.batch]
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.net(xb), yb).backward()
            self.opt.step()
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize(self.dev)

    def gpu_pool_bytes(self):
        return self.torch.cuda.max_memory_reserved(self.dev)


def make_runner(name, batch, args):
    import numpy as np
    from xpnet import datasets

    (X, y), _ = datasets.load("mnist", data_dir=args.data_dir, limit=args.steps * batch, flat=False,
                                    download=False)
    X, y = np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64)
    runner = (TorchRunner if name == "torch" else XpnetRunner)(X, y, batch, args.seed, args.device)
    if name == THREADS_RUNNER:
        from xpnet.distributed import Threads

        runner.distributed = Threads(args.threads)
    runner.reset()
    return runner


def worker(args):
    """Serve timed passes: one line "run" on stdin -> the pass's seconds on stdout."""
    name, batch = args.worker.split(",")
    runner = make_runner(name, int(batch), args)
    runner.train()  # warm-up: thread pools, allocator, lazily built caches
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        runner.reset()
        time.sleep(0.3)  # let spinning BLAS threads of the other worker go to sleep
        start, cpu = time.perf_counter(), time.process_time()
        runner.train()
        print(time.perf_counter() - start, time.process_time() - cpu, flush=True)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def memory(args):
    """One pass in this fresh process; prints the resident memory it added at its peak, in MiB (on CUDA: the
    growth of what the library's GPU memory pool holds)."""
    name, batch = args.memory.split(",")
    runner = make_runner(name, int(batch), args)
    if args.device.startswith("cuda"):
        base = runner.gpu_pool_bytes()
        runner.train()
        print((runner.gpu_pool_bytes() - base) / 2**20)
        return
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    base = _status_kib("VmRSS")
    runner.train()
    print((_status_kib("VmHWM") - base) / 1024.0)


def _spawn(flag, name, batch, args):
    cmd = [sys.executable, os.path.abspath(__file__), flag, f"{name},{batch}", "--steps", str(args.steps),
           "--seed", str(args.seed), "--threads", str(args.threads), "--device", args.device,
           *(["--data-dir", args.data_dir] if args.data_dir else [])]
    return cmd


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    if args.worker:
        return worker(args)
    if args.memory:
        return memory(args)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                        os.environ.get("PYTHONPATH", "")])}
    cuda = args.device.startswith("cuda")
    runners = RUNNERS + ((THREADS_RUNNER,) if args.threads > 1 and not cuda else ())
    if cuda:  # say why here, once, rather than as two workers that never start
        import xpnet

        try:
            xpnet.device(args.device)
        except xpnet.DeviceUnavailableError as exc:
            print(f"bench_cnn.py: --device {args.device}: {exc}", file=sys.stderr)
            return 2
    results = []
    where = f"{args.device}" if cuda else f"cpu, {args.threads} threads"
    print(f"CNN training, {args.steps} steps per pass, {args.repeats} interleaved passes, {where}")
    print(f"{'batch':>5}  {'runner':<13}  {'median s':>8}  {'best s':>7}  {'samples/s':>9}  "
          f"{'GPU MiB' if cuda else 'peak MiB':>8}  {'cpu s':>6}  xpnet/torch  cpu ratio")
    for batch in args.batch_sizes:
        procs = {name: subprocess.Popen(_spawn("--worker", name, batch, args), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env) for name in runners}
        for name, proc in procs.items():
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {name} worker did not start (batch {batch})")
        times, cpus = {name: [] for name in runners}, {name: [] for name in runners}
        for r in range(args.repeats):
            for name in (runners if r % 2 == 0 else runners[::-1]):
                procs[name].stdin.write("run\n")
                procs[name].stdin.flush()
                wall, cpu = procs[name].stdout.readline().split()
                times[name].append(float(wall))
                cpus[name].append(float(cpu))
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
        peaks = {}
        for name in runners:
            if not args.no_memory and (cuda or sys.platform.startswith("linux")):
                out = subprocess.run(_spawn("--memory", name, batch, args), capture_output=True, text=True,
                                     env=env, check=True).stdout
                peaks[name] = float(out.strip().splitlines()[-1])
        ratio = {name: statistics.median(times[name]) / statistics.median(times["torch"]) for name in runners}
        cpu_ratio = {name: statistics.median(cpus[name]) / statistics.median(cpus["torch"]) for name in runners}
        for name in runners:
            med, best, cpu = statistics.median(times[name]), min(times[name]), statistics.median(cpus[name])
            peak = f"{peaks[name]:8.0f}" if name in peaks else f"{'-':>8}"
            print(f"{batch:>5}  {name:<13}  {med:8.2f}  {best:7.2f}  {args.steps * batch / med:9.0f}  {peak}  "
                  f"{cpu:6.2f}  " + (f"{ratio[name]:10.2f}x  {cpu_ratio[name]:8.2f}x" if name != "torch" else ""),
                  flush=True)
            results.append({"batch": batch, "runner": name, "seconds": times[name], "median": med, "best": best,
                            "cpu_seconds": cpus[name], "median_cpu": cpu,
                            "samples_per_s": args.steps * batch / med, "peak_mib": peaks.get(name),
                            "steps": args.steps, "threads": args.threads, "device": args.device})
        if cuda:
            print(f"{batch:>5}  xpnet throughput / torch CUDA: {1 / ratio['xpnet']:.2f}x (target >= 0.5x)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
