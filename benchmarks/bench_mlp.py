#!/usr/bin/env python
"""MLP training speed, side by side: xpnet against PyTorch, scikit-learn, a plain NumPy loop (and CuPy).

Every runner trains the same network (``--layers 784,256,10``: Dense-ReLU-...-Dense, softmax
cross-entropy, plain SGD, lr 0.1) from the same initial weights, on the same MNIST data, in the same
batch order: one host permutation per epoch, drawn once and shared by all runners. Each runner lives in
its own warm worker process (so the libraries' thread pools never meet), and the timed runs are
interleaved A B C, C B A, ... after one warm-up epoch each, so a slow stretch of the machine hits every
runner alike. The table gives the median and best seconds per epoch; ``xpnet / peer`` ratios come from
the same invocation: ratio of medians, median of the per-repeat ratios ("paired"), ratio of bests.

    python benchmarks/bench_mlp.py                              # CPU: xpnet (NumPy) and every peer installed
    python benchmarks/bench_mlp.py --batch-size 32,128,1024 --repeats 7 --json bench.json
    python benchmarks/bench_mlp.py --backend numpy,torch,array-api-strict --peers numpy
    python benchmarks/bench_mlp.py --device cuda                # GPU: xpnet (CuPy), raw CuPy loop, torch CUDA

Runners: ``xpnet`` is ``Sequential.fit(X, y, epochs=--epochs)`` as a user calls it (input checks
included); ``numpy`` is ``plain_loop`` below, the hand-written floor reference; ``torch`` an idiomatic
``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.SGD`` loop (the loss summed on the device); ``sklearn``
``MLPClassifier(solver="sgd", momentum=0, alpha=0)`` fitted one epoch per call; ``cupy`` the plain loop
on CuPy. Timing is ``time.perf_counter`` around a whole pass, after the device is synchronized.

Threads: ``--threads N`` (default: all cores) is set for every library before it is imported
(``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``), then again through threadpoolctl
and ``torch.set_num_threads``; the table lists what each worker's libraries report.

Shared machines: a worker reports how many cores other processes used during each run (``/proc/stat``
minus its own CPU time), and times a fixed ~20 ms calibration workload before and after it (a virtual
machine's host can take its cores away for seconds, invisibly). A run with more than ``--max-foreign``
cores of other work, or whose calibration ran more than ``--max-slowdown`` slower than the fastest seen,
is repeated, up to ``--retries`` times; the JSON lists every discarded run.

Memory: each runner is also run once in a fresh subprocess (``--no-memory`` skips it). On the CPU it
reports the peak resident-set growth of one cold ``--epochs`` fit: ``/proc/self/clear_refs`` resets the
kernel's high-water mark after data, libraries and weights are loaded, and ``VmHWM - VmRSS`` is read
afterwards (Linux; elsewhere a 1 ms psutil sampler). For runners that allocate through NumPy it also
reports the tracemalloc peak of a second fit (exact array bytes, no allocator slack). On a GPU it reports
two figures, the pools emptied first: ``held``, what the library's memory pool took from the driver (CuPy's
``MemoryPool.total_bytes()``, torch's ``max_memory_reserved``: the comparable pair, and the one the ratios
use), and ``used peak``, the most bytes live in arrays at once (torch's ``max_memory_allocated``; CuPy's
pool keeps no such peak, so it is blank there).

Data: MNIST IDX files from ``--data-dir`` (a folder holding ``mnist/`` or the IDX files themselves;
default ``$XPNET_DATA``), else ``xpnet.datasets.load_mnist``. This is not part of the test suite.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings

PEERS_CPU = ("numpy", "torch", "sklearn")
PEERS_CUDA = ("cupy", "torch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--backend", default=None,
                   help="xpnet backend(s), comma-separated: numpy, torch, array-api-strict, cupy "
                        "(default: numpy on cpu, cupy on cuda)")
    p.add_argument("--peers", default=None,
                   help="comma-separated subset of numpy,torch,sklearn,gemm (cpu) or cupy,torch (cuda); "
                        "default: numpy,torch,sklearn, those installed; 'none' for xpnet alone. gemm: the "
                        "step's matrix products alone (the floor), reported with each runner's distance above it. "
                        "xpnet-threads: xpnet's fit with distributed=Threads(--threads)")
    p.add_argument("--batch-size", default="128", help="one or more, comma-separated (e.g. 32,128,1024)")
    p.add_argument("--layers", default="784,256,10", help="layer widths; first 784 (MNIST), last 10")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per repeat (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per runner (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up epochs per runner (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every library")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (or with mnist/)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-runner memory subprocesses")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--max-foreign", type=float, default=0.1,
                   help="repeat a run when other processes used more than this many cores meanwhile (0.1)")
    p.add_argument("--max-slowdown", type=float, default=0.15,
                   help="repeat a run when a fixed calibration workload around it ran this much slower "
                        "than its fastest (0.15 = 15%%)")
    p.add_argument("--retries", type=int, default=3, help="repeats of a disturbed run before it counts (3)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: perf_counter around a pass (default); cpu: the process's CPU time "
                        "(time.process_time), which waiting for a core on a loaded machine does not inflate. "
                        "With --threads 1 it is the pass's own work; with more it adds spinning BLAS workers")
    p.add_argument("--pause", type=float, default=0.3,
                   help="seconds of idle before each timed run, so spinning BLAS/OpenMP threads sleep (0.3)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)   # memory run of one runner
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # timed runs of one runner
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_size.split(",")]
    args.sizes = [int(s) for s in args.layers.split(",")]
    if len(args.sizes) < 2 or args.sizes[0] != 784 or args.sizes[-1] != 10:
        p.error("--layers must start with 784 and end with 10 (MNIST), e.g. 784,256,10")
    args.cuda = args.device.startswith("cuda")
    return args


def set_threads(n: int) -> None:
    # Read by OpenBLAS, MKL and OpenMP when they load: must happen before numpy/torch are imported.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def limit_threads(n: int):
    """Apply ``n`` again to every thread pool loaded by now (threadpoolctl), in case a library ignored the env."""
    if _installed("threadpoolctl"):
        from threadpoolctl import threadpool_limits

        return threadpool_limits(n)
    return None


# -- data and initial weights (host NumPy) ---------------------------------------------------------------
def load_mnist(data_dir):
    import numpy as np

    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    for base in [d for d in (data_dir, os.environ.get("XPNET_DATA")) if d]:
        for folder in (os.path.join(base, "mnist"), base):
            paths = [os.path.join(folder, n + ".gz") for n in names]
            if all(os.path.exists(q) for q in paths):
                raw = [gzip.open(q).read() for q in paths]
                # IDX: magic (2 zero bytes, dtype 8 = uint8, ndim), then ndim big-endian int32 sizes.
                arrays = [np.frombuffer(b, np.uint8, offset=4 + 4 * b[3]) for b in raw]
                X, Xt = (a.reshape(-1, 784).astype(np.float32) / np.float32(255) for a in arrays[::2])
                y, yt = (a.astype(np.int64) for a in arrays[1::2])
                return X, y, Xt, yt
    from xpnet.datasets import load_mnist as xpnet_load

    (X, y), (Xt, yt) = xpnet_load(download=False)
    return (np.ascontiguousarray(X, dtype=np.float32), y.astype(np.int64),
            np.ascontiguousarray(Xt, dtype=np.float32), yt.astype(np.int64))


def initial_weights(sizes, seed):
    """He-normal weights for the ReLU layers, LeCun-normal for the output layer, zero biases (float32)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    Ws, bs = [], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        std = (2.0 / a) ** 0.5 if i < len(sizes) - 2 else (1.0 / a) ** 0.5
        Ws.append(rng.normal(0.0, std, size=(a, b)).astype(np.float32))
        bs.append(np.zeros(b, np.float32))
    return Ws, bs


