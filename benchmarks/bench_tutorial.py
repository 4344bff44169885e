#!/usr/bin/env python
"""The book's per-sample network, timed: the seeds' NumPy ``neuralNetwork.train`` against xpnet's.

"Make Your Own Neural Network" (seed 002) trains a 784-200-10 sigmoid network one sample at a time:
two matrix-vector products forward, two outer-product updates backward. This times, over the same
``--samples`` MNIST samples scaled as in the book (inputs 0.01..1, targets 0.01/0.99), from the same
initial weights:

* ``book float64`` / ``book float32``: a verbatim copy of the book's class (``BookNetwork`` below; float32
  only casts the initial weights and the inputs),
* ``xpnet float32`` / ``xpnet float64``: ``xpnet.tutorial.NeuralNetwork(...).train`` on ``--device``.

Runs are interleaved (A B C D, then D C B A, ...) after a warm-up; the table gives median seconds per
pass, samples/s, the ratio to the book in float32, the largest weight difference from the book's
float64 result (the same arithmetic, rounded differently) and test accuracy on the 10,000 test images.
Each runner is also run once in a fresh process for its peak resident-set growth and, for NumPy
runners, its tracemalloc peak (the ``PeakRSS`` of bench_mlp.py).

    python benchmarks/bench_tutorial.py                      # 5000 samples, 3 repeats, all cores
    python benchmarks/bench_tutorial.py --samples 60000 --repeats 1 --threads 1 --json tut.json
    python benchmarks/bench_tutorial.py --runners book:float32,xpnet:float32,fit:float32:1,fit:float32:8,fit:float32:32

``fit:DTYPE:BATCH`` runners time ``Sequential.fit`` on the same network and data (issue 10's comparison:
the general path against the book's per-sample code). ``floor:DTYPE`` is the book's arithmetic hand-fused
to the fewest weight-sized passes NumPy allows (``FloorRunner``): how fast any per-sample NumPy code that
forms the outer-product updates can be.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_mlp  # noqa: E402  (data loading, thread settings, peak-memory helper)


# -- the book's class, verbatim (seed 002: __init__, train and query; float32 is only a cast) ---------------
class BookNetwork:
    def __init__(self, inputnodes, hiddennodes, outputnodes, learningrate):
        import numpy
        import scipy.special

        self.inodes = inputnodes
        self.hnodes = hiddennodes
        self.onodes = outputnodes
        self.wih = numpy.random.normal(0.0, pow(self.hnodes, -0.5), (self.hnodes, self.inodes))
        self.who = numpy.random.normal(0.0, pow(self.onodes, -0.5), (self.onodes, self.hnodes))
        self.lr = learningrate
        self.activation_function = lambda x: scipy.special.expit(x)

    def train(self, inputs_list, targets_list):
        import numpy

        # convert inputs list to 2d array
        inputs = numpy.array(inputs_list, ndmin=2).T
        targets = numpy.array(targets_list, ndmin=2).T

        # calculate signals into hidden layer
        hidden_inputs = numpy.dot(self.wih, inputs)
        # calculate the signals emerging from hidden layer
        hidden_outputs = self.activation_function(hidden_inputs)

        # calculate signals into final output layer
        final_inputs = numpy.dot(self.who, hidden_outputs)
        # calculate the signals emerging from final output layer
        final_outputs = self.activation_function(final_inputs)

        # output layer error is the (target - actual)
        output_errors = targets - final_outputs
        # hidden layer error is the output_errors, split by weights, recombined at hidden nodes
        hidden_errors = numpy.dot(self.who.T, output_errors)

        # update the weights for the links between the hidden and output layers
        self.who += self.lr * numpy.dot((output_errors * final_outputs * (1.0 - final_outputs)),
                                        numpy.transpose(hidden_outputs))

        # update the weights for the links between the input and hidden layers
        self.wih += self.lr * numpy.dot((hidden_errors * hidden_outputs * (1.0 - hidden_outputs)),
                                        numpy.transpose(inputs))


# -- runners --------------------------------------------------------------------------------------------------
class BookRunner:
    uses_numpy = True

    def __init__(self, dtype, args):
        self.dtype, self.name = dtype, f"book {dtype}"
        self.net = BookNetwork(784, args.hidden, 10, args.lr)

    def reset(self, wih, who):
        self.net.wih, self.net.who = wih.astype(self.dtype), who.astype(self.dtype)

    def train(self, X, T):
        for x, t in zip(X, T):
            self.net.train(x, t)

    def weights(self):
        return self.net.wih, self.net.who


class FloorRunner:
    """The book's arithmetic with the fewest passes NumPy allows: the per-sample floor of any implementation
    that forms each outer-product update (NumPy exposes no BLAS rank-1 update, ``ger``).

    Per sample and 784x200 weight matrix, the book reads it once forward and then makes three
    weight-sized passes for ``wih += lr * numpy.dot(delta, x.T)``: the product, ``lr *`` it, the add.
    Here ``lr`` goes into the 200-vector first, the product lands in one reused buffer and is added in
    place: the forward read, one write, one add (read both, write one). Not xpnet code: a yardstick.
    """

    uses_numpy = True

    def __init__(self, dtype, args):
        import scipy.special  # noqa: F401  (imported here, as the book's class does: not in the timed pass)

        self.dtype, self.name, self.lr = dtype, f"floor {dtype} (hand-fused)", args.lr

    def reset(self, wih, who):
        import numpy as np

        self.wih, self.who = wih.astype(self.dtype), who.astype(self.dtype)
        self.buf_ih, self.buf_ho = np.empty_like(self.wih), np.empty_like(self.who)

    def train(self, X, T):
        import numpy as np
        from scipy.special import expit

        wih, who, lr, buf_ih, buf_ho = self.wih, self.who, self.dtype_lr(), self.buf_ih, self.buf_ho
        for x, t in zip(X, T):
            x, t = x[:, None], t[:, None]
            h = expit(wih @ x)
            o = expit(who @ h)
            e = t - o
            he = who.T @ e                           # before who changes, as in the book
            np.dot(lr * (e * o * (1.0 - o)), h.T, out=buf_ho)
            who += buf_ho
            np.dot(lr * (he * h * (1.0 - h)), x.T, out=buf_ih)
            wih += buf_ih

    def dtype_lr(self):
        import numpy as np

        return np.asarray(self.lr, self.dtype)   # a 0-D array: keeps float32 vectors float32

    def weights(self):
        return self.wih, self.who


class XpnetTutorialRunner:
    def __init__(self, dtype, args):
        from xpnet.tutorial import NeuralNetwork

        self.dtype, self.name = dtype, f"xpnet {dtype} ({args.backend or 'numpy'})"
        self.net = NeuralNetwork(784, args.hidden, 10, args.lr, device=args.device, backend=args.backend,
                                 seed=args.seed, dtype=dtype)
        self.uses_numpy = self.net.device.backend in ("numpy", "array-api-strict")

    def reset(self, wih, who):
        self.net.wih, self.net.who = wih, who   # stored as copies on the device, in dtype

    def train(self, X, T):
        for x, t in zip(X, T):
            self.net.train(x, t)
        self.net.device.synchronize()

    def weights(self):
        from xpnet import to_numpy

        return to_numpy(self.net.wih), to_numpy(self.net.who)


class XpnetFitRunner:
    """``Sequential.fit`` on the same network, ``batch`` samples a step: the general path, not the tutorial class.

    Its math is the exact gradient of 1/2 (t - o)^2 (the book drops the output sigmoid's slope from the
    hidden error), so weights differ from the book's after the first step; the time is what counts here.
    """

    def __init__(self, dtype, args, batch):
        import xpnet

        self.dtype, self.batch, self.name = dtype, batch, f"xpnet fit batch {batch} {dtype}"
        self.model = xpnet.Sequential([xpnet.Dense(784, args.hidden), xpnet.Sigmoid(), xpnet.Dense(args.hidden, 10),
                                       xpnet.Sigmoid()], device=args.device, backend=args.backend, seed=args.seed,
                                      dtype=dtype)
        self.optimizer = xpnet.SGD(args.lr)
        self.uses_numpy = self.model.device.backend in ("numpy", "array-api-strict")

    def reset(self, wih, who):  # the book's (out, in) matrices are Dense's W transposed; biases start at 0
        import numpy as np

        self.model.load_state_dict({"0.W": wih.T, "0.b": np.zeros(wih.shape[0]), "2.W": who.T,
                                    "2.b": np.zeros(who.shape[0])})

    def train(self, X, T):
        self.model.fit(X, T, loss="mse", optimizer=self.optimizer, epochs=1, batch_size=self.batch,
                       shuffle=False, verbose=0)
        self.model.device.synchronize()

    def weights(self):
        state = self.model.state_dict()
        return state["0.W"].T, state["2.W"].T


RUNNERS = ("book:float64", "book:float32", "xpnet:float32", "xpnet:float64")
FIT_RUNNERS = ("fit:float32:1", "fit:float32:8", "fit:float32:32", "floor:float32")


def make_runner(rid, args):
    kind, _, rest = rid.partition(":")
    if kind == "fit":
        dtype, _, batch = rest.partition(":")
        return XpnetFitRunner(dtype, args, int(batch or 1))
    return {"book": BookRunner, "floor": FloorRunner}.get(kind, XpnetTutorialRunner)(rest, args)


def book_data(args, dtype):
    """The first ``--samples`` training images as the book scales them, in ``dtype``, and the test set."""
    import numpy as np

    X, y, Xt, yt = bench_mlp.load_mnist(args.data_dir)
    n = args.samples
    # inputs = (numpy.asfarray(all_values[1:]) / 255.0 * 0.99) + 0.01; X is already pixel / 255
    inputs = (X[:n].astype(np.float64) * 0.99 + 0.01).astype(dtype)
    targets = np.full((n, 10), 0.01, dtype)
    targets[np.arange(n), y[:n]] = 0.99
    return inputs, targets, (Xt.astype(np.float64) * 0.99 + 0.01), yt


def initial_weights(args):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    wih = rng.normal(0.0, args.hidden ** -0.5, (args.hidden, 784))
    who = rng.normal(0.0, 10 ** -0.5, (10, args.hidden))
    return wih, who


def test_accuracy(wih, who, Xt, yt):
    import numpy as np

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    out = sigmoid(who.astype(np.float64) @ sigmoid(wih.astype(np.float64) @ Xt.T))
    return float((out.argmax(axis=0) == yt).mean())


# -- memory: one fresh process per runner ------------------------------------------------------------------
def child_memory(args):
    wih, who = initial_weights(args)
    runner = make_runner(args.child, args)
    X, T, _, _ = book_data(args, runner.dtype)
    limits = bench_mlp.limit_threads(args.threads)  # noqa: F841  (keeps the limits set)
    # a few samples first, as the timed runs' warm-up: what a pass adds, not the libraries it loads on first
    # use (fit's SciPy BLAS, 8.5 MiB once per process)
    runner.reset(wih, who)
    runner.train(X[:10], T[:10])
    runner.reset(wih, who)
    with bench_mlp.PeakRSS() as peak:
        runner.train(X, T)
    out = {"rss_peak_delta_bytes": peak.delta, "rss_method": peak.method}
    if runner.uses_numpy:
        import tracemalloc

        runner.reset(wih, who)
        tracemalloc.start()
        runner.train(X, T)
        out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(json.dumps(out))


def measure_memory(rid, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", rid, "--samples", str(args.samples),
           "--hidden", str(args.hidden), "--lr", str(args.lr), "--seed", str(args.seed),
           "--threads", str(args.threads), "--device", args.device]
    if args.backend:
        cmd += ["--backend", args.backend]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"# memory run of {rid} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=5000, help="training samples per timed pass (default 5000)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every library")
    p.add_argument("--device", default="cpu", help="xpnet's device (the book runs on NumPy)")
    p.add_argument("--backend", default=None, help="xpnet's backend (default: the device's)")
    p.add_argument("--runners", default=",".join(RUNNERS),
                   help=f"subset of {','.join(RUNNERS + FIT_RUNNERS)} (fit:DTYPE:BATCH, any batch)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: perf_counter (default); cpu: the process's CPU time, which waiting for a core on a "
                        "loaded machine does not inflate (with --threads 1, the pass's own work)")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bench_mlp.set_threads(args.threads)
    if args.child:
        return child_memory(args)

    env = bench_mlp.environment(argparse.Namespace(threads=args.threads, device=args.device))
    print("# " + ", ".join(f"{k} {v}" for k, v in env.items()))
    ids = args.runners.split(",")
    wih, who = initial_weights(args)
    runners = {rid: make_runner(rid, args) for rid in ids}
    data = {dt: book_data(args, dt) for dt in {r.dtype for r in runners.values()}}
    limits = bench_mlp.limit_threads(args.threads)  # noqa: F841  (keeps the limits set)
    print(f"# threads: {bench_mlp.thread_report()}")
    for rid, r in runners.items():   # warm-up: 200 samples each
        r.reset(wih, who)
        r.train(data[r.dtype][0][:200], data[r.dtype][1][:200])
    times = {rid: [] for rid in ids}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for rep in range(args.repeats):
        for rid in (ids if rep % 2 == 0 else ids[::-1]):
            r = runners[rid]
            r.reset(wih, who)
            start = clock()
            r.train(data[r.dtype][0], data[r.dtype][1])
            times[rid].append(clock() - start)
    ref_w = runners["book:float64"].weights() if "book:float64" in runners else None
    _, _, Xt, yt = next(iter(data.values()))
    rows = {}
    for rid, r in runners.items():
        w = r.weights()
        med = statistics.median(times[rid])
        rows[rid] = {"runner": r.name, "seconds": med, "best_seconds": min(times[rid]), "all_seconds": times[rid],
                     "samples_per_s": args.samples / med, "test_accuracy": test_accuracy(*w, Xt, yt)}
        if ref_w is not None:
            rows[rid]["max_weight_diff_vs_book_f64"] = max(float(abs(a.astype("float64") - b).max())
                                                           for a, b in zip(w, ref_w))
        if not args.no_memory:
            rows[rid].update(measure_memory(rid, args))

    base = rows.get("book:float32") or rows[ids[0]]
    for r in rows.values():  # the median over repeats of this runner's time / the book's in the same repeat
        r["paired_vs_book_f32"] = statistics.median(a / b for a, b in zip(r["all_seconds"], base["all_seconds"]))
    print(f"\n{args.samples} samples, 784-{args.hidden}-10 sigmoid, lr {args.lr}, one sample per step, "
          f"median of {args.repeats}, {args.clock} clock")
    print(f"{'runner':28s} {'seconds':>8s} {'best':>7s} {'samples/s':>10s} {'vs book f32':>11s} "
          f"{'paired':>7s} {'peak RSS delta':>15s} {'tracemalloc':>11s} {'max |dW|':>9s} {'test acc':>8s}")
    for r in rows.values():
        print(f"{r['runner']:28s} {r['seconds']:8.3f} {r['best_seconds']:7.3f} {r['samples_per_s']:10,.0f} "
              f"{r['seconds'] / base['seconds']:10.2f}x {r['paired_vs_book_f32']:6.2f}x "
              f"{bench_mlp._mib(r.get('rss_peak_delta_bytes')):>15s} "
              f"{bench_mlp._mib(r.get('tracemalloc_peak_bytes')):>11s} "
              f"{r.get('max_weight_diff_vs_book_f64', float('nan')):9.1e} {r['test_accuracy']:8.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "args": vars(args), "runners": rows}, f, indent=1)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
