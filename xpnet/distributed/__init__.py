"""Data-parallel training over MPI (mpi4py), as ChainerMN and Horovod do: ``fit(..., distributed=True)``.

Run the same script on N processes (``mpiexec -n 4 python train.py``, ``srun``, or ``mpiexec -n 4
xpnet train --distributed ...``). ``batch_size`` is the global batch: each step, every rank takes its
shard of the same rows the single process would take, and one all-reduce of the flat, weighted
gradients gives every rank the single-process gradient; so N ranks end with the weights of one
process with the same seed (to rounding). Only rank 0 prints, draws the progress bar and writes files
(``checkpoint_dir``, ``ModelCheckpoint``, ``CSVLogger``); an exception on any rank ends every rank with
``MPI_Abort`` after printing the rank and the cause.

BatchNorm normalizes each rank's shard with that shard's statistics (per-rank, as PyTorch's
BatchNorm without SyncBatchNorm); its running statistics are rank 0's (given to all at each epoch's
end). Dropout draws different masks on each rank, each reproducible from the seed and the rank.

Needs the ``mpi`` extra: ``pip install "xpnet[mpi]"`` and an MPI library (``pip install mpich``, or
the cluster's). mpi4py is imported only when a :class:`Communicator` is made.

On one machine's CPU, ``fit(..., distributed=Threads(n))`` runs the same algorithm on ``n`` threads of
one process, without MPI (:mod:`xpnet.distributed.threads`): every core busy with its shard of each batch.
"""

from __future__ import annotations

from .comm import INSTALL, Communicator, shard
from .data_parallel import DataParallel, communicator, rank_key
from .flat import FlatBuffer
from .threads import RankFailed, ThreadCommunicator, Threads

__all__ = ["INSTALL", "Communicator", "DataParallel", "FlatBuffer", "RankFailed", "ThreadCommunicator", "Threads",
           "communicator", "rank_key", "shard"]
