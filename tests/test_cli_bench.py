"""``xpnet bench``: the table, the verdict, the JSON, a model file, the backends it cannot measure and why.

Tiny runs (a few steps on a few hundred synthetic rows); the figures themselves are never asserted, only
what the command says about them and that the clock is read after the device has finished.
"""

from __future__ import annotations

import importlib.util
import json
import re
import types

import pytest

import xpnet
from xpnet.cli import bench

from conftest import run_main

TINY = ("--samples", "64", "--batch-size", "16", "--steps", "2", "--warmup", "1")
HAVE_TORCH = importlib.util.find_spec("torch") is not None
ROW = re.compile(r"^(\S+) +(cpu|cuda:\d+) +(\d+\.\d\d) +([\d,]+) +(\d+\.\d\d)x +(\d+) +(\d+\.\d) ms$")


def _rows(out: str) -> dict:
    return {m[1]: m.groups() for m in map(ROW.match, out.splitlines()) if m}


def test_bench_tables_each_backend_and_gives_a_verdict(capsys):
    backends = "numpy,torch" if HAVE_TORCH else "numpy"
    code, out, err = run_main(capsys, "bench", *TINY, "--backends", backends)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == ("xpnet bench: the mlp preset, 784-512-256-10 relu, softmax_cross_entropy, adamw, batch 16, "
                        "float32, on 64 synthetic samples: 1 warm-up step, then 2 timed")
    assert lines[1].split() == ["backend", "device", "ms/step", "samples/s", "vs", "fastest", "steps", "data", "upload"]
    rows = _rows(out)
    assert sorted(rows) == sorted(backends.split(","))
    assert all(r[1] == "cpu" and r[5] == "2" for r in rows.values())
    fastest = min(rows.values(), key=lambda r: float(r[2]))
    assert fastest[4] == "1.00"
    assert lines[-2].startswith("A step gathers its batch from the data on the device and reads the losses back "
                                "every 50 steps, as fit does; data upload: the 64 samples moved to the device once")
    verdict = lines[-1]
    if HAVE_TORCH:
        assert re.fullmatch(r"fastest: cpu \((numpy|torch)\), (\d+\.\dx faster than|within 5% of) "
                            r"cpu \((numpy|torch)\)", verdict), verdict
        assert verdict.startswith(f"fastest: cpu ({fastest[0]})")
    else:
        assert verdict == "fastest: cpu (numpy), the only one measured here"


def test_bench_json_holds_the_figures_and_what_was_not_measured(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "unavailable", lambda name, kind: None if name == "numpy" else "not here (test)")
    path = tmp_path / "bench.json"
    code, out, err = run_main(capsys, "bench", "--model", "tutorial", *TINY, "--json", str(path))
    assert code == 0, err
    found = json.loads(path.read_text())
    assert {k: found[k] for k in ("model", "batch_size", "steps", "warmup", "samples", "input_shape", "loss",
                                  "optimizer")} == {
        "model": "--model tutorial", "batch_size": 16, "steps": 2, "warmup": 1, "samples": 64, "input_shape": [784],
        "loss": "mse", "optimizer": "sgd"}
    [result] = found["results"]
    assert (result["backend"], result["device"], result["steps"], result["vs_fastest"]) == ("numpy", "cpu", 2, 1.0)
    assert result["samples_per_s"] == pytest.approx(16 * 1000 / result["ms_per_step"])
    assert result["upload_ms"] >= 0
    assert found["verdict"] == "fastest: cpu (numpy), the only one measured here" == out.splitlines()[-1]
    assert {(s["backend"], s["device"]): s["reason"] for s in found["not_measured"]} == {
        ("cupy", "cuda"): "not here (test)", ("torch", "cpu"): "not here (test)", ("torch", "cuda"): "not here (test)",
        ("jax", "cpu"): "not here (test)", ("jax", "cuda"): "not here (test)",
        ("array-api-strict", "cpu"): bench.SKIPPED["array-api-strict"]}


def test_bench_says_why_each_missing_backend_is_not_measured(capsys, monkeypatch):
    missing = {("torch", "cpu"): "PyTorch is not installed (simulated). Fix: pip install 'xpnet[torch]'",
               ("cupy", "cuda"): "CuPy finds no NVIDIA driver (simulated)"}
    monkeypatch.setattr(bench, "unavailable", lambda name, kind: missing.get((name, kind), "absent (simulated)")
                        if name != "numpy" else None)
    code, out, _ = run_main(capsys, "bench", *TINY)
    assert code == 0
    said = [line for line in out.splitlines() if line.startswith("not measured: ")]
    assert said == [
        "not measured: torch on cpu: PyTorch is not installed (simulated). Fix: pip install 'xpnet[torch]'",
        "not measured: array-api-strict on cpu: a checker of the Array API standard, not a backend to train fast on "
        "(--backends array-api-strict times it anyway)",
        "not measured: jax on cpu: absent (simulated)",
        "not measured: cupy on cuda: CuPy finds no NVIDIA driver (simulated)",
        "not measured: torch on cuda: absent (simulated)",
        "not measured: jax on cuda: absent (simulated)"]
    assert list(_rows(out)) == ["numpy"]


