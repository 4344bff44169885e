"""Data-parallel ``fit``: what a training loop does differently when several ranks share each batch.

Every rank holds the whole model and the whole training set, and draws the same shuffling permutation
each epoch (rank 0's generator state is given to all). Each global batch ``[lo, hi)`` is split into
contiguous shards, one per rank (:func:`~xpnet.distributed.comm.shard`); after ``backward`` the
gradients are weighted by ``rows / batch rows`` and summed over the ranks by one all-reduce of their
flat array, so every rank steps with the single-process gradient and the weights stay equal. Where the
optimizer steps the model's flat buffers at once (:class:`~xpnet.parameters.FlatParameters`, on a GPU),
that array is the one it steps with (one per dtype); else (JAX, a CPU) the gradients are packed into a
:class:`FlatBuffer` of their own, allocated once.
The losses and metric counts of a read-back window are summed the same way, on the host, so every rank
reports (and decides on) the global figures.

Transports for the all-reduce: NumPy arrays go to MPI as they are (in place); CuPy arrays through
NCCL where CuPy has it; every other array (PyTorch, JAX, array-api-strict, CuPy without NCCL) is
staged through one host buffer, which the log says once.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .. import backend
from .comm import Communicator, shard
from .flat import FlatBuffer

log = logging.getLogger("xpnet")


def communicator(distributed) -> "Communicator | None":
    """fit's ``distributed=``: ``None``/``False`` (one process), ``True`` (``MPI.COMM_WORLD``), a
    :class:`Communicator`, or an mpi4py communicator (:class:`Threads` is taken by :func:`xpnet.train.strategy.run`)."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return Communicator()
    if isinstance(distributed, Communicator):
        return distributed
    if hasattr(distributed, "Get_rank") and hasattr(distributed, "Allreduce"):
        return Communicator(distributed)
    raise TypeError(f"fit: distributed must be True, False, an xpnet.distributed.Communicator, an mpi4py "
                    f"communicator or xpnet.distributed.Threads(n), got {distributed!r}")


