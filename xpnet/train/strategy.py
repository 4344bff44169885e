"""How fit spreads its work: one process, or data parallel over MPI ranks or threads.

The step loop calls the same hooks whichever it has (as ChainerMN's optimizer wrapper leaves the training
code alone): :class:`SingleProcess` fills them with nothing, :class:`xpnet.distributed.DataParallel`
with its shards and all-reduces. :func:`run` turns fit's ``distributed=`` into a strategy and runs the loop
under it: on each thread of a :class:`~xpnet.distributed.Threads` group, or guarded on each MPI rank (an
exception on any rank ends every rank instead of leaving them waiting).
"""

from __future__ import annotations

from ..callbacks import TrainingDiverged
from ..distributed import DataParallel, Threads, communicator
from ..distributed import threads


class SingleProcess:
    """The hooks of :class:`~xpnet.distributed.DataParallel` for one process: each leaves things as they are."""

    is_root = True

    def local(self, verbose, callbacks):
        return verbose, callbacks

    def start(self, model, optimizer, rows: int, first_epoch: int) -> None:
        pass

    def shard(self, lo: int, hi: int) -> tuple[int, int]:
        return lo, hi

    def average_gradients(self, grads, rows: int) -> None:
        pass

    def reduce_window(self, losses, counts, correct, finite: bool):
        return losses, counts, correct

    def end_epoch(self, model) -> None:
        pass

    def agree(self, logs: dict) -> dict:
        return logs

    def stop(self, flag: bool) -> bool:
        return flag


def for_communicator(comm):
    """The strategy of one rank: data parallel over ``comm``, or :class:`SingleProcess` for ``None``."""
    return SingleProcess() if comm is None else DataParallel(comm)


def run(train, model, args: tuple, settings: dict, distributed):
    """``train(model, *args, strategy=..., **settings)`` for fit's ``distributed=``: ``None``/``False`` in this
    process, :class:`~xpnet.distributed.Threads` on each of its threads, else on this MPI rank.

    A divergence (``TrainingDiverged``) is found in the all-reduced losses, so every rank raises it at the
    same step: it passes on as in a single process.
    """
    if isinstance(distributed, Threads):
        return threads.run(train, model, args, settings, distributed, for_communicator)
    comm = communicator(distributed)
    if comm is None:
        return train(model, *args, strategy=SingleProcess(), **settings)
    with comm.guard("fit", spare=(TrainingDiverged,)):
        return train(model, *args, strategy=DataParallel(comm), **settings)
