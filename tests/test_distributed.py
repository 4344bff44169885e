"""Data-parallel training over MPI (xpnet.distributed): 2 ranks end with one process's weights.

The MPI tests launch ``mpiexec -n 2`` on tests/mpi_worker.py (the mpiexec next to this Python, as the
``mpich`` wheel installs it, else the one on PATH) and compare with the same run in this process: the
single-process ``fit`` is the reference. They skip, with the reason, where mpi4py or an mpiexec is
missing. The packing and weighting logic is also tested without MPI, on every backend.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import xpnet
from xpnet import training
from xpnet.distributed import FlatBuffer, communicator, rank_key, shard

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "mpi_worker.py")
sys.path.insert(0, HERE)
import mpi_worker  # noqa: E402


def _mpiexec() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def _why_no_mpi() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'mpi4py is not installed (pip install "xpnet[mpi]" mpich)'
    if _mpiexec() is None:
        return "no mpiexec next to this Python or on PATH (pip install mpich)"
    return None


needs_mpi = pytest.mark.skipif(_why_no_mpi() is not None, reason=str(_why_no_mpi()))


def run_mpi(*args, n=2, timeout=120, check=True):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "JAX_ENABLE_X64": "1"}
    cmd = [_mpiexec(), "-n", str(n), sys.executable, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def load(path):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "checks"}
        return arrays, json.loads(str(f["checks"]))


def single(case_model, X, y, opt, batch_size, epochs=2, history=None, **kwargs):
    """The reference: the same fit in this one process (its history into ``history``, a dict)."""
    h = training.fit(case_model, X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=epochs,
                     batch_size=batch_size, verbose=0, check_every=2, metrics=["accuracy"], **kwargs)
    if history is not None:
        history.update(h.history)
    return case_model.state_dict()


# -- without MPI: the pieces ------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [1, 2, 5, 11, 32, 33])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_cover_the_batch_in_order_and_differ_by_at_most_one(rows, size):
    parts = [shard(10, 10 + rows, r, size) for r in range(size)]
    assert parts[0][0] == 10 and parts[-1][1] == 10 + rows
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    counts = [hi - lo for lo, hi in parts]
    assert max(counts) - min(counts) <= 1 and min(counts) >= 0


def test_weighted_shard_gradients_sum_to_the_full_batch_gradient(dev):
    """Packing with weight n_r / N and summing gives the gradient of the whole batch, for unequal shards
    (the reference: one backward over all rows)."""
    X, y = mpi_worker.data("float64")
    X, y = X[:11], y[:11]
    full = _model_grads(dev, X, y)
    flat = total = None
    for r in range(3):
        lo, hi = shard(0, 11, r, 3)  # 4, 4, 3 rows
        m, grads = _model_grads(dev, X[lo:hi], y[lo:hi], with_model=True)
        flat = flat or FlatBuffer(m.parameters())
        packed = xpnet.to_numpy(flat.pack(grads, (hi - lo) / 11)).copy()
        total = packed if total is None else total + packed
    m, grads = _model_grads(dev, X, y, with_model=True)
    flat.unpack(dev.asarray(total, "float64"), grads)
    for k, g in full.items():
        np.testing.assert_allclose(xpnet.to_numpy(grads[k]), g, rtol=1e-12, atol=1e-15)


def _model_grads(dev, X, y, with_model=False):
    m = xpnet.Sequential(mpi_worker.model("float64").layers, device=dev, seed=1, dtype="float64")
    loss = xpnet.losses.get("softmax_cross_entropy")
    out = m.forward(dev.asarray(X, "float64"), training=True)
    loss.forward(out, dev.asarray(y, None))
    m.backward(loss.backward())
    if with_model:
        return m, m.gradients()
    return {k: xpnet.to_numpy(v).copy() for k, v in m.gradients().items()}


def test_an_empty_shard_packs_zeros_even_without_gradients(dev):
    m = xpnet.Sequential(mpi_worker.model("float32").layers, device=dev, seed=1)
    flat = FlatBuffer(m.parameters())
    data = flat.pack(m.gradients(), 0.0)  # no backward yet: the layers hold no gradients
    assert not np.any(xpnet.to_numpy(data))
    flat.unpack(data, m.gradients())
    assert {k: tuple(v.shape) for k, v in m.gradients().items()} == {k: tuple(v.shape) for k, v in m.parameters().items()}


@pytest.mark.parametrize("writeable", [True, False])
def test_pack_writes_the_weighted_gradients_end_to_end_in_the_parameters_dtype(monkeypatch, writeable):
    """Both ways of packing: in place into the one preallocated buffer, and the new buffer per step for
    arrays that cannot be written (JAX's), forced here on NumPy so that a run without JAX tests it too."""
    from xpnet.distributed import flat as flat_module

    if not writeable:
        monkeypatch.setattr(flat_module, "is_writeable_array", lambda array: False)
    params = {"W": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    grads = {"W": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([10, 20, 30], np.float32)}
    buf = FlatBuffer(params)
    data = buf.pack(grads, 0.5)
    assert data.dtype == np.float32 and data.shape == (9,)
    np.testing.assert_array_equal(data, [0, 0.5, 1, 1.5, 2, 2.5, 5, 10, 15])
    np.testing.assert_array_equal(buf.pack(grads, 1.0), [0, 1, 2, 3, 4, 5, 10, 20, 30])
    if writeable:  # no allocation per step: the same buffer every time
        assert buf.pack(grads, 0.5) is data
    zeros = buf.pack({}, 0.0)  # an empty shard: its gradients may be missing
    assert zeros.dtype == np.float32 and zeros.shape == (9,) and not np.any(zeros)
    out = {}
    buf.unpack(buf.pack(grads, 2.0), out)
    assert list(out) == ["W", "b"]
    np.testing.assert_array_equal(out["W"], 2 * grads["W"])
    np.testing.assert_array_equal(out["b"], 2 * grads["b"])
    single = FlatBuffer({"b": params["b"]})
    np.testing.assert_array_equal(single.pack({"b": grads["b"]}, 0.5), [5, 10, 15])
    with pytest.raises(ValueError) as info:
        FlatBuffer({})
    assert str(info.value) == "FlatBuffer: the model has no parameters to train"


class _TwoRanks:
    """Rank 0 of a pretend pair: its all-reduce adds the other rank's vector, given in advance."""
    rank, size, is_root = 0, 2, True

    def __init__(self, other):
        self.other = np.asarray(other, dtype="float64")

    def allreduce_(self, data):
        data += self.other


@pytest.mark.parametrize("other_finite", [1.0, 0.0])
def test_a_window_reports_the_global_batch_and_finite_only_when_every_rank_is(other_finite):
    from xpnet.distributed import DataParallel

    # rank 0: two steps of 3 and 2 rows, mean losses 1.0 and 4.0, 4 hits, weights finite;
    # rank 1: 2 and 0 rows (its shard of the short last batch is empty), mean loss 2.5, 1 hit
    other = [2.5 * 2, 0.0, 2.0, 0.0, 1.0, other_finite]
    losses, rows, correct = DataParallel(_TwoRanks(other)).reduce_window(
        np.array([1.0, 4.0]), [3, 2], [4.0, 1.0], finite=True)
    np.testing.assert_allclose(losses, [(3 * 1.0 + 2 * 2.5) / 5, 4.0])
    assert rows == [5, 2] and correct == [5.0, other_finite]


def test_rank_zero_keeps_the_stream_key_and_the_others_get_their_own():
    assert rank_key(12345, 0) == 12345
    keys = {rank_key(12345, r) for r in range(1, 5)}
    assert len(keys) == 4 and 12345 not in keys and all(0 <= k < 2**63 for k in keys)
    assert rank_key(12345, 3) == rank_key(12345, 3)


# -- the all-reduce's transport: NCCL only where each rank has a GPU of its own ---------------------------
BUS_A, BUS_B = "0000:3B:00.0", "0000:5E:00.0"


@pytest.mark.parametrize("gpus, shared", [
    ([("h1", BUS_A), ("h1", BUS_B)], None),
    ([("h1", BUS_A), ("h2", BUS_A)], None),  # the same slot on two machines: two GPUs
    ([("h1", BUS_A), ("h1", BUS_A)], "ranks 0, 1 share the GPU 0000:3B:00.0 of h1"),
    ([("h1", BUS_A), ("h1", BUS_B), ("h2", BUS_A), ("h1", BUS_B)], "ranks 1, 3 share the GPU 0000:5E:00.0 of h1"),
], ids=["two-gpus", "two-machines", "one-gpu", "four-ranks"])
def test_ranks_sharing_a_gpu_are_named(gpus, shared):
    why = xpnet.backend.runtime.shared_gpus(gpus)
    if shared is None:
        assert why is None
    else:
        assert why.startswith(shared + ", and NCCL needs a GPU per rank. Fix: start at most as many ranks")


class _GatherOfTwo:
    """Rank 0 of 2, whose allgather answers with this rank's value and the other rank's."""

    rank, size = 0, 2

    def __init__(self, other):
        self.other, self.gathered = other, []

    def gather(self, obj):
        self.gathered.append(obj)
        return [obj, self.other]

    def bcast(self, obj):
        return obj


@pytest.fixture
def cupy_with_nccl(monkeypatch):
    """The CuPy backend with NCCL on the GPU ``BUS_A`` (no CuPy needed): returns the NCCL sums it makes."""
    lib = xpnet.backend.LIBRARIES["cupy"]
    made = []
    monkeypatch.setattr(lib, "nccl_gpu", lambda dev: BUS_A)
    monkeypatch.setattr(lib, "nccl_allreduce", lambda dev, rank, size, share: made.append(rank) or "the NCCL sum")
    return made


@pytest.mark.parametrize("other, nccl, said", [
    (BUS_B, True, None), (BUS_A, False, "share the GPU 0000:3B:00.0"), (None, False, None)],
    ids=["own-gpus", "one-gpu", "other-rank-without-nccl"])
def test_nccl_is_taken_only_when_every_rank_has_a_gpu_of_its_own(cupy_with_nccl, other, nccl, said):
    dev = xpnet.Device("cuda", 0, "cupy", None, None)
    comm = _GatherOfTwo(None if other is None else (socket.gethostname(), other))
    sum_, why = xpnet.backend.nccl_allreduce(dev, comm)
    assert comm.gathered == [(socket.gethostname(), BUS_A)]  # one allgather: every rank decides alike
    assert (sum_ == "the NCCL sum") == nccl and cupy_with_nccl == ([0] if nccl else [])
    assert (why is None) if said is None else (said in why)


def test_cupy_tells_gpus_apart_by_pci_bus_id_where_it_has_nccl(monkeypatch):
    """The id each rank gives for the choice: the same GPU has it in every process, whatever its ordinal."""
    pytest.importorskip("cupy")
    import cupy
    from cupy.cuda import nccl

    monkeypatch.setattr(cupy.cuda.runtime, "deviceGetPCIBusId", lambda index: [BUS_A, BUS_B][index])
    lib, dev = xpnet.backend.LIBRARIES["cupy"], xpnet.Device("cuda", 1, "cupy", None, None)
    monkeypatch.setattr(nccl, "available", True)
    assert lib.nccl_gpu(dev) == BUS_B
    monkeypatch.setattr(nccl, "available", False)  # a CuPy whose NCCL library did not load
    assert lib.nccl_gpu(dev) is None


def test_a_cpu_device_sums_without_nccl_but_still_takes_part_in_the_choice(cupy_with_nccl):
    comm = _GatherOfTwo(None)
    assert xpnet.backend.nccl_allreduce(xpnet.device("cpu"), comm) == (None, None)
    assert comm.gathered == [None] and cupy_with_nccl == []


def test_distributed_argument_is_checked_and_mpi4py_named_when_missing(monkeypatch):
    assert communicator(None) is None and communicator(False) is None
    with pytest.raises(TypeError, match="distributed must be True"):
        communicator("yes")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r'pip install "xpnet\[mpi\]"'):
        communicator(True)


def test_info_says_whether_mpi_is_there(capsys, monkeypatch):
    from importlib import metadata

    from xpnet import cli

    real = metadata.version
    cli.main(["info"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("MPI (--distributed): "))
    try:
        assert f"mpi4py {real('mpi4py')}" in line
    except metadata.PackageNotFoundError:
        assert "mpi4py not installed" in line

    def no_mpi4py(name):
        if name == "mpi4py":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", no_mpi4py)
    cli.main(["info"])
    assert 'mpi4py not installed; pip install "xpnet[mpi]"' in capsys.readouterr().out


# -- under mpiexec -n 2 ---------------------------------------------------------------------------------
@needs_mpi
@pytest.mark.parametrize("dtype, atol", [("float64", 1e-12), ("float32", 1e-6)])
def test_two_ranks_end_with_the_single_process_weights_for_every_optimizer(tmp_path, dtype, atol):
    """rtol 1e-5 after 2 epochs: float64 agrees to ~1e-12, float32 to its rounding (~1e-7 here: the shards'
    products are summed in another order than the whole batch's). Batch 32 (a last batch of 11 rows:
    6 + 5), 33 (17 + 16) and 2 (a last batch of 1 row: rank 1's shard is empty)."""
    out = tmp_path / "eq.npz"
    run_mpi(WORKER, "equivalence", str(out), dtype)
    got, checks = load(out)
    X, y = mpi_worker.data(dtype)
    for name, batch in [(name, 32) for name in mpi_worker.OPTIMIZERS] + [("sgd-momentum", 33), ("sgd", 2)]:
        key = f"{name}-b{batch}"
        history = {}
        want = single(mpi_worker.model(dtype), X, y, mpi_worker.OPTIMIZERS[name](), batch, history=history)
        for k, v in want.items():
            np.testing.assert_allclose(got[f"{key}/{k}"], v, rtol=1e-5, atol=atol, err_msg=f"{key} {k}")
        for k in ("loss", "accuracy"):  # the reported figures are the global batch's, not rank 0's shard's
            np.testing.assert_allclose(checks[key]["history"][k], history[k], rtol=1e3 * atol, err_msg=f"{key} {k}")
        assert checks[key]["agree"], f"{key}: the ranks' weights differ"
        # one all-reduce per step, over one flat buffer (not one per tensor)
        assert checks[key]["allreduce_calls"] == checks[key]["steps"], key
    assert checks["ran_on"] == [0], "a rank_zero_only callback ran on another rank"


@needs_mpi
@pytest.mark.parametrize("backend", ["torch", "array-api-strict", "jax"])
def test_staged_transport_through_host_memory_equals_one_process(tmp_path, backend):
    """Arrays MPI cannot take in place go device -> host -> MPI -> device; said once in the log."""
    pytest.importorskip({"torch": "torch", "jax": "jax"}.get(backend, "array_api_strict"))
    out = tmp_path / "staged.npz"
    runs = [("adam", 33)] + ([("sgd", 2)] if backend != "jax" else [])  # (JAX: 20 s for 200 small steps)
    done = run_mpi(WORKER, "equivalence", str(out), "float64", f"backend={backend}",
                   "runs=" + ",".join(f"{name}-{batch}" for name, batch in runs))
    assert done.stderr.count("go through host memory for the all-reduce") == len(runs), done.stderr  # once a fit
    got, checks = load(out)
    X, y = mpi_worker.data("float64")
    for name, batch in runs:
        want = single(mpi_worker.model("float64", backend), X, y, mpi_worker.OPTIMIZERS[name](), batch)
        for k, v in want.items():
            np.testing.assert_allclose(got[f"{name}-b{batch}/{k}"], v, rtol=1e-5, atol=1e-12, err_msg=f"{name} {k}")
        assert checks[f"{name}-b{batch}"]["agree"]


@needs_mpi
def test_batchnorm_and_dropout_run_and_the_ranks_agree(tmp_path):
    out = tmp_path / "reg.npz"
    run_mpi(WORKER, "regularized", str(out))
    _, checks = load(out)
    assert checks["regularized"]["agree"]  # BatchNorm's running statistics are rank 0's on every rank
    keys = checks["regularized"]["dropout_keys"]
    assert keys[0] == mpi_worker.model("float32", extra=True).layers[3].rng_state()["key"]
    assert keys[1] != keys[0]  # each rank its own masks
    assert np.all(np.isfinite(checks["regularized"]["loss"] + checks["regularized"]["val_loss"]))


@needs_mpi
def test_a_divergence_is_raised_on_every_rank_at_the_same_step_without_abort(tmp_path):
    out = tmp_path / "nan.npz"
    run_mpi(WORKER, "diverge", str(out))
    diverged = load(out)[1]["diverged"]
    assert diverged[0] is not None and diverged == [diverged[0]] * 2


@needs_mpi
def test_root_first_runs_rank_0s_block_before_the_others(tmp_path):
    out = tmp_path / "order.npz"
    run_mpi(WORKER, "root_first", str(out))
    assert load(out)[1]["found"] == [None, True]


@needs_mpi
def test_a_failing_rank_ends_every_rank_with_its_rank_and_cause(tmp_path):
    start = time.perf_counter()
    done = run_mpi(WORKER, "failure", str(tmp_path / "x.npz"), timeout=60, check=False)
    assert done.returncode != 0
    assert time.perf_counter() - start < 30
    assert "rank 1 of 2 failed in fit" in done.stderr and "planted failure on rank 1" in done.stderr, done.stderr


@needs_mpi
def test_a_run_stopped_and_resumed_under_two_ranks_equals_an_uninterrupted_one(tmp_path):
    ckpt = tmp_path / "ckpt"
    run_mpi(WORKER, "full", str(tmp_path / "full.npz"), f"dir={ckpt}")
    run_mpi(WORKER, "first", str(tmp_path / "first.npz"), f"dir={ckpt}")
    run_mpi(WORKER, "resume", str(tmp_path / "resume.npz"), f"dir={ckpt}")
    assert load(tmp_path / "first.npz")[1]["saved_on"] == [0]  # only rank 0 writes files
    full, _ = load(tmp_path / "full.npz")
    resumed, _ = load(tmp_path / "resume.npz")
    for k, v in full.items():
        np.testing.assert_array_equal(resumed[k], v, err_msg=k)


@needs_mpi
def test_callbacks_with_a_state_resume_under_two_ranks_as_an_uninterrupted_run(tmp_path):
    """EarlyStopping runs on every rank and gets its state back on every rank from rank 0's checkpoint;
    CSVLogger runs on rank 0 alone (the other ranks skip its state, without a warning)."""
    ckpt = tmp_path / "ckpt"
    for case in ("full", "first", "resume"):
        done = run_mpi(WORKER, case, str(tmp_path / f"{case}.npz"), f"dir={ckpt}", "callbacks")
        assert "UserWarning" not in done.stderr, done.stderr
    full, full_checks = load(tmp_path / "full.npz")
    resumed, checks = load(tmp_path / "resume.npz")
    for k, v in full.items():
        np.testing.assert_array_equal(resumed[k], v, err_msg=k)
    assert checks["agree"] and full_checks["agree"]
    assert checks["stopped"] == full_checks["stopped"] == [[3, 1, 2]] * 2  # stopped at 3, best 1, on both ranks
    drop = ("seconds", "samples_per_s")

    def rows(name):
        lines = (tmp_path / name).read_text().splitlines()
        keep = [i for i, c in enumerate(lines[0].split(",")) if c not in drop]
        return [[line.split(",")[i] for i in keep] for line in lines]

    assert rows("run.csv") == rows("full.csv") and len(rows("run.csv")) == 1 + 4


@needs_mpi
def test_cli_two_ranks_equal_one_process_and_only_rank_0_prints(tmp_path):
    common = ["-m", "xpnet", "train", "--dataset", "spirals", "--layers", "2,16,3", "--epochs", "2",
              "--batch-size", "128", "--dtype", "float64", "--optimizer", "adam", "--seed", "3"]
    one = run_mpi(*common, "--save", str(tmp_path / "one.npz"), n=1)
    two = run_mpi(*common, "--distributed", "--save", str(tmp_path / "two.npz"))
    for line in ("xpnet: training", "epoch 2/2", "xpnet: saved the model"):  # rank 0 alone prints
        assert two.stdout.count(line) == 1, two.stdout
    assert "2 ranks (batch 128 over all)" in two.stdout
    a, b = xpnet.load(str(tmp_path / "one.npz")), xpnet.load(str(tmp_path / "two.npz"))
    for k, v in a.state_dict().items():
        np.testing.assert_allclose(b.state_dict()[k], v, rtol=1e-5, atol=1e-12, err_msg=k)
    assert one.stdout.count("epoch 2/2") == 1


@needs_mpi
def test_one_process_without_mpiexec_runs_as_a_plain_fit_and_says_so(tmp_path):
    """--distributed outside mpiexec: MPI starts as a singleton (rank 0 of 1); training goes on as usual."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "xpnet", "train", "--dataset", "spirals", "--layers", "2,16,3", "--epochs", "1",
           "--batch-size", "64", "--distributed"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "a single process (rank 0 of 1)" in done.stderr and "epoch 1/1" in done.stdout


@needs_mpi
@pytest.mark.parametrize("gpus, nccl", [(f"{BUS_A},{BUS_B}", True), (f"{BUS_A},{BUS_A}", False)],
                         ids=["a-gpu-per-rank", "two-ranks-one-gpu"])
def test_two_ranks_sum_through_nccl_only_on_gpus_of_their_own(tmp_path, gpus, nccl):
    """The transport's choice under mpiexec, on the CPU: array-api-strict poses as CUDA with NCCL
    (tests/mpi_worker.py ``pretend_cuda``). Two ranks on one GPU would make NCCL stop ("Duplicate GPU
    detected"): they stage through host memory instead, and rank 0 says why, once."""
    pytest.importorskip("array_api_strict")
    out = tmp_path / "choice.npz"
    done = run_mpi(WORKER, "nccl-choice", str(out), "float64", f"gpus={gpus}")
    got, checks = load(out)
    made = checks["nccl"]
    assert made["agree"]
    assert (made["made"], made["sums"]) == ((1, made["steps"]) if nccl else (0, 0))
    assert done.stderr.count("all-reduce of the gradients through NCCL") == (2 if nccl else 0), done.stderr
    staged = [line for line in done.stderr.splitlines() if "go through host memory" in line]
    assert staged == ([] if nccl else [
        "xpnet: the gradients of cuda:0 (array-api-strict) go through host memory for the all-reduce (staged: "
        "device -> host, MPI, host -> device, each step); not NCCL: ranks 0, 1 share the GPU 0000:3B:00.0 of "
        f"{socket.gethostname()}, and NCCL needs a GPU per rank. Fix: start at most as many ranks on a machine "
        "as it has GPUs to sum through NCCL"]), done.stderr
    X, y = mpi_worker.data("float64")
    want = single(mpi_worker.model("float64"), X, y, mpi_worker.OPTIMIZERS["adam"](), 33)
    for k, v in want.items():
        np.testing.assert_allclose(got[f"adam-b33/{k}"], v, rtol=1e-5, atol=1e-12, err_msg=k)


@pytest.mark.gpu
@needs_mpi
def test_nccl_allreduce_sums(tmp_path):
    """CuPy on CUDA under two ranks: through NCCL where each rank has a GPU of its own, else (one GPU)
    through host memory, saying why; either way the single process's weights. Skipped without a GPU."""
    from cupy.cuda import nccl

    out = tmp_path / "nccl.npz"
    runs = ["adam-33", "sgd-2"]
    done = run_mpi(WORKER, "equivalence", str(out), "float64", "backend=cupy", "runs=" + ",".join(runs))
    got, checks = load(out)
    own = xpnet.backend.cuda_count("cupy") >= 2
    if own and getattr(nccl, "available", False):
        assert done.stderr.count("all-reduce of the gradients through NCCL") == 2 * len(runs), done.stderr
    elif not own:
        assert done.stderr.count("not NCCL: ranks 0, 1 share the GPU") == len(runs), done.stderr
    X, y = mpi_worker.data("float64")
    for run in runs:
        name, batch = run.rsplit("-", 1)
        assert checks[f"{name}-b{batch}"]["agree"]
        want = single(mpi_worker.model("float64"), X, y, mpi_worker.OPTIMIZERS[name](), int(batch))
        for k, v in want.items():
            np.testing.assert_allclose(got[f"{name}-b{batch}/{k}"], v, rtol=1e-5, atol=1e-12, err_msg=f"{run} {k}")
