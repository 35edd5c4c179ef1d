"""Helpers of the end-to-end tests: run the frozen app, release builds, read its state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]
APP_SRC = REPO / "example_app"
NAME = "textstat"
V1, V2 = "1.0", "1.1"


def release(public: Path, exe: Path, version: str) -> None:
    """``python -m pyi_selfupdate release -o public exe version`` (the user's command)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pyi_selfupdate", "release", "-o", str(public), str(exe), version],
        capture_output=True, text=True, cwd=public.parent,  # the installed package, not ./
    )
    assert proc.returncode == 0, f"release {version} failed:\n{proc.stdout}\n{proc.stderr}"


def app_env(**extra: str) -> Dict[str, str]:
    """The environment an app runs with: no inherited pyi-selfupdate switches, log on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE_")}
    env["PYI_SELFUPDATE_LOG"] = "info"
    env.update(extra)
    return env


def run_app(exe: Path, *args: str, stdin: str = "", timeout: float = 120, **env: str):
    """Run the frozen app to completion; returns the CompletedProcess (text)."""
    return subprocess.run(
        [str(exe), *args], input=stdin, capture_output=True, text=True,
        env=app_env(**env), cwd=exe.parent, timeout=timeout,
    )


def staged_files(exe: Path) -> List[str]:
    """Names of the update files beside ``exe`` (dot files other than the lock)."""
    return sorted(p.name for p in exe.parent.iterdir()
                  if p.name.startswith(".") and not p.name.endswith(".lock"))


def manifest_requests(log: List[str]) -> List[str]:
    return [p for p in log if p.endswith(".json")]