# -- the floor reference: a plain batched NumPy loop (CuPy runs the same code) -----------------------------
def plain_loop(xp, X, y, Ws, bs, perms, batch, lr):
    """Train ``len(perms)`` epochs of Dense-ReLU-...-Dense + softmax cross-entropy with SGD, in place.

    What a careful NumPy programmer writes by hand: fancy-index gathers, in-place bias/ReLU/softmax on
    buffers it just made, the one-hot subtracted by indexing, no input gradient for the first layer.
    ``xp`` is ``numpy`` or ``cupy``; ``Ws``/``bs`` are lists of arrays updated in place. Returns the
    mean training loss of the last epoch (kept on the device until then).
    """
    n, last = X.shape[0], len(Ws) - 1
    for perm in perms:
        order = xp.asarray(perm)
        total = 0.0
        for lo in range(0, n, batch):
            idx = order[lo:lo + batch]
            xb, yb = X[idx], y[idx]
            m = xb.shape[0]
            acts = [xb]                                   # inputs of each Dense layer
            for W, b in zip(Ws[:-1], bs[:-1]):
                h = acts[-1] @ W
                h += b
                xp.maximum(h, 0.0, out=h)
                acts.append(h)
            z = acts[-1] @ Ws[-1]
            z += bs[-1]
            # p = softmax(z) in place; loss = -mean log p[y]; dL/dz = (p - onehot(y)) / m
            z -= z.max(axis=1, keepdims=True)
            xp.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            rows = xp.arange(m)
            total = total - xp.log(z[rows, yb]).sum()
            z[rows, yb] -= 1.0
            z /= m
            d = z
            for i in range(last, -1, -1):
                dW, db = acts[i].T @ d, d.sum(axis=0)
                if i:
                    d = d @ Ws[i].T
                    d *= acts[i] > 0
                Ws[i] -= lr * dW
                bs[i] -= lr * db
    return float(total) / n


