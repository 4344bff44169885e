#!/usr/bin/env python
"""GPT training speed and memory, side by side: xpnet against a PyTorch GPT of the same shape (and nanoGPT).

Every runner trains nanoGPT's baby Shakespeare GPT (vocabulary 65, block 64, batch 12, 4 layers, 4 heads,
128 wide, dropout 0, tied embeddings) with its training rule (AdamW lr 1e-3, betas (0.9, 0.99), weight decay
0.1 on the matrices, the gradients' norm clipped to 1.0, 100 warm-up steps then a cosine): the defaults of
``xpnet train --model gpt``. One timed step is a whole training step: the windows gathered, forward, loss,
backward, clipping, AdamW at the step's learning rate.

- ``xpnet:<backend>``: ``Sequential.fit(TextWindows(train, 64), steps_per_epoch=--steps, ...)`` as a user
  calls it (and as the CLI does) on ``--backend`` (numpy by default; ``numpy,torch`` runs both);
- ``xpnet:<backend>:loop`` (``--loop``): the same steps in a hand loop (forward, loss, backward, step), to
  show what fit's own bookkeeping costs;
- ``xpnet:numpy:threads`` (``--threads`` above 1 on the CPU): ``fit(distributed=Threads(threads))``, each
  thread its share of the 12 windows with one BLAS thread;
- ``xpnet:<backend>@baseline`` (``--baseline DIR``): ``xpnet:<backend>`` run from another xpnet checkout (the
  commit before a change): before and after, interleaved in one run;
- ``pytorch``: ``tests/torch_gpt.py``, the PyTorch reference GPT (``torch.nn`` modules,
  ``scaled_dot_product_attention``) and its training rule, in an eager loop;
- ``nanogpt`` (``--nanogpt DIR``, CPU only): nanoGPT's own ``train.py`` from a checkout of it (with
  ``data/shakespeare_char`` prepared), the issue's reference command cut to ``--steps`` + 6 iterations and
  ``--log_interval=1``; its per-iteration times are read from its log (``iter N: loss L, time Xms``), leaving
  out iteration 0 (its evaluation) and the next 5, and its CPU time from its own clock readings (run through
  ``NANOGPT_CLOCK``, its code unchanged). A fresh process each pass: its start-up is not timed.

xpnet and the PyTorch reference start from the same initial weights (xpnet's, copied in: ``torch_gpt.names``)
and train on the same windows of tiny Shakespeare (``xpnet.datasets.load_text``, drawn from the model's seed
as fit draws them), so their ``loss`` columns (the mean training loss of a pass) agree to float32 rounding;
nanoGPT has its own initialization and windows. Each runner lives in its own warm worker process (the thread
pools never meet); after one untimed warm-up pass the timed passes are interleaved A B C, C B A, ... so a slow
stretch of a shared machine hits all alike. Every pass starts again from the same weights and windows with
a fresh optimizer. The table gives ms per step (median and best pass), the CPU time per step (``cpu ms``: all
the process's threads, ``time.process_time``; with ``--threads 1`` the figure load disturbs least) and the
ratio of medians to the PyTorch reference and to nanoGPT.

Memory, as bench_cnn.py: each worker runner also runs one pass in a fresh process that resets the kernel's
high-water mark once data, libraries and weights are loaded, and reports ``VmHWM - VmRSS`` afterwards: the
resident memory a pass adds at its peak (Linux only). ``--device cuda`` runs xpnet on CuPy (or ``--backend
torch``) against the PyTorch reference on CUDA (AdamW fused, as nanoGPT takes it there), the windows gathered
on the GPU, each pass ending with a synchronization; peak memory is then the growth of each library's memory
pool over one pass (CuPy's ``total_bytes()``, torch's ``max_memory_reserved``). A ``fit`` runner's pass includes
fit putting the training ids on the device as int64 (7.7 MiB for tiny Shakespeare), which the other runners
do before the pass.

``--layers`` times each layer's forward and backward pass (and the loss and the optimizer) of xpnet's step in
this process instead, to show where a step's time goes.

    python benchmarks/bench_gpt.py --threads 2                              # xpnet numpy vs PyTorch
    python benchmarks/bench_gpt.py --threads 2 --backend numpy,torch --loop --nanogpt ../nanoGPT --json gpt.json
    python benchmarks/bench_gpt.py --threads 1 --baseline ../xpnet-main     # before and after a change
    python benchmarks/bench_gpt.py --threads 1 --layers                     # where xpnet's step goes
    python benchmarks/bench_gpt.py --device cuda --json bench-gpt.json      # ci/gpu.sh's step

Data: ``shakespeare/input.txt`` in ``--data-dir`` or ``$XPNET_DATA`` (``xpnet.datasets.load_text``, no
download). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(ROOT, "tests"))
from bench_cnn import _status_kib, set_threads  # noqa: E402  (the same thread setup and memory reading)

BATCH, BLOCK = 12, 64
NANOGPT_SKIP = 6  # iteration 0 (an evaluation) and nanoGPT's own 5 settling iterations
NANOGPT_COMMAND = ("train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 "
                   "--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 "
                   "--lr_decay_iters=2000 --dropout=0.0")
"""The issue's reference command (nanoGPT's README's CPU run at the baby size); a pass replaces --max_iters."""
NANOGPT_FILES = (("train.py",), ("data", "shakespeare_char", "train.bin"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50, help="training steps per timed pass (default 50)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed passes per runner (default 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every library")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where the runners train")
    p.add_argument("--backend", default=None,
                   help="xpnet's backend(s), comma-separated: numpy (default on the CPU), torch, cupy (on CUDA)")
    p.add_argument("--loop", action="store_true", help="also time xpnet's steps in a hand loop (no fit)")
    p.add_argument("--nanogpt", default=None, metavar="DIR", help="also run nanoGPT's train.py from DIR")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="also run xpnet:<first backend> from the xpnet source tree DIR (a checkout of another "
                        "commit): before and after a change, interleaved")
    p.add_argument("--layers", action="store_true", help="time xpnet's step layer by layer instead (--backend's "
                                                         "first)")
    p.add_argument("--data-dir", default=None, help="folder with shakespeare/ (default: $XPNET_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # runner: timed passes on stdin
    p.add_argument("--memory", default=None, help=argparse.SUPPRESS)  # runner: one pass, peak memory
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.backends = (args.backend or ("cupy" if cuda else "numpy")).split(",")
    if args.nanogpt and cuda:
        p.error("--nanogpt runs nanoGPT's CPU command: leave it out with --device cuda")
    if args.baseline and not os.path.isfile(os.path.join(args.baseline, "xpnet", "__init__.py")):
        p.error(f"--baseline {args.baseline}: no xpnet/__init__.py there; give the root of an xpnet checkout")
    if args.nanogpt and not all(os.path.isfile(os.path.join(args.nanogpt, *f)) for f in NANOGPT_FILES):
        p.error(f"--nanogpt {args.nanogpt}: no {' or '.join(os.path.join(*f) for f in NANOGPT_FILES)} there; give the "
                f"folder of a nanoGPT checkout whose data/shakespeare_char/ is prepared (python "
                f"data/shakespeare_char/prepare.py there)")
    return args


def runner_names(args) -> list:
    names = [f"xpnet:{b}" for b in args.backends]
    if args.loop:
        names += [f"xpnet:{b}:loop" for b in args.backends]
    if args.threads > 1 and not args.device.startswith("cuda") and "numpy" in args.backends:
        names.append("xpnet:numpy:threads")
    if args.baseline:
        names.insert(1, f"xpnet:{args.backends[0]}@baseline")
    names.append("pytorch")
    return names + (["nanogpt"] if args.nanogpt else [])


# -- the runners ----------------------------------------------------------------------------------------
def training_rule():
    """xpnet's optimizer and schedule of ``xpnet train --model gpt`` (the CLI's own)."""
    from xpnet.cli.gpt import gpt_optimizer, gpt_schedule

    return gpt_optimizer(), gpt_schedule()


def xpnet_gpt(seed, device="cpu", backend=None):
    from xpnet import models

    return models.gpt(65, BLOCK, 4, 4, 128, device=device, backend=backend, seed=seed)


class XpnetRunner:
    """``fit`` on TextWindows (``mode`` "fit" or "threads"), or the same steps in a hand loop ("loop")."""

    def __init__(self, train_ids, steps, seed, device, backend, mode):
        import xpnet

        if backend == "torch":
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        self.xpnet, self.steps, self.mode = xpnet, steps, mode
        self.model = xpnet_gpt(seed, device, backend)
        self.device = self.model.device
        self.source = xpnet.TextWindows(train_ids, BLOCK)
        self.initial, self.rng = self.model.state_dict(), self.model.get_rng_state()
        self.distributed = None
        if mode == "threads":
            from xpnet.distributed import Threads

            self.distributed = Threads(int(os.environ["OMP_NUM_THREADS"]))
        if mode == "loop":
            from xpnet.train.sources import Windows

            self.windows = Windows(self.source, self.device, steps, BATCH)
            self.loss = xpnet.losses.get("softmax_cross_entropy")

    def reset(self):
        self.model.load_state_dict(self.initial)
        self.model.set_rng_state(self.rng)  # the same windows every pass

    def train(self) -> float:
        """One pass of ``steps`` steps; the mean training loss."""
        opt, schedule = training_rule()
        if self.mode == "loop":
            return self._loop(opt, schedule)
        history = self.model.fit(self.source, loss="softmax_cross_entropy", optimizer=opt, epochs=1,
                                 steps_per_epoch=self.steps, batch_size=BATCH, schedule=schedule, verbose=0,
                                 distributed=self.distributed)
        self.xpnet.synchronize(self.device)
        return history["loss"][-1]

    def _loop(self, opt, schedule) -> float:
        model, loss, xp = self.model, self.loss, self.device.xp
        params, grads, out = model.parameters(), model.gradients(), []
        plan = self.windows.epoch(model.rng)  # the windows fit draws
        for step in range(self.steps):
            x, y = self.windows.batch(plan, step, 0, BATCH)
            opt.lr = schedule.rate(step)
            out.append(loss.forward(model.forward(x, training=True), y))
            model.backward(loss.backward())
            opt.step(params, grads)
        return float(xp.mean(xp.stack(out)))  # (one read-back a pass, as fit's)

    def gpu_pool_bytes(self):
        return self.xpnet.backend.memory_pool_bytes(self.device)


class TorchRunner:
    """tests/torch_gpt.py's GPT and training rule, xpnet's initial weights and windows."""

    def __init__(self, train_ids, steps, seed, device):
        import numpy as np
        import torch
        import torch_gpt

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        self.torch, self.tg, self.dev, self.steps = torch, torch_gpt, torch.device(device), steps
        model = xpnet_gpt(seed)  # the same initial weights (drawn on the host, as xpnet's always are)
        self.net = torch_gpt.from_xpnet(model).to(self.dev)
        self.initial = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        # fit's windows: one draw of (steps, batch) starts from the model's generator (train/sources.py)
        starts = model.rng.integers(0, train_ids.shape[0] - BLOCK, size=(steps, BATCH))
        ids = torch.from_numpy(train_ids.astype(np.int64)).to(self.dev)
        offsets = torch.arange(BLOCK + 1, device=self.dev)
        self.windows = [ids[torch.from_numpy(s).to(self.dev)[:, None] + offsets] for s in starts]

    def reset(self):
        self.net.load_state_dict(self.initial)
        self.opt = self.tg.optimizer(self.net)
        if self.dev.type == "cuda":  # nanoGPT's choice on CUDA: the fused AdamW (torch_gpt's keeps foreach=False)
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in self.opt.param_groups]
            self.opt = self.torch.optim.AdamW(groups, lr=self.tg.BABY["lr"], betas=self.tg.BABY["betas"],
                                              eps=self.tg.BABY["eps"], fused=True)

    def train(self) -> float:
        """tests/torch_gpt.py's ``train_step``, less its ``float(loss)`` each step (a sync on CUDA)."""
        torch, net, opt, out = self.torch, self.net, self.opt, []
        net.train()
        for step, w in enumerate(self.windows):
            for group in opt.param_groups:
                group["lr"] = self.tg.lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss = net.loss(w[:, :-1], w[:, 1:])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.tg.BABY["clip"])
            opt.step()
            out.append(loss.detach())
        return float(torch.stack(out).mean())

    def gpu_pool_bytes(self):
        return self.torch.cuda.max_memory_reserved(self.dev)


