#!/usr/bin/env python
"""The decisions of ``ci/gpu.sh``: what each step proved (PASS / FAIL / NOT RUN, with the reason) and the report.

    python ci/gpu_report.py probe --json DIR/probe.json    # can CuPy, torch, JAX compute on the GPU here?
    python ci/gpu_report.py begin STEP --logs DIR ...       # exit 0: run it; 1: recorded as NOT RUN (why)
    python ci/gpu_report.py judge STEP --logs DIR --exit N  # read its log and exit status, record a verdict
    python ci/gpu_report.py report --logs DIR --output report.md [--final]
    python ci/gpu_report.py curves --json curves.json       # the CUDA-vs-CPU loss curves (ci/gpu_curves.py)

``DIR`` is the script's work folder: ``plan.tsv`` (the steps, in order, with their time limits),
``<step>.log``, ``<step>.running`` while one runs, ``<step>.verdict.json`` and the figures a step writes
(``probe.json``, ``curves.json``). ``report`` can be written at any moment: ``ci/gpu.sh`` rewrites it after
every step, so a run cut off keeps what it decided. Standard library only (curves and probe aside), so
the decisions work with any Python.

The overall verdict, on the report's first line and as ``report --final``'s exit status: FAIL (1) if any
step failed; PASS (0) if the decisive steps (the probe, tests/test_gpu.py and the suite on CuPy) passed;
else NOT RUN (2): nothing was decided (no GPU that CuPy can use, or the run stopped first).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys

DECISIVE = ("probe", "gpu-tests", "cupy-suite")
EXIT = {"PASS": 0, "FAIL": 1, "NOT RUN": 2}
MIN_LEFT = 20  # seconds: a step started with less than this left of the budget could not finish anything
TIMED_OUT = (124, 137)  # timeout(1): SIGTERM sent / SIGKILL after it


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def _json(path, default=None):
    text = _read(path)
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


# -- the probe --------------------------------------------------------------------------------------------
def _raw_cupy() -> dict:
    """CuPy alone, without xpnet: does a matmul (cuBLAS) and an elementwise kernel (NVRTC) run?"""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        a = cupy.full((4, 4), 0.5, dtype=cupy.float32)
        ok = float((a @ a).sum()) == 16.0 and float((a * 2 + 1).sum()) == 32.0
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        return {"usable": ok, "count": count, "why": "" if ok else "a 4x4 matmul gave a wrong sum",
                "version": cupy.__version__, "name": name}
    except Exception as exc:  # noqa: BLE001 - every way of failing is the finding
        return {"usable": False, "count": 0, "why": f"{type(exc).__name__}: {exc}"[:300]}


def _raw_torch() -> dict:
    try:
        import torch

        if not torch.cuda.is_available():
            return {"usable": False, "why": f"torch {torch.__version__}: torch.cuda.is_available() is False",
                    "version": torch.__version__}
        a = torch.full((4, 4), 0.5, device="cuda")
        return {"usable": float((a @ a).sum()) == 16.0, "why": "", "version": torch.__version__,
                "name": torch.cuda.get_device_name(0)}
    except Exception as exc:  # noqa: BLE001
        return {"usable": False, "why": f"{type(exc).__name__}: {exc}"[:300]}


def _xpnet_status(library: str) -> dict:
    try:
        from xpnet import backend

        count, why = backend.cuda_status(library)
        return {"usable": count > 0, "count": count, "why": str(why)}
    except Exception as exc:  # noqa: BLE001
        return {"usable": False, "count": 0, "why": f"{type(exc).__name__}: {exc}"[:300]}


def probe(args) -> int:
    result = {"cupy": {"raw": _raw_cupy(), "xpnet": _xpnet_status("cupy")},
              "torch": {"raw": _raw_torch(), "xpnet": _xpnet_status("torch")},
              "jax": {"xpnet": _xpnet_status("jax")}, "python": sys.version.split()[0], "packages": _versions(),
              # JAX takes 75 % of the GPU at its first array unless told not to (in the pytest process too)
              "jax_preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "(unset: 75 %)")}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    for library in ("cupy", "torch", "jax"):
        print(f"{library}: " + "; ".join(f"{k}: {'usable' if v['usable'] else 'not usable'}"
                                         f"{' (' + v['why'] + ')' if v.get('why') else ''}"
                                         for k, v in result[library].items()), flush=True)
    return 0


def _versions() -> dict:
    from importlib import metadata

    found = {}
    for package in ("xpnet", "numpy", "array-api-compat", "cupy-cuda12x", "cupy-cuda13x", "torch", "jax",
                    "pytest"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def usable(logs, library) -> tuple[bool, str]:
    """Whether the probe found that xpnet computes on CUDA through ``library``, and why not."""
    found = _json(os.path.join(logs, "probe.json"))
    if found is None:
        return False, "the probe did not run or did not finish"
    status = found[library]["xpnet"]
    return status["usable"], status["why"]


# -- before and after a step ------------------------------------------------------------------------------
def record(logs, step, verdict, reason, **extra) -> dict:
    entry = {"step": step, "verdict": verdict, "reason": reason, **extra}
    with open(os.path.join(logs, f"{step}.verdict.json"), "w") as f:
        json.dump(entry, f, indent=1)
    try:
        os.remove(os.path.join(logs, f"{step}.running"))
    except OSError:
        pass
    print(f"ci/gpu.sh: {step}: {verdict}: {reason}", flush=True)
    return entry


def begin(args) -> int:
    """Exit 0 if the step should run; else record it as NOT RUN, saying why, and exit 1."""
    chosen = [s for s in args.only.split(",") if s]
    why = f"not among XPNET_GPU_ONLY={args.only}" if chosen and args.step not in chosen + ["probe"] else None
    for need in (args.requires or ()) if why is None else ():
        path, _, text = need.partition(":")
        if not os.path.exists(path):
            why = f"not built yet: {path} does not exist"
        elif text and text not in _read(path):
            why = f"not built yet: {path} has no {text}"
        if why:
            break
    if why is None and args.left < MIN_LEFT:
        why = f"the run's time budget was spent ({args.left} s left, a step needs {MIN_LEFT} s at least)"
    if why is None and args.needs:
        ok, reason = usable(args.logs, args.needs)
        why = None if ok else f"no CUDA device that xpnet can use through {args.needs}: {reason}"
    if why is None and args.data is not None and not os.path.isdir(os.path.join(args.data, "mnist")):
        why = (f"no MNIST in {args.data or '$XPNET_DATA (unset)'}: set XPNET_DATA to a folder holding mnist/, or "
               f"carry .gpu-carry/ (bash ci/gpu_carry.sh)")
    if why is None:
        return 0
    record(args.logs, args.step, "NOT RUN", why, seconds=0, timeout=args.timeout)
    return 1


_RESULT = re.compile(r"^(?P<id>\S+::.*?) (?P<outcome>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)"
                     r"(?: \((?P<reason>.*?)\))?\s*(?:\[\s*\d+%\])?\s*$")


def pytest_outcomes(log: str, cuda_ids: str) -> dict:
    """From pytest -v's lines (one per test as it ends, so a timeout keeps them): each CUDA test's outcomes."""
    tests: dict[str, dict] = {}
    for line in log.splitlines():
        m = _RESULT.match(line.strip())
        if m and cuda_ids in m["id"]:
            entry = tests.setdefault(m["id"], {"outcomes": [], "reason": ""})
            entry["outcomes"].append(m["outcome"])
            entry["reason"] = entry["reason"] or (m["reason"] or "")
    return tests


def judge_pytest(log, code, timeout, cuda_ids, ok, why) -> tuple[str, str, dict]:
    tests = pytest_outcomes(log, cuda_ids)
    ran = [t for t, e in tests.items() if set(e["outcomes"]) - {"SKIPPED"}]
    failed = [t for t, e in tests.items() if {"FAILED", "ERROR"} & set(e["outcomes"])]
    skipped = [t for t in tests if t not in ran]
    # -rs's summary has the whole reason; -v's line cuts it to the terminal's width
    reasons = sorted(set(re.findall(r"^SKIPPED \[\d+\] \S+?: (.*)$", log, re.M))
                     or {tests[t]["reason"] for t in skipped if tests[t]["reason"]})
    counts = {"ran": len(ran), "failed": failed, "skipped": len(skipped), "skip_reasons": reasons}
    said = f"{len(ran)} CUDA tests ran, {len(failed)} failed, {len(skipped)} skipped"
    if code in TIMED_OUT:
        return "FAIL", f"stopped at its {timeout} s limit: {said} by then", counts
    if code in (2, 3, 4):
        errors = [line.strip()[:300] for line in log.splitlines() if line.startswith("ERROR ")]
        return "FAIL", f"pytest could not run the tests (exit {code}): {errors[0] if errors else _last_line(log)}", \
            counts
    if failed:
        return "FAIL", f"{said}: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}", counts
    if not ran:
        if ok:
            return "FAIL", (f"0 CUDA tests ran although the probe found a usable GPU ({len(skipped)} skipped"
                            f"{': ' + reasons[0] if reasons else ''})"), counts
        return "NOT RUN", f"no usable CUDA device: {why} ({len(skipped)} CUDA tests skipped)", counts
    if not ok:
        return "FAIL", f"{said}, but the probe found no usable GPU ({why}): the probe and the tests disagree", counts
    if code != 0:
        return "FAIL", f"pytest exited with {code}: {_last_line(log)}", counts
    return "PASS", f"{len(ran)} CUDA tests passed, {len(skipped)} skipped", counts


def judge_probe(logs, log, code, timeout) -> tuple[str, str]:
    found = _json(os.path.join(logs, "probe.json"))
    if found is None:
        limit = f"stopped at its {timeout} s limit" if code in TIMED_OUT else f"exit {code}"
        return "FAIL", f"the probe did not finish ({limit}): {_last_line(log)}"
    raw, mine = found["cupy"]["raw"], found["cupy"]["xpnet"]
    torch = found["torch"]["xpnet"]
    others = (f"torch on CUDA: {'usable' if torch['usable'] else 'not usable (' + torch['why'] + ')'}; JAX: "
              f"{'usable' if found['jax']['xpnet']['usable'] else 'no GPU'}")
    if raw["usable"] and mine["usable"]:
        return "PASS", f"CuPy {raw.get('version')} computes on {mine['count']} GPU(s) ({raw.get('name')}); {others}"
    if raw["usable"] != mine["usable"]:
        return "FAIL", (f"CuPy alone {'computes' if raw['usable'] else 'does not compute'} on the GPU "
                        f"({raw['why'] or 'ok'}) but xpnet's probe says {mine['why'] or 'usable'}")
    return "NOT RUN", f"CuPy cannot compute on a GPU here: {mine['why']}; {others}"


def judge_curves(logs, log, code, timeout) -> tuple[str, str]:
    runs = _json(os.path.join(logs, "curves.json"), [])
    bad = [r["run"] for r in runs if not r["passed"]]
    said = f"{len(runs) - len(bad)} of {len(runs)} runs within tolerance"
    if code in TIMED_OUT:
        return "FAIL", f"stopped at its {timeout} s limit: {said} by then"
    if bad:
        return "FAIL", f"{said}; outside: {', '.join(bad)}"
    if code != 0 or not runs:
        return "FAIL", f"exit {code}: {_last_line(log)}"
    return "PASS", said


def judge_accuracy(log, code, timeout, minimum) -> tuple[str, str]:
    found = re.findall(r"test acc (\d+\.\d+)", log)
    if code in TIMED_OUT:
        return "FAIL", f"stopped at its {timeout} s limit"
    if code != 0 or not found:
        return "FAIL", f"exit {code}: {_last_line(log)}"
    acc = float(found[-1])
    return ("PASS" if acc >= minimum else "FAIL"), f"test accuracy {acc:.4f} (needs >= {minimum:g})"


def judge(args) -> int:
    log = _read(os.path.join(args.logs, f"{args.step}.log"))
    code, counts = args.exit, None
    if args.kind == "pytest":
        ok, why = usable(args.logs, args.needs)
        verdict, reason, counts = judge_pytest(log, code, args.timeout, args.cuda_ids, ok, why)
    elif args.kind == "probe":
        verdict, reason = judge_probe(args.logs, log, code, args.timeout)
    elif args.kind == "curves":
        verdict, reason = judge_curves(args.logs, log, code, args.timeout)
    elif args.kind == "accuracy":
        verdict, reason = judge_accuracy(log, code, args.timeout, args.min_accuracy)
    elif code in TIMED_OUT:
        verdict, reason = "FAIL", f"stopped at its {args.timeout} s limit: {_last_line(log)}"
    else:
        verdict, reason = ("PASS", "ran to the end") if code == 0 else ("FAIL", f"exit {code}: {_last_line(log)}")
    record(args.logs, args.step, verdict, reason, seconds=args.seconds, timeout=args.timeout, exit=code,
           command=args.command, tests=counts)
    return 0


# -- the report -------------------------------------------------------------------------------------------
def plan(logs) -> list[dict]:
    steps = []
    for line in _read(os.path.join(logs, "plan.tsv")).splitlines():
        name, timeout, what = (line.split("\t") + ["", ""])[:3]
        steps.append({"step": name, "timeout": timeout, "what": what})
    return steps


def states(logs) -> list[dict]:
    """Each planned step with its record, or RUNNING / not reached."""
    out = []
    for step in plan(logs):
        entry = _json(os.path.join(logs, f"{step['step']}.verdict.json"))
        if entry is None and os.path.exists(os.path.join(logs, f"{step['step']}.running")):
            entry = {"verdict": "RUNNING", "reason": "running when this report was written (if this is the last "
                                                     "report, the run was cut off during this step)"}
        out.append({**step, **(entry or {"verdict": "NOT RUN", "reason": "not reached"})})
    return out


def overall(steps, final) -> tuple[str, str]:
    verdicts = {s["step"]: s["verdict"] for s in steps}
    failed = [s for s, v in verdicts.items() if v == "FAIL"]
    tally = ", ".join(f"{sum(v == k for v in verdicts.values())} {k.lower()}" for k in ("PASS", "FAIL", "NOT RUN")
                      if k in verdicts.values())
    if failed:
        verdict, why = "FAIL", f"failed: {', '.join(failed)}"
    elif all(verdicts.get(s) == "PASS" for s in DECISIVE):
        verdict, why = "PASS", "the probe, tests/test_gpu.py and the suite on CuPy passed"
    else:
        first = next((s for s in steps if s["step"] in DECISIVE and s["verdict"] != "PASS"), None)
        verdict = "NOT RUN"
        why = f"nothing decided: {first['step']}: {first['reason']}" if first else "nothing decided"
    running = [s["step"] for s in steps if s["verdict"] == "RUNNING"]
    when = "" if final else f" (so far{'; running: ' + running[0] if running else ''})"
    return verdict, f"{verdict}{when}: {why} [{tally}]"


def _machine(logs) -> list[str]:
    found = _json(os.path.join(logs, "probe.json"))
    if found is None:
        return ["(the probe has not run: no versions yet)"]
    gpu = found["cupy"]["raw"].get("name") or found["torch"]["raw"].get("name") or "none usable"
    lines = [f"- GPU: {gpu}; python {found['python']}; XLA_PYTHON_CLIENT_PREALLOCATE={found['jax_preallocate']}"]
    lines += [f"- {package} {version}" for package, version in found["packages"].items()]
    lines += [f"- nvidia-smi: {line}" for line in _read(os.path.join(logs, "nvidia-smi.txt")).splitlines()[:4]]
    return lines


def _tests_section(entry) -> list[str]:
    tests = entry.get("tests") or {}
    out = [f"CUDA tests: {tests.get('ran', 0)} ran, {len(tests.get('failed', []))} failed, "
           f"{tests.get('skipped', 0)} skipped"]
    out += [f"- FAILED {t}" for t in tests.get("failed", [])[:30]]
    out += [f"- skipped because: {r}" for r in tests.get("skip_reasons", [])[:10]]
    return out


def _curves_section(logs) -> list[str]:
    out = ["| run | epochs | worst loss difference (relative) | allowed | accuracy difference | allowed | |",
           "|---|---|---|---|---|---|---|"]
    for r in _json(os.path.join(logs, "curves.json"), []):
        out.append(f"| {r['title']} | {len(r['got']['loss'])} | {max(r['rel_diff'], default=0):.2e} | "
                   f"{max(r['loss_rtol']):.1e} | {r['accuracy_diff']:.4f} | {r['accuracy_atol']:.4f} | "
                   f"{'ok' if r['passed'] else 'FAIL'} |")
    return out + ["", "Allowed: ten times what changing only the matrix products' rounding moved the same run "
                      "on the CPU (ci/perturb_matmul.py, figures in ci/matmul_perturbation.json)."]


def _bench_tables(log: str) -> str:
    """bench_mlp.py's tables (each from its 'batch N (...' header to the blank line after it)."""
    keep, inside = [], False
    for line in log.splitlines():
        if line.startswith("batch "):
            inside = True
        if inside:
            keep.append(line)
            if not line.strip():
                inside = False
    return "\n".join(keep).strip()


def _details(logs, s) -> list[str]:
    log = _read(os.path.join(logs, f"{s['step']}.log"))
    out = [f"### {s['step']}: {s['what']}", "", f"**{s['verdict']}**: {s['reason']}", ""]
    if s.get("tests") is not None:
        out += _tests_section(s) + [""]
    if s["step"] == "curves" and s["verdict"] != "NOT RUN":
        out += _curves_section(logs) + [""]
    if s["step"] == "bench-mlp" and _bench_tables(log):
        out += ["```", _bench_tables(log), "```", ""]
    if s["step"] == "bench-cnn" and "CNN training" in log:
        out += ["```", log[log.find("CNN training"):].strip(), "```", ""]
    elif s.get("tests") is not None:  # pytest -ra's summary: each failure with its message
        failures = [line[:300] for line in log.splitlines() if line.startswith(("FAILED ", "ERROR "))]
        out += ["```", *failures[:20], "```", ""] if failures else []
    elif s["step"] not in ("curves", "bench-mlp") and log.strip():  # a figure this report has no table for
        out += ["Last lines of its output:", "", "```", *log.strip().splitlines()[-15:], "```", ""]
    return out


def write_report(logs, output, final) -> str:
    steps = states(logs)
    verdict, line = overall(steps, final)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = [f"# GPU verdict: {line}", "",
           f"`bash ci/gpu.sh`, {now:%Y-%m-%d %H:%M:%S} UTC{'' if final else ' (written after each step)'}.", "",
           "| step | verdict | seconds (limit) | why |", "|---|---|---|---|"]
    for s in steps:
        seconds = f"{s['seconds']}" if s.get("seconds") is not None else "-"
        out.append(f"| {s['step']} | {s['verdict']} | {seconds} ({s['timeout']}) | {s['reason']} |")
    out += ["", "## Machine", "", *_machine(logs), "", "## Steps", ""]
    for s in steps:
        out += _details(logs, s)
    tmp = f"{output}.tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out))
    os.replace(tmp, output)  # a reader (or a kill) never sees half a report
    return verdict


def report(args) -> int:
    verdict = write_report(args.logs, args.output, args.final)
    return EXIT[verdict] if args.final else 0


def curves(args) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gpu_curves

    return gpu_curves.curves(args.device, args.reference, args.seed, args.limit, args.json)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("probe", help="can CuPy, torch and JAX compute on a GPU here (alone and through xpnet)?")
    s.add_argument("--json", required=True)
    s = sub.add_parser("begin", help="exit 0 if STEP should run, else record why not and exit 1")
    s.add_argument("step")
    s.add_argument("--logs", required=True)
    s.add_argument("--timeout", type=int, default=0)
    s.add_argument("--left", type=int, default=10**6, help="seconds left of the run's budget")
    s.add_argument("--needs", choices=("cupy", "torch"), default=None)
    s.add_argument("--requires", action="append", metavar="PATH[:TEXT]", help="a file that must exist (hold TEXT)")
    s.add_argument("--data", default=None, help="the XPNET_DATA folder, which must hold mnist/")
    s.add_argument("--only", default="", help="comma-separated steps to run (the probe always runs); empty: all")
    s = sub.add_parser("judge", help="record STEP's verdict from its log and exit status")
    s.add_argument("step")
    s.add_argument("--logs", required=True)
    s.add_argument("--exit", type=int, required=True)
    s.add_argument("--kind", choices=("run", "probe", "pytest", "curves", "accuracy"), default="run")
    s.add_argument("--needs", choices=("cupy", "torch"), default="cupy")
    s.add_argument("--cuda-ids", default="", help="pytest: count the tests whose id holds this (default: all)")
    s.add_argument("--min-accuracy", type=float, default=0.0)
    s.add_argument("--timeout", type=int, default=0)
    s.add_argument("--seconds", type=int, default=None)
    s.add_argument("--command", default="")
    s = sub.add_parser("report", help="write the Markdown report from the work folder")
    s.add_argument("--logs", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--final", action="store_true", help="the run is over; exit 0 PASS, 1 FAIL, 2 NOT RUN")
    c = sub.add_parser("curves", help="train gpu_curves.RUNS on two devices and compare the losses")
    c.add_argument("--device", default="cuda")
    c.add_argument("--reference", default="cpu")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--limit", type=int, default=None, help="train on the first N samples (a dry run on the CPU)")
    c.add_argument("--json", default=None)
    args = p.parse_args(argv)
    return {"probe": probe, "begin": begin, "judge": judge, "report": report, "curves": curves}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
