"""Data parallel over the CPU's cores, in one process: ``fit(..., distributed=Threads(2))``.

NumPy runs every elementwise operation, copy and reduction on one core, and BLAS's own threads speed up
the products of one small layer little: on the 2-core machine of BENCHMARKS.md the MNIST CNN preset's
step ran 1.2x faster with two BLAS threads than with one. Splitting each batch over threads instead
keeps every operation of every layer busy on its own core, each thread's BLAS on one core: the preset
trained 1.4x (batch 64) and 1.6x (batch 256) faster than with two BLAS threads. A step that is mostly one
large product gains nothing (an MNIST MLP ran 1.6x slower at batch 128: the threads' per-step Python
work and all-reduce come on top).

The algorithm is the MPI data parallel's (:mod:`xpnet.distributed.data_parallel`), with threads for
ranks: rank 0 is the calling thread and trains the caller's model; ranks 1..N-1 train copies. Every
rank takes its shard of each global batch, the weighted gradients are summed over the ranks each step,
so every rank steps with the one-process gradient. The same caveats hold: BatchNorm normalizes each
shard with its own statistics, Dropout draws other masks on each rank, and the sums round differently
than one process's, so the weights match a one-thread fit to rounding, not bit for bit.

While the ranks train, BLAS and OpenMP are held to one thread each (threadpoolctl), and given back their
setting afterwards. PyTorch's own intra-op threads are not: on the torch backend, prefer
``torch.set_num_threads`` to this. An exception on any rank stops every rank at its next collective and is raised to
the caller, with a note naming the rank.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading

import numpy as np

from .. import backend
from ..arguments import check_count


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Threads:
    """``fit``'s ``distributed=Threads(n)``: train on ``n`` threads of this process (default: one per usable
    core), each on its shard of every batch. On the CPU only: one GPU gains nothing from several threads
    (use MPI ranks, one per GPU).

        >>> model.fit(X, y, batch_size=256, distributed=xpnet.distributed.Threads())
    """

    def __init__(self, n: int | None = None):
        n = usable_cores() if n is None else n
        self.n = check_count("Threads: n", n, 1, "a positive int (threads to train on)")

    def __repr__(self):
        return f"Threads({self.n})"


class RankFailed(RuntimeError):
    """Raised in the ranks that were waiting for one that failed (the caller sees that rank's exception)."""


class _Group:
    """What the ranks share: a barrier, one slot per rank, and the first failure."""

    def __init__(self, size: int):
        self.size = size
        self.barrier = threading.Barrier(size)
        self.slots: list = [None] * size
        self.failed: tuple[int, BaseException] | None = None
        self.lock = threading.Lock()

    def fail(self, rank: int, exc: BaseException) -> None:
        with self.lock:
            if self.failed is None and not isinstance(exc, RankFailed):
                self.failed = (rank, exc)
        self.barrier.abort()  # every rank waiting, or about to wait, gets BrokenBarrierError


class ThreadCommunicator:
    """One thread's place among the ranks of a :class:`Threads` group: the collectives of
    :class:`~xpnet.distributed.Communicator`, over shared memory. What one rank gives another is a copy
    (as MPI's pickling makes one), except the all-reduce, which sums the ranks' buffers in place."""

    def __init__(self, group: _Group, rank: int):
        self.group, self.rank, self.size = group, rank, group.size
        self.local_rank, self.local_size = rank, group.size
        self.allreduce_seconds, self.allreduce_calls = 0.0, 0
        self._scratch = None  # this rank's segment sum, reused step after step

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __repr__(self):
        return f"ThreadCommunicator(rank={self.rank}, size={self.size})"

    def device(self, spec=None, backend_name: str | None = None) -> backend.Device:
        return backend.device(spec, backend=backend_name)

    def _wait(self) -> None:
        try:
            self.group.barrier.wait()
        except threading.BrokenBarrierError:
            failed = self.group.failed
            who = f"rank {failed[0]}" if failed else "another rank"
            raise RankFailed(f"rank {self.rank} of {self.size} stopped: {who} failed") from None

    def _exchange(self, obj, read):
        """Put ``obj`` in this rank's slot and return ``read(slots)``. ``read`` runs while every rank waits
        at the second barrier, so no rank goes on (and changes what it gave) before all have copied it."""
        self.group.slots[self.rank] = obj
        self._wait()
        got = read(self.group.slots)
        self._wait()
        return got

    # -- collectives ----------------------------------------------------------------------------
    def bcast(self, obj):
        return self._exchange(obj if self.is_root else None,
                              lambda slots: slots[0] if self.is_root else copy.deepcopy(slots[0]))

    def gather(self, obj) -> list:
        return self._exchange(obj, lambda slots: [o if r == self.rank else copy.deepcopy(o)
                                                  for r, o in enumerate(slots)])

    def any(self, flag: bool) -> bool:
        return self._exchange(bool(flag), any)

    def allreduce_(self, host: np.ndarray) -> np.ndarray:
        """Sum ``host`` over the ranks, in place. Each rank adds up one contiguous segment of every rank's
        buffer, in rank order, and writes the sum into all of them: every rank ends with the same bits."""
        g = self.group
        g.slots[self.rank] = host
        self._wait()
        flat = [s.reshape(-1) for s in g.slots]
        n = flat[0].shape[0]
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        if self._scratch is None or self._scratch.shape != (hi - lo,) or self._scratch.dtype != host.dtype:
            self._scratch = np.empty(hi - lo, dtype=host.dtype)
        acc = self._scratch
        np.copyto(acc, flat[0][lo:hi])
        for other in flat[1:]:
            acc += other[lo:hi]
        for other in flat:
            other[lo:hi] = acc
        self._wait()  # every segment written before anyone reads its buffer (or deposits the next one)
        return host

    @contextlib.contextmanager
    def root_first(self):
        if not self.is_root:
            self._wait()
        yield
        if self.is_root:
            self._wait()

    # -- failure ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self, where: str, spare: tuple = ()):
        """An exception on this rank stops the others at their next collective (they raise
        :class:`RankFailed`); it passes on here, and :func:`run` raises the first one to the caller."""
        try:
            yield self
        except BaseException as exc:
            if not isinstance(exc, spare):
                self.group.fail(self.rank, exc)
            raise

    def abort(self, exc: BaseException, where: str, code: int = 1, linger: float = 0.0):
        self.group.fail(self.rank, exc)


def _copy_for_rank(value, what: str):
    try:
        return copy.deepcopy(value)
    except Exception as exc:
        raise TypeError(f"fit(distributed=Threads(...)): {what} {value!r} cannot be copied for the other "
                        f"ranks ({type(exc).__name__}: {exc}); a callback that writes files can set "
                        f"rank_zero_only = True to run on rank 0 alone") from None


def rank_kwargs(kwargs: dict) -> dict:
    """fit's arguments for a rank other than 0: its own optimizer, loss, schedule and callbacks (they keep
    state), the data shared (only read). A plain function ``f(epoch, logs)`` runs on rank 0 alone: it only
    watches, and a copy of it would share its closure, so it would see every epoch once per rank."""
    from ..callbacks import Callback

    mine = dict(kwargs)
    for key in ("optimizer", "loss", "schedule"):
        if mine.get(key) is not None and not isinstance(mine[key], str):
            mine[key] = _copy_for_rank(mine[key], key)
    mine["callbacks"] = [_copy_for_rank(cb, "the callback") for cb in kwargs.get("callbacks") or ()
                         if isinstance(cb, Callback) and not getattr(cb, "rank_zero_only", False)]
    return mine


def _one_thread_each():
    """BLAS and OpenMP at one thread while the ranks run, their setting back afterwards (a context)."""
    from threadpoolctl import threadpool_limits  # a dependency of xpnet

    return threadpool_limits(limits=1)


def cpu_status() -> str:
    """The usable cores and NumPy's BLAS threads (``xpnet info``): what ``Threads`` would split the work over."""
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{lib['internal_api']} {lib.get('version') or ''} x{lib['num_threads']}".replace("  ", " ")
                     for lib in threadpool_info() if lib.get("user_api") == "blas")
    return f"{usable_cores()} usable cores; BLAS threads: {blas or 'none loaded'}"