def make_runner(name, args):
    from xpnet import datasets

    train_ids, _, vocab = datasets.load_text("shakespeare", data_dir=args.data_dir, download=False)
    if vocab.size != 65:
        raise RuntimeError(f"tiny Shakespeare has 65 symbols, this text {vocab.size}")
    if name == "pytorch":
        runner = TorchRunner(train_ids, args.steps, args.seed, args.device)
    else:
        _, backend, *mode = name.split("@")[0].split(":")
        runner = XpnetRunner(train_ids, args.steps, args.seed, args.device, backend, (mode or ["fit"])[0])
    runner.reset()
    return runner


def worker(args):
    """Serve timed passes: one line "run" on stdin -> the pass's wall and CPU seconds and its loss on stdout."""
    runner = make_runner(args.worker, args)
    runner.train()  # warm-up: thread pools, allocator, lazily built caches
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        runner.reset()
        time.sleep(0.3)  # let spinning BLAS threads of the other workers go to sleep
        start, cpu = time.perf_counter(), time.process_time()
        loss = runner.train()
        print(time.perf_counter() - start, time.process_time() - cpu, loss, flush=True)


def memory(args):
    """One pass in this fresh process; prints the memory it added at its peak, in MiB (as bench_cnn.py's)."""
    runner = make_runner(args.memory, args)
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