def rank_key(key: int, rank: int) -> int:
    """A random layer's stream key for ``rank``: rank 0 keeps ``key`` (so a checkpoint, written by rank 0,
    holds the single-process key), every other rank a 63-bit hash of ``(key, rank)``: its own masks,
    the same at every run and after a resume."""
    if rank == 0:
        return key
    return int(np.random.SeedSequence([key, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _rekey(states: dict, rank: int) -> None:
    """Each stream of ``states`` (layer -> ``rng_state()``) keyed for ``rank``, also the streams of the layers
    inside a layer (a Residual's state holds its layers' by index)."""
    for layer_state in states.values():
        if isinstance(layer_state, dict) and "key" in layer_state:
            layer_state["key"] = rank_key(layer_state["key"], rank)
        elif isinstance(layer_state, dict):
            _rekey(layer_state, rank)


class DataParallel:
    """The hooks ``fit`` calls when ``distributed`` is given (one object per ``fit``): the data-parallel
    strategy (:mod:`xpnet.train.strategy`, whose ``SingleProcess`` has the same hooks, doing nothing)."""

    def __init__(self, comm: Communicator):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.views = self.flat = self.reduce = None
        self.batch_rows = 0
        if self.size == 1:
            log.info("xpnet: distributed training with a single process (rank 0 of 1): it runs as a plain fit; "
                     "start it under mpiexec -n N (or srun) to use N processes")

    @property
    def is_root(self) -> bool:
        return self.comm.is_root

    # -- before training ----------------------------------------------------------------------------
    def local(self, verbose, callbacks):
        """What this rank shows and runs: rank 0 everything; the others no output (``verbose=0``) and
        no callback that writes files (``rank_zero_only``: ``ModelCheckpoint``, ``CSVLogger``). Every
        other callback runs on every rank, with the same global logs, so they all decide alike."""
        if self.is_root:
            return verbose, callbacks
        return 0, [cb for cb in callbacks if not getattr(cb, "rank_zero_only", False)]

    def start(self, model, optimizer, rows: int, first_epoch: int) -> None:
        """Check that every rank trains on the same rows from the same epoch, then give every rank rank 0's
        weights, buffers, optimizer state and random state."""
        seen = self.comm.gather((rows, first_epoch))
        if len(set(seen)) > 1:
            raise ValueError("fit(distributed=...): every rank must pass the same training set and resume from "
                             "the same checkpoint; (rows, first epoch) per rank: " + ", ".join(
                                 f"rank {r}: {s}" for r, s in enumerate(seen)))
        state = self.comm.bcast(model.state_dict() if self.is_root else None)
        opt = self.comm.bcast(optimizer.state_dict() if self.is_root else None)
        if not self.is_root:
            model.load_state_dict(state)
            optimizer.load_state_dict(opt, model.parameters())
        self.sync_random_state(model)
        params = model.parameters()
        # where the optimizer steps the flat buffers at once, it steps the all-reduced flat gradients as they
        # are; else (JAX, a CPU) they are packed into a buffer kept from step to step, as unpacked views
        self.views = params.flat if params.flat is not None and params.flat.at_once else None
        self.flat = None if self.views is not None else FlatBuffer(params)
        buffers = [self.flat.data] if self.views is None else [group.data for group in self.views.groups]
        self.reduce = [self._transport(model.device, data) for data in buffers]

    def _transport(self, dev, sample):
        if backend.is_host_array(sample):
            return self.comm.allreduce_
        nccl, why = backend.nccl_allreduce(dev, self.comm)  # every rank takes the same way
        if nccl is not None:
            log.info("xpnet: all-reduce of the gradients through NCCL on %s", dev)
            return nccl
        if self.is_root:
            log.info("xpnet: the gradients of %s go through host memory for the all-reduce (staged: "
                     "device -> host, MPI, host -> device, each step)%s", dev, f"; not NCCL: {why}" if why else "")
        host = np.empty(tuple(sample.shape), dtype=backend.to_numpy(sample).dtype)

        def staged(data):
            host[...] = backend.to_numpy(data)
            self.comm.allreduce_(host)
            return dev.xp.asarray(dev.asarray(host, None), copy=True)  # host is overwritten next step

        return staged

    def sync_random_state(self, model) -> None:
        """Rank 0's shuffling generator on every rank (the same permutations), and each random layer's
        stream keyed by rank (different Dropout masks per rank, reproducible: :func:`rank_key`)."""
        state = self.comm.bcast(model.get_rng_state() if self.is_root else None)
        _rekey(state["layers"], self.rank)
        model.set_rng_state(state)

    # -- each step --------------------------------------------------------------------------------
    def shard(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's rows of the global batch ``[lo, hi)`` (remembered for the gradients' weight)."""
        self.batch_rows = hi - lo
        return shard(lo, hi, self.rank, self.size)

    def average_gradients(self, grads, rows: int) -> None:
        """Set ``grads`` to the global batch's gradient: ``sum_r (rows_r / batch rows) grad_r``, in one
        all-reduce of one flat buffer (per dtype). A rank with no rows adds zeros, but takes part all the same."""
        weight = rows / self.batch_rows
        if self.views is None:
            arrays = [self.flat.pack(grads, weight)]
        else:
            arrays = self.views.weighted_gradients(grads, weight)
        start = time.perf_counter()
        arrays = [reduce(data) for reduce, data in zip(self.reduce, arrays)]
        self.comm.allreduce_seconds += time.perf_counter() - start
        self.comm.allreduce_calls += len(arrays)
        if self.views is None:
            self.flat.unpack(arrays[0], grads)
        else:
            self.views.set_gradients(grads, arrays)

    def reduce_window(self, losses, counts, correct, finite: bool):
        """A read-back window's global figures from every rank's (host arrays; one small all-reduce).

        ``losses`` are the per-step mean losses over this rank's ``counts`` rows, ``correct`` the metric
        hit counts, with the weights' finiteness flag last when ``finite``. Returns the per-step mean
        losses over the global batches, their row counts (ints) and the summed hits (the flag: 1.0
        when every rank's weights are finite)."""
        k = len(losses)
        counts = np.asarray(counts, dtype="float64")
        # a rank with no rows has loss 0 and count 0; a NaN loss stays NaN in the sum, so every rank sees it
        packed = np.concatenate([np.where(counts > 0, losses * counts, 0.0), counts, np.asarray(correct, "float64")])
        self.comm.allreduce_(packed)
        rows = packed[k:2 * k]
        correct = packed[2 * k:].tolist()
        if finite:
            correct[-1] = 1.0 if correct[-1] == self.size else 0.0
        return packed[:k] / rows, [int(r) for r in rows], correct

    # -- each epoch ---------------------------------------------------------------------------------
    def end_epoch(self, model) -> None:
        """Rank 0's buffers (BatchNorm's running statistics, which each rank updates from its own shards)
        and random state on every rank, before validation and the checkpoint: as PyTorch's
        ``DistributedDataParallel(broadcast_buffers=True)``, the model every rank evaluates is rank 0's."""
        buffers = model.buffers()
        if len(buffers):
            state = self.comm.bcast({k: backend.to_numpy(v) for k, v in buffers.items()} if self.is_root else None)
            if not self.is_root:
                for k, v in state.items():
                    buffers[k] = model.device.xp.asarray(model.device.asarray(v, model.dtype), copy=True)
        self.sync_random_state(model)

    def agree(self, logs: dict) -> dict:
        """Rank 0's epoch logs (its timings, validation figures) on every rank: the callbacks of every rank
        then see the same numbers and stop (or not) at the same epoch."""
        return self.comm.bcast(logs if self.is_root else None)

    def stop(self, flag: bool) -> bool:
        """Stop when any rank's callbacks asked to."""
        return self.comm.any(flag)
