"""Staging, install_staged(), the instance lock across real processes, leftovers."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyi_selfupdate import _files, _instances, _staging

from _installed import python_env

NEWEST = "1.4+meta"

HOLDER = r"""
import sys
from pyi_selfupdate import _instances
lock = _instances.instance_lock(sys.argv[1])
if sys.argv[2] == "shared":
    print(lock.hold_shared(), flush=True)
    sys.stdin.read()          # hold until the test closes stdin
else:
    with lock.exclusive() as got:
        print(got, flush=True)
"""


def _process(target: Path, mode: str) -> subprocess.Popen:
    env = python_env()
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(target), mode], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def holder():
    """``holder(target)``: a real other process holding the shared lock; closed after."""
    procs = []

    def start(target: Path) -> subprocess.Popen:
        proc = _process(target, "shared")
        procs.append(proc)
        assert proc.stdout.readline().strip() == "True"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=30)


def _stop(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def _other_process_gets_exclusive(target: Path) -> bool:
    proc = _process(target, "exclusive")
    out, _ = proc.communicate(timeout=30)
    return out.strip() == "True"


# ---------------------------------------------------------------------- staging


def test_stage_then_install_staged(make_app, updater_for, server, payload_of, leftovers):
    target = make_app("1.1", mode=0o750)
    result = updater_for(target, "1.1").stage()
    assert result is not None and not result.installed and result.method == "patch"
    assert target.read_bytes() == payload_of("1.1")
    staged = _staging.staged_path(target)
    assert staged.read_bytes() == payload_of(NEWEST)
    assert stat.S_IMODE(staged.stat().st_mode) == 0o750
    sidecar = json.loads(_staging.sidecar_path(target).read_text())
    assert sidecar["from"] == "1.1" and sidecar["to"] == NEWEST
    assert sidecar["method"] == "patch" and sidecar["bytes"] == result.bytes_fetched
    assert sidecar["sha256"] == "6+iSW0blkFkPEN49O9vXh/1xmLgqp+h93wbd5mkKpZ4="
    assert leftovers(target.parent) == {".myapp.staged", ".myapp.staged.json"}

    seen = []
    installed = updater_for(target, "1.1", on_successful_update=seen.append).install_staged()
    assert installed.installed and (installed.from_version, installed.to_version) == ("1.1", NEWEST)
    assert seen == [installed]
    assert target.read_bytes() == payload_of(NEWEST)
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert leftovers(target.parent) == set()
    # nothing more staged: the next launch does nothing
    assert updater_for(target, NEWEST).install_staged() is None


def test_stage_twice_downloads_once(make_app, updater_for, server):
    target = make_app("1.0")
    first = updater_for(target, "1.0").stage()
    second = updater_for(target, "1.0").stage()
    assert first.to_version == second.to_version == NEWEST
    assert server.log == ["/myapp/linux-amd64.json", "/myapp/1.0/1.4%2Bmeta/linux-amd64",
                          "/myapp/linux-amd64.json"]


def test_update_uses_a_matching_staged_file(make_app, updater_for, server, payload_of, leftovers):
    target = make_app("1.0")
    updater_for(target, "1.0").stage()
    result = updater_for(target, "1.0").update()
    assert result.installed and target.read_bytes() == payload_of(NEWEST)
    assert server.log.count("/myapp/1.0/1.4%2Bmeta/linux-amd64") == 1
    assert leftovers(target.parent) == set()


def test_stale_staged_update_is_discarded(make_app, updater_for, payload_of, leftovers):
    target = make_app("1.0")
    updater_for(target, "1.0").stage()
    # the app was meanwhile updated to 1.2 by other means: the 1.0 -> 1.4 staging is stale
    target.write_bytes(payload_of("1.2"))
    assert updater_for(target, "1.2").install_staged() is None
    assert target.read_bytes() == payload_of("1.2")
    assert leftovers(target.parent) == set()


def test_corrupt_staged_binary_is_discarded(make_app, updater_for, payload_of, leftovers, caplog):
    target = make_app("1.0")
    updater_for(target, "1.0").stage()
    staged = _staging.staged_path(target)
    data = bytearray(staged.read_bytes())
    data[1000] ^= 0xFF
    staged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="pyi_selfupdate"):
        assert updater_for(target, "1.0").install_staged() is None
    assert target.read_bytes() == payload_of("1.0")
    assert leftovers(target.parent) == set()
    assert any("SHA-256" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_truncated_staged_binary_is_discarded(make_app, updater_for, payload_of, leftovers):
    target = make_app("1.0")
    updater_for(target, "1.0").stage()
    staged = _staging.staged_path(target)
    staged.write_bytes(staged.read_bytes()[:5000])
    assert updater_for(target, "1.0").install_staged() is None
    assert target.read_bytes() == payload_of("1.0")
    assert leftovers(target.parent) == set()


@pytest.mark.parametrize("content", [b"{not json", b'{"from": "1.0"}', b"[]",
                                     b'{"from": "1.0", "to": "1.4+meta", "sha256": "AAAA"}'])
def test_corrupt_sidecar_is_discarded(content, make_app, updater_for, payload_of, leftovers):
    target = make_app("1.0")
    updater_for(target, "1.0").stage()
    _staging.sidecar_path(target).write_bytes(content)
    assert updater_for(target, "1.0").install_staged() is None
    assert target.read_bytes() == payload_of("1.0")
    assert leftovers(target.parent) == set()


def test_staged_binary_without_sidecar_is_never_installed(make_app, updater_for, payload_of):
    target = make_app("1.0")
    _staging.staged_path(target).write_bytes(payload_of(NEWEST))
    assert updater_for(target, "1.0").install_staged() is None
    assert target.read_bytes() == payload_of("1.0")


# ------------------------------------------------------------------- instance lock


def test_other_instance_running_means_stage_then_install_when_alone(
        make_app, updater_for, payload_of, holder, leftovers, caplog):
    target = make_app("1.0")
    other = holder(target)
    with caplog.at_level(logging.INFO, logger="pyi_selfupdate"):
        result = updater_for(target, "1.0").update()
    assert result is not None and not result.installed
    assert target.read_bytes() == payload_of("1.0")  # the running instance is not disturbed
    assert any("will install at next launch" in r.getMessage() for r in caplog.records)
    assert updater_for(target, "1.0").install_staged() is None  # still not alone
    assert _staging.staged_path(target).read_bytes() == payload_of(NEWEST)

    _stop(other)
    installed = updater_for(target, "1.0").install_staged()
    assert installed is not None and installed.installed
    assert target.read_bytes() == payload_of(NEWEST)
    assert leftovers(target.parent) == set()


def test_own_shared_lock_upgrades_and_returns_to_shared(make_app, updater_for, payload_of):
    """The bootstrap holds the shared lock itself: it still installs when alone."""
    target = make_app("1.0")
    lock = _instances.instance_lock(target)
    assert lock is _instances.instance_lock(str(target))  # one object per lock file
    try:
        assert lock.hold_shared() and lock.hold_shared()  # idempotent
        assert updater_for(target, "1.0").update().installed
        assert target.read_bytes() == payload_of(NEWEST)
        assert lock.held_shared
        assert not _other_process_gets_exclusive(target)  # we are back to shared
    finally:
        lock.release()
    assert _other_process_gets_exclusive(target)


def test_two_shared_holders_block_each_other_from_exclusive(make_app, holder):
    target = make_app("1.0")
    other = holder(target)
    lock = _instances.instance_lock(target)
    try:
        assert lock.hold_shared()
        with lock.exclusive() as got:
            assert got is False
        _stop(other)
        assert lock.held_shared  # a failed upgrade keeps the shared lock:
        assert not _other_process_gets_exclusive(target)  # we still hold it
    finally:
        lock.release()


def test_lock_released_when_holder_is_killed(make_app, holder):
    target = make_app("1.0")
    proc = holder(target)
    assert not _other_process_gets_exclusive(target)
    proc.kill()
    proc.wait(timeout=30)
    assert _other_process_gets_exclusive(target)


# ---------------------------------------------------------------------- leftovers


def test_cleanup_leftovers_removes_only_abandoned_files(make_app, payload_of, leftovers):
    target = make_app("1.0")
    folder = target.parent
    for name in (".myapp.new", ".myapp.new.0123456789ab", ".myapp.old"):
        (folder / name).write_bytes(b"partial")
    (folder / ".other.new.0123").write_bytes(b"someone else's")
    live = _files.NewFile(target)
    live.write(b"being written right now")
    try:
        removed = _staging.cleanup_leftovers(target)
        assert {p.name for p in removed} == {".myapp.new", ".myapp.new.0123456789ab",
                                            ".myapp.old"}
        assert live.path.exists()
        assert leftovers(folder) == {live.path.name, ".other.new.0123"}
    finally:
        live.discard()
    assert target.read_bytes() == payload_of("1.0")


def test_cleanup_leftovers_old_orphan_staged_and_lone_sidecar(make_app, leftovers):
    target = make_app("1.0")
    staged = _staging.staged_path(target)
    staged.write_bytes(b"half")
    assert _staging.cleanup_leftovers(target) == []  # young: maybe a staging in progress
    old = time.time() - 3600
    os.utime(staged, (old, old))
    assert _staging.cleanup_leftovers(target) == [staged]
    sidecar = _staging.sidecar_path(target)
    sidecar.write_text("{}")
    assert _staging.cleanup_leftovers(target) == [sidecar]
    assert leftovers(target.parent) == set()


def test_killed_update_leftover_is_cleaned(make_app, payload_of, leftovers):
    """A process killed while writing its new file leaves it; the next launch removes it."""
    target = make_app("1.0")
    code = ("import sys, os\nfrom pyi_selfupdate import _files, _staging\n"
            "f = _files.NewFile(sys.argv[1]); f.write(b'x' * 1000)\n"
            "print(f.path, flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)],
                            env=python_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    path = Path(proc.stdout.readline().strip())
    assert _staging.cleanup_leftovers(target) == []  # its writer is alive
    proc.kill()
    proc.wait(timeout=30)
    assert _staging.cleanup_leftovers(target) == [path]
    assert leftovers(target.parent) == set()
    assert target.read_bytes() == payload_of("1.0")


def test_hold_shared_waits_for_an_install_to_finish(make_app, caplog):
    """A launch during another process's swap waits for it instead of running unlocked.

    ``timeout=0`` is a silent probe (the caller decides what to say); a wait that
    runs out warns that the process runs without the lock.
    """
    target = make_app("1.0")
    code = ("import sys, time\nfrom pyi_selfupdate import _instances\n"
            "lock = _instances.instance_lock(sys.argv[1])\n"
            "with lock.exclusive() as got:\n    print(got, flush=True)\n    sys.stdin.readline()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)],
                            env=python_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "True"
    lock = _instances.instance_lock(target)
    try:
        with caplog.at_level(logging.DEBUG, logger="pyi_selfupdate"):
            assert lock.hold_shared(timeout=0) is False  # no wait: not while it installs
        assert "without the instance lock" not in caplog.text
        with caplog.at_level(logging.DEBUG, logger="pyi_selfupdate"):
            assert lock.hold_shared(timeout=0.2) is False
        assert "without the instance lock" in caplog.text
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert lock.hold_shared(timeout=30) is True  # waits until the install ends
        assert proc.wait(timeout=30) == 0
    finally:
        lock.release()


# ------------------------------------------- claimed files, advice, probes


CLAIMER = r"""
import sys
from pyi_selfupdate import _files, _staging
private = _staging.claim_staged(sys.argv[1])
print(private, flush=True)
sys.stdin.readline()          # a stalled install: holds the claim until told
_files.swap(private, sys.argv[1])
print("swapped", flush=True)
"""


def test_claimed_staged_file_survives_cleanup_while_its_installer_lives(
        make_app, updater_for, server, payload_of, leftovers):
    """An install stalled after claiming the staged file: other launches' cleanup leaves it alone."""
    target = make_app("1.0")
    updater_for(target, "1.0").stage()
    proc = subprocess.Popen([sys.executable, "-c", CLAIMER, str(target)],
                            env=python_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        private = Path(proc.stdout.readline().strip())
        assert private.name.startswith(".myapp.new.") and private.exists()
        removed = _staging.cleanup_leftovers(target)  # may drop the sidecar, never the claim
        assert private not in removed and private.exists(), removed
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "swapped"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert target.read_bytes() == payload_of(NEWEST)


def test_claimed_file_of_a_killed_installer_is_cleaned(make_app, updater_for, server, payload_of,
                                                       leftovers):
    target = make_app("1.0")
    updater_for(target, "1.0").stage()
    proc = subprocess.Popen([sys.executable, "-c", CLAIMER, str(target)],
                            env=python_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    private = Path(proc.stdout.readline().strip())
    proc.kill()
    proc.wait(timeout=30)
    assert private in _staging.cleanup_leftovers(target)  # with the sidecar it leaves alone
    assert leftovers(target.parent) == set()
    assert target.read_bytes() == payload_of("1.0")


def test_swap_of_a_vanished_file_says_so(make_app, payload_of, tmp_path):
    target = make_app("1.0")
    with pytest.raises(_files.InstallError, match="vanished before it could replace"):
        _files.swap(target.parent / ".myapp.new.gone", target)
    assert target.read_bytes() == payload_of("1.0")


@pytest.mark.parametrize("err,advice", [
    (28, "free some disk space"),           # ENOSPC
    (27, "file size limit"),                # EFBIG
    (13, "writable by the user"),           # EACCES
    (5, "check the disk"),                  # EIO
])
def test_write_failure_advice_names_the_cause(err, advice, make_app, monkeypatch):
    target = make_app("1.0")

    def failing_write(fd, data):
        raise OSError(err, os.strerror(err))

    with _files.NewFile(target) as new:
        monkeypatch.setattr(_files.os, "write", failing_write)
        with pytest.raises(_files.InstallError) as info:
            new.write(b"x")
        monkeypatch.undo()
        new.discard()
    message = str(info.value)
    assert advice in message and os.strerror(err) in message, message


def test_swap_guard_keeps_the_update_staged(make_app, updater_for, server, payload_of, leftovers):
    """The bootstrap's last check before a swap (other processes appeared) keeps the update staged."""
    target = make_app("1.0")
    updater_for(target, "1.0").stage()
    refusing = updater_for(target, "1.0")
    refusing.swap_guard = lambda: "other processes run it (pids 4242)"
    assert refusing.install_staged() is None
    assert target.read_bytes() == payload_of("1.0")
    assert leftovers(target.parent) == {".myapp.staged", ".myapp.staged.json"}
    assert _staging.read_staged(target).to_version == NEWEST
    assert _staging.cleanup_leftovers(target) == []
    willing = updater_for(target, "1.0")
    willing.swap_guard = lambda: None
    result = willing.install_staged()
    assert result is not None and result.installed
    assert target.read_bytes() == payload_of(NEWEST)
    assert leftovers(target.parent) == set()
