"""In the field, with real frozen apps: dead and slow servers, resumed downloads, renames, telling the user.

What a user sees: a launch never waits for a server that does not answer, a
failed check backs off instead of costing every launch, a large download over a
slow link finishes over several short launches (each byte fetched about once),
and the first start of a new version can say what was installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from _apps import NAME, V1, V2, app_env, run_app
from _server import Fault
from pyi_selfupdate.protocol import Manifest, current_platform, decode_manifest, encode_manifest
from pyi_selfupdate.settings import LIMITS

TEXT = "the cat saw the hat\nand the cat sat\n"


def _rel(kind: str) -> str:
    plat = current_platform()
    return {"manifest": f"{NAME}/{plat}.json", "patch": f"{NAME}/{V1}/{V2}/{plat}",
            "gz": f"{NAME}/{V2}/{plat}.gz"}[kind]


def _state(exe: Path) -> Path:
    return exe.parent / "update" / NAME


def _timed(exe: Path, *args: str, **env: str):
    t0 = time.monotonic()
    proc = run_app(exe, *args, **env)
    return proc, time.monotonic() - t0


def _ok(proc, out: str) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout == out, proc.stderr


# ------------------------------------------------------ a server that fails


@pytest.mark.parametrize("kind", ["refused", "silent", "slow"])
def test_a_dead_or_slow_server_never_holds_a_launch_and_backs_off(kind, app_daily, tree_v2, copy_tree,
                                                                  serve_app, install):
    exe = install(app_daily)
    baseline = min(_timed(exe, "--version", PYI_SELFUPDATE_DISABLE="1")[1] for _ in range(2))
    server = None
    if kind != "refused":  # refused: nothing listens on the port the app asks
        server = serve_app(copy_tree(tree_v2))
        server.faults[_rel("manifest")] = (Fault(delay=60) if kind == "silent"  # accepts, never answers
                                           else Fault(chunk_size=1, chunk_delay=1.0))  # a byte a second
    proc, elapsed = _timed(exe, "--version")
    _ok(proc, f"textstat {V1}\n")
    # the exit waited at most LIMITS.exit_check for a manifest that does not come (not exit_wait, 10 s)
    assert elapsed < baseline + LIMITS.exit_check + 1.5, (elapsed, baseline, proc.stderr)
    assert (_state(exe) / "failures").read_text() == "1"  # the check counts as failed until it succeeds
    import datetime as dt

    from pyi_selfupdate._schedule import read_next_check

    wait = (read_next_check(_state(exe) / "cktime") - dt.datetime.now().astimezone()).total_seconds()
    assert LIMITS.backoff_first * 0.5 - 5 <= wait <= LIMITS.backoff_first, wait
    requests = list(server.log) if server else []
    proc, elapsed = _timed(exe, "--version")  # backing off: no second attempt, no wait
    _ok(proc, f"textstat {V1}\n")
    assert (list(server.log) if server else []) == requests
    assert elapsed < baseline + 1.0, (elapsed, baseline)


@pytest.mark.parametrize("kind", ["silent", "dripped headers", "endless empty gzip"])
def test_immediate_mode_starts_within_its_budget_against_a_hostile_server(kind, app_immediate, tree_v2,
                                                                         copy_tree, serve_app, install):
    """The manifest never comes: the app's own code runs after immediate_wait (5 s), not later."""
    from _hostile import drip_headers, endless_empty_gzip

    exe = install(app_immediate)
    baseline = min(_timed(exe, "--version", PYI_SELFUPDATE_DISABLE="1")[1] for _ in range(2))
    server = serve_app(copy_tree(tree_v2))
    if kind == "silent":
        server.faults[_rel("manifest")] = Fault(delay=60)
    elif kind == "dripped headers":
        drip_headers(server, "/" + _rel("manifest"), interval=0.5)
    else:
        sent = endless_empty_gzip(server, "/" + _rel("manifest"), limit=4 << 30)  # 3.5 GB took 20 s before
    proc, elapsed = _timed(exe, "top", "-n", "2", stdin=TEXT)
    _ok(proc, "the 3\ncat 2\n")
    assert elapsed < baseline + 5 + LIMITS.exit_check + 1.5, (elapsed, proc.stderr)  # immediate_wait: 5 s
    assert exe.read_bytes() == app_immediate.read_bytes()
    if kind == "endless empty gzip":  # refused at once: 64 KiB read, the rest in kernel buffers
        assert sent.total <= 16 << 20, sent.total
        assert (_state(exe) / "failures").read_text() == "1"
    else:
        assert "the app starts as it is" in proc.stderr


# ------------------------------------------------------ a slow link


