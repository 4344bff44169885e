"""The NumPy backend's worker threads: the layers' work on every core the BLAS library was given.

NumPy runs its matrix products on all of BLAS's threads but every copy, comparison and sum on one; a CNN
step is about a third such work. So the NumPy routines (:mod:`._numpy_layers`) cut a batch into chunks of
samples and run them on a pool of threads, NumPy and BLAS releasing the GIL, each product on *one*
BLAS thread. One pool for everything, as oneDNN and PyTorch run theirs on one OpenMP team: the products
are not handed to BLAS's own threads, which spin for ~0.1 s after each call and then take a core from the
pool's threads (OpenBLAS 0.3, measured: a pool region right after a two-thread product ran 1.5x slower).

How many threads: as many as BLAS has now (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``,
``threadpoolctl.threadpool_limits``), at most the usable cores. One thread, or a call from inside a region
or while another thread holds the pool, runs the chunks in order on the calling thread: the same work.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_BLAS = None  # the threadpoolctl controllers of the BLAS libraries loaded, found on first use


def _blas():
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController  # a dependency of xpnet
            _BLAS = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
        except Exception:  # noqa: BLE001 (a library threadpoolctl cannot read: count the cores instead)
            _BLAS = []
    return _BLAS


def threads() -> int:
    """The threads a region would run on now: BLAS's own count, at most the usable cores (1 inside a
    region, and where BLAS is held to one thread, as in each rank of ``distributed=Threads``)."""
    if _LOCAL.inside:
        return 1
    counts = [lib.num_threads for lib in _blas()]
    n = max(counts) if counts else usable_cores()
    return max(1, min(n, usable_cores()))


class _Local(threading.local):
    inside = False


_LOCAL = _Local()


class _Pool:
    """``n - 1`` daemon threads waiting on their queues; the caller is the n-th."""

    def __init__(self, n: int):
        self.n, self.pid, self.broken = n, os.getpid(), False
        self.lock = threading.Lock()
        self.tasks = [queue.SimpleQueue() for _ in range(n - 1)]
        self.done = queue.SimpleQueue()
        for q in self.tasks:
            threading.Thread(target=self._serve, args=(q,), name="xpnet-numpy", daemon=True).start()

    def _serve(self, tasks) -> None:
        _LOCAL.inside = True
        while True:
            fn, items, context = tasks.get()
            self.done.put(context.run(_drain, fn, items))

    def run(self, fn, count: int, n: int) -> None:
        items = iter(range(count))  # shared: next() on it is atomic under the GIL, so each i runs once
        helpers = self.tasks[:n - 1]
        limits = [(lib, lib.num_threads) for lib in _blas()]
        for lib, _ in limits:
            lib.set_num_threads(1)  # one BLAS thread per product: the pool's threads are the parallelism
        try:
            for q in helpers:  # with the caller's context: NumPy's errstate (what a NaN or overflow does) is in it
                q.put((fn, items, contextvars.copy_context()))
            _LOCAL.inside = True
            try:
                error = _drain(fn, items)
            finally:
                _LOCAL.inside = False
            try:
                for _ in helpers:  # every helper is done before the caller reads what they wrote
                    answer = self.done.get()
                    error = error or answer
            except BaseException:  # interrupted while helpers still run: their answers would come late
                self.broken = True
                raise
        finally:
            for lib, n in limits:
                lib.set_num_threads(n)
        if error is not None:
            raise error


def _drain(fn, items):
    """Run ``fn(i)`` for the items left; the exception that stopped it, or ``None``."""
    try:
        for i in items:
            fn(i)
    except BaseException as exc:  # noqa: BLE001 (re-raised by the caller, after the other threads stop)
        return exc
    return None


_POOL: _Pool | None = None
_MAKE = threading.Lock()


def parallel_for(fn, count: int) -> None:
    """``fn(i)`` for each ``i`` in ``range(count)``, spread over :func:`threads` threads (the caller one of
    them); returns when all are done and raises the first exception any of them raised. The order in
    which the ``i`` run is not fixed: ``fn`` writes each result to its own place."""
    global _POOL
    n = min(threads(), count)
    pool = _POOL
    if n > 1 and not _usable(pool, n):
        with _MAKE:
            pool = _POOL
            if not _usable(pool, n):
                pool = _POOL = _Pool(n)
    if n <= 1 or not pool.lock.acquire(blocking=False):  # another thread's region holds it: run here
        for i in range(count):
            fn(i)
        return
    try:
        pool.run(fn, count, n)
    finally:
        pool.lock.release()


def _usable(pool, n: int) -> bool:
    """Whether ``pool`` can run ``n`` threads here: a forked child has the object but not its threads, and
    an interrupted pool's helpers may still be answering the region they were in."""
    return pool is not None and pool.n >= n and pool.pid == os.getpid() and not pool.broken


def chunks(total: int, parts: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``parts`` near-equal runs covering ``range(total)`` (fewer if ``total`` is smaller)."""
    parts = max(1, min(parts, total))
    return [(total * i // parts, total * (i + 1) // parts) for i in range(parts)]
