"""The MPI communicator: who this process is among the ranks, and the few collectives training needs.

mpi4py is imported here, lazily, and nowhere else in xpnet: a missing mpi4py is an ``ImportError``
naming the fix only when distributed training is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback

import numpy as np

from .. import backend

log = logging.getLogger("xpnet")

INSTALL = ('pip install "xpnet[mpi]" (mpi4py), plus an MPI library: `pip install mpich` on one machine, or '
           'your cluster\'s MPI (module load ...) before installing mpi4py')


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"distributed training needs mpi4py, which cannot be imported ({exc}). Fix: "
                          f"{INSTALL}") from exc
    return MPI


class Communicator:
    """One process's place among the ranks of an MPI job (``mpiexec -n N ...``), over an mpi4py communicator.

    ``rank`` and ``size`` are the process's number and the job's; ``local_rank`` / ``local_size`` the same
    among the processes of this machine (``MPI.COMM_TYPE_SHARED``), which picks one GPU per rank.
    ``comm`` is any mpi4py intracommunicator (default ``MPI.COMM_WORLD``).

        >>> comm = Communicator()
        >>> model.fit(X, y, batch_size=128, distributed=comm)     # 128 rows a step over all ranks
        >>> if comm.is_root: model.save("model.npz")

    ``allreduce_seconds`` and ``allreduce_calls`` add up the time spent in the gradients' all-reduce
    (the benchmark reads them; with an asynchronous GPU reduction it is the launch time only).
    """

    def __init__(self, comm=None):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.allreduce_seconds, self.allreduce_calls = 0.0, 0

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0: the one that prints, draws and writes files."""
        return self.rank == 0

    def __repr__(self):
        return f"Communicator(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    # -- devices ----------------------------------------------------------------------------------
    def device(self, spec=None, backend_name: str | None = None) -> backend.Device:
        """:func:`xpnet.device` with one GPU per rank: ``"cuda"`` (or ``"auto"`` finding CUDA) becomes
        ``cuda:<local rank modulo the GPUs of this machine>``; an explicit ``cuda:N`` is kept."""
        dev = backend.device(spec, backend=backend_name)
        given = spec if spec is not None else os.environ.get("XPNET_DEVICE", "")
        explicit = isinstance(given, str) and ":" in given
        if dev.kind != "cuda" or explicit:
            return dev
        count = backend.cuda_count(dev.backend)
        if self.local_size > count:
            log.info("xpnet: %d ranks share the %d GPU(s) of this machine", self.local_size, count)
        return backend.device(f"cuda:{self.local_rank % count}", backend=dev.backend)

    # -- collectives ----------------------------------------------------------------------------
    def bcast(self, obj):
        """Rank 0's ``obj`` (any picklable object) on every rank."""
        return self.comm.bcast(obj, root=0)

    def allreduce_(self, host: np.ndarray) -> np.ndarray:
        """Sum a NumPy array over the ranks, in place (one ``MPI_Allreduce``); returns it."""
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return host

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (every rank gets the same answer)."""
        return bool(self.comm.allreduce(bool(flag), op=self.MPI.LOR))

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        return self.comm.allgather(obj)

    @contextlib.contextmanager
    def root_first(self):
        """Rank 0 runs the block first, then the others (a download into a shared cache, say: one rank
        fetches, the others find the files there)."""
        if not self.is_root:
            self.comm.Barrier()
        yield
        if self.is_root:
            self.comm.Barrier()

    # -- failure ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self, where: str, spare: tuple = ()):
        """Turn an exception on this rank into the end of the whole job: print the rank and the cause on
        stderr, then ``MPI_Abort``, which stops every rank at once (no rank waits forever in a collective
        for one that has died). Exceptions of the types in ``spare`` (raised by every rank alike, such as
        a divergence found in the all-reduced losses) pass on as usual."""
        try:
            yield self
        except spare:
            raise
        except BaseException as exc:  # KeyboardInterrupt on one rank too: the others would wait for it
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                raise
            self.abort(exc, where)

    def abort(self, exc: BaseException, where: str, code: int = 1, linger: float = 1.0):
        """Print ``exc`` (traceback, then one line naming this rank) on stderr and abort every rank.

        ``linger`` seconds pass between the two: the launcher (MPICH's hydra) forwards a rank's output
        from a pipe, and an abort that comes at once can end the job before it has (measured: the whole
        message lost, once in a loaded test run). The wait is bounded, so the job still ends.
        """
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            print(f"xpnet: error: rank {self.rank} of {self.size} failed in {where}: {type(exc).__name__}: "
                  f"{exc}; aborting all {self.size} ranks (MPI_Abort)", file=sys.stderr, flush=True)
            time.sleep(linger)
        finally:
            self.comm.Abort(code)


def shard(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s rows of the global batch ``[lo, hi)``: contiguous, in rank order, their counts
    differing by at most one (the first ``(hi - lo) % size`` ranks take one more). May be empty."""
    base, extra = divmod(hi - lo, size)
    start = lo + rank * base + min(rank, extra)
    return start, start + base + (rank < extra)
