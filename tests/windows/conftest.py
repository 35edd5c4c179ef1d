"""Session fixtures of the Windows tier: Wine set up once, example_app built for Windows once.

Every test module here is marked ``windows`` and ``e2e`` (its ``pytestmark``). When the tier cannot run
(no Wine and no root to install it, no network to PyPI), its tests FAIL with the
set-up log: a skipped Windows tier would pass for a tested one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from _wine import APP_SRC, NAME, PLAT, V1, V2, Wine


@pytest.fixture(scope="session")
def wine(tmp_path_factory) -> Wine:
    log = tmp_path_factory.mktemp("wine") / "setup_wine.log"
    try:
        w = Wine.prepare(log)
    except Exception as exc:  # never a skip: the tier must run
        pytest.fail(f"the Windows tier cannot run: {exc}", pytrace=False)
    w.start_server()
    w.install_project()
    w.prune()
    yield w
    w.stop_server()
    shutil.rmtree(w.root / "runs" / str(os.getpid()), ignore_errors=True)


@pytest.fixture(scope="session")
def win_port(wine) -> int:
    """The port the Windows builds embed: the one of the last session if free (builds stay cached)."""
    saved = wine.root / "port"
    port = int(saved.read_text()) if saved.exists() else 0
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:  # taken now: another port, new builds
            s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved.write_text(str(port))
    return port


def _variant(port: int, version: str, mode: str = "background") -> Dict[str, object]:
    env = {
        "PYI_SELFUPDATE_API_URL": f"http://127.0.0.1:{port}/",
        "PYI_SELFUPDATE_CHECK_TIME": "0",
        "PYI_SELFUPDATE_EXIT_WAIT": "60",
        "PYI_SELFUPDATE_CURRENT_VERSION": version,
        "PYI_SELFUPDATE_CMD_NAME": NAME,
    }
    if mode != "background":
        env["PYI_SELFUPDATE_MODE"] = mode
    files = {}
    if version != V1:
        core = (APP_SRC / "textstat_core.py").read_text()
        files["textstat_core.py"] = core.replace(f'__version__ = "{V1}"', f'__version__ = "{version}"')
    return {"env": env, "files": files}


@pytest.fixture(scope="session")
def win_builds(wine, win_port) -> Dict[str, Path]:
    """example_app (textstat) 1.0 and 1.1, onefile and onedir, built under Wine (cached), two at a time."""
    specs = {
        "v1": dict(version=V1, onedir=False), "v2": dict(version=V2, onedir=False),
        "dir_v1": dict(version=V1, onedir=True), "dir_v2": dict(version=V2, onedir=True),
    }
    waits = {}
    built: Dict[str, Path] = {}
    order = list(specs)
    running = []
    for key in order:
        spec = specs[key]
        waits[key] = wine.start_build(APP_SRC, "textstat.py", name=NAME, onedir=spec["onedir"],
                                      **_variant(win_port, spec["version"]))
        running.append(key)
        if len(running) == 2:
            first = running.pop(0)
            built[first] = waits[first]()
    for key in running:
        built[key] = waits[key]()
    return built


def release(public: Path, artifact: Path, version: str) -> None:
    """The Linux release tool on a Windows build (as a CI job releasing a Windows artifact)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pyi_selfupdate", "release", "--platform", PLAT, "--cmd-name", NAME,
         "-o", str(public), str(artifact), version],
        capture_output=True, text=True, cwd=public.parent)
    assert proc.returncode == 0, f"release {version} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="session")
def win_trees(tmp_path_factory, win_builds) -> Dict[str, Path]:
    """Release trees holding 1.0 then 1.1 (patch 1.0 -> 1.1): ``file`` (onefile) and ``folder`` (onedir)."""
    trees = {}
    for kind, (a, b) in {"file": ("v1", "v2"), "folder": ("dir_v1", "dir_v2")}.items():
        public = tmp_path_factory.mktemp(f"win_tree_{kind}") / "public"
        release(public, win_builds[a], V1)
        release(public, win_builds[b], V2)
        trees[kind] = public
    return trees
