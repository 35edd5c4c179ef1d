"""``pyi-selfupdate doctor`` against a real frozen app in each state (e2e tier).

One build: textstat 1.0 (``app_v1``, shared with the other e2e tests). Each test
installs a copy, puts it in a state by writing its state files as the app
writes them, serves a tree with the real test server on the port the build
embeds, runs ``pyi-selfupdate doctor`` as a user would, and checks the verdict,
the exit status, and that the installed folder is byte for byte, mode and
time as it was. The 1.1 release is the 1.0 executable with bytes appended,
released by the release tool with ``-p no:frozen`` (doctor never runs it), so
no second build is needed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import _faultkit as kit
from _apps import NAME, V1
from _installed import python_env
from _doctorkit import row, snapshot, verdict

from pyi_selfupdate.protocol import current_platform
from pyi_selfupdate.release._model import human_size

PLAT = current_platform()
V11 = "1.1"


@pytest.fixture(scope="module")
def tree_v11(tmp_path_factory, tree_v1, app_v1) -> Path:
    """tree_v1 plus a release 1.1 (and its patch from 1.0), written by the release tool."""
    public = tmp_path_factory.mktemp("doctor") / "public"
    shutil.copytree(tree_v1, public)
    dist = public.parent / "dist"
    dist.mkdir()
    (dist / NAME).write_bytes(app_v1.read_bytes() + b"\n1.1: a change appended\n" * 50)
    proc = subprocess.run([sys.executable, "-m", "pyi_selfupdate", "release", "-p", "no:frozen", "-o",
                           str(public), str(dist / NAME), V11], capture_output=True, text=True,
                          env=python_env(), cwd=public.parent)
    assert proc.returncode == 0, proc.stderr
    return public


def _doctor(app: Path, *, preexec=None, python=None, env=None) -> subprocess.CompletedProcess:
    before = snapshot(app.parent)
    proc = subprocess.run([python or sys.executable, "-m", "pyi_selfupdate", "doctor", str(app),
                           "--timeout", "10"], capture_output=True, text=True, timeout=120,
                          env=env or python_env(), preexec_fn=preexec)
    assert snapshot(app.parent) == before, "doctor changed the app's folder"
    return proc


def _state(app: Path) -> Path:
    state = app.parent / "update" / NAME
    state.mkdir(parents=True, exist_ok=True)
    return state


def _in(seconds: float) -> str:
    when = dt.datetime.now().astimezone() + dt.timedelta(seconds=seconds)
    return when.replace(microsecond=0).isoformat()


def _patch_size(tree: Path) -> str:
    return human_size((tree / NAME / V1 / V11 / PLAT).stat().st_size)


def test_up_to_date(app_v1, tree_v1, copy_tree, serve_app, install):
    serve_app(copy_tree(tree_v1))
    app = install(app_v1)
    proc = _doctor(app)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verdict(proc) == f"up to date: the server offers {V1}, the version installed"
    assert row(proc, "app") == f"{app} (onefile)"
    assert row(proc, "version") == V1 and row(proc, "cmd name") == NAME and row(proc, "platform") == PLAT
    assert row(proc, "keys").startswith("none: ")
    assert row(proc, "mode") == "background, a check every 0 h"
    assert row(proc, "folder") == f"{app.parent}: writable"


def test_update_due(app_v1, tree_v11, serve_app, install):
    server = serve_app(tree_v11)
    app = install(app_v1)
    proc = _doctor(app)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdict(proc) == (f"updates to {V11} at its next launch (the check is due), through a "
                             f"{_patch_size(tree_v11)} patch; it downloads it then and installs it at "
                             "the launch after")
    assert row(proc, "next check") == "at the next launch (no schedule recorded)"
    assert f"/{NAME}/{V1}/{V11}/{PLAT}" in server.log
    assert f"/{NAME}/{V11}/{PLAT}.gz" not in server.log  # the patch is there: the .gz is not asked for


def test_check_not_due_yet(app_v1, tree_v11, serve_app, install):
    serve_app(tree_v11)
    app = install(app_v1)
    state = _state(app)
    (state / "cktime").write_text(_in(3 * 3600 + 30))
    (state / "log").write_text("2026-11-30T09:00:00Z checked: 1.0 is up to date\n")
    proc = _doctor(app)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdict(proc) == f"updates to {V11} at its next check, in 3 h, through a {_patch_size(tree_v11)} patch"
    assert "checked: 1.0 is up to date" in proc.stdout  # the log's last lines


def test_backing_off(app_v1, tree_v11, serve_app, install):
    serve_app(tree_v11)
    app = install(app_v1)
    state = _state(app)
    (state / "failures").write_text("3")
    (state / "cktime").write_text(_in(4 * 60 + 20))
    proc = _doctor(app)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdict(proc).startswith(f"updates to {V11} at its next check, in 4 min, after 3 failed "
                                    "check(s) (backing off), through a ")
    assert row(proc, "failures").startswith("3 failed check(s) in a row: backing off")


def test_server_down(app_v1, install):
    app = install(app_v1)  # nothing listens on the port the build embeds
    state = _state(app)
    (state / "failures").write_text("2")
    (state / "cktime").write_text(_in(100))
    proc = _doctor(app)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert verdict(proc).startswith("cannot reach the update server: cannot fetch http://127.0.0.1:")
    assert verdict(proc).endswith("; the app backs off: next attempt in 2 min")


def test_staged(app_v1, tree_v11, serve_app, install):
    serve_app(tree_v11)
    app = install(app_v1)
    new = (tree_v11.parent / "dist" / NAME).read_bytes()
    (app.parent / f".{NAME}.staged").write_bytes(new)
    (app.parent / f".{NAME}.staged.json").write_text(json.dumps({
        "from": V1, "to": V11, "sha256": base64.b64encode(hashlib.sha256(new).digest()).decode(),
        "method": "patch", "bytes": 2600, "notes": ""}))
    proc = _doctor(app)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdict(proc) == f"installs {V11} at its next launch (staged)"
    assert row(proc, "staged") == f"{V1} -> {V11} via patch (2.6 KB fetched)"


def test_unwritable_folder(app_v1, tree_v11, serve_app):
    if os.geteuid() != 0:
        pytest.fail("needs root: a folder the test user cannot write, and doctor run as nobody")
    serve_app(tree_v11)
    base = kit.shared_dir("doctor")
    try:
        inst = base / "inst"
        inst.mkdir()
        inst.chmod(0o755)
        app = kit.copy_exe(app_v1.read_bytes(), inst / NAME, 0o755)
        found = kit.python_for_user(_as_nobody, python_env())
        assert found is not None, "no interpreter the user nobody can run"
        python, env = found
        probe = subprocess.run(["sh", "-c", f"touch '{inst}/probe'"], preexec_fn=_as_nobody, capture_output=True)
        assert probe.returncode != 0 and not (inst / "probe").exists(), "nobody can write: test is void"
        proc = _doctor(app, preexec=_as_nobody, python=python, env=env)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert verdict(proc).startswith(f"cannot update: {inst} is not writable by this user")
        assert "install the app per user" in verdict(proc)
        assert verdict(proc).endswith(f"(the server offers {V11} through a {_patch_size(tree_v11)} patch)")
        assert row(proc, "folder") == f"{inst}: NOT writable by this user"
    finally:
        shutil.rmtree(base)


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