# train.py times an iteration by two time.time() readings (one before the loop, one after each iteration); run
# through this, each reading also notes the process's CPU time, printed at exit: the CPU time per iteration,
# beside the wall time train.py logs. Its code runs unchanged.
NANOGPT_CLOCK = """
import atexit, runpy, sys, time
wall, cpu = time.time, []
def clock():
    cpu.append(time.process_time())
    return wall()
time.time = clock
atexit.register(lambda: print("cpu seconds at each reading:", *cpu, flush=True))
sys.argv = sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""


def nanogpt_pass(args, env) -> tuple:
    """nanoGPT's train.py for ``--steps`` timed iterations in a fresh process: (wall s, CPU s, mean loss) of them."""
    iters = args.steps + NANOGPT_SKIP
    with tempfile.TemporaryDirectory() as out_dir:
        cmd = [sys.executable, "-c", NANOGPT_CLOCK,
               *NANOGPT_COMMAND.replace("--max_iters=2000", f"--max_iters={iters - 1}").split(), "--log_interval=1",
               f"--out_dir={out_dir}"]
        done = subprocess.run(cmd, cwd=args.nanogpt, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"nanoGPT's train.py failed (in {args.nanogpt}: {' '.join(cmd[3:])}):\n"
                           f"{done.stderr[-2000:]}")
    logged = {int(m[1]): (float(m[2]), float(m[3]))
              for m in re.finditer(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms", done.stdout, re.M)}
    timed = [logged[i] for i in range(NANOGPT_SKIP, iters) if i in logged]
    cpu = [float(t) for t in re.search(r"^cpu seconds at each reading: (.*)$", done.stdout, re.M)[1].split()]
    if len(timed) != args.steps or len(cpu) < iters + 1:
        raise RuntimeError(f"nanoGPT's log gave {len(timed)} of iterations {NANOGPT_SKIP}..{iters - 1} and "
                           f"{len(cpu)} clock readings: {done.stdout[-1000:]}")
    cpu = cpu[-(iters + 1):]  # the loop's (an import reads the clock too); reading i + 1 ends iteration i
    return sum(ms for _, ms in timed) / 1000.0, cpu[iters] - cpu[NANOGPT_SKIP], statistics.mean(x for x, _ in timed)


def layer_times(args):
    """``--layers``: each layer's forward and backward, the loss and the optimizer, in ms per step."""
    import collections

    clock = time.process_time if args.threads == 1 else time.perf_counter
    runner = make_runner(f"xpnet:{args.backends[0]}:loop", args)
    spent = collections.defaultdict(float)

    def timed(obj, method, key):
        inner = getattr(obj, method)

        def run(*a, **k):
            start = clock()
            out = inner(*a, **k)
            spent[key] += clock() - start
            return out
        setattr(obj, method, run)

    for layer in runner.model.layers:
        for sub in getattr(layer, "layers", None) or [layer]:  # a Residual's own work is one addition
            for method in ("forward", "backward"):
                timed(sub, method, (type(sub).__name__, method))
    timed(runner.loss, "forward", ("SoftmaxCrossEntropy", "forward"))
    timed(runner.loss, "backward", ("SoftmaxCrossEntropy", "backward"))
    timed(runner.xpnet.optim.AdamW, "step", ("AdamW (clip, decay, step)", "step"))
    runner.train()
    spent.clear()
    start = clock()
    for _ in range(args.repeats):
        runner.reset()
        runner.train()
    n = args.repeats * args.steps
    total = 1000 * (clock() - start) / n
    print(f"xpnet's GPT step on {args.backends[0]}, {args.threads} thread(s), {n} steps, "
          f"{'CPU' if clock is time.process_time else 'wall'} ms per step (all blocks together):")
    for (name, method), s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28} {method:<8} {1000 * s / n:7.2f}")
    print(f"  {'the rest (windows, residual additions, fit)':<37} {total - 1000 * sum(spent.values()) / n:7.2f}")
    print(f"  {'step':<37} {total:7.2f}")


def _spawn(flag, name, args):
    return [sys.executable, os.path.abspath(__file__), flag, name, "--steps", str(args.steps), "--seed",
            str(args.seed), "--threads", str(args.threads), "--device", args.device,
            *(["--data-dir", args.data_dir] if args.data_dir else [])]


def _env(name, args) -> dict:
    """The runner's environment: this tree's xpnet first (``--baseline``'s for the baseline runner)."""
    tree = args.baseline if name.endswith("@baseline") else ROOT
    return {**os.environ, "PYTHONPATH": os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")])}


def timed_passes(names, args) -> dict:
    """``{runner: [(wall s, cpu s, loss), ...]}``: ``--repeats`` passes each, interleaved."""
    procs = {name: subprocess.Popen(_spawn("--worker", name, args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True, env=_env(name, args)) for name in names if name != "nanogpt"}
    for name, proc in procs.items():
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {name} worker did not start")
    passes = {name: [] for name in names}
    for r in range(args.repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            if name == "nanogpt":
                passes[name].append(nanogpt_pass(args, os.environ))
                continue
            procs[name].stdin.write("run\n")
            procs[name].stdin.flush()
            wall, cpu, loss = procs[name].stdout.readline().split()
            passes[name].append((float(wall), float(cpu), float(loss)))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    return passes


def peak_memory(names, args) -> dict:
    cuda = args.device.startswith("cuda")
    if args.no_memory or not (cuda or sys.platform.startswith("linux")):
        return {}
    peaks = {}
    for name in names[:-1] if names[-1] == "nanogpt" else names:
        done = subprocess.run(_spawn("--memory", name, args), capture_output=True, text=True, env=_env(name, args),
                              check=True)
        peaks[name] = float(done.stdout.strip().splitlines()[-1])
    return peaks


def table(names, passes, peaks, args) -> list:
    """Print the table; return its rows (the JSON's)."""
    cuda, steps, nano = args.device.startswith("cuda"), args.steps, "nanogpt" in names
    med = {name: [1000 * statistics.median(p[i] for p in passes[name]) / steps for i in (0, 1)] for name in names}
    print(f"{'runner':<20}  {'ms/step':>7}  {'best':>6}  {'cpu ms':>6}  {'GPU MiB' if cuda else 'peak MiB':>8}  "
          f"{'loss':>6}  {'/pytorch':>8}  {'cpu':>6}" + ("  /nanogpt     cpu" if nano else ""))
    rows = []
    for name in names:
        (ms, cpu), walls = med[name], [w for w, _, _ in passes[name]]
        loss = statistics.median(x for _, _, x in passes[name])
        ratios = {ref: (ms / med[ref][0], cpu / med[ref][1]) for ref in ("pytorch", "nanogpt") if ref in names}
        print(f"{name:<20}  {ms:7.1f}  {1000 * min(walls) / steps:6.1f}  {cpu:6.1f}  "
              f"{'-' if name not in peaks else f'{peaks[name]:.0f}':>8}  {loss:6.4f}"
              + "".join(f"  {r[0]:7.2f}x  {r[1]:5.2f}x" for r in ratios.values()), flush=True)
        rows.append({"runner": name, "ms_per_step": ms, "best_ms_per_step": 1000 * min(walls) / steps,
                     "cpu_ms_per_step": cpu, "seconds": walls, "cpu_seconds": [c for _, c, _ in passes[name]],
                     "losses": [x for _, _, x in passes[name]], "peak_mib": peaks.get(name),
                     **{f"vs_{ref}": r[0] for ref, r in ratios.items()},
                     **{f"cpu_vs_{ref}": r[1] for ref, r in ratios.items()},
                     "steps": steps, "threads": args.threads, "device": args.device})
    return rows


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    if args.worker:
        return worker(args)
    if args.memory:
        return memory(args)
    if args.layers:
        return layer_times(args)
    cuda = args.device.startswith("cuda")
    import xpnet  # say why here, once, rather than as workers that never start
    import xpnet.datasets

    try:
        xpnet.datasets.load_text("shakespeare", data_dir=args.data_dir, download=False)
        if cuda:
            xpnet.device(args.device, backend=args.backends[0])
    except (xpnet.datasets.DatasetError, xpnet.DeviceUnavailableError) as exc:
        print(f"bench_gpt.py: {exc}", file=sys.stderr)
        return 2
    names = runner_names(args)
    where = args.device if cuda else f"cpu, {args.threads} thread(s)"
    print(f"GPT training (nanoGPT's baby Shakespeare run), {args.steps} steps per pass, {args.repeats} "
          f"interleaved passes, {where}; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    passes = timed_passes(names, args)
    rows = table(names, passes, peak_memory(names, args), args)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
