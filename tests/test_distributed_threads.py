"""Data parallel over threads (``fit(..., distributed=Threads(n))``): n ranks in one process end with the
weights of one plain ``fit``, to rounding.

The reference is the same fit without ``distributed``, in this process. The cases are those of the MPI
tests (tests/mpi_worker.py), which need ``mpiexec``; these run everywhere.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

import xpnet
from xpnet import callbacks, training
from xpnet.distributed import ThreadCommunicator, Threads, threads as threads_mod

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpi_worker  # noqa: E402

mpi_worker.comm = None  # its model() gives every copy seed 1: the ranks' start comes from fit anyway


def fit(m, X, y, opt, batch_size, epochs=2, **kwargs):
    return training.fit(m, X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=epochs, batch_size=batch_size,
                        verbose=0, check_every=2, metrics=["accuracy"], **kwargs)


def weights(m):
    return {k: xpnet.to_numpy(v).copy() for k, v in m.state_dict().items()}


def rank_threads():
    return [t for t in threading.enumerate() if t.name.startswith("xpnet-rank-")]


@pytest.mark.parametrize("opt,batch,n", [("sgd", 32, 2), ("sgd-momentum", 33, 2), ("sgd-nesterov", 32, 3),
                                         ("adam", 32, 2), ("adamw", 32, 3), ("rmsprop", 32, 2),
                                         ("sgd", 2, 3), ("sgd", 1, 2)],
                         ids=lambda v: str(v))
def test_n_threads_end_with_the_weights_of_one(opt, batch, n):
    """float64: equal to ~1e-13 at batch 32 (a last batch of 11 rows: 6 + 5), 33, 2 over 3 ranks (an empty
    shard every step) and 1 (rank 1 never has a row); the history too."""
    X, y = mpi_worker.data("float64")
    ref = mpi_worker.model("float64")
    h_ref = fit(ref, X, y, mpi_worker.OPTIMIZERS[opt](), batch)
    m = mpi_worker.model("float64")
    h = fit(m, X, y, mpi_worker.OPTIMIZERS[opt](), batch, distributed=Threads(n))
    for k, w in weights(ref).items():
        np.testing.assert_allclose(weights(m)[k], w, rtol=1e-11, atol=1e-13, err_msg=k)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(h.history[key], h_ref.history[key], rtol=1e-11)
    assert not rank_threads()


def test_float32_and_one_all_reduce_per_step(monkeypatch):
    calls = []
    reduce = ThreadCommunicator.allreduce_

    def counted(self, host):
        if host.size > 100:  # the gradients' buffer, not a window's figures
            calls.append(self.rank)
        return reduce(self, host)

    monkeypatch.setattr(ThreadCommunicator, "allreduce_", counted)
    X, y = mpi_worker.data("float32")
    ref = mpi_worker.model("float32")
    fit(ref, X, y, mpi_worker.OPTIMIZERS["adam"](), 32)
    m = mpi_worker.model("float32")
    fit(m, X, y, mpi_worker.OPTIMIZERS["adam"](), 32, distributed=Threads(2))
    for k, w in weights(ref).items():
        np.testing.assert_allclose(weights(m)[k], w, rtol=1e-5, atol=1e-6, err_msg=k)
    steps = 2 * -(-len(X) // 32)
    assert sorted(calls) == [0] * steps + [1] * steps


def test_other_backends_on_the_cpu(dev):
    if dev.kind != "cpu":
        pytest.skip("Threads trains on the CPU")
    X, y = mpi_worker.data("float64")
    ref = xpnet.Sequential(mpi_worker.model("float64").layers, device=dev, seed=1, dtype="float64")
    fit(ref, X, y, mpi_worker.OPTIMIZERS["sgd-momentum"](), 33)
    m = xpnet.Sequential(mpi_worker.model("float64").layers, device=dev, seed=1, dtype="float64")
    fit(m, X, y, mpi_worker.OPTIMIZERS["sgd-momentum"](), 33, distributed=Threads(2))
    for k, w in weights(ref).items():
        np.testing.assert_allclose(weights(m)[k], w, rtol=1e-11, atol=1e-13, err_msg=k)


def test_blas_runs_one_thread_per_rank_and_gets_its_setting_back():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []

    class Threadcount(callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append([lib["num_threads"] for lib in threadpoolctl.threadpool_info()])

    X, y = mpi_worker.data("float32")
    with threadpoolctl.threadpool_limits(limits=2):
        before = threadpoolctl.threadpool_info()
        fit(mpi_worker.model("float32"), X, y, mpi_worker.OPTIMIZERS["sgd"](), 32, epochs=1,
            callbacks=[Threadcount()], distributed=Threads(2))
        assert threadpoolctl.threadpool_info() == before
    assert seen and all(n == 1 for counts in seen for n in counts), seen


class FailOnRank(callbacks.Callback):
    def __init__(self, rank):
        self.rank, self.steps = rank, 0

    def on_train_begin(self, logs=None):
        self.me = 0 if threading.current_thread() is threading.main_thread() else 1

    def on_batch_end(self, step, logs=None):
        if self.me == self.rank and step >= 2:
            raise RuntimeError(f"planted failure on rank {self.rank}, mid-epoch")


@pytest.mark.parametrize("rank", [0, 1])
def test_a_failing_rank_stops_every_rank_and_the_caller_gets_its_error(rank):
    X, y = mpi_worker.data("float32")
    with pytest.raises(RuntimeError, match=f"planted failure on rank {rank}") as info:
        fit(mpi_worker.model("float32"), X, y, mpi_worker.OPTIMIZERS["sgd"](), 16, callbacks=[FailOnRank(rank)],
            distributed=Threads(2))
    if rank == 1:
        assert "raised on rank 1 of 2" in "".join(getattr(info.value, "__notes__", [])) or sys.version_info < (3, 11)
    assert not rank_threads()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_divergence_is_raised_as_in_one_process():
    X, y = mpi_worker.data("float32")
    with pytest.raises(callbacks.TrainingDiverged) as one:
        fit(mpi_worker.model("float32"), X * 1e30, y, mpi_worker.OPTIMIZERS["sgd"](), 32)
    with pytest.raises(callbacks.TrainingDiverged) as two:
        fit(mpi_worker.model("float32"), X * 1e30, y, mpi_worker.OPTIMIZERS["sgd"](), 32, distributed=Threads(2))
    assert (two.value.epoch, two.value.step) == (one.value.epoch, one.value.step)
    assert not rank_threads()


def test_batchnorm_and_dropout_train_with_per_rank_masks():
    X, y = mpi_worker.data("float32")
    m = mpi_worker.model("float32", extra=True)
    h = fit(m, X, y, mpi_worker.OPTIMIZERS["adam"](), 32, validation_data=(X, y), distributed=Threads(2))
    assert np.all(np.isfinite(h.history["loss"])) and h.history["val_loss"][-1] < h.history["val_loss"][0] + 0.5
    assert m.layers[3].rng_state()["key"] == mpi_worker.model("float32", extra=True).layers[3].rng_state()["key"]
    running = xpnet.to_numpy(m.buffers()["1.running_mean"])
    assert np.all(np.isfinite(running)) and np.any(running != 0)  # rank 0's running statistics, kept


def test_callbacks_that_write_run_once_and_the_others_on_every_rank(tmp_path):
    X, y = mpi_worker.data("float32")
    ran = []

    class Writes(callbacks.Callback):
        rank_zero_only = True

        def on_epoch_end(self, epoch, logs=None):
            ran.append(("writes", threading.current_thread().name))

    class Counts(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ran.append(("counts", threading.current_thread().name))

    stop = callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)  # stops after epoch 2
    h = fit(mpi_worker.model("float32"), X, y, mpi_worker.OPTIMIZERS["sgd"](), 32, epochs=5,
            callbacks=[Writes(), Counts(), stop, callbacks.CSVLogger(tmp_path / "log.csv"),
                       lambda epoch, logs: ran.append(("function", epoch))], distributed=Threads(2))
    assert len(h.history["loss"]) == 2  # every rank stopped at rank 0's epoch
    assert [e for what, e in ran if what == "function"] == [0, 1]  # a plain function: once, on rank 0
    names = {t for what, t in ran if what == "writes"}
    assert names == {threading.current_thread().name}
    assert len([1 for what, _ in ran if what == "counts"]) == 4  # 2 epochs x 2 ranks, each its own copy
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 3  # the header and two epochs, once


def test_a_checkpointed_run_resumes_to_the_weights_of_one_that_never_stopped(tmp_path):
    X, y = mpi_worker.data("float64")
    whole = mpi_worker.model("float64", extra=True)
    fit(whole, X, y, mpi_worker.OPTIMIZERS["adam"](), 32, epochs=4, distributed=Threads(2))
    first = mpi_worker.model("float64", extra=True)
    fit(first, X, y, mpi_worker.OPTIMIZERS["adam"](), 32, epochs=2, checkpoint_dir=tmp_path, distributed=Threads(2))
    resumed = mpi_worker.model("float64", extra=True)
    training.fit(resumed, X, y, loss="softmax_cross_entropy", optimizer=None, epochs=4, batch_size=32, verbose=0,
                 check_every=2, resume_from=tmp_path / "last.npz", distributed=Threads(2))
    for k, w in weights(whole).items():
        np.testing.assert_array_equal(weights(resumed)[k], w, err_msg=k)


def test_bad_arguments_say_what_to_do():
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="positive int"):
            Threads(bad)
    assert Threads().n >= 1

    class OnGPU:
        class device:
            kind = "cuda"

            def __str__(self):
                return "cuda:0"

    with pytest.raises(ValueError, match="one MPI rank per GPU"):
        threads_mod.run(training.fit, OnGPU(), (None, None), {}, Threads(2), None)

    class Uncopyable(callbacks.Callback):
        def __deepcopy__(self, memo):
            raise TypeError("holds a lock")

    X, y = mpi_worker.data("float32")
    with pytest.raises(TypeError, match="cannot be copied for the other ranks.*rank_zero_only"):
        fit(mpi_worker.model("float32"), X, y, mpi_worker.OPTIMIZERS["sgd"](), 32, callbacks=[Uncopyable()],
            distributed=Threads(2))


def test_one_thread_is_a_plain_fit():
    X, y = mpi_worker.data("float64")
    ref, m = mpi_worker.model("float64"), mpi_worker.model("float64")
    fit(ref, X, y, mpi_worker.OPTIMIZERS["adam"](), 32)
    fit(m, X, y, mpi_worker.OPTIMIZERS["adam"](), 32, distributed=Threads(1))
    for k, w in weights(ref).items():
        np.testing.assert_array_equal(weights(m)[k], w, err_msg=k)


def test_a_broadcast_is_copied_before_the_root_goes_on():
    """Rank 0 may change what it broadcast as soon as bcast returns: the other ranks must have their copy
    by then (a slow copy here, and rank 0 appends right after)."""
    import copy
    import time

    class SlowToCopy:
        def __init__(self, items):
            self.items = items

        def __deepcopy__(self, memo):
            time.sleep(0.2)
            return SlowToCopy(copy.deepcopy(self.items, memo))

    group = threads_mod._Group(2)
    got = {}

    def rank(r):
        comm = ThreadCommunicator(group, r)
        value = comm.bcast(SlowToCopy([1, 2, 3]) if r == 0 else None)
        if r == 0:
            value.items.append(4)  # rank 0 goes on with its object
        got[r] = list(value.items)

    other = threading.Thread(target=rank, args=(1,))
    other.start()
    rank(0)
    other.join()
    assert got == {0: [1, 2, 3, 4], 1: [1, 2, 3]}


# -- the communicator and the ranks' arguments, one piece at a time ---------------------------------------
def _on_ranks(n, work):
    """``work(comm)`` on ``n`` threads, one communicator each; the results by rank."""
    group = threads_mod._Group(n)
    out = [None] * n

    def one(rank):
        out[rank] = work(ThreadCommunicator(group, rank))

    workers = [threading.Thread(target=one, args=(r,)) for r in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    return out


def test_allreduce_sums_in_the_buffers_dtype_in_rank_order():
    """float32 1 + 2**-24 + 2**-24 is 1 in float32, step by step as one process adds; summed in float64
    and rounded once it would be 1 + 2**-23."""
    parts = [np.float32(1.0), np.float32(2.0 ** -24), np.float32(2.0 ** -24)]
    out = _on_ranks(3, lambda comm: comm.allreduce_(np.full(5, parts[comm.rank], dtype=np.float32)))
    for got in out:
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.ones(5, np.float32))
    fresh = ThreadCommunicator(threads_mod._Group(1), 0)
    assert (fresh.allreduce_seconds, fresh.allreduce_calls) == (0.0, 0)  # DataParallel adds to them


def test_gather_gives_each_rank_copies_of_the_others_objects_and_its_own():
    mine = [{"rank": [r]} for r in range(2)]
    out = _on_ranks(2, lambda comm: comm.gather(mine[comm.rank]))
    for rank, got in enumerate(out):
        assert got == mine
        assert got[rank] is mine[rank]
        other = 1 - rank
        assert got[other] is not mine[other] and got[other]["rank"] is not mine[other]["rank"]  # deep copies


def test_the_first_failure_is_kept_and_the_waiting_ranks_name_it():
    group = threads_mod._Group(2)
    first, second = RuntimeError("first"), RuntimeError("second")
    group.fail(1, first)
    group.fail(0, second)
    group.fail(0, threads_mod.RankFailed("a rank stopped by another is not the cause"))
    assert group.failed == (1, first)
    with pytest.raises(threads_mod.RankFailed) as info:
        ThreadCommunicator(group, 0).bcast(None)
    assert str(info.value) == "rank 0 of 2 stopped: rank 1 failed"
    quiet = threads_mod._Group(3)
    quiet.fail(2, threads_mod.RankFailed("not a cause"))
    assert quiet.failed is None
    with pytest.raises(threads_mod.RankFailed) as info:
        ThreadCommunicator(quiet, 1).any(False)
    assert str(info.value) == "rank 1 of 3 stopped: another rank failed"


def test_other_ranks_get_their_own_optimizer_loss_schedule_and_callbacks():
    class Writes(callbacks.Callback):
        rank_zero_only = True

    kept = callbacks.Callback()
    kwargs = {"optimizer": xpnet.SGD(0.1), "loss": xpnet.MSE(), "schedule": xpnet.schedules.StepDecay(),
              "callbacks": [Writes(), kept], "epochs": 3}
    mine = threads_mod.rank_kwargs(kwargs)
    for key in ("optimizer", "loss", "schedule"):
        assert type(mine[key]) is type(kwargs[key]) and mine[key] is not kwargs[key], key
    assert [type(cb) for cb in mine["callbacks"]] == [callbacks.Callback] and mine["callbacks"][0] is not kept
    assert mine["epochs"] == 3 and kwargs["callbacks"][1] is kept
    named = threads_mod.rank_kwargs({"optimizer": "sgd", "loss": "mse", "schedule": None})
    assert (named["optimizer"], named["loss"], named["schedule"], named["callbacks"]) == ("sgd", "mse", None, [])

    class Uncopyable(callbacks.Callback):  # a callback object (a plain function is not copied: rank 0 runs it)
        def __deepcopy__(self, memo):
            raise ValueError("holds a lock")

    for key, what in (("loss", "loss"), ("callbacks", "the callback")):
        value = Uncopyable()
        with pytest.raises(TypeError) as info:
            threads_mod.rank_kwargs({key: [value] if key == "callbacks" else value})
        assert str(info.value).startswith(f"fit(distributed=Threads(...)): {what} {value!r} cannot be copied for "
                                          f"the other ranks (ValueError: holds a lock); a callback"), key


def test_the_ranks_run_on_named_daemon_threads_and_fit_returns_rank_0s_history():
    seen = []

    class Where(callbacks.Callback):
        def on_train_begin(self, logs=None):
            thread = threading.current_thread()
            seen.append((thread.name, thread.daemon))

    X, y = mpi_worker.data("float32")
    m = mpi_worker.model("float32")
    history = fit(m, X[:64], y[:64], mpi_worker.OPTIMIZERS["sgd"](), 32, epochs=1, callbacks=[Where()],
                  distributed=Threads(3))
    assert sorted(seen) == [(threading.current_thread().name, threading.current_thread().daemon),
                            ("xpnet-rank-1", True), ("xpnet-rank-2", True)]
    assert history.model is m


def test_usable_cores_without_an_affinity_mask(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert threads_mod.usable_cores() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "undeterminable"
    assert threads_mod.usable_cores() == 1


def test_one_communicator_reduces_buffers_of_other_dtypes_in_turn():
    """The gradients (float32) and a window's figures (float64) go through the same communicator: the
    scratch segment follows the buffer's dtype even when the sizes match."""
    comm = ThreadCommunicator(threads_mod._Group(1), 0)
    np.testing.assert_array_equal(comm.allreduce_(np.ones(4, np.float32)), np.ones(4, np.float32))
    precise = np.full(4, 1 + 1e-12)
    np.testing.assert_array_equal(comm.allreduce_(precise.copy()), precise)