def test_a_large_download_over_a_slow_link_finishes_over_short_launches(app_v1, app_v2, tree_v2, copy_tree,
                                                                         serve_app, install):
    """The .gz (the patch is missing) at about 1 MB/s; each launch is killed after 4 s."""
    public = copy_tree(tree_v2)
    (public / _rel("patch")).unlink()
    server = serve_app(public)
    gz_size = (public / _rel("gz")).stat().st_size
    server.faults[_rel("gz")] = Fault(chunk_size=64 << 10, chunk_delay=0.0625)
    exe = install(app_v1)
    launches = 0
    while not (exe.parent / f".{NAME}.staged.json").exists():
        launches += 1
        assert launches <= 12, f"not staged after {launches - 1} launches; ranges {server.ranges}"
        proc = subprocess.Popen([str(exe), "top"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=app_env(PYI_SELFUPDATE_FORCE_CHECK="1"),
                                cwd=exe.parent, start_new_session=True)
        time.sleep(4)
        os.killpg(proc.pid, signal.SIGKILL)  # the user closes the terminal
        proc.communicate(timeout=30)
        assert exe.read_bytes() == app_v1.read_bytes()
    resumed = [first for _, first, status in server.ranges if status == 206]
    assert resumed, f"no download was resumed: {server.ranges}"
    assert server.bytes_sent[_rel("gz")] <= 1.1 * gz_size, (server.bytes_sent, gz_size)
    _ok(run_app(exe, "--version"), f"textstat {V2}\n")
    assert exe.read_bytes() == app_v2.read_bytes()
    assert not (_state(exe) / "partial").exists() or not list((_state(exe) / "partial").iterdir())


def test_ctrl_c_during_the_exit_wait_ends_at_once_and_quietly(app_v1, tree_v2, copy_tree, serve_app, install):
    public = copy_tree(tree_v2)
    (public / _rel("patch")).unlink()
    server = serve_app(public)
    server.faults[_rel("gz")] = Fault(chunk_size=64 << 10, chunk_delay=0.05)  # ~1.3 MB/s, ~15 s
    exe = install(app_v1)
    proc = subprocess.Popen([str(exe), "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=app_env(), cwd=exe.parent, start_new_session=True)
    deadline = time.monotonic() + 30
    while f"/{_rel('gz').replace('+', '%2B')}" not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the app has printed its version and waits at exit for the download
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert out == f"textstat {V1}\n"
    assert "Traceback" not in err and "Exception ignored" not in err and "KeyboardInterrupt" not in err, err


# ------------------------------------------------------ names and state


def test_a_renamed_executable_still_updates(app_v1, app_v2, tree_v2, copy_tree, serve_app, install):
    serve_app(copy_tree(tree_v2))
    exe = install(app_v1)
    renamed = exe.rename(exe.with_name(f"{NAME}-linux-amd64"))
    _ok(run_app(renamed, "--version"), f"textstat {V1}\n")
    _ok(run_app(renamed, "--version"), f"textstat {V2}\n")
    assert renamed.read_bytes() == app_v2.read_bytes()


def test_force_check_at_run_time(app_daily, tree_v1, copy_tree, serve_app, install):
    server = serve_app(copy_tree(tree_v1))
    exe = install(app_daily)
    _ok(run_app(exe, "--version"), f"textstat {V1}\n")  # first launch: no schedule yet, checks
    _ok(run_app(exe, "--version"), f"textstat {V1}\n")  # a day to wait
    assert len(server.log) == 1
    _ok(run_app(exe, "--version", PYI_SELFUPDATE_FORCE_CHECK="1"), f"textstat {V1}\n")
    assert len(server.log) == 2


def test_the_first_start_of_a_new_version_can_tell_the_user(app_v1, tree_v2, copy_tree, serve_app, install):
    public = copy_tree(tree_v2)
    manifest_file = public / _rel("manifest")
    m = decode_manifest(manifest_file.read_bytes())
    manifest_file.write_bytes(encode_manifest(Manifest(m.version, m.sha256, {"Notes": "Counts faster."})))
    serve_app(public)
    exe = install(app_v1)
    _ok(run_app(exe, "--version"), f"textstat {V1}\n")  # stages
    second = run_app(exe, "top", "-n", "2", stdin=TEXT)  # installs, restarts: the app reads the record
    _ok(second, "the 3\ncat 2\n")
    assert "textstat: updated from 1.0 to 1.1: Counts faster." in second.stderr
    third = run_app(exe, "--version")
    _ok(third, f"textstat {V2}\n")
    assert "updated from" not in third.stderr  # told once
    log = (_state(exe) / "log").read_text()
    assert "installed 1.0 -> 1.1 via patch" in log and "staged 1.1 via patch" in log
