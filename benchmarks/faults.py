"""The long form of the fault-injection suite: many trials, figures written to a file.

Runs ``tests/faults`` with ``FAULT_TRIALS`` (default 200 kill trials against the
Updater API; the frozen-app and release kill tests take a quarter of that)
and writes the counted outcomes to ``benchmarks/results/faults.md``::

    .venv/bin/python benchmarks/faults.py                 # 200 trials, fresh seed
    .venv/bin/python benchmarks/faults.py --trials 500 --seed 1234
    .venv/bin/python benchmarks/faults.py -k kill_api     # one part only

Needs the package installed in the interpreter that runs it (``make setup``
does it), because the frozen-app tests build real PyInstaller apps. Runs as
root to include the unprivileged-user and tmpfs variants.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "faults.md"


def _table(rows) -> str:
    out = ["| fault | trials | outcomes | recovered | seed |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items()))
        rec = f"{r['recovered']}/{r['recovery_tried']}" if r["recovery_tried"] else "-"
        out.append(f"| {r['name']} | {r['trials']} | {outcomes} | {rec} | {r['seed'] or '-'} |")
    return "\n".join(out)


def render(rows, args, took: float, status: int) -> str:
    lines = [
        "# Fault-injection figures (long form)",
        "",
        f"Command: `python benchmarks/faults.py --trials {args.trials}"
        + (f" --seed {args.seed}" if args.seed else "") + (f" -k {args.k}" if args.k else "") + "`",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"run time {took / 60:.1f} min; pytest exit status {status}.",
        "",
        _table(rows),
        "",
    ]
    for r in rows:
        lines.append(f"## {r['name']}")
        lines.append("")
        lines.append(f"Reproduce: `{r['command']}`")
        lines.append("")
        if r["landed"]:
            lines.append("Where it landed (state after the fault | files left | last log line): count")
            lines.append("")
            lines += [f"- `{k}`: {v}" for k, v in r["landed"].items()]
            lines.append("")
        lines += [f"- note: {n}" for n in r["notes"]]
        lines += [f"- FAILURE: {f}" for f in r["failures"]]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="kill trials against the Updater API")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (FAULT_SEED)")
    parser.add_argument("-k", default=None, help="pytest -k expression: run part of the suite")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the figures")
    args = parser.parse_args()

    report = Path(tempfile.mkstemp(prefix="faults-", suffix=".jsonl")[1])
    env = dict(os.environ, FAULT_TRIALS=str(args.trials), FAULT_REPORT=str(report))
    if args.seed:
        env["FAULT_SEED"] = str(args.seed)
    cmd = [sys.executable, "-m", "pytest", "tests/faults", "-q", "-p", "no:cacheprovider"]
    if args.k:
        cmd += ["-k", args.k]
    t0 = time.monotonic()
    status = subprocess.call(cmd, cwd=REPO, env=env)
    took = time.monotonic() - t0
    rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    report.unlink()
    text = render(rows, args, took, status)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"\nfigures written to {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