# -- runners: setup (untimed), reset to the initial weights (untimed), train (timed), accuracy ---------------
class XpnetRunner:
    def __init__(self, backend, args, threads=None):
        import xpnet
        from xpnet.distributed import Threads

        self.xpnet, self.args = xpnet, args
        self.distributed = Threads(threads) if threads else None
        self.name = f"xpnet ({backend})" if threads is None else f"xpnet ({backend}, Threads({threads}))"
        self.uses_numpy = backend in ("numpy", "array-api-strict")
        sizes = args.sizes
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(xpnet.Dense(a, b))
            if i < len(sizes) - 2:
                layers.append(xpnet.ReLU())
        self.model = xpnet.Sequential(layers, device=args.device, backend=backend, seed=args.seed)
        self.device = self.model.device

    def setup(self, X, y):
        # Moved to the device once, as a user would; on NumPy this is the caller's array, not a copy.
        self.X, self.y = self.device.asarray(X), self.device.asarray(y, "int64")

    def reset(self, Ws, bs):
        state = {}
        for i, (W, b) in enumerate(zip(Ws, bs)):
            state[f"{2 * i}.W"], state[f"{2 * i}.b"] = W.copy(), b.copy()  # SGD updates them in place
        self.model.load_state_dict(state)

    def train(self, perms, batch):
        self.model.rng = SharedOrder(perms)
        history = self.model.fit(self.X, self.y, loss=self.xpnet.SoftmaxCrossEntropy(),
                                 optimizer=self.xpnet.SGD(self.args.lr), epochs=len(perms),
                                 batch_size=batch, verbose=0, distributed=self.distributed)
        self.xpnet.synchronize(self.device)
        return history["loss"][-1]

    def accuracy(self, Xt, yt):
        return self.model.evaluate(Xt, yt)["accuracy"]

    def gpu_memory(self):
        from xpnet import backend

        used = None
        if self.device.backend == "torch":  # xpnet's pool figure is torch's reserved; its live peak too
            import torch

            used = torch.cuda.max_memory_allocated(self.device.native)
        return {"gpu_held_bytes": backend.memory_pool_bytes(self.device), "gpu_used_peak_bytes": used}


def SharedOrder(perms):
    """Stands in for the model's host generator inside ``fit``, so xpnet shuffles with the shared permutations.

    A ``numpy.random.Generator`` (fit's ``distributed=Threads(n)`` reads and sets its state, and copies it
    for each rank: every copy goes on with the same permutations). Made by a function because NumPy is
    imported only after the thread settings."""
    import numpy as np

    class _SharedOrder(np.random.Generator):
        def __init__(self, perms, start=0):
            super().__init__(np.random.PCG64(0))
            self._perms, self._next = list(perms), start

        def permutation(self, n):
            perm = self._perms[self._next]
            self._next += 1
            assert perm.shape[0] == n
            return perm

        def __deepcopy__(self, memo):
            return _SharedOrder(self._perms, self._next)

    return _SharedOrder(perms)