def test_a_backend_asked_for_by_name_is_measured_and_nothing_measured_is_an_error(capsys, monkeypatch):
    pytest.importorskip("array_api_strict")
    code, out, _ = run_main(capsys, "bench", *TINY, "--backends", "strict")
    assert code == 0 and list(_rows(out)) == ["array-api-strict"]
    monkeypatch.setattr(bench, "unavailable", lambda name, kind: "gone (simulated)")
    code, out, err = run_main(capsys, "bench", *TINY, "--backends", "numpy")
    assert code == 1
    assert out.splitlines()[1:] == ["not measured: numpy on cpu: gone (simulated)"]
    assert err == "xpnet: error: no device and backend could be measured here (see the 'not measured' lines)\n"


def test_a_backend_that_fails_is_reported_and_the_others_still_run(capsys, monkeypatch):
    measure = bench.measure

    def broken_on_strict(dev, *args):
        if dev.backend == "array-api-strict":
            raise RuntimeError("kernel exploded (simulated)")
        return measure(dev, *args)

    pytest.importorskip("array_api_strict")
    monkeypatch.setattr(bench, "measure", broken_on_strict)
    code, out, _ = run_main(capsys, "bench", *TINY, "--backends", "numpy,array-api-strict")
    assert code == 1
    assert "not measured: array-api-strict on cpu: failed: RuntimeError: kernel exploded (simulated)" in out
    assert list(_rows(out)) == ["numpy"]


def test_bench_times_a_model_file_with_what_it_records(tmp_path, capsys):
    model = xpnet.Sequential([xpnet.Dense(6, 8), xpnet.ReLU(), xpnet.Dense(8, 3)], device="cpu", seed=0)
    path = tmp_path / "small.npz"
    xpnet.save(model, str(path), metadata={"loss": "mse", "optimizer": "momentum", "lr": 0.01, "batch_size": 8})
    code, out, err = run_main(capsys, "bench", str(path), "--samples", "40", "--steps", "2", "--warmup", "1",
                              "--backends", "numpy")
    assert code == 0, err
    assert out.startswith(f"xpnet bench: {path} (3 layers), mse, momentum, batch 8, float32, on 40 synthetic "
                          f"samples: 1 warm-up step, then 2 timed\n")
    assert list(_rows(out)) == ["numpy"]


def test_bench_asks_for_the_input_shape_where_the_file_does_not_fix_it(tmp_path, capsys):
    model = xpnet.Sequential([xpnet.Flatten(), xpnet.Dense(6, 1)], device="cpu", seed=0)
    path = tmp_path / "flat.npz"
    xpnet.save(model, str(path))
    args = ("bench", str(path), "--samples", "40", "--batch-size", "8", "--steps", "2", "--backends", "numpy")
    code, _, err = run_main(capsys, *args)
    assert code == 1
    assert err == (f"xpnet: error: {path} starts with a layer that takes more than one input shape: give one "
                   f"sample's shape with --input-shape (e.g. 28,28 or 1,28,28)\n")
    code, out, err = run_main(capsys, *args, "--input-shape", "2,3")
    assert code == 0, err
    assert ", binary_cross_entropy, adamw (assumed: the file does not record its loss and optimizer), batch 8" in out


@pytest.mark.parametrize("argv, said", [
    (["--batch-size", "0"], "argument --batch-size: must be a positive integer, got '0'"),
    (["--warmup", "-1"], "argument --warmup: must be an integer >= 0, got '-1'"),
    (["--backends", "numpy,tensorflow"], "argument --backends: unknown backend 'tensorflow': choose one of"),
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
])
def test_bad_arguments_are_usage_errors(capsys, argv, said):
    with pytest.raises(SystemExit) as exc:
        run_main(capsys, "bench", *argv)
    assert exc.value.code == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("argv, said", [
    (["m.npz", "--model", "cnn"], "give a model file or --model, not both (got m.npz and --model cnn)"),
    (["--samples", "10"], "--samples 10 is less than one batch (--batch-size 128): give more samples, or a smaller "
                          "batch"),
])
def test_contradictory_arguments_say_what_to_do(capsys, argv, said):
    code, _, err = run_main(capsys, "bench", *argv)
    assert (code, err) == (1, f"xpnet: error: {said}\n")


