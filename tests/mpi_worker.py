"""What tests/test_distributed.py runs under ``mpiexec -n 2`` (and alone, for the single-process side).

    python tests/mpi_worker.py CASE OUT.npz [options]

Rank 0 writes ``OUT.npz``: for each run, its final weights (``<run>/<key>``), the all-reduce count and
the steps taken, and every rank's weights checksum (the ranks must agree). Not a test file itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np

import xpnet
import xpnet.checkpoint
from xpnet import callbacks, optim
from xpnet.datasets import make_spirals
from xpnet.layers import BatchNorm1d, Dense, Dropout, ReLU

OPTIMIZERS = {
    "sgd": lambda: optim.SGD(0.1),
    "sgd-momentum": lambda: optim.SGD(0.05, momentum=0.9, weight_decay=1e-3),
    "sgd-nesterov": lambda: optim.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: optim.Adam(1e-2, weight_decay=1e-3),
    "adamw": lambda: optim.AdamW(1e-2),
    "rmsprop": lambda: optim.RMSprop(1e-3, momentum=0.5),
}
ROWS = 203  # with batch 32: a last batch of 11 rows, 6 + 5 over 2 ranks


def data(dtype):
    X, y = make_spirals(ROWS, 3, seed=0)
    return X.astype(dtype), y


def model(dtype, backend=None, extra=False, device=None):
    """Seed 1 on rank 0 (and alone); other seeds on the other ranks: fit must give them rank 0's start.
    CuPy runs on CUDA: a GPU per rank where there are enough (``Communicator.device``), else shared."""
    layers = [Dense(2, 24), *([BatchNorm1d(24)] if extra else []), ReLU(), *([Dropout(0.2)] if extra else []),
              Dense(24, 3)]
    seed = 1 if comm is None or comm.rank == 0 else 100 + comm.rank
    if device is None and backend == "cupy":
        device = comm.device("cuda", backend) if comm else xpnet.device("cuda", backend=backend)
    return xpnet.Sequential(layers, device=device or "cpu", seed=seed, dtype=dtype, backend=backend)


def pretend_cuda(gpus: str):
    """array-api-strict posing as a CUDA backend with NCCL, this rank on the GPU with PCI bus id
    ``gpus.split(",")[rank]``: the transport's choice runs as on GPUs. Its "NCCL" sums through MPI on the host
    (counting its calls) and is made only where the choice allows it."""
    lib = xpnet.backend.LIBRARIES["array-api-strict"]
    made = []

    def fake_nccl(dev, rank, size, share):
        made.append(share("the NCCL unique id" if rank == 0 else None))

        def allreduce(buf):
            made.append("sum")
            return dev.xp.asarray(comm.allreduce_(xpnet.to_numpy(buf).copy()), device=dev.native)

        return allreduce

    lib.nccl_gpu = lambda dev: gpus.split(",")[comm.rank]
    lib.nccl_allreduce = fake_nccl
    cpu = xpnet.device("cpu", backend="array-api-strict")
    return xpnet.Device("cuda", 0, "array-api-strict", cpu.xp, cpu.native), made


class Ran(callbacks.Callback):
    """Records where it ran: a callback that writes files would be one (``rank_zero_only``)."""

    rank_zero_only = True
    ranks: list = []

    def on_train_begin(self, logs=None):
        Ran.ranks.append(comm.rank if comm else 0)


class Scripted(callbacks.Callback):
    """A scripted ``val_loss`` in each epoch's logs (on every rank alike), for an EarlyStopping after it."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = [1.0, 0.5, 0.8, 0.9][epoch]


class FailOnRank1(callbacks.Callback):
    def on_batch_end(self, step, logs=None):
        if comm.rank == 1 and step >= 2:
            raise RuntimeError("planted failure on rank 1, mid-epoch")


def fit(m, X, y, opt, batch_size, epochs=2, **kwargs):
    return xpnet.training.fit(m, X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=epochs,
                              batch_size=batch_size, verbose=0, check_every=2, distributed=comm, **kwargs)