def test_abort_fails_the_group_and_device_is_the_backends():
    group = threads_mod._Group(2)
    exc = RuntimeError("diverged")
    ThreadCommunicator(group, 1).abort(exc, "fit")
    assert group.failed == (1, exc)
    with pytest.raises(threads_mod.RankFailed, match="rank 1 failed"):
        ThreadCommunicator(group, 0).any(True)
    with pytest.raises(ValueError, match="backend 'numpy' cannot run on 'cuda'"):  # the spec is passed on
        ThreadCommunicator(group, 0).device("cuda", "numpy")
    strict = ThreadCommunicator(group, 0).device("cpu", "array-api-strict")
    assert strict == xpnet.backend.device("cpu", backend="array-api-strict") != xpnet.backend.device("cpu")


def test_a_model_that_cannot_be_copied_for_the_other_ranks_is_named():
    class Model:
        class device:
            kind = "cpu"

        def __deepcopy__(self, memo):
            raise ValueError("holds a file")

        def __repr__(self):
            return "Model()"

    with pytest.raises(TypeError) as info:
        threads_mod.run(training.fit, Model(), (None, None), {}, Threads(2), None)
    assert str(info.value).startswith("fit(distributed=Threads(...)): the model Model() cannot be copied for the "
                                      "other ranks (ValueError: holds a file)")