def test_the_clock_is_read_only_after_the_device_has_finished(monkeypatch, capsys):
    """On a GPU the kernels run after the Python that queued them: a clock read before synchronizing would
    time the queueing. Between the device work (the upload, each step's gather) and a clock read, a sync."""
    events = []

    def logged(event, fn):
        return lambda *args, **kwargs: events.append(event) or fn(*args, **kwargs)

    monkeypatch.setattr(xpnet.backend, "synchronize", logged("sync", xpnet.backend.synchronize))
    monkeypatch.setattr(bench, "prepare_xy", logged("work", bench.prepare_xy))
    monkeypatch.setattr(bench, "take", logged("work", bench.take))
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=logged("clock", lambda: len(events))))
    code, _, err = run_main(capsys, "bench", *TINY, "--backends", "numpy")
    assert code == 0, err
    before = [[e for e in events[:i] if e != "clock"][-1] for i, e in enumerate(events) if e == "clock"]
    assert len(before) >= 4 and set(before) == {"sync"}, events
    assert events.count("work") > 6  # the upload's and every step's


def test_the_steps_default_to_fewer_where_one_is_slow(monkeypatch):
    ticks = iter([0.0, 4.0, 0.0, 1.0])  # the last warm-up step takes 4 s; then the timed ones
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    ran = []
    seconds, steps = bench._time_steps(lambda first, count: ran.append((first, count)), None, 2)
    assert steps == 3 and ran == [(0, 1), (1, 1), (2, 3)] and seconds == pytest.approx(1 / 3)
    ticks = iter([0.0, 0.01, 0.0, 1.0])
    assert bench._time_steps(lambda first, count: None, None, 1)[1] == bench.DEFAULT_STEPS
    ticks = iter([0.0, 1.0])  # no warm-up: nothing tells, the steps asked for run
    assert bench._time_steps(lambda first, count: ran.append((first, count)), 5, 0) == (0.2, 5)
    assert ran[-1] == (0, 5)


def _result(name, ms):
    backend_name, device = name[name.index("(") + 1:-1], name.split(" ")[0]
    return {"backend": backend_name, "device": device, "name": name, "ms_per_step": ms,
            "samples_per_s": 128_000 / ms, "upload_ms": 1.0, "steps": 20}


@pytest.mark.parametrize("times, verdict", [
    ({"cpu (numpy)": 10.0, "cuda:0 (cupy)": 4.0, "cpu (torch)": 12.0},
     "fastest: cuda:0 (cupy), 2.5x faster than cpu (numpy)"),
    ({"cpu (numpy)": 10.0, "cpu (torch)": 10.4}, "fastest: cpu (numpy), within 5% of cpu (torch)"),
])
def test_the_table_runs_from_the_fastest_and_the_verdict_compares_the_first_two(times, verdict):
    args = types.SimpleNamespace(steps=None, warmup=3, batch_size=128, samples=60000)
    spec = types.SimpleNamespace(title="the mlp preset", loss="softmax_cross_entropy", optimizer=("adamw", 1e-3),
                                 note="", dtype="float32", label="--model mlp", input_shape=(784,))
    report = bench._report(args, spec, [_result(name, ms) for name, ms in times.items()], [])
    assert report["lines"][0].endswith("on 60,000 synthetic samples: 3 warm-up steps, then up to 20 timed")
    rows = [m.groups() for m in map(ROW.match, report["lines"]) if m]
    fastest = min(times.values())
    assert [(r[0], float(r[2]), float(r[4])) for r in rows] == [
        (name[name.index("(") + 1:-1], ms, round(ms / fastest, 2)) for name, ms in sorted(times.items(),
                                                                                        key=lambda kv: kv[1])]
    assert report["verdict"] == verdict == report["lines"][-1]


def test_the_cnn_preset_is_timed_on_mnist_shaped_rows(capsys):
    code, out, err = run_main(capsys, "bench", "--model", "cnn", "--samples", "8", "--batch-size", "4", "--steps",
                              "1", "--warmup", "0", "--backends", "numpy")
    assert code == 0, err
    assert out.startswith("xpnet bench: the cnn preset, 28x28 conv32-conv64-maxpool-128-10 relu, "
                          "softmax_cross_entropy, adamw, batch 4, float32, on 8 synthetic samples: 0 warm-up steps, "
                          "then 1 timed\n")
    assert list(_rows(out)) == ["numpy"]