def gpt_case(comm, dtype, results) -> dict:
    """test_gpt.py's tiny GPT, trained as there (the CLI's optimizer and schedule) on this rank's shares."""
    from lm_tiny import corpus
    from xpnet.cli.gpt import gpt_optimizer, gpt_schedule

    ids = corpus(11, 900)
    m = xpnet.models.gpt(11, 8, 2, 2, 8, seed=0 if comm.rank == 0 else 100 + comm.rank, dtype=dtype)
    h = xpnet.training.fit(m, xpnet.TextWindows(ids[:800], 8), None, loss="softmax_cross_entropy",
                           optimizer=gpt_optimizer(), schedule=gpt_schedule(1e-3, 12, 3), epochs=2,
                           steps_per_epoch=6, batch_size=5, verbose=0,
                           validation_data=xpnet.TextWindows(ids[800:], 8), distributed=comm)
    results.update(m.state_dict())
    return {"history": h.history, "agree": len(set(comm.gather(_checksum(m)))) == 1}


def main(case, out, *opts):
    results, checks = {}, {}
    dtype = "float64" if "float64" in opts else "float32"
    backend = next((o.split("=", 1)[1] for o in opts if o.startswith("backend=")), None)
    X, y = data(dtype)
    if case == "equivalence":
        runs = [(name, 32) for name in OPTIMIZERS] + [("sgd-momentum", 33), ("sgd", 2)]  # 17/16; a last shard of 0
        only = next((o.split("=", 1)[1] for o in opts if o.startswith("runs=")), None)
        if only:
            runs = [(r.rsplit("-", 1)[0], int(r.rsplit("-", 1)[1])) for r in only.split(",")]
        for name, batch in runs:
            m = model(dtype, backend)
            if comm:
                comm.allreduce_calls = 0
            h = fit(m, X, y, OPTIMIZERS[name](), batch, callbacks=[Ran()], metrics=["accuracy"])
            key = f"{name}-b{batch}"
            results.update({f"{key}/{k}": v for k, v in m.state_dict().items()})
            checks[key] = {"allreduce_calls": comm.allreduce_calls if comm else 0,
                           "steps": 2 * -(-ROWS // batch), "history": h.history}
            checksums = comm.gather(_checksum(m)) if comm else [_checksum(m)]
            checks[key]["agree"] = len(set(checksums)) == 1
        checks["ran_on"] = sorted(set(sum(comm.gather(Ran.ranks), []) if comm else Ran.ranks))
    elif case == "regularized":  # BatchNorm (per-rank statistics) and Dropout (per-rank masks) run
        m = model(dtype, backend, extra=True)
        h = fit(m, X, y, OPTIMIZERS["adam"](), 32, validation_data=(X, y))
        checksums = comm.gather(_checksum(m))
        keys = comm.gather(m.layers[3].rng_state()["key"])  # the Dropout layer's stream
        checks["regularized"] = {"agree": len(set(checksums)) == 1, "loss": h.history["loss"],
                                 "val_loss": h.history["val_loss"], "dropout_keys": keys}
        results.update(m.state_dict())
    elif case == "nccl-choice":  # who sums: NCCL where each rank has a GPU of its own, else host staging
        dev, made = pretend_cuda(next(o.split("=", 1)[1] for o in opts if o.startswith("gpus=")))
        m = model(dtype, device=dev)
        fit(m, X, y, OPTIMIZERS["adam"](), 33)
        results.update({f"adam-b33/{k}": v for k, v in m.state_dict().items()})
        checks["nccl"] = {"made": made.count("the NCCL unique id"), "sums": made.count("sum"),
                          "steps": 2 * -(-ROWS // 33), "agree": len(set(comm.gather(_checksum(m)))) == 1}
    elif case == "windows":  # a language model's random windows: every rank draws the global batch, takes its share
        from lm_tiny import Bigram, corpus

        ids = corpus(7, 600)
        m = xpnet.Sequential([Bigram(7)], seed=0 if comm.rank == 0 else 100 + comm.rank, dtype=dtype)
        h = xpnet.training.fit(m, xpnet.TextWindows(ids[:540], 8), None, loss="softmax_cross_entropy",
                               optimizer=optim.Adam(0.05), epochs=2, steps_per_epoch=6, batch_size=5, verbose=0,
                               check_every=4, validation_data=xpnet.TextWindows(ids[540:], 8), distributed=comm)
        checks["windows"] = {"history": h.history, "agree": len(set(comm.gather(_checksum(m)))) == 1}
        results.update(m.state_dict())
    elif case == "gpt":  # test_gpt.py: a tied 2-block GPT on windows; the tie's one array all-reduced once
        checks["gpt"] = gpt_case(comm, dtype, results)
    elif case == "diverge":  # every rank sees the all-reduced NaN loss: they all raise, at the same step
        try:
            fit(model(dtype), X * 1e30, y, OPTIMIZERS["sgd"](), 32)
            found = None
        except callbacks.TrainingDiverged as exc:
            found = [exc.epoch, exc.step]
        checks["diverged"] = comm.gather(found)
    elif case == "root_first":  # rank 0 finishes its block (a download, say) before the others start theirs
        marker = out + ".done"
        with comm.root_first():
            if comm.is_root:
                time.sleep(0.3)
                open(marker, "w").close()
            else:
                found = os.path.exists(marker)
        checks["found"] = comm.gather(None if comm.is_root else found)
    elif case == "failure":
        fit(model(dtype), X, y, OPTIMIZERS["sgd"](), 16, callbacks=[FailOnRank1()])
    elif case in ("full", "first", "resume"):  # checkpoint-resume: 4 epochs at once, or 2 then 2 more
        ckpt = next(o.split("=", 1)[1] for o in opts if o.startswith("dir="))
        m = model(dtype, backend, extra=True)
        kwargs = {"checkpoint_dir": ckpt} if case == "first" else {}
        saved_on = []
        save = xpnet.checkpoint.save_checkpoint

        def recorded(*args, **kw):  # which ranks write the checkpoint: rank 0 alone
            saved_on.append(comm.rank)
            return save(*args, **kw)

        xpnet.checkpoint.save_checkpoint = recorded
        if case == "resume":
            kwargs = {"resume_from": f"{ckpt}/last.npz"}
        if "callbacks" in opts:  # with callbacks that keep a state: on every rank, and a file writer on rank 0
            # patience 2: the run stops at epoch 3 and goes back to epoch 1's weights, which the resumed
            # run (from epoch 2) has only from the checkpoint; every rank must agree
            stop = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
            log = os.path.join(os.path.dirname(out), f"{'full' if case == 'full' else 'run'}.csv")
            kwargs["callbacks"] = [Scripted(), stop, callbacks.CSVLogger(log)]
        fit(m, X, y, None if case == "resume" else OPTIMIZERS["adam"](), 32, epochs=2 if case == "first" else 4,
            **kwargs)
        results.update(m.state_dict())
        checks["saved_on"] = sorted(set(sum(comm.gather(saved_on), [])))
        checks["agree"] = len(set(comm.gather(_checksum(m)))) == 1
        if "callbacks" in opts:
            checks["stopped"] = comm.gather([stop.stopped_epoch, stop.best_epoch, stop.wait])
    if comm is None or comm.is_root:
        np.savez(out, **results, checks=json.dumps(checks))


def _checksum(m) -> str:
    digest = hashlib.sha256()
    for v in m.state_dict().values():
        digest.update(np.ascontiguousarray(v).tobytes())
    return digest.hexdigest()


comm = None  # the Communicator under mpiexec

if __name__ == "__main__":
    distributed = "--single" not in sys.argv
    args = [a for a in sys.argv[1:] if a != "--single"]
    comm = None
    if distributed:
        import logging

        from xpnet.distributed import Communicator

        logging.basicConfig(level=logging.INFO, format="%(message)s")  # the transport line, for the test
        comm = Communicator()
    import xpnet.training  # noqa: E402

    main(*args)
