"""ci/gpu.sh rehearsed on the CPU, and its decisions (ci/gpu_report.py, ci/gpu_curves.py) checked one by one.

A GPU run is rare and short, so what it decides must be right before it happens: a step that ran no CUDA
test must never read PASS, a run cut off must keep its report, and the CUDA-vs-CPU tolerances must
come from the measured CPU-side perturbation, not from a guess.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).parents[1]
STEPS = ("probe", "gpu-tests", "cupy-suite", "curves", "op-counts", "bench-mlp", "bench-cnn", "cnn-accuracy",
         "bench-gpt", "torch-suite")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"ci_{name}", ROOT / "ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _load("gpu_report")
curves = _load("gpu_curves")

H100 = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"


# -- the rehearsal: a fake nvidia-smi, CuPy absent --------------------------------------------------------
def _rehearsal(tmp_path):
    """bash, and the environment of a machine whose nvidia-smi lists an H100 but where CuPy is absent."""
    bash = shutil.which("bash")
    if bash is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and coreutils' timeout")
    bin_dir, hide, out = tmp_path / "bin", tmp_path / "hide" / "cupy", tmp_path / "out"
    bin_dir.mkdir()
    hide.mkdir(parents=True)
    (bin_dir / "nvidia-smi").write_text(f"#!{bash}\ncase \"$*\" in -L) echo '{H100}';; "
                                        "*) echo 'NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB';; esac\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    (hide / "__init__.py").write_text('raise ImportError("CuPy hidden for the rehearsal")\n')
    for other in ("torch", "jax"):  # hidden too: each pytest step would import them, which takes seconds
        (hide.parent / other).mkdir()
        (hide.parent / other / "__init__.py").write_text(f'raise ImportError("{other} hidden for the rehearsal")\n')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(tmp_path / "hide"), "XPNET_GPU_PYTHON": sys.executable, "GPU_OUT": str(out),
           "XPNET_DATA": str(tmp_path / "data"), "XPNET_GPU_SUITE": "tests/test_training.py"}
    (tmp_path / "data" / "mnist").mkdir(parents=True)  # there as far as the steps' checks go: the GPU decides
    env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    return bash, env, out


def test_rehearsal_with_a_fake_gpu_and_no_cupy_runs_nothing_and_says_why(tmp_path):
    bash, env, out = _rehearsal(tmp_path)
    done = subprocess.run([bash, str(ROOT / "ci" / "gpu.sh")], capture_output=True, text=True, timeout=600,
                          env=env, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)  # NOT RUN: nothing decided
    said = {line.split(": ")[1]: line for line in done.stdout.splitlines() if line.startswith("ci/gpu.sh: ")
            and line.split(": ")[1] in STEPS}
    assert sorted(said) == sorted(STEPS), done.stdout
    assert all(": NOT RUN: " in line for line in said.values()), done.stdout
    assert "CuPy is not installed (ImportError: CuPy hidden for the rehearsal)" in said["gpu-tests"]
    for step in ("curves", "op-counts", "bench-mlp", "bench-cnn", "cnn-accuracy", "bench-gpt"):
        assert "no CUDA device that xpnet can use through cupy: CuPy is not installed" in said[step], said[step]
    assert "torch hidden for the rehearsal" in said["torch-suite"], said["torch-suite"]
    assert "PASS" not in done.stdout
    assert sorted(os.listdir(out)) == ["gpu.log", "report.md", "steps.tgz"]  # the device tool brings back 8
    text = (out / "report.md").read_text()
    assert text.startswith("# GPU verdict: NOT RUN: nothing decided: probe: CuPy cannot compute"), text[:300]
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in STEPS]
    assert len(rows) == len(STEPS) and all(" | NOT RUN | " in row for row in rows), rows
    with tarfile.open(out / "steps.tgz") as tgz:
        probe = json.load(tgz.extractfile("./probe.json"))
        assert "./gpu-tests.log" in tgz.getnames()
    assert probe["jax_preallocate"] == "false"


def test_a_run_killed_mid_step_keeps_its_report_and_log(tmp_path):
    """What the device tool does at its time limit: the report holds every step decided so far."""
    import signal
    import time

    bash, env, out = _rehearsal(tmp_path)
    run = subprocess.Popen([bash, str(ROOT / "ci" / "gpu.sh")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=env, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "| gpu-tests | RUNNING |" not in _text(out / "report.md") and time.monotonic() < deadline:
            assert run.poll() is None, "ci/gpu.sh ended before its second step"
            time.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # no trap runs: nothing is written at exit
        run.wait()
    text = _text(out / "report.md")
    assert text.startswith("# GPU verdict: NOT RUN (so far; running: gpu-tests): nothing decided: probe: CuPy"), text
    assert "| probe | NOT RUN |" in text and "| curves | NOT RUN |" in text  # decided, and not reached
    assert "cupy: raw: not usable" in _text(out / "gpu.log")  # the probe's own output


def _text(path):
    try:
        return path.read_text()
    except OSError:
        return ""


# -- pytest steps: count the CUDA tests that ran ----------------------------------------------------------
def _v_log(*lines, summary=()):
    return "\n".join(["collecting ... collected 4 items", "", *lines, "",
                      "=========================== short test summary info ============================",
                      *summary, "==== 4 done ===="])


SKIPPED_ON_CUDA = _v_log(
    "tests/test_layers.py::test_dense[numpy-cpu-float32] PASSED               [ 25%]",
    "tests/test_layers.py::test_dense[cupy-cuda0-float32] SKIPPED (needs a...) [ 50%]",
    "tests/test_layers.py::test_relu[numpy-cpu-float32] PASSED                [ 75%]",
    "tests/test_layers.py::test_relu[cupy-cuda0-float32] SKIPPED (needs a...) [100%]",
    summary=["SKIPPED [2] tests/test_layers.py:10: needs a CUDA GPU with CuPy: cuBLAS is missing"])


def test_no_cuda_test_run_on_a_usable_gpu_is_a_failure_not_a_pass():
    # pytest says "2 passed, 2 skipped" and exits 0: a failed probe on a GPU machine looked green
    verdict, reason, counts = report.judge_pytest(SKIPPED_ON_CUDA, 0, 120, "cupy-cuda", True, "")
    assert verdict == "FAIL", reason
    assert reason.startswith("0 CUDA tests ran although the probe found a usable GPU (2 skipped: needs a CUDA "
                             "GPU with CuPy: cuBLAS is missing")
    assert counts["ran"] == 0 and counts["skipped"] == 2


def test_no_cuda_test_run_without_a_usable_gpu_is_not_run():
    verdict, reason, _ = report.judge_pytest(SKIPPED_ON_CUDA, 0, 120, "cupy-cuda", False, "CuPy is not installed")
    assert (verdict, reason) == ("NOT RUN", "no usable CUDA device: CuPy is not installed (2 CUDA tests skipped)")


@pytest.mark.parametrize("code, lines, usable, verdict, reason", [
    (0, ["tests/t.py::a[cupy-cuda0-float32] PASSED [ 50%]", "tests/t.py::b[cupy-cuda0-float32] SKIPPED [100%]"],
     True, "PASS", "1 CUDA tests passed, 1 skipped"),
    (1, ["tests/t.py::a[cupy-cuda0-float32] PASSED [ 50%]", "tests/t.py::b[cupy-cuda0-float32] FAILED [100%]"],
     True, "FAIL", "2 CUDA tests ran, 1 failed, 0 skipped: tests/t.py::b[cupy-cuda0-float32]"),
    (1, ["tests/t.py::a[cupy-cuda0-float32] PASSED [ 50%]", "tests/t.py::a[cupy-cuda0-float32] ERROR [ 50%]"],
     True, "FAIL", "1 CUDA tests ran, 1 failed, 0 skipped: tests/t.py::a[cupy-cuda0-float32]"),
    (124, ["tests/t.py::a[cupy-cuda0-float32] PASSED [ 10%]"],
     True, "FAIL", "stopped at its 120 s limit: 1 CUDA tests ran, 0 failed, 0 skipped by then"),
    (2, ["ERROR tests/t.py - ModuleNotFoundError: No module named 'hypothesis'"],
     False, "FAIL", "pytest could not run the tests (exit 2): ERROR tests/t.py - ModuleNotFoundError: No module "
                    "named 'hypothesis'"),
    (0, ["tests/t.py::a[cupy-cuda0-float32] PASSED [100%]"],
     False, "FAIL", "1 CUDA tests ran, 0 failed, 0 skipped, but the probe found no usable GPU (no driver): the "
                    "probe and the tests disagree"),
], ids=["passed", "failed", "teardown-error", "timeout", "collection-error", "probe-disagrees"])
def test_pytest_step_verdicts(code, lines, usable, verdict, reason):
    got, why, _ = report.judge_pytest(_v_log(*lines), code, 120, "cupy-cuda", usable, "no driver")
    assert (got, why) == (verdict, reason)


def test_test_gpu_py_counts_every_test_as_a_cuda_test():
    log = _v_log("tests/test_gpu.py::test_out_of_memory_names_the_batch_and_gives_the_failed_step_back PASSED [ 50%]",
                 "tests/test_gpu.py::test_models_on_two_gpus_each_run_under_their_own SKIPPED (needs two...) [100%]")
    assert report.judge_pytest(log, 0, 60, "", True, "")[:2] == ("PASS", "1 CUDA tests passed, 1 skipped")


# -- before a step: may it run? ---------------------------------------------------------------------------
def _probe(logs, cupy=True, torch=False):
    status = lambda ok: {"usable": ok, "count": int(ok), "why": "" if ok else "no driver"}  # noqa: E731
    (logs / "probe.json").write_text(json.dumps({
        "cupy": {"raw": {**status(cupy), "name": "H100"}, "xpnet": status(cupy)},
        "torch": {"raw": status(torch), "xpnet": status(torch)}, "jax": {"xpnet": status(False)},
        "python": "3.12", "packages": {}, "jax_preallocate": "false"}))


def _begin(logs, *extra, left=300):
    code = report.main(["begin", "bench-gpt", "--logs", str(logs), "--timeout", "60", "--left", str(left), *extra])
    entry = json.loads((logs / "bench-gpt.verdict.json").read_text()) if code else None
    return code, entry and entry["reason"]


def test_begin_says_why_a_step_does_not_run(tmp_path, capsys):
    _probe(tmp_path, cupy=False)
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    (tmp_path / "tool.py").write_text("p.add_argument('--json')\n")
    assert _begin(tmp_path, "--requires", str(tmp_path / "bench_gpt.py")) == (
        1, f"not built yet: {tmp_path / 'bench_gpt.py'} does not exist")
    assert _begin(tmp_path, "--requires", f"{tmp_path / 'tool.py'}:--device") == (
        1, f"not built yet: {tmp_path / 'tool.py'} has no --device")
    assert _begin(tmp_path, left=19) == (1, "the run's time budget was spent (19 s left, a step needs 20 s at least)")
    assert _begin(tmp_path, "--needs", "cupy") == (1, "no CUDA device that xpnet can use through cupy: no driver")
    _probe(tmp_path, cupy=True)
    assert _begin(tmp_path, "--needs", "cupy", "--data", "")[1].startswith("no MNIST in $XPNET_DATA (unset)")
    assert _begin(tmp_path, "--needs", "cupy", "--data", str(data), "--requires", str(tmp_path / "tool.py")) == (
        0, None)
    assert "bench-gpt: NOT RUN: no MNIST" in capsys.readouterr().out
    assert _begin(tmp_path, "--only", "curves,bench-mlp") == (1, "not among XPNET_GPU_ONLY=curves,bench-mlp")
    assert _begin(tmp_path, "--only", "curves,bench-gpt") == (0, None)


# -- the probe's own verdict ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, mine, verdict", [(True, True, "PASS"), (True, False, "FAIL"), (False, True, "FAIL"),
                                                (False, False, "NOT RUN")])
def test_probe_verdict(tmp_path, raw, mine, verdict):
    _probe(tmp_path, cupy=mine)
    found = json.loads((tmp_path / "probe.json").read_text())
    found["cupy"]["raw"].update(usable=raw, why="" if raw else "cudaErrorNoDevice")
    (tmp_path / "probe.json").write_text(json.dumps(found))
    assert report.judge_probe(str(tmp_path), "", 0, 45)[0] == verdict


def test_a_probe_that_did_not_finish_fails(tmp_path):
    assert report.judge_probe(str(tmp_path), "importing cupy", 124, 45) == (
        "FAIL", "the probe did not finish (stopped at its 45 s limit): importing cupy")


# -- the report: the verdict first, written after every step ----------------------------------------------
def _plan(logs, **verdicts):
    (logs / "plan.tsv").write_text("".join(f"{s}\t60\twhat {s} does\n" for s in STEPS))
    for step, verdict in verdicts.items():
        step = step.replace("_", "-")
        if verdict == "RUNNING":
            (logs / f"{step}.running").write_text("0")
        else:
            (logs / f"{step}.verdict.json").write_text(json.dumps({"step": step, "verdict": verdict,
                                                                   "reason": f"{step} said so", "seconds": 3}))


@pytest.mark.parametrize("verdicts, final, first, code", [
    ({"probe": "PASS", "gpu_tests": "PASS", "cupy_suite": "PASS", "curves": "FAIL"}, True,
     "# GPU verdict: FAIL: failed: curves [3 pass, 1 fail, 6 not run]", 1),
    ({"probe": "PASS", "gpu_tests": "PASS", "cupy_suite": "PASS", "op_counts": "NOT RUN"}, True,
     "# GPU verdict: PASS: the probe, tests/test_gpu.py and the suite on CuPy passed [3 pass, 7 not run]", 0),
    ({"probe": "NOT RUN", "gpu_tests": "NOT RUN"}, True,
     "# GPU verdict: NOT RUN: nothing decided: probe: probe said so [10 not run]", 2),
    ({"probe": "PASS", "gpu_tests": "RUNNING"}, False,
     "# GPU verdict: NOT RUN (so far; running: gpu-tests): nothing decided: gpu-tests: running when this report "
     "was written (if this is the last report, the run was cut off during this step) [1 pass, 8 not run]", 0),
], ids=["a-failure", "decisive-passed", "no-gpu", "cut-off"])
def test_report_puts_the_verdict_first(tmp_path, verdicts, final, first, code):
    _plan(tmp_path, **verdicts)
    out = tmp_path / "report.md"
    assert report.main(["report", "--logs", str(tmp_path), "--output", str(out)] + (["--final"] if final else [])) \
        == code
    lines = out.read_text().splitlines()
    assert lines[0] == first
    rows = {}
    for line in lines:
        cells = line.split(" | ")
        if line.startswith("| ") and cells[0][2:] in STEPS:
            rows[cells[0][2:]] = cells[1]
    assert list(rows) == list(STEPS)  # every planned step, in order, reached or not
    assert rows["op-counts"] == "NOT RUN" and rows["probe"] == verdicts["probe"]
    assert not list(tmp_path.glob("*.tmp"))


def test_gpu_report_carries_the_cnn_table(tmp_path):
    table = ("CNN training, 40 steps per pass, 3 interleaved passes, cuda\n"
             "batch  runner  median s   best s  samples/s   GPU MiB   cpu s  xpnet/torch  cpu ratio\n"
             "   64  xpnet       1.00     0.90       2560       100    1.00        2.00x      1.00x\n"
             "   64  xpnet throughput / torch CUDA: 0.50x (target >= 0.5x)\n")
    _plan(tmp_path, bench_cnn="PASS")
    (tmp_path / "bench-cnn.log").write_text("loading MNIST\n" + table)
    out = tmp_path / "report.md"
    report.main(["report", "--logs", str(tmp_path), "--output", str(out)])
    section = out.read_text().split("### bench-cnn: ")[1].split("### ")[0]
    assert "**PASS**: bench-cnn said so" in section and table.strip() in section
    assert "loading MNIST" not in section


def test_report_tables_the_loss_curves(tmp_path):
    tol = {"loss_rtol": [1e-6, 1e-6], "accuracy_atol": 0.001}
    got, ref = {"loss": [0.5, 0.2500001], "accuracy": 0.95}, {"loss": [0.5, 0.25], "accuracy": 0.9505}
    (tmp_path / "curves.json").write_text(json.dumps([{"run": "r", "title": "a run", "got": got, "ref": ref, **tol,
                                                       **curves.compare(got, ref, tol)}]))
    _plan(tmp_path, curves="PASS")
    out = tmp_path / "report.md"
    report.main(["report", "--logs", str(tmp_path), "--output", str(out)])
    assert "| a run | 2 | 4.00e-07 | 1.0e-06 | 0.0005 | 0.0010 | ok |" in out.read_text()


# -- the other judges -------------------------------------------------------------------------------------
@pytest.mark.parametrize("log, code, verdict", [
    ("epoch 1/1  loss 0.2100  train acc 0.9350  test loss 0.0600  test acc 0.9812  9,000 samples/s", 0, "PASS"),
    ("epoch 1/1  loss 0.2100  train acc 0.9350  test loss 0.0600  test acc 0.9512  9,000 samples/s", 0, "FAIL"),
    ("xpnet: error: cuda:0: out of memory", 1, "FAIL"),
    ("epoch 1/1  loss 0.2100  train acc 0.9350  test loss 0.0600  test acc 0.9812", 124, "FAIL"),
])
def test_cnn_accuracy_verdict(log, code, verdict):
    assert report.judge_accuracy(log, code, 60, 0.977)[0] == verdict


# -- the loss curves: tolerances from the CPU-side perturbation -------------------------------------------
def test_every_curve_run_has_its_perturbation_figures():
    """Change a run in gpu_curves.RUNS and this fails until ci/perturb_matmul.py has measured it again."""
    figures = curves.load_figures()
    for name, (_, run_args) in curves.RUNS.items():
        tol = curves.tolerances(figures, name, run_args)
        assert len(tol["loss_rtol"]) == int(run_args[run_args.index("--epochs") + 1])


def test_tolerances_derive_from_the_spread():
    run = ["--model", "mlp", "--epochs", "3"]
    figures = {"runs": {"r": {"args": run, "loss_spread": [1e-9, 3e-5, 2e-6], "accuracy_spread": 0.0015}}}
    tol = curves.tolerances(figures, "r", run)
    assert tol["loss_rtol"] == pytest.approx([1e-6, 3e-4, 3e-4])  # the floor, then ten times the largest so far
    assert tol["accuracy_atol"] == pytest.approx(0.015)
    figures["runs"]["r"]["args"] = [*run, "--dtype", "float64"]
    with pytest.raises(KeyError, match="rerun `python ci/perturb_matmul.py"):
        curves.tolerances(figures, "r", run)


def test_sgd_and_float64_runs_are_compared_tightly_adamw_runs_loosely():
    figures = curves.load_figures()
    tol = {name: curves.tolerances(figures, name, args) for name, (_, args) in curves.RUNS.items()}
    assert max(tol["tutorial-sgd"]["loss_rtol"]) <= 1e-6
    assert max(tol["relu-sgd-f64"]["loss_rtol"]) <= 1e-9
    assert max(tol["mlp-adamw"]["loss_rtol"]) > 100 * max(tol["tutorial-sgd"]["loss_rtol"])
    # what rtol=1e-5 everywhere did: a correct AdamW run on a GPU would have failed it
    assert max(figures["runs"]["mlp-adamw"]["loss_spread"]) > 1e-5


def test_compare_fails_the_curve_or_the_accuracy():
    tol = {"loss_rtol": [1e-6, 1e-6], "accuracy_atol": 0.001}
    ref = {"loss": [0.5, 0.25], "accuracy": 0.95}
    assert curves.compare({"loss": [0.5, 0.25000001], "accuracy": 0.9505}, ref, tol)["passed"]
    bad = curves.compare({"loss": [0.5, 0.2501], "accuracy": 0.95}, ref, tol)
    assert bad["problems"] == ["epoch 2: loss differs by 4.00e-04 relative > 1.0e-06"]
    bad = curves.compare({"loss": [0.5, 0.25], "accuracy": 0.94}, ref, tol)
    assert bad["problems"] == ["final test accuracy 0.9400 against 0.9500: 0.0100 apart > 0.0010"]
    assert not curves.compare({"loss": [0.5], "accuracy": 0.95}, ref, tol)["passed"]  # an epoch missing
    assert not curves.compare({"loss": [0.5, float("nan")], "accuracy": 0.95}, ref, tol)["passed"]


def test_the_perturbation_changes_only_the_rounding_of_strict_matmuls():
    xp = pytest.importorskip("array_api_strict")
    perturb = _load("perturb_matmul")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(64, 300)).astype(np.float32), rng.normal(size=(300, 20)).astype(np.float32)
    plain = np.asarray(xp.asarray(a) @ xp.asarray(b))
    with perturb.perturbed(perturb._float64_round):
        rounded = [np.asarray(xp.asarray(a) @ xp.asarray(b)), np.asarray(xp.matmul(xp.asarray(a), xp.asarray(b)))]
    exact = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
    for got in rounded:
        np.testing.assert_array_equal(got, exact)
        assert got.dtype == np.float32
    assert not np.array_equal(plain, exact)  # so the perturbation perturbs
    np.testing.assert_allclose(plain, exact, rtol=1e-4, atol=1e-4)  # by rounding only
    np.testing.assert_array_equal(np.asarray(xp.asarray(a) @ xp.asarray(b)), plain)  # and ends with the block


def test_curves_dry_run_on_the_cpu(data_dir, monkeypatch):
    """The CUDA comparison's code, CPU against CPU on a few samples: every run within its tolerance."""
    pytest.importorskip("array_api_strict")
    monkeypatch.setenv("XPNET_DATA", data_dir)
    assert curves.curves(device="cpu", reference="cpu", limit=256) == 0
