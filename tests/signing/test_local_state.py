"""Local attacks on the files beside the app: the instance lock, state files, the serial.

Real files, real processes (another user where the test runs as root), the real
``Updater`` against a real HTTP server on 127.0.0.1 serving a signed tree.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from _server import Fault
from test_hostile_server import CMD, PATCH12, PLAT, Tree, _payload
from test_hostile_server import server, updater  # noqa: F401 (the fixtures; tree is this module's own)

from pyi_selfupdate import Updater, signing
from pyi_selfupdate._files import write_atomic
from pyi_selfupdate.errors import InstallError, SelfUpdateError
from pyi_selfupdate.protocol import full_url, patch_url

NOBODY = 65534


@pytest.fixture
def tree():
    # A folder other users can enter (pytest's own tmp folders are 0700), as an app's folder is.
    root = Path(tempfile.mkdtemp(prefix="pyi-selfupdate-local-"))
    os.chmod(root, 0o755)
    yield Tree(root)
    shutil.rmtree(root, ignore_errors=True)


def _run(code: str, user: "int | None" = None) -> subprocess.Popen:
    # another user cannot run this virtual environment's interpreter: the system's (standard
    # library only) then, from a folder every user can enter
    python = sys.executable if user is None else shutil.which("python3", path="/usr/bin:/bin")
    return subprocess.Popen([python, "-c", textwrap.dedent(code)], user=user, text=True,
                            cwd=None if user is None else "/",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _launch_once(target: Path) -> None:
    """What every launch of the app does first: hold the instance lock (it creates the file)."""
    proc = _run(f"""
        from pyi_selfupdate import _instances
        assert _instances.instance_lock({str(target)!r}).hold_shared()
    """)
    assert proc.wait(30) == 0, proc.stdout.read()


def _hold_as_another_user(lock: Path) -> subprocess.Popen:
    """Another local user opens the lock file read-only and holds a shared lock on it, for ever."""
    proc = _run(f"""
        import fcntl, os, sys, time
        try:
            fd = os.open({str(lock)!r}, os.O_RDONLY)
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            print("refused", exc.strerror, flush=True)
            sys.exit(0)
        print("holding", flush=True)
        time.sleep(60)
    """, user=NOBODY)
    return proc


# ------------------------------------------------------------- instance lock


def test_the_instance_lock_file_is_created_0600(tree):
    tree.install("1.0")
    _launch_once(tree.target)
    lock = tree.app_dir / f".{CMD}.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", [None, 0o644], ids=["new lock file", "left 0644 by an older version"])
def test_another_user_cannot_hold_the_instance_lock_and_block_installs(existing, tree, updater):
    if os.geteuid() != 0 or not shutil.which("python3", path="/usr/bin:/bin"):
        pytest.skip("replaying another local user needs root and a system python3")
    tree.install("1.0")
    lock = tree.app_dir / f".{CMD}.lock"
    if existing is not None:
        lock.write_bytes(b"")
        os.chmod(lock, existing)
    _launch_once(tree.target)  # narrows an existing file to 0600 too
    attacker = _hold_as_another_user(lock)
    try:
        said = attacker.stdout.readline().strip()
        assert said.startswith("refused"), said
        result = updater().update()
        assert result.installed and tree.target.read_bytes() == _payload("2.0")
    finally:
        attacker.kill()
        attacker.wait()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@pytest.mark.parametrize("name, refusal", [
    (f".{CMD}.lock", "cannot open the instance lock"),
    (f"update/{CMD}/serial.lock", "to record the accepted serial"),
    (f"update/{CMD}/serial", "accepted-serial file .* is damaged"),
])
def test_a_symlink_at_a_lock_or_the_serial_is_refused_and_not_followed(name, refusal, tree, updater):
    victim = tree.root / "victim"
    victim.write_bytes(b"precious")
    os.chmod(victim, 0o644)
    tree.install("1.0")
    (tree.app_dir / name).parent.mkdir(parents=True, exist_ok=True)
    (tree.app_dir / name).symlink_to(victim)
    with pytest.raises(SelfUpdateError, match=refusal):
        updater().update()
    assert victim.read_bytes() == b"precious" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert tree.target.read_bytes() == _payload("1.0")


# ---------------------------------------------------------------- state files


def _state_names(tree: Tree, updater: Updater, server) -> list:
    """Every state file an update writes, and the old predictable temporary names."""
    state = updater.state_dir
    m = tree.manifest("2.0")
    parts = [updater._partial(url, m) for url in (
        patch_url(server.url, CMD, "1.0", "2.0", PLAT), full_url(server.url, CMD, "2.0", PLAT))]
    pid = os.getpid()
    return ([state / n for n in ("cktime", "failures", "installed.json", "log", "log.1",
                                 f"serial.tmp{pid}", f".cktime.{pid}.tmp", f".failures.{pid}.tmp",
                                 f".serial.{pid}.tmp")]
            + [p.with_name(p.name + ".json") for p in parts] + parts
            + [tree.app_dir / f".{CMD}.staged.json"])


@pytest.mark.parametrize("patched", [True, False], ids=["through the patch", "full download"])
def test_symlinks_planted_at_state_files_are_never_written_through(patched, tree, updater, server):
    """A symlink at every name the update writes (and at the old predictable temporary names)
    to a file of the user's: the update goes on, each victim keeps its bytes and mode."""
    tree.install("1.0")
    if not patched:
        server.faults[PATCH12] = Fault(status=404)
    u = updater()
    victims = []
    names = _state_names(tree, u, server)
    # the full download's partial file, when it is used, must be a real file: a symlink there
    # fails the download (tested below); here only its .json and the patch's are planted
    used = names[-3] if patched else names[-2]
    for i, name in enumerate(n for n in names if n != used):
        victim = tree.root / f"victim{i}"
        victim.write_bytes(b"precious %d" % i)
        os.chmod(victim, 0o644)
        name.parent.mkdir(parents=True, exist_ok=True)
        name.symlink_to(victim)
        victims.append(victim)
    result = u.update()
    assert result.installed and tree.target.read_bytes() == _payload("2.0")
    for i, victim in enumerate(victims):
        assert victim.read_bytes() == b"precious %d" % i, victim
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert signing.read_serial_state(u.serial_path) == signing.SerialState(2, "2.0")