def run(fit, model, args, kwargs, spec: Threads, strategy):
    """``fit(model, *args, **kwargs)`` on ``spec.n`` ranks (threads), each given ``strategy=strategy(its
    communicator)`` (:class:`~xpnet.distributed.DataParallel`; one thread: ``strategy(None)``); returns rank
    0's result."""
    if spec.n == 1:
        return fit(model, *args, strategy=strategy(None), **kwargs)
    if model.device.kind != "cpu":
        raise ValueError(f"fit(distributed={spec!r}) splits batches over CPU cores, but the model is on "
                         f"{model.device}: on GPUs run one MPI rank per GPU (distributed=True under mpiexec)")
    group = _Group(spec.n)
    jobs = [(model, kwargs)] + [(_copy_for_rank(model, "the model"), rank_kwargs(kwargs))
                                for _ in range(1, spec.n)]
    results: list = [None] * spec.n

    def train(rank: int) -> None:
        comm = ThreadCommunicator(group, rank)
        rank_model, rank_kwargs = jobs[rank]
        from ..callbacks import TrainingDiverged

        with comm.guard("fit", spare=(TrainingDiverged,)):
            results[rank] = fit(rank_model, *args, strategy=strategy(comm), **rank_kwargs)

    def other(rank: int) -> None:
        try:
            with _one_thread_each():  # OpenMP's thread count is per thread: a new thread starts at the default
                train(rank)
        except BaseException as exc:  # kept for the caller; the group already knows
            results[rank] = exc

    with _one_thread_each():
        workers = [threading.Thread(target=other, args=(r,), name=f"xpnet-rank-{r}", daemon=True)
                   for r in range(1, spec.n)]
        for w in workers:
            w.start()
        try:
            train(0)
        except RankFailed:
            pass  # another rank failed first: its exception is raised below
        finally:
            for w in workers:
                w.join()
    failed = group.failed
    if failed is not None and failed[0] != 0:
        rank, exc = failed
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised on rank {rank} of {spec.n}, a thread of fit(distributed={spec!r}))")
        raise exc
    return results[0]
