"""End to end: real frozen textstat builds, a real release tree, a real server, real processes.

What a user of a self-updating app sees: it starts normally whatever the server
does, and a later launch runs the new version, byte for byte the released one.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from _apps import NAME, V1, V2, app_env, manifest_requests, run_app, staged_files
from _server import Fault

pytestmark = pytest.mark.e2e

TEXT = "the cat saw the hat\nand the cat sat\n"
TOP_OUTPUT = "the 3\ncat 2\n"


def _plat() -> str:
    from pyi_selfupdate.protocol import current_platform

    return current_platform()


def _patch_rel() -> str:
    return f"{NAME}/{V1}/{V2}/{_plat()}"


def _gz_rel() -> str:
    return f"{NAME}/{V2}/{_plat()}.gz"


def _manifest_rel() -> str:
    return f"{NAME}/{_plat()}.json"


def _ok(proc, expect_stdout: str = None) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    if expect_stdout is not None:
        assert proc.stdout == expect_stdout, proc.stderr


# ------------------------------------------------------------------ updating


def test_v1_becomes_v2_through_the_patch(app_v1, app_v2, tree_v2, copy_tree, serve_app, install):
    server = serve_app(copy_tree(tree_v2))
    exe = install(app_v1)

    first = run_app(exe, "--version")  # short-lived: the background download finishes at exit
    _ok(first, f"textstat {V1}\n")
    assert server.log == [f"/{_manifest_rel()}", f"/{_patch_rel()}"]
    assert exe.read_bytes() == app_v1.read_bytes(), "the running executable must not be replaced"
    assert staged_files(exe) == [f".{NAME}.staged", f".{NAME}.staged.json"]

    second = run_app(exe, "--version")
    _ok(second, f"textstat {V2}\n")
    assert "installed staged update 1.0 -> 1.1; restarting" in second.stderr
    assert exe.read_bytes() == app_v2.read_bytes()
    assert staged_files(exe) == []
    assert not any(p.endswith(".gz") for p in server.log)


def test_v1_becomes_v2_through_the_gz_when_the_patch_is_missing(
    app_v1, app_v2, tree_v2, copy_tree, serve_app, install
):
    public = copy_tree(tree_v2)
    (public / _patch_rel()).unlink()
    server = serve_app(public)
    exe = install(app_v1)

    _ok(run_app(exe, "--version"), f"textstat {V1}\n")
    assert server.log == [f"/{_manifest_rel()}", f"/{_patch_rel()}", f"/{_gz_rel()}"]
    _ok(run_app(exe, "--version"), f"textstat {V2}\n")
    assert exe.read_bytes() == app_v2.read_bytes()


def test_the_launch_that_installs_continues_with_its_arguments_and_stdin(
    app_v1, app_v2, tree_v2, copy_tree, serve_app, install
):
    serve_app(copy_tree(tree_v2))
    exe = install(app_v1)
    _ok(run_app(exe, "--version"), f"textstat {V1}\n")  # stages
    proc = run_app(exe, "top", "-n", "2", stdin=TEXT)  # installs, restarts, reads stdin as 1.1
    _ok(proc, TOP_OUTPUT)
    assert "restarting" in proc.stderr
    assert exe.read_bytes() == app_v2.read_bytes()


def test_dev_build_never_checks(app_dev, tree_v2, copy_tree, serve_app, install):
    server = serve_app(copy_tree(tree_v2))
    exe = install(app_dev)
    before = exe.read_bytes()
    for _ in range(2):
        _ok(run_app(exe, "top", "-n", "2", stdin=TEXT), TOP_OUTPUT)
    assert server.log == []
    assert exe.read_bytes() == before
    assert staged_files(exe) == []


def test_disabled_by_environment_never_checks(app_v1, tree_v2, copy_tree, serve_app, install):
    server = serve_app(copy_tree(tree_v2))
    exe = install(app_v1)
    _ok(run_app(exe, "--version", PYI_SELFUPDATE_DISABLE="1"), f"textstat {V1}\n")
    assert server.log == []
    assert staged_files(exe) == []


# ------------------------------------------------------- hostile or absent server


def _hostile(name: str, server, public: Path) -> None:
    manifest = _manifest_rel()
    if name == "status 500":
        server.faults[manifest] = Fault(status=500)
    elif name == "garbage manifest":
        server.faults[manifest] = Fault(body=b"\x00<html>not json")
    elif name == "manifest with a wrong hash":
        server.faults[manifest] = Fault(
            body=b'{"Version": "1.1", "Sha256": "' + b"A" * 43 + b'="}'
        )
    elif name == "slow manifest":
        server.faults[manifest] = Fault(delay=3.0)
    elif name == "corrupt patch and gz":
        server.faults[_patch_rel()] = Fault(body=b"BSDIFF40 garbage")
        server.faults[_gz_rel()] = Fault(body=b"\x1f\x8b not really gzip")
    elif name == "connection reset":
        server.faults[manifest] = Fault(reset_after=0)
    else:  # pragma: no cover
        raise AssertionError(name)


@pytest.mark.parametrize(
    "case",
    ["server down", "status 500", "garbage manifest", "manifest with a wrong hash",
     "slow manifest", "corrupt patch and gz", "connection reset"],
)
def test_the_app_starts_normally_whatever_the_server_does(
    case, app_v1, tree_v1, tree_v2, copy_tree, serve_app, install
):
    # A slow server still answers: with no update released, nothing gets staged.
    public = copy_tree(tree_v1 if case == "slow manifest" else tree_v2)
    if case != "server down":
        server = serve_app(public)
        _hostile(case, server, public)
    exe = install(app_v1)
    before = exe.read_bytes()
    for _ in range(2):
        proc = run_app(exe, "top", "-n", "2", stdin=TEXT)
        _ok(proc, TOP_OUTPUT)
        assert "Traceback" not in proc.stderr
    assert exe.read_bytes() == before
    assert staged_files(exe) == []
    if case != "server down":
        assert manifest_requests(server.log), "the app did check"


# ------------------------------------------------ imports after staging / install


def test_first_import_after_an_update_was_staged(app_v1, tree_v2, copy_tree, serve_app, install):
    """The app imports textstat_report for the first time after the background staging."""
    serve_app(copy_tree(tree_v2))
    exe = install(app_v1)
    proc = subprocess.Popen(
        [str(exe), "top", "-n", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=app_env(), cwd=exe.parent,
    )
    sidecar = exe.parent / f".{NAME}.staged.json"
    deadline = time.monotonic() + 60
    while not sidecar.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    staged_while_running = sidecar.exists() and proc.poll() is None
    out, err = proc.communicate(TEXT, timeout=60)
    assert staged_while_running, err
    assert proc.returncode == 0, err
    assert out == TOP_OUTPUT
    assert exe.read_bytes() == app_v1.read_bytes()


def test_immediate_mode_installs_at_launch_and_runs_as_the_new_version(
    app_immediate, app_v2, tree_v2, copy_tree, serve_app, install
):
    server = serve_app(copy_tree(tree_v2))
    exe = install(app_immediate)
    proc = run_app(exe, "top", "-n", "2", stdin=TEXT)  # the new process imports textstat_report
    _ok(proc, TOP_OUTPUT)
    assert "updated 1.0 -> 1.1; restarting" in proc.stderr
    assert exe.read_bytes() == app_v2.read_bytes()
    # This build's bytes differ from the released 1.0, so the patch fails its hash
    # check and the .gz is used: still the released 1.1, byte for byte.
    assert f"/{_gz_rel()}" in server.log
    _ok(run_app(exe, "--version"), f"textstat {V2}\n")


def test_manual_self_update_command_installs_and_restarts(
    app_v1, app_v2, tree_v2, copy_tree, serve_app, install
):
    serve_app(copy_tree(tree_v2))
    exe = install(app_v1)
    proc = run_app(exe, "self-update", PYI_SELFUPDATE_DISABLE="1")  # the app alone updates
    _ok(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    assert re.fullmatch(r"textstat updated 1\.0 -> 1\.1 \(patch, \d+ bytes\)", lines[0]), lines
    assert lines[1] == f"textstat {V2}"  # printed by the new executable after restart()
    assert exe.read_bytes() == app_v2.read_bytes()


# ------------------------------------------------------------------ processes


def test_multiprocessing_workers_do_not_check(app_v1, tree_v2, copy_tree, serve_app, install, tmp_path):
    server = serve_app(copy_tree(tree_v2))
    exe = install(app_v1)
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}.txt"
        f.write_text("one two\nthree\n" * (i + 1))
        files.append(str(f))
    proc = run_app(exe, "count", "--workers", "2", *files, PYI_SELFUPDATE_LOG="debug")
    _ok(proc)
    lines = proc.stdout.splitlines()
    assert lines[-1].split() == ["12", "18", "84", "total"]
    assert "child process of" in proc.stderr  # the workers did run the runtime hook
    assert manifest_requests(server.log) == [f"/{_manifest_rel()}"]


def test_two_launches_at_once_do_not_both_install(
    app_v1, app_v2, tree_v2, copy_tree, serve_app, install, tmp_path
):
    """Two launches overlap with an update staged: exactly one installs, at its exit, after the other.

    The overlap is proven, not hoped for: both processes are seen alive together
    after each one's bootstrap logged that the other runs the same file.
    """
    serve_app(copy_tree(tree_v2))
    exe = install(app_v1)
    _ok(run_app(exe, "--version"), f"textstat {V1}\n")
    assert f".{NAME}.staged.json" in staged_files(exe)

    errs = [tmp_path / f"stderr{i}.txt" for i in range(2)]
    procs = []
    for err_path in errs:
        with open(err_path, "w") as err:
            procs.append(subprocess.Popen([str(exe), "top", "-n", "2"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err, text=True,
                                          env=app_env(), cwd=exe.parent))
    # each waits on its stdin: both stay alive until they get it
    deadline = time.monotonic() + 60
    while not all("other processes run" in e.read_text() for e in errs):
        assert time.monotonic() < deadline, [e.read_text() for e in errs]
        assert all(p.poll() is None for p in procs), [e.read_text() for e in errs]
        time.sleep(0.02)
    assert all(p.poll() is None for p in procs), "the two launches did not overlap"
    results = []
    for proc in procs:
        proc.stdin.write(TEXT)
        proc.stdin.close()
    for proc in procs:
        out = proc.stdout.read()
        proc.wait(timeout=90)
        results.append(out)
    logs = [e.read_text() for e in errs]
    for proc, out, err in zip(procs, results, logs):
        assert proc.returncode == 0, err
        assert out == TOP_OUTPUT, err
    # one took the install on, the other left it to it
    assert sorted(("is installed when this process exits" in err, "another launch installs" in err)
                  for err in logs) == [(False, True), (True, False)], logs
    installs = sum(err.count("installed staged update") for err in logs)
    assert installs == 1, logs  # the one that took it on, at its exit, once the other ended
    assert exe.read_bytes() == app_v2.read_bytes(), logs
    assert staged_files(exe) == []

    nxt = run_app(exe, "--version")  # the next launch runs the new version, nothing to install
    _ok(nxt, f"textstat {V2}\n")
    assert "installed staged update" not in nxt.stderr
    assert exe.read_bytes() == app_v2.read_bytes()


def test_leftovers_of_an_interrupted_install_are_cleaned_up(app_v1, tree_v1, copy_tree, serve_app, install):
    serve_app(copy_tree(tree_v1))
    exe = install(app_v1)
    folder = exe.parent
    (folder / f".{NAME}.new").write_bytes(b"half a binary")
    (folder / f".{NAME}.new.1f2e3d").write_bytes(b"half a binary")
    (folder / f".{NAME}.old").write_bytes(b"the previous binary")
    orphan = folder / f".{NAME}.staged"  # staged file whose sidecar never came
    orphan.write_bytes(b"partial staged binary")
    old = time.time() - 3600
    os.utime(orphan, (old, old))

    _ok(run_app(exe, "--version"), f"textstat {V1}\n")
    assert staged_files(exe) == []
    assert exe.read_bytes() == app_v1.read_bytes()


def test_a_download_killed_with_the_app_is_redone_by_a_later_launch(
    app_v1, app_v2, tree_v2, copy_tree, serve_app, install
):
    server = serve_app(copy_tree(tree_v2))
    server.faults[_patch_rel()] = Fault(chunk_size=100, chunk_delay=0.5)  # ~12 s for the patch
    exe = install(app_v1)
    proc = subprocess.Popen(
        [str(exe), "top"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=app_env(), cwd=exe.parent, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while f"/{_patch_rel()}" not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # part of the patch is in
    os.killpg(proc.pid, 9)  # the bootloader and the app, as a closed terminal would
    proc.communicate(timeout=30)
    assert f"/{_patch_rel()}" in server.log
    assert f".{NAME}.staged.json" not in staged_files(exe)
    assert exe.read_bytes() == app_v1.read_bytes()

    server.faults.clear()
    _ok(run_app(exe, "--version"), f"textstat {V1}\n")  # cleans up, downloads again, stages
    assert staged_files(exe) == [f".{NAME}.staged", f".{NAME}.staged.json"]
    _ok(run_app(exe, "--version"), f"textstat {V2}\n")
    assert exe.read_bytes() == app_v2.read_bytes()
    assert staged_files(exe) == []


def test_a_launch_racing_an_install_restarts_as_the_new_version(
    app_v1, app_v2, tree_v1, copy_tree, serve_app, install, tmp_path
):
    """Another instance swaps the file while this one starts: this one continues as the new file."""
    import fcntl

    serve_app(copy_tree(tree_v1))
    exe = install(app_v1)
    fd = os.open(str(exe.parent / f".{NAME}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    err_path = tmp_path / "stderr.txt"
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)  # "an installer holds the instance lock"
        with open(err_path, "w") as err:
            proc = subprocess.Popen([str(exe), "--version"], stdout=subprocess.PIPE, stderr=err,
                                    text=True, env=app_env(), cwd=exe.parent)
        deadline = time.monotonic() + 60
        while "is installing an update; waiting" not in err_path.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, err_path.read_text()
            time.sleep(0.02)
        new = exe.parent / ".incoming"
        new.write_bytes(app_v2.read_bytes())
        new.chmod(0o755)
        os.replace(new, exe)  # the installer's swap
    finally:
        os.close(fd)  # the installer is done: lock released
    out, _ = proc.communicate(timeout=60)
    err = err_path.read_text()
    assert proc.returncode == 0, err
    assert out == f"textstat {V2}\n"
    assert "was updated by another instance since this launch; restarting" in err