def test_a_symlink_at_the_download_file_fails_the_update_and_writes_nothing(tree, updater, server):
    tree.install("1.0")
    server.faults[PATCH12] = Fault(status=404)
    u = updater()
    part = u._partial(full_url(server.url, CMD, "2.0", PLAT), tree.manifest("2.0"))
    part.parent.mkdir(parents=True)
    victim = tree.root / "victim"
    victim.write_bytes(b"precious")
    part.symlink_to(victim)
    with pytest.raises(InstallError, match="Too many levels of symbolic links|symbolic link"):
        u.update()
    assert victim.read_bytes() == b"precious" and tree.target.read_bytes() == _payload("1.0")


def test_threads_writing_one_state_file_never_share_a_temporary_name(tmp_path):
    file = tmp_path / "cktime"
    errors = []

    def write(n: int) -> None:
        try:
            for i in range(200):
                write_atomic(file, b"%d-%d" % (n, i))
        except Exception as exc:  # pragma: no cover - what the test exists to catch
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert file.read_bytes().split(b"-")[1] == b"199"
    assert [p.name for p in tmp_path.iterdir()] == ["cktime"]


# ---------------------------------------------------------------- the serial


def test_the_serial_never_goes_down_across_processes(tmp_path):
    """Real processes record serials in random order at the same time, as checks racing
    each other do; a watcher reads the file all along: it only ever grows, and ends at the top."""
    path = tmp_path / "state" / "serial"
    go = tmp_path / "go"
    writers = []
    for n in range(6):
        serials = list(range(1, 301))
        random.Random(n).shuffle(serials)
        writers.append(_run(f"""
            import os, time
            from pyi_selfupdate import signing
            while not os.path.exists({str(go)!r}):
                time.sleep(0.001)
            for serial in {serials!r}:
                with signing.serial_lock({str(path)!r}):
                    signing.write_serial_state({str(path)!r}, signing.SerialState(serial, "v%d" % serial))
        """))
    seen = []
    go.write_bytes(b"")
    while any(w.poll() is None for w in writers):
        try:
            state = signing.read_serial_state(path)
        except signing.SignatureError:  # pragma: no cover - a torn read would be a failure too
            raise
        if state is not None:
            seen.append(state.serial)
    for w in writers:
        assert w.wait(60) == 0, w.stdout.read()
    assert seen == sorted(seen), "the serial went down"
    assert signing.read_serial_state(path) == signing.SerialState(300, "v300")
    assert sorted(p.name for p in path.parent.iterdir()) == ["serial", "serial.lock"]
    assert stat.S_IMODE((path.parent / "serial.lock").stat().st_mode) == 0o600


def test_a_check_waits_for_another_process_recording_the_serial(tree, updater):
    """The read-verify-record of the serial is one step: a check holding it makes another wait."""
    tree.install("1.0")
    u = updater()
    holder = _run(f"""
        import time
        from pyi_selfupdate import signing
        with signing.serial_lock({str(u.serial_path)!r}):
            print("held", flush=True)
            time.sleep(1.5)
    """)
    assert holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    assert u.update().installed
    assert time.monotonic() - start >= 1.0
    assert holder.wait(30) == 0


@pytest.mark.parametrize("keys", [True, False], ids=["keys", "no keys"])
def test_a_state_folder_that_cannot_be_made_is_a_self_update_error(keys, tree, updater):
    """A file where the state folder goes: the serial and the download have nowhere to go."""
    tree.install("1.0")
    (tree.app_dir / "update").mkdir()
    (tree.app_dir / "update" / CMD).write_bytes(b"not a folder")
    with pytest.raises(InstallError, match="update/myapp"):
        updater(**({} if keys else {"public_keys": None})).update()
    assert tree.target.read_bytes() == _payload("1.0")
