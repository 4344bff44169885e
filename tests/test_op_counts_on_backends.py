"""The operation counter on a device's own backend (tests/opcount.py's ``counting("numpy" | "torch" | "cupy")``)
and benchmarks/op_count.py, which ci/gpu.sh runs on CUDA: checked here on the CPU backends.

Where a backend runs the generic lines, its count must be array-api-strict's, operation by operation: that
is what makes the GPU's count comparable with the suite's ceilings (tests/test_op_counts.py). Where it runs
routines of its own, its count is its own, and the table says so.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import pathlib

import numpy as np
import pytest

pytest.importorskip("array_api_strict")

import opcount  # noqa: E402

from xpnet.backend import LIBRARIES, ROUTINES  # noqa: E402

ROOT = pathlib.Path(__file__).parents[1]
CPU_BACKENDS = ["numpy", pytest.param("torch", marks=pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs PyTorch"))]
LABEL = {"numpy": "ndarray", "torch": "Tensor"}


def _op_count_script():
    spec = importlib.util.spec_from_file_location("op_count_script", ROOT / "benchmarks" / "op_count.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _by_name(tally) -> collections.Counter:
    """The operations by name without the array class's label, and without how a host draw reaches the
    device (strict: ``asarray``; torch: its own ``random_uniform``, one operation either way)."""
    out = collections.Counter()
    for name, n in tally.ops.items():
        name = name.split(".", 1)[1] if name.startswith(("Array.", "ndarray.", "Tensor.")) else name
        out["host draw" if name in ("asarray", "random_uniform") else name] += n
    return out


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_the_counter_counts_each_call_once_on_every_backend(backend):
    xp = __import__(f"array_api_compat.{backend}", fromlist=["_"])
    with opcount.counting(backend) as t:
        t.paused = True
        a = xp.ones((2, 3), dtype=xp.float32)
        t.paused = False
        b = a + 1.0
        b += a
        c = b.T @ a
        b[0, ...] = 2.0
        xp.unstack(xp.sum(c, axis=0))
        xp.isdtype(a.dtype, "real floating")
        float(xp.sum(a))
        np.from_dlpack(a)
    label = LABEL[backend]
    assert t.ops == collections.Counter({f"{label}.__add__": 1, f"{label}.__iadd__": 1, f"{label}.T": 1,
                                         f"{label}.__matmul__": 1, f"{label}.__setitem__": 1, "sum": 2,
                                         "unstack": 1})
    assert t.syncs == ["__float__", "__dlpack__"]
    xp.sum(a + 1.0)
    float(a[0, 0])
    assert t.total == 8 and len(t.syncs) == 2  # after the block nothing is counted: every patch undone


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("network, batch", [("mlp", 13), ("cnn", 13)])
def test_the_generic_path_counts_what_array_api_strict_counts(backend, network, batch, monkeypatch):
    """With the backend's layer routines switched off, it runs the generic lines: the same operations."""
    for name in ROUTINES:
        monkeypatch.setattr(LIBRARIES[backend], name, None)
    got = opcount.count_network(network, "adamw", batch, backend=backend)
    generic = opcount.count_network(network, "adamw", batch)
    assert _by_name(got) == _by_name(generic)
    assert got.phases == generic.phases and got.syncs == [] == generic.syncs


# (NumPy runs its own routines for ReLU, the loss and the products since issue 27, so only torch-CPU takes the
# generic lines there; NumPy's routines have the test below.)
@pytest.mark.parametrize("backend", CPU_BACKENDS[1:])
def test_an_mlp_step_takes_the_generic_path_with_the_routines_on_but_the_optimizers(backend):
    """Forward, loss and backward run the generic lines; the optimizer steps each of the 4 parameter arrays
    on the CPU (routine step_at_once: 2 operations each for SGD) where the generic path concatenates the
    gradients and steps the flat buffer at once (1 + 2)."""
    got, generic = opcount.count_network("mlp", "sgd", 32, backend=backend), opcount.count_network("mlp", "sgd", 32)
    for phase in ("forward", "loss", "backward"):
        assert got.phases[phase] == generic.phases[phase], phase
    assert (got.phases["step"], generic.phases["step"]) == (8, 3)


def test_numpys_own_routines_make_the_count_its_own():
    # (issue 27's NumPy routines run through backend.dispatch, which the counter does not wrap: what they do
    # inside is counted, operation by operation, on the arrays the counter hands out)
    got = opcount.count_network("cnn", "sgd", 30, backend="numpy")
    assert got.total != opcount.count_network("cnn", "sgd", 30).total


# -- benchmarks/op_count.py --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS[1:])  # (NumPy's own loss reads its labels' range on the host)
def test_op_count_script_tables_the_backend_beside_the_generic_path(backend, tmp_path, capsys):
    out = tmp_path / "counts.json"
    assert _op_count_script().main(["--device", "cpu", "--backend", backend, "--networks", "mlp",
                                    "--mlp-batches", "4", "--json", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"Operations per training step, {backend} on cpu\n")
    assert "| MLP 784-256-10, AdamW | 4: 85 | 45 | 0 |" in said  # the CPU steps each array (step_at_once)
    assert "step_at_once: the optimizer steps each parameter array on the CPU" in said
    rows = json.loads(out.read_text())
    assert [(r["optimizer"], r["backend"], r["device"], r["ops"], r["generic_ops"], r["syncs"]) for r in rows] == [
        ("sgd", backend, "cpu", 41, 36, 0), ("adamw", backend, "cpu", 85, 45, 0)]


def test_op_count_script_fails_when_a_step_reads_back(monkeypatch, capsys):
    from xpnet import losses

    forward = losses.SoftmaxCrossEntropy.forward

    def reads_back(self, out, y):
        loss = forward(self, out, y)
        float(loss)  # a sync on CUDA
        return loss

    monkeypatch.setattr(losses.SoftmaxCrossEntropy, "forward", reads_back)
    # (without torch, the generic path on array-api-strict: NumPy's own loss reads its labels' range on the host)
    backend = ["--backend", "torch"] if importlib.util.find_spec("torch") else []
    assert _op_count_script().main([*backend, "--networks", "mlp", "--mlp-batches", "2"]) == 1
    err = capsys.readouterr().err
    assert "op_count: a mlp step with sgd at batch 2 read arrays back to the host 1 time(s) (__float__)" in err


def test_op_count_script_refuses_a_backend_off_its_device(capsys):
    with pytest.raises(SystemExit) as exc:
        _op_count_script().parse_args(["--device", "cpu", "--backend", "cupy"])
    assert exc.value.code == 2
    assert "--backend cupy runs on cuda, not on --device cpu" in capsys.readouterr().err
