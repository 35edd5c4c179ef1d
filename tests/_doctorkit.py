"""Helpers of the doctor tests: run it as a user does, read its report, prove it wrote nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _installed import python_env


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` (itself included): kind, mode, size, mtime, bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            data = Path(path).read_bytes() if os.path.isfile(path) and not os.path.islink(path) else None
            out[os.path.relpath(path, folder)] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
    return out


def doctor(app: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", "doctor", str(app), "--timeout", "10"],
                          capture_output=True, text=True, timeout=60, env=python_env())


def row(proc: subprocess.CompletedProcess, label: str) -> str:
    """The text of the report's row ``label``."""
    for line in proc.stdout.splitlines():
        if line.startswith(label + " ") and not line.startswith("verdict:"):
            return line[len(label):].strip()
    raise AssertionError(f"no row {label!r} in:\n{proc.stdout}")


def verdict(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("verdict: "), proc.stdout + proc.stderr
    return lines[-1][len("verdict: "):]