class PlainLoopRunner:
    def __init__(self, args, cuda):
        import numpy as np

        self.args, self.uses_numpy = args, not cuda
        if cuda:
            import cupy

            self.xp, self.name = cupy, "CuPy loop"
            cupy.cuda.Device(int(args.device.partition(":")[2] or 0)).use()
        else:
            self.xp, self.name = np, "NumPy loop"

    def setup(self, X, y):
        self.X, self.y = self.xp.asarray(X), self.xp.asarray(y)

    def reset(self, Ws, bs):
        self.Ws = [self.xp.asarray(W).copy() for W in Ws]
        self.bs = [self.xp.asarray(b).copy() for b in bs]

    def train(self, perms, batch):
        loss = plain_loop(self.xp, self.X, self.y, self.Ws, self.bs, perms, batch, self.args.lr)
        self.synchronize()
        return loss

    def synchronize(self):
        if self.xp.__name__ == "cupy":
            self.xp.cuda.Device().synchronize()

    def accuracy(self, Xt, yt):
        h = self.xp.asarray(Xt)
        for W, b in zip(self.Ws[:-1], self.bs[:-1]):
            h = self.xp.maximum(h @ W + b, 0.0)
        pred = self.xp.argmax(h @ self.Ws[-1] + self.bs[-1], axis=1)
        return float((pred == self.xp.asarray(yt)).mean())

    def gpu_memory(self):
        return {"gpu_held_bytes": self.xp.get_default_memory_pool().total_bytes(), "gpu_used_peak_bytes": None}


class GemmFloorRunner:
    """The step's matrix products alone, on NumPy, at the shapes of every step of an epoch: the floor.

    Per Dense layer ``i``: ``a_i @ W_i`` forward, ``a_i.T @ d_i`` for dW, and ``d_i @ W_i.T`` for the input
    gradient (not for the first layer, as in the other runners). Nothing else: no gather, activation,
    loss, bias or update. The arrays are made once, so it runs from cache as the others cannot; the
    distance of each runner above it is what its framework and its elementwise work cost.
    """

    def __init__(self, args):
        self.args, self.uses_numpy, self.name = args, True, "GEMM floor (NumPy)"

    def setup(self, X, y):
        self.n = X.shape[0]

    def reset(self, Ws, bs):
        self.Ws = [W.copy() for W in Ws]

    def train(self, perms, batch):
        import numpy as np

        rng = np.random.default_rng(0)
        sizes = self.args.sizes
        full = {m: ([rng.random((m, k), dtype=np.float32) for k in sizes],
                    [rng.random((m, k), dtype=np.float32) for k in sizes[1:]])
                for m in {batch, self.n % batch or batch}}
        for _ in perms:
            for lo in range(0, self.n, batch):
                acts, ds = full[min(batch, self.n - lo)]
                for i, W in enumerate(self.Ws):
                    acts[i] @ W
                    acts[i].T @ ds[i]
                    if i:
                        ds[i] @ W.T
        return float("nan")

    def accuracy(self, Xt, yt):
        return float("nan")


