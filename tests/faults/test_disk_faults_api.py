"""Disk faults against the ``Updater`` API: a write that fails half-way, a folder the user cannot write.

- a file-size limit (``RLIMIT_FSIZE``, set in the child; SIGXFSZ ignored so the
  write fails with EFBIG instead of killing it) smaller than the executable;
- a full disk: a small tmpfs (only where ``mount`` works; an extra variant);
- an install folder the user may read and execute but not write: the tests run
  as root, which ignores permission bits, so the child drops to ``nobody``.

Every time: a SelfUpdateError whose message (logged by the child) names the
problem, the executable untouched and running, nothing left beside it, and the
same update succeeding once the fault is gone: nothing lost.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import _faultkit as kit
from _server import Fault

NOBODY = 65534


def _run_child(target: Path, url: str, *, preexec=None, logs: Path, env=None, python=None) -> dict:
    out, err = logs / "stdout", logs / "stderr"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.run(
            kit.updater_cmd(target, url, python=python), stdout=o, stderr=e, preexec_fn=preexec,
            env=env if python else kit.child_env(env), timeout=120,
        )
    return {"rc": proc.returncode, "result": kit.parse_child(out.read_text()) or {},
            "stderr": err.read_text()}


def _limit_fsize(limit: int):
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _check_failed_cleanly(run: dict, target: Path, old: bytes, words, pair) -> str:
    result = run["result"]
    assert run["rc"] == 0, f"the child crashed instead of raising a SelfUpdateError:\n{run['stderr'][-3000:]}"
    assert "error" in result, f"the update did not fail: {result}"
    message = result["message"]
    assert any(w.lower() in message.lower() for w in words), (
        f"the error does not say what went wrong ({words}): {result['error']}: {message}"
    )
    assert target.read_bytes() == old
    assert kit.judge(target, pair).state == "old"
    return f"{result['error']}: {message}"


@pytest.mark.parametrize("path_kind", ["patch", "full"])
def test_file_size_limit_mid_write(path_kind, tmp_path, serve, script_pair, script_tree):
    root, files = script_tree
    server = serve(root)
    if path_kind == "full":
        server.faults[kit.rel_url_path(files["patch"], root)] = Fault(status=404)
    inst = tmp_path / "inst"
    inst.mkdir()
    logs = tmp_path
    target = kit.copy_exe(script_pair["old"], inst / kit.CMD)
    limit = len(script_pair["new"]) // 2  # the write of the new file fails half-way

    run = _run_child(target, server.url, preexec=_limit_fsize(limit), logs=logs)
    message = _check_failed_cleanly(
        run, target, script_pair["old"], ["too large", "EFBIG", "size limit", "errno 27"], script_pair
    )
    assert kit.leftovers(inst, kit.CMD) == [], "a partial file was left beside the executable"
    tally = _disk_tally()
    tally.trials += 1
    tally.outcomes["RLIMIT_FSIZE: clear error, untouched"] += 1
    tally.notes.append(f"RLIMIT_FSIZE ({path_kind}): {message[:160]}")

    server.faults.clear()
    run = _run_child(target, server.url, logs=logs)
    assert run["result"].get("result", {}).get("to") == kit.NEW, run
    assert kit.judge(target, script_pair).state == "new"
    tally.recovery_tried += 1
    tally.recovered += 1


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True)
    return proc.returncode == 0


def test_disk_full_on_small_tmpfs(tmp_path, serve, script_pair, script_tree):
    """Optional variant: needs root and a working ``mount``; skipped (not counted) otherwise."""
    root, files = script_tree
    server = serve(root)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    size = len(script_pair["old"]) + (len(script_pair["old"]) // 2)
    if not _mount_tmpfs(mnt, str(size)):
        pytest.skip("cannot mount a tmpfs here (needs root and mount); the variant is not counted")
    try:
        target = kit.copy_exe(script_pair["old"], mnt / kit.CMD)
        run = _run_child(target, server.url, logs=tmp_path)
        message = _check_failed_cleanly(
            run, target, script_pair["old"], ["no space", "ENOSPC", "errno 28", "disk"], script_pair
        )
        assert kit.leftovers(mnt, kit.CMD) == [], "a partial file was left on the full disk"
        tally = _disk_tally()
        tally.trials += 1
        tally.outcomes["disk full (tmpfs): clear error, untouched"] += 1
        tally.notes.append(f"disk full (tmpfs, optional variant): {message[:160]}")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_install_folder_not_writable_by_user(serve, script_pair, script_tree):
    if os.geteuid() != 0:
        pytest.skip("needs root to create a folder the test user cannot write and drop to nobody")
    root, files = script_tree
    server = serve(root)
    base = kit.shared_dir("ro")
    try:
        inst = base / "inst"
        inst.mkdir()
        inst.chmod(0o755)  # root's folder: nobody may read and execute, not write
        logs = base / "logs"
        logs.mkdir()
        logs.chmod(0o777)
        target = kit.copy_exe(script_pair["old"], inst / kit.CMD, 0o755)
        before = sorted(p.name for p in inst.iterdir())

        # the set-up proves something only if nobody really cannot write there
        probe = subprocess.run(
            ["sh", "-c", f"touch '{inst}/probe'"], preexec_fn=_as_nobody, capture_output=True
        )
        assert probe.returncode != 0 and not (inst / "probe").exists(), "nobody can write: test is void"

        found = kit.python_for_user(_as_nobody, kit.child_env({"HOME": str(base)}))
        if found is None:
            pytest.skip("no Python interpreter with this one's packages that nobody may run")
        python, env = found
        run = _run_child(target, server.url, preexec=_as_nobody, logs=logs, env=env, python=python)
        message = _check_failed_cleanly(
            run, target, script_pair["old"], ["permission", "not writable", "cannot write", "EACCES"],
            script_pair,
        )
        assert str(inst) in message or inst.name in message, f"the message does not name the folder: {message}"
        assert sorted(p.name for p in inst.iterdir()) == before
        tally = _disk_tally()
        tally.trials += 1
        tally.outcomes["folder not writable (as nobody): clear error, untouched"] += 1
        tally.notes.append(f"folder not writable: {message[:200]}")

        # nothing lost: whoever may write there (root, here) updates it
        run = _run_child(target, server.url, logs=logs)
        assert run["result"].get("result", {}).get("to") == kit.NEW, run
        assert kit.judge(target, script_pair).state == "new"
        tally.recovery_tried += 1
        tally.recovered += 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


_TALLY = None


def _disk_tally() -> kit.Tally:
    global _TALLY
    if _TALLY is None:
        _TALLY = kit.record(kit.Tally(
            "disk faults vs Updater.update()", 0,
            "make test PYTEST_ARGS=tests/faults/test_disk_faults_api.py",
        ))
    return _TALLY
