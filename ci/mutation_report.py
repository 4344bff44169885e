"""The mutation report: score per module from mutmut's results, minus the mutants known to be equivalent.

Run by ci/mutation.sh from the repository root, with the mutation venv's Python (it reads mutmut's
files under mutants/ through mutmut's own helpers, so it needs the pinned mutmut). Writes
``<out>/report.md`` and ``<out>/results.json``; exits 1 when the score is below ``--min-score``.

Score = killed / (total - equivalent), per module and overall. "killed" counts mutmut's killed and
timeout verdicts; survivors and mutants that no selected test reaches ("no tests") count against the
score unless ci/mutation-equivalents.md lists them.

An equivalent mutant is listed by a fingerprint of what it changes (its function, and the lines the
mutation removes and adds), not by its number alone: mutmut numbers mutants in source order, so an edit
to a function renumbers them, but the fingerprint of an unchanged mutation stays the same. The report
prints the fingerprint next to each survivor; an entry whose fingerprint no longer survives is reported
as stale (the mutant was killed, or the code changed) and is not subtracted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

KILLED = {"killed", "timeout", "segfault"}  # segfault: mutmut's name for a worker killed by a signal
ENTRY = re.compile(r"^\|\s*`([0-9a-f]{10})`\s*\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|\s*$")


def changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def fingerprint(mutant: str, lines: list[str]) -> str:
    function = mutant.rsplit("__mutmut_", 1)[0]
    text = function + "\n" + "\n".join(line[0] + line[1:].strip() for line in lines)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def read_equivalents(path: Path) -> dict[str, tuple[str, str]]:
    """fingerprint -> (mutant name when it was listed, reason)."""
    out = {}
    if path.exists():
        for line in path.read_text("utf-8").splitlines():
            m = ENTRY.match(line)
            if m:
                out[m.group(1)] = (m.group(2), m.group(3))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--equivalents", type=Path, default=Path("ci/mutation-equivalents.md"))
    ap.add_argument("--out", type=Path, default=Path("mutation-report"))
    ap.add_argument("--min-score", type=float, default=90.0)
    ap.add_argument("--wall-seconds", type=float, default=None)
    ap.add_argument("--command", default="bash ci/mutation.sh")
    args = ap.parse_args()

    equivalents = read_equivalents(args.equivalents)
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors, matched = [], {}
    for path in sorted(walk_mutatable_files()):
        data = SourceFileMutationData(path=path)
        data.load()
        module = str(path)
        for name, code in sorted(data.exit_code_by_key.items(), key=lambda kv: _natural(kv[0])):
            status = status_by_exit_code[code]
            counts[module]["total"] += 1
            if status in KILLED:
                counts[module]["killed"] += 1
                continue
            lines = changed_lines(get_diff_for_mutant(name, path=path))
            fp = fingerprint(name, lines)
            if fp in equivalents and status in ("survived", "no tests"):
                counts[module]["equivalent"] += 1
                matched[fp] = name
                continue
            counts[module][status.replace(" ", "_")] += 1
            survivors.append({"module": module, "mutant": name, "status": status, "fingerprint": fp,
                              "diff": lines})

    modules = {}
    for module, c in counts.items():
        modules[module] = dict(c, score=_score(c))
    total = sum(counts.values(), Counter())
    overall = _score(total)
    stale = {fp: entry for fp, entry in equivalents.items() if fp not in matched}
    result = {"modules": modules, "overall": dict(total, score=overall), "survivors": survivors,
              "stale_equivalents": [{"fingerprint": fp, "mutant": m, "reason": r} for fp, (m, r) in stale.items()],
              "wall_seconds": args.wall_seconds}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", "utf-8")
    report = _markdown(args, modules, total, overall, survivors, stale, equivalents)
    (args.out / "report.md").write_text(report, "utf-8")
    print(report.split("\n## Surviving")[0])
    print(f"full report: {args.out / 'report.md'}")
    if overall is None or overall < args.min_score:
        print(f"mutation score {overall}% is below {args.min_score}%", file=sys.stderr)
        return 1
    return 0


def _natural(name: str):
    head, _, number = name.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


def _score(c: Counter) -> float | None:
    relevant = c["total"] - c["equivalent"]
    return round(100.0 * c["killed"] / relevant, 1) if relevant else None


def _markdown(args, modules, total, overall, survivors, stale, equivalents) -> str:
    import mutmut

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    wall = f"{args.wall_seconds / 60:.1f} min" if args.wall_seconds else "not measured"
    out = [
        "# Mutation report",
        "",
        f"mutmut {getattr(mutmut, '__version__', '?')}, commit {commit}, command `{args.command}`, "
        f"wall time {wall}.",
        f"Score = killed / (total - equivalent); equivalents from `{args.equivalents}` "
        f"({len(equivalents)} listed).",
        "",
        "| module | total | killed | survived | no tests | equivalent | score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for module, c in modules.items():
        out.append(f"| {module} | {c['total']} | {c.get('killed', 0)} | {c.get('survived', 0)} | "
                   f"{c.get('no_tests', 0)} | {c.get('equivalent', 0)} | {_pct(c['score'])} |")
    out.append(f"| **all** | {total['total']} | {total['killed']} | {total['survived']} | {total['no_tests']} | "
               f"{total['equivalent']} | **{_pct(overall)}** |")
    out += ["", f"## Surviving mutants not listed as equivalent ({len(survivors)})", ""]
    for s in survivors:
        out.append(f"- `{s['fingerprint']}` `{s['mutant']}` ({s['status']})")
        out.append("  ```diff")
        out += [f"  {line}" for line in s["diff"]]
        out.append("  ```")
    out += ["", f"## Stale equivalent entries ({len(stale)})", "",
            "Listed as equivalent but not among this run's survivors (killed now, or the code changed):", ""]
    out += [f"- `{fp}` `{m}`: {r}" for fp, (m, r) in stale.items()]
    return "\n".join(out) + "\n"


def _pct(score) -> str:
    return "n/a" if score is None else f"{score:.1f} %"


if __name__ == "__main__":
    sys.exit(main())