class TorchRunner:
    def __init__(self, args):
        import torch

        self.torch, self.args, self.uses_numpy = torch, args, False
        torch.set_num_threads(args.threads)   # intra-op pool, as for the BLAS of the other runners
        self.dev = torch.device(args.device)
        self.name = f"PyTorch {'CUDA' if args.cuda else 'CPU'}"
        sizes, mods = args.sizes, []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*mods).to(self.dev)
        self.linears = [m for m in mods if isinstance(m, torch.nn.Linear)]

    def setup(self, X, y):
        self.X, self.y = self.torch.from_numpy(X).to(self.dev), self.torch.from_numpy(y).to(self.dev)

    def reset(self, Ws, bs):
        with self.torch.no_grad():
            for lin, W, b in zip(self.linears, Ws, bs):
                lin.weight.copy_(self.torch.from_numpy(W.T))   # torch stores (out, in)
                lin.bias.copy_(self.torch.from_numpy(b))

    def train(self, perms, batch):
        torch = self.torch
        opt = torch.optim.SGD(self.net.parameters(), lr=self.args.lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        n = self.X.shape[0]
        for perm in perms:
            order = torch.from_numpy(perm).to(self.dev)
            total = torch.zeros((), device=self.dev)
            for lo in range(0, n, batch):
                idx = order[lo:lo + batch]
                xb, yb = self.X.index_select(0, idx), self.y.index_select(0, idx)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(self.net(xb), yb)
                loss.backward()
                opt.step()
                total += loss.detach() * xb.shape[0]   # stays on the device: no sync per step
        self.synchronize()
        return float(total) / n

    def synchronize(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize(self.dev)

    def accuracy(self, Xt, yt):
        with self.torch.no_grad():
            out = self.net(self.torch.from_numpy(Xt).to(self.dev))
            return float((out.argmax(1).cpu().numpy() == yt).mean())

    def gpu_memory(self):
        return {"gpu_held_bytes": self.torch.cuda.max_memory_reserved(self.dev),
                "gpu_used_peak_bytes": self.torch.cuda.max_memory_allocated(self.dev)}


class SklearnRunner:
    """``MLPClassifier`` with plain SGD; each epoch is ``fit(X[perm], y[perm])`` with ``max_iter=1``.

    ``shuffle=False`` and the gather ``X[perm]`` inside the timed region stand in for scikit-learn's own
    per-epoch shuffle (which also copies the data), so the batch order is the shared one.
    """

    name = "scikit-learn MLP"
    uses_numpy = True

    def __init__(self, args, batch):
        from sklearn.neural_network import MLPClassifier

        self.clf = MLPClassifier(hidden_layer_sizes=tuple(args.sizes[1:-1]), activation="relu", solver="sgd",
                                 alpha=0.0, batch_size=batch, learning_rate="constant",
                                 learning_rate_init=args.lr, momentum=0.0, nesterovs_momentum=False,
                                 shuffle=False, max_iter=1, warm_start=True, tol=0.0,
                                 n_iter_no_change=10 ** 9, random_state=args.seed)

    def setup(self, X, y):
        import numpy as np

        self.X, self.y = X, y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(X[:64], y[:64], classes=np.arange(10))   # builds coefs_ (then reset)

    def reset(self, Ws, bs):
        self.clf.coefs_ = [W.copy() for W in Ws]
        self.clf.intercepts_ = [b.copy() for b in bs]

    def train(self, perms, batch):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # ConvergenceWarning after each max_iter=1 fit
            for perm in perms:
                self.clf.fit(self.X[perm], self.y[perm])
        return self.clf.loss_curve_[-1]

    def accuracy(self, Xt, yt):
        return float((self.clf.predict(Xt) == yt).mean())


def make_runner(rid, args, batch):
    kind, _, backend = rid.partition(":")
    if kind == "xpnet":
        return XpnetRunner(backend, args)
    if kind == "xpnet-threads":  # fit(distributed=Threads(--threads)): each thread its shard of every batch
        return XpnetRunner(backend, args, threads=args.threads)
    if kind in ("numpy", "cupy"):
        return PlainLoopRunner(args, cuda=kind == "cupy")
    if kind == "torch":
        return TorchRunner(args)
    if kind == "gemm":
        return GemmFloorRunner(args)
    if kind == "sklearn":
        return SklearnRunner(args, batch)
    raise ValueError(f"unknown runner {rid!r}")


def _installed(module):
    try:
        __import__(module)
        return True
    except Exception:
        return False


def runner_ids(args):
    backends = (args.backend or ("cupy" if args.cuda else "numpy")).split(",")
    ids = [f"xpnet:{b.strip()}" for b in backends]
    if args.peers == "none":
        return ids
    wanted = args.peers.split(",") if args.peers else (PEERS_CUDA if args.cuda else PEERS_CPU)
    module = {"numpy": "numpy", "cupy": "cupy", "torch": "torch", "sklearn": "sklearn", "gemm": "numpy",
              "xpnet-threads": "threadpoolctl"}
    for peer in wanted:
        if peer not in module:
            raise SystemExit(f"unknown peer {peer!r}: choose from numpy, torch, sklearn, gemm, cupy, xpnet-threads")
        if args.cuda and peer in ("numpy", "sklearn", "gemm", "xpnet-threads"):
            continue  # CPU-only peers have no place in a GPU table
        if not _installed(module[peer]):
            print(f"# peer {peer}: not installed, skipped", file=sys.stderr)
        elif args.cuda and peer == "torch" and not __import__("torch").cuda.is_available():
            print("# peer torch: this PyTorch sees no CUDA device, skipped", file=sys.stderr)
        else:
            ids.append("xpnet-threads:numpy" if peer == "xpnet-threads" else peer)
    return ids


# -- memory, one runner per fresh process -----------------------------------------------------------------
def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


class PeakRSS:
    """Peak resident-set growth over a block: the kernel's high-water mark, reset on entry (Linux)."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")   # resets VmHWM to the current VmRSS
            self.base, self.sampler = _proc_status("VmRSS"), None
            self.method = "VmHWM after clear_refs"
        except OSError:
            import psutil

            proc, self.stop, self.peak = psutil.Process(), threading.Event(), 0
            self.base, self.method = proc.memory_info().rss, "psutil 1 ms sampler"

            def sample():
                while not self.stop.is_set():
                    self.peak = max(self.peak, proc.memory_info().rss)
                    time.sleep(0.001)

            self.sampler = threading.Thread(target=sample, daemon=True)
            self.sampler.start()
        return self

    def __exit__(self, *exc):
        if self.sampler is None:
            self.delta = _proc_status("VmHWM") - self.base
        else:
            self.stop.set()
            self.sampler.join()
            self.delta = self.peak - self.base


def child_memory(args):
    """Run in a fresh process: one cold fit of ``--epochs`` epochs, print its peak memory as JSON."""
    import numpy as np

    batch = args.batch_sizes[0]
    X, y, _, _ = load_mnist(args.data_dir)
    Ws, bs = initial_weights(args.sizes, args.seed)
    perms = [np.random.default_rng(args.seed + 1 + e).permutation(X.shape[0]) for e in range(args.epochs)]
    runner = make_runner(args.child, args, batch)
    runner.setup(X, y)
    limits = limit_threads(args.threads)  # noqa: F841  (keeps the limits set)
    runner.reset(Ws, bs)
    out = {"memory_run": args.child}
    if args.cuda:
        _free_gpu_pools(runner)
        runner.train(perms, batch)
        out.update(runner.gpu_memory())
    else:
        with PeakRSS() as peak:
            runner.train(perms, batch)
        out["rss_peak_delta_bytes"], out["rss_method"] = peak.delta, peak.method
        if runner.uses_numpy:
            import tracemalloc

            runner.reset(Ws, bs)
            tracemalloc.start()
            runner.train(perms, batch)
            out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    print(json.dumps(out))


def _free_gpu_pools(runner):
    if _installed("cupy"):
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    if _installed("torch"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def measure_memory(rid, batch, args):
    cmd = _command(args, "--child", rid, batch)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"# memory run of {rid} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the timed, interleaved runs: one warm worker process per runner ------------------------------------------
def worker(args):
    """A runner in its own process: set up, warm up, then train/answer on each command read from stdin.

    Separate processes keep the libraries' thread pools apart: OpenBLAS workers spin for a while after
    each call, and a spinning pool of one library would steal a core from the next runner.
    """
    import numpy as np

    batch = args.batch_sizes[0]
    X, y, Xt, yt = load_mnist(args.data_dir)
    Ws, bs = initial_weights(args.sizes, args.seed)
    perms = [np.random.default_rng(args.seed + 1 + e).permutation(X.shape[0]) for e in range(args.epochs)]
    runner = make_runner(args.worker, args, batch)
    runner.setup(X, y)
    limits = limit_threads(args.threads)  # noqa: F841  (keeps the limits set)
    if args.warmup:
        runner.reset(Ws, bs)
        runner.train(perms[:1] * args.warmup, batch)
    calibration = min(machine_speed() for _ in range(5))
    print(json.dumps({"name": runner.name, "threads": thread_report(), "calibration": calibration}), flush=True)
    for line in sys.stdin:
        if line.strip() == "train":
            runner.reset(Ws, bs)
            before = machine_speed()
            load = ForeignLoad()
            start, cpu = time.perf_counter(), time.process_time()
            loss = runner.train(perms, batch)   # synchronizes the device before returning
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            foreign = load.cores(seconds)
            if args.clock == "cpu":
                seconds = cpu
            print(json.dumps({"seconds": seconds, "loss": float(loss), "foreign": foreign,
                              "calibration": max(before, machine_speed())}), flush=True)
        elif line.strip() == "accuracy":
            print(json.dumps({"accuracy": runner.accuracy(Xt, yt)}), flush=True)
        else:
            break


def machine_speed():
    """Seconds for a fixed CPU workload (BLAS and element-wise, ~20 ms): the machine's speed right now.

    A virtual machine can lose part of its cores to its host's other guests for seconds at a time,
    which nothing inside the guest shows; every step then runs up to twice as slow. Timing the same
    small workload before and after a run tells whether the run fell into such a stretch.
    """
    import numpy as np

    a = np.full((192, 192), 0.01, np.float32)
    start = time.perf_counter()
    for _ in range(40):
        b = a @ a
        b *= 0.5
        b += a
    return time.perf_counter() - start


class ForeignLoad:
    """CPU time other processes took while this one ran, in cores (Linux ``/proc/stat``; else 0).

    A shared machine's neighbours can take a core at any moment, and a 2-thread BLAS call then waits
    for its descheduled half: one such run can take 5x longer. Runs that saw more than ``--max-foreign``
    cores of other work are repeated instead of counted.
    """

    def __init__(self):
        self.busy, self.own = self._busy(), self._own()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system

    def cores(self, seconds):
        busy = self._busy()
        if busy is None or self.busy is None or seconds <= 0:
            return 0.0
        return max(0.0, (busy - self.busy) - (self._own() - self.own)) / seconds


def _command(args, mode, rid, batch):
    cmd = [sys.executable, os.path.abspath(__file__), mode, rid, "--batch-size", str(batch),
           "--layers", args.layers, "--epochs", str(args.epochs), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--lr", str(args.lr), "--seed", str(args.seed), "--device", args.device,
           "--clock", args.clock]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    return cmd


class Worker:
    def __init__(self, rid, batch, args):
        self.proc = subprocess.Popen(_command(args, "--worker", rid, batch), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        ready = self.ask(None)
        self.name, self.threads, self.calibration = ready["name"], ready["threads"], ready["calibration"]

    def ask(self, command):
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker died (exit code {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def bench_batch(batch, ids, args):
    workers = {}
    try:
        for rid in ids:   # one at a time: set-up and warm-up do not overlap
            workers[rid] = Worker(rid, batch, args)
        times = {rid: [] for rid in ids}
        disturbed = {rid: [] for rid in ids}
        losses = {}
        fastest = min(w.calibration for w in workers.values())   # the machine at its quietest
        for rep in range(args.repeats):
            # A B C, then C B A: no runner always follows the same one.
            for rid in (ids if rep % 2 == 0 else ids[::-1]):
                for _ in range(args.retries + 1):
                    time.sleep(args.pause)   # let the last runner's spinning threads go to sleep
                    out = workers[rid].ask("train")
                    fastest = min(fastest, out["calibration"])
                    slowdown = out["calibration"] / fastest - 1.0
                    if out["foreign"] <= args.max_foreign and slowdown <= args.max_slowdown:
                        break
                    disturbed[rid].append({"seconds": out["seconds"] / args.epochs,
                                           "foreign_cores": round(out["foreign"], 2),
                                           "machine_slowdown": round(slowdown, 2)})
                    time.sleep(1.0)   # the machine is busy: give it a moment before trying again
                times[rid].append(out["seconds"] / args.epochs)   # after the retries, counted anyway
                losses[rid] = out["loss"]
        rows = {}
        for rid, w in workers.items():
            med = statistics.median(times[rid])
            rows[rid] = {"runner": w.name, "threads": w.threads, "batch_size": batch, "seconds_per_epoch": med,
                         "best_seconds_per_epoch": min(times[rid]), "all_seconds_per_epoch": times[rid],
                         "discarded_runs": disturbed[rid],
                         "samples_per_s": 60000 / med, "train_loss_last_epoch": losses[rid],
                         "test_accuracy": w.ask("accuracy")["accuracy"]}
    finally:
        for w in workers.values():
            w.close()
    if not args.no_memory:
        for rid in ids:
            if rid != "gemm":   # the floor allocates nothing per step: no memory figure to compare
                rows[rid].update(measure_memory(rid, batch, args))
    return rows


def _mib(b):
    return "-" if b is None else f"{b / 2 ** 20:.1f} MiB"


def paired_ratio(a, b):
    """Median over repeats of a's time / b's time in the same repeat (runs next to each other in time),
    which cancels slow drifts of the machine's speed that a ratio of medians keeps."""
    return statistics.median(x / y for x, y in zip(a["all_seconds_per_epoch"], b["all_seconds_per_epoch"]))


def print_table(batch, rows, args):
    xp_ids = [rid for rid in rows if rid.startswith("xpnet:")]
    ref = xp_ids[0]
    n_steps = -(-60000 // batch)
    print(f"\nbatch {batch} ({n_steps} steps/epoch), layers {args.layers}, float32, {args.device}, "
          f"median of {args.repeats} x {args.epochs} epoch(s), {args.clock} clock")
    mem_head = "GPU held   used peak" if args.cuda else "peak RSS delta  tracemalloc"
    print(f"{'runner':24s} {'s/epoch':>8s} {'best':>6s} {'samples/s':>10s}  {mem_head:>27s} {'test acc':>8s} "
          f"{'loss':>7s}  xpnet/this")
    for rid, r in rows.items():
        if args.cuda:
            mem = f"{_mib(r.get('gpu_held_bytes')):>15s} {_mib(r.get('gpu_used_peak_bytes')):>11s}"
        else:
            mem = f"{_mib(r.get('rss_peak_delta_bytes')):>15s} {_mib(r.get('tracemalloc_peak_bytes')):>11s}"
        ratio = rows[ref]["seconds_per_epoch"] / r["seconds_per_epoch"]
        print(f"{r['runner']:24s} {r['seconds_per_epoch']:8.3f} {r['best_seconds_per_epoch']:6.3f} "
              f"{r['samples_per_s']:10,.0f}  {mem} "
              f"{r['test_accuracy']:8.4f} {r['train_loss_last_epoch']:7.4f}  {ratio:.2f}x")
    print("  threads: " + "; ".join(f"{r['runner']}: {r.get('threads') or '?'}" for r in rows.values()))
    redone = {r["runner"]: len(r["discarded_runs"]) for r in rows.values()}
    if any(redone.values()):
        print(f"  runs repeated (other processes took > {args.max_foreign} cores, or the calibration "
              f"workload ran > {args.max_slowdown:.0%} slow): " + ", ".join(f"{k} {v}" for k, v in redone.items()))
    if "gemm" in rows:
        print("  above the GEMM floor (median, paired): " + ", ".join(
            f"{r['runner']} {r['seconds_per_epoch'] / rows['gemm']['seconds_per_epoch']:.2f}x, "
            f"{paired_ratio(r, rows['gemm']):.2f}x" for rid, r in rows.items() if rid != "gemm"))
    for q in ratios(rows):
        line = (f"  {q['xpnet']} / {q['peer']}: time {q['time']:.2f}x (paired {q['time_paired']:.2f}x, "
                f"best {q['time_best']:.2f}x)")
        for key, label in (("peak_rss", "peak RSS"), ("tracemalloc", "tracemalloc"), ("gpu_memory", "GPU held")):
            if key in q:
                line += f"   {label} {q[key]:.2f}x"
        print(line)


def ratios(rows):
    """xpnet / peer for every xpnet runner and every peer of one table: time (medians, paired, best), memory."""
    out = []
    for xid, x in rows.items():
        if not xid.startswith("xpnet:"):
            continue
        for rid, r in rows.items():
            if rid.startswith("xpnet:"):
                continue
            q = {"xpnet": x["runner"], "peer": r["runner"],
                 "time": x["seconds_per_epoch"] / r["seconds_per_epoch"], "time_paired": paired_ratio(x, r),
                 "time_best": x["best_seconds_per_epoch"] / r["best_seconds_per_epoch"]}
            for key, field in (("peak_rss", "rss_peak_delta_bytes"), ("tracemalloc", "tracemalloc_peak_bytes"),
                               ("gpu_memory", "gpu_held_bytes")):
                if x.get(field) and r.get(field):
                    q[key] = x[field] / r[field]
            out.append(q)
    return out


def environment(args):
    """Machine and library versions (read from package metadata: nothing heavy is imported here)."""
    import platform
    from importlib import metadata

    import numpy as np

    env = {"python": platform.python_version(), "numpy": np.__version__, "threads": args.threads,
           "cpu_count": os.cpu_count(), "device": args.device}
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        env["cpu"] = platform.processor()
    for dist in ("torch", "scikit-learn", "array-api-compat", "array-api-strict", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return env


def thread_report():
    """What the libraries loaded in this process say about their thread pools."""
    out = []
    if _installed("threadpoolctl"):
        from threadpoolctl import threadpool_info

        out = [f"{p['internal_api']} x{p['num_threads']}" for p in threadpool_info()]
    if "torch" in sys.modules:
        out.append(f"torch x{sys.modules['torch'].get_num_threads()}")
    return ", ".join(out)


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    if args.child:
        return child_memory(args)
    if args.worker:
        return worker(args)

    env = environment(args)
    print("# " + ", ".join(f"{k} {v}" for k, v in env.items()))
    ids = runner_ids(args)
    import xpnet

    for rid in ids:
        if rid.startswith("xpnet:"):
            try:
                xpnet.device(args.device, backend=rid.partition(":")[2])
            except Exception as exc:   # DeviceUnavailableError (no GPU, no CuPy) or a bad spec
                raise SystemExit(f"bench_mlp: {rid} on {args.device}: {exc}") from None
    results = {"environment": env, "args": {k: v for k, v in vars(args).items() if k not in ("child", "worker")},
               "batches": {}}
    for batch in args.batch_sizes:
        rows = bench_batch(batch, ids, args)
        print_table(batch, rows, args)
        results["batches"][str(batch)] = {"runners": rows, "ratios": ratios(rows)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
