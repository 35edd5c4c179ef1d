"""A real frozen app (example_app) under server faults, as an unprivileged user, and ten at once.

- Server faults: each kind on the manifest, and the heavier ones on the full
  ``.gz`` (patch missing). The app starts normally every time: exit 0, the
  same output as with self-update disabled, nothing on stderr, the executable
  untouched, nothing left beside it; then the next launch against the healthy
  server downloads, verifies and stages the update (installing it at the
  launch after is what the kill and e2e tests show).
- Install folder the user cannot write: the tests run as root, which ignores
  permission bits, so the app runs as ``nobody`` from a root-owned 0755
  folder. It starts normally, its log (``PYI_SELFUPDATE_LOG=info``) says why
  it cannot update, the folder is unchanged.
- Ten launches at once with an update staged: all exit 0 with the output of
  1.0 or 1.1, exactly one installs (at its exit, once the others ended), and
  the executable is 1.1 when the ten are done.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import _faultkit as kit
from _server import Fault, ReleaseServer

TEXT = "the quick brown fox\njumps over the lazy dog\nthe end\n"
NOBODY = 65534


def kinds(size: int, url_path: str):
    return kit.server_faults(size, url_path, stall=5.0, long_length=False)


CASES = [(k, "manifest") for k in kinds(10, "/x")] + [
    (k, "full") for k in ("connection reset mid-body", "truncated body (length announced, then close)")
]

_TALLY = None


def _tally() -> kit.Tally:
    global _TALLY
    if _TALLY is None:
        _TALLY = kit.record(kit.Tally(
            "server faults vs the frozen app (each kind on the manifest; 2 on the .gz)", 0,
            "make test PYTEST_ARGS=tests/faults/test_frozen_faults.py",
        ))
    return _TALLY


def _run(exe: Path, args, *, env=None, preexec=None, timeout=120, stdin=None):
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=exe.parent,
                          preexec_fn=preexec, timeout=timeout, input=stdin)


@pytest.fixture
def installed(tmp_path, textstat):
    inst = tmp_path / "inst"
    inst.mkdir()
    exe = kit.copy_exe(textstat.old, inst / textstat.name)
    data = tmp_path / "words.txt"
    data.write_text(TEXT)
    return exe, data


_CLEAN = {}


def _clean_output(exe: Path, data: Path) -> str:
    """The app's output with self-update disabled: what "starts normally" must print."""
    if "count" not in _CLEAN:
        clean = _run(exe, ["count", str(data)], env=kit.app_env(log="", **kit.LOOK_ENV))
        assert clean.returncode == 0 and clean.stdout.strip(), clean
        _CLEAN["count"] = clean.stdout.replace(str(data), "<file>")
    return _CLEAN["count"]


@pytest.mark.parametrize("kind,where", CASES, ids=[f"{w}-{k}" for k, w in CASES])
def test_frozen_app_under_server_fault(kind, where, installed, textstat):
    app = textstat
    exe, data = installed
    clean = _clean_output(exe, data)

    server = ReleaseServer(app.root, port=app.port)
    try:
        faulted = app.files[where]
        key = kit.rel_url_path(faulted, app.root)
        server.faults[key] = kinds(faulted.stat().st_size, "/" + key)[kind]
        if where == "full":
            server.faults[kit.rel_url_path(app.files["patch"], app.root)] = Fault(status=404)
        t0 = time.monotonic()
        run = _run(exe, ["count", str(data)], env=kit.app_env(log=""))
        took = time.monotonic() - t0
        assert any(p.endswith(".json") for p in server.log), "the app did not check for updates"
        assert run.returncode == 0, run
        assert run.stdout.replace(str(data), "<file>") == clean, "the output changed under a server fault"
        assert run.stderr == "", f"the app printed on stderr: {run.stderr[-2000:]}"
        assert exe.read_bytes() == app.old
        assert kit.leftovers(exe.parent, app.name) == [], "stray files after a server fault"
        tally = _tally()
        tally.trials += 1
        tally.outcomes["started normally, untouched"] += 1
        tally.landed[f"{where}: {kind}: launch took {took:.1f}s"] += 1

        # the next healthy check succeeds: it downloads, verifies and stages the update
        server.faults.clear()
        nxt = _run(exe, ["--version"], env=kit.app_env(log="info"))
        assert nxt.returncode == 0 and nxt.stdout.strip() == f"textstat {app.old_version}", nxt
        assert (exe.parent / f".{app.name}.staged.json").exists(), nxt.stderr[-2000:]
        assert exe.read_bytes() == app.old
        tally.recovery_tried += 1
        tally.recovered += 1
    finally:
        server.close()


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_frozen_app_in_folder_user_cannot_write(textstat):
    if os.geteuid() != 0:
        pytest.skip("needs root to create a folder the test user cannot write and drop to nobody")
    app = textstat
    base = kit.shared_dir("ro-app")
    server = ReleaseServer(app.root, port=app.port)
    try:
        inst = base / "inst"
        inst.mkdir()
        inst.chmod(0o755)
        exe = kit.copy_exe(app.old, inst / app.name, 0o755)
        data = base / "words.txt"
        data.write_text(TEXT)
        data.chmod(0o644)
        before = sorted(p.name for p in inst.iterdir())
        probe = subprocess.run(["sh", "-c", f"touch '{inst}/probe'"], preexec_fn=_as_nobody, capture_output=True)
        assert probe.returncode != 0 and not (inst / "probe").exists(), "nobody can write: test is void"

        env = kit.app_env(log="info", HOME=str(base), TMPDIR="/tmp")
        clean = _run(exe, ["count", str(data)], env=kit.app_env(log="", **kit.LOOK_ENV), preexec=_as_nobody)
        assert clean.returncode == 0, clean
        run = _run(exe, ["count", str(data)], env=env, preexec=_as_nobody)
        # it could never install an update: nothing is asked of the server, not even the manifest
        assert server.log == [], "an app that cannot install updates downloaded something"
        assert run.returncode == 0, run
        assert run.stdout == clean.stdout
        assert re.search(r"writable|permission|cannot write", run.stderr, re.I), (
            f"no clear log message about the folder:\n{run.stderr[-2000:]}"
        )
        assert "Install the app per user" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        assert exe.read_bytes() == app.old
        assert sorted(p.name for p in inst.iterdir()) == before
        tally = kit.record(kit.Tally(
            "frozen app in a folder its user cannot write (run as nobody)", 0,
            "make test PYTEST_ARGS=tests/faults/test_frozen_faults.py::test_frozen_app_in_folder_user_cannot_write",
        ))
        tally.trials = 1
        tally.outcomes["started normally, untouched"] = 1
        lines = [l for l in run.stderr.splitlines() if re.search(r"writable|permission|cannot", l, re.I)]
        tally.notes.append("log: " + (lines[0][:220] if lines else ""))

        # nothing lost: whoever may write the folder (root) gets the update
        outputs = []
        for _ in range(2):
            nxt = _run(exe, ["--version"], env=kit.app_env(log="info"))
            outputs.append((nxt.returncode, nxt.stdout.strip()))
            if app.new_version in nxt.stdout:
                break
        assert outputs[-1] == (0, f"textstat {app.new_version}"), outputs
        tally.recovery_tried = tally.recovered = 1
    finally:
        server.close()
        shutil.rmtree(base, ignore_errors=True)


def _ten_at_once(tmp_path: Path, exe: Path, app) -> dict:
    """One round: stage the update, launch ten at once, then one alone; what each did."""
    first = _run(exe, ["--version"], env=kit.app_env(log="info"))
    assert first.returncode == 0 and app.old_version in first.stdout, first
    assert (exe.parent / f".{app.name}.staged.json").exists(), f"nothing staged:\n{first.stderr}"
    procs = []
    for i in range(10):
        out = open(tmp_path / f"out{i}", "w+")
        err = open(tmp_path / f"err{i}", "w+")
        procs.append((subprocess.Popen([str(exe), "--version"], stdout=out, stderr=err,
                                       env=kit.app_env(log="info"), cwd=exe.parent), out, err))
    results = []
    for proc, out, err in procs:
        proc.wait(timeout=180)
        out.seek(0)
        err.seek(0)
        results.append((proc.returncode, out.read().strip(), err.read()))
        out.close()
        err.close()
    final = kit.judge(exe, app.versions, execute=False).state
    after = _run(exe, ["--version"], env=kit.app_env(log="info"))
    return {
        "results": results,
        "installs": sum(len(re.findall(r"installed staged update", e)) for _, _, e in results),
        "final": final,
        "after": after,
        "leftovers": kit.leftovers(exe.parent, app.name),
    }


def test_ten_launches_at_once_with_update_staged(tmp_path, textstat):
    """Ten launches at once with an update staged: all run, exactly one installs.

    A swap while a sibling is still starting would crash it (it reads its
    modules from the file by path), so the one launch that takes the install on
    runs as the old version and installs at its exit, once the others ended:
    when the ten are done the file is the new version, and the next launch
    runs it without installing anything. Rounds: 3 in CI, ``FAULT_TRIALS / 20``
    in the long form.
    """
    app = textstat
    rounds = kit.scaled_trials(3, 0.05)
    tally = kit.record(kit.Tally(
        "ten launches at once with an update staged (frozen app)", 0,
        "FAULT_TRIALS=200 make test PYTEST_ARGS=tests/faults/test_frozen_faults.py::test_ten_launches_at_once_with_update_staged",
    ))
    server = ReleaseServer(app.root, port=app.port)
    seen = []
    try:
        for n in range(rounds):
            inst = tmp_path / f"inst{n}"
            inst.mkdir()
            exe = kit.copy_exe(app.old, inst / app.name)
            seen.append(_ten_at_once(tmp_path, exe, app))
            r = seen[-1]
            tally.trials += 1
            ok = sum(1 for rc, _, _ in r["results"] if rc == 0)
            tally.outcomes[f"exit 0: {ok}/10, installs: {r['installs']}, file after the ten: {r['final']}"] += 1
            if r["after"].returncode == 0 and r["after"].stdout.strip() == f"textstat {app.new_version}":
                tally.recovered += 1
            tally.recovery_tried += 1
            versions = [o for _, o, _ in r["results"]]
            tally.notes.append(f"round {n + 1} outputs: " + ", ".join(
                f"{v}x{versions.count(v)}" for v in sorted(set(versions))))
    finally:
        server.close()
    print(tally.summary())
    for r in seen:
        logs = [e[-600:] for _, _, e in r["results"]]
        for rc, out, err in r["results"]:
            assert rc == 0, err[-2000:]
            assert out in (f"textstat {app.old_version}", f"textstat {app.new_version}"), (out, err[-2000:])
        # Exactly one of the ten installs, and only once the others have ended.
        assert r["installs"] == 1, f"{r['installs']} of the ten installed; their logs: {logs}"
        # ... at its exit, after the others: proof that the ten did run at once
        # (a launch alone would have installed at its start and restarted)
        assert sum(len(re.findall(r"installed staged update \S+ -> \S+ at exit", e))
                   for _, _, e in r["results"]) == 1, logs
        assert r["final"] == "new", logs
        after = r["after"]
        assert after.returncode == 0 and after.stdout.strip() == f"textstat {app.new_version}", after
        assert "installed staged update" not in after.stderr, after.stderr
        assert r["leftovers"] == []


def test_long_running_instance_defers_the_install_without_waiting(tmp_path, textstat):
    """A launch next to a long-lived instance does not wait at exit for it to end.

    The long-lived one (``count`` waiting on its input) stages the update
    itself. A short launch then finds the update staged and the long-lived
    instance running since well before it: it runs as it is and leaves the
    install to a later launch, without waiting ``exit_wait`` at its exit (its
    log says why). Once the long-lived instance has ended, the next launch
    installs and runs the new version.
    """
    from pyi_selfupdate.settings import LIMITS

    app = textstat
    inst = tmp_path / "inst"
    inst.mkdir()
    exe = kit.copy_exe(app.old, inst / app.name)
    sidecar = inst / f".{app.name}.staged.json"
    server = ReleaseServer(app.root, port=app.port)
    long = subprocess.Popen([str(exe), "count"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kit.app_env(log="info"))
    try:
        assert kit.wait_until(sidecar.exists, 120, 0.05), "the long-lived instance staged nothing"
        time.sleep(LIMITS.burst + 1)  # it now runs since well before the next launch
        short = _run(exe, ["--version"], env=kit.app_env(log="info"))
        staged_after_short = sidecar.exists()
        state_after_short = kit.judge(exe, app.versions, execute=False).state
        long.stdin.write(TEXT)
        long.stdin.close()
        long.wait(timeout=180)
        long_out, long_err = long.stdout.read(), long.stderr.read()
        nxt = _run(exe, ["--version"], env=kit.app_env(log="info"))
    finally:
        if long.poll() is None:
            long.kill()
            long.wait(timeout=30)
        server.close()
    assert short.returncode == 0 and short.stdout.strip() == f"textstat {app.old_version}", short
    assert "since before this launch" in short.stderr, short.stderr[-2000:]
    assert "installed staged update" not in short.stderr, short.stderr[-2000:]
    assert staged_after_short and state_after_short == "old"
    assert long.returncode == 0 and long_out.strip(), long_err[-2000:]
    assert nxt.returncode == 0 and nxt.stdout.strip() == f"textstat {app.new_version}", nxt
    assert "installed staged update" in nxt.stderr, nxt.stderr[-2000:]
    assert kit.judge(exe, app.versions, execute=False).state == "new"
    assert kit.leftovers(inst, app.name) == []


def _lock_wait() -> float:
    try:
        from pyi_selfupdate.settings import LIMITS
    except ImportError:  # pragma: no cover - older bootstraps waited 10 + 5 s
        return 15.0
    return float(LIMITS.lock_wait)


@pytest.mark.parametrize("hold", ["3s", "beyond-wait"], ids=["frozen-3s", "frozen-beyond-wait"])
def test_launch_while_an_install_is_frozen(hold, tmp_path, textstat):
    """An installing process stopped (SIGSTOP) in the middle of its install while another launch starts.

    The installer is caught the moment it has claimed the staged file (its
    ``.<name>.new.*`` appears) and stopped for 3 s, or (long form only) 5 s
    longer than a launch waits for the instance lock (the bootstrap's
    ``LIMITS.lock_wait``). The
    other launch runs ``count`` on a pipe and imports its report module only
    after the installer went on: if the executable were replaced under it,
    that import would fail. Both must exit 0 with their normal output, the
    executable must be one of the versions, and the next launches recover.
    """
    import signal

    if hold == "beyond-wait":
        if not os.environ.get("FAULT_TRIALS"):
            pytest.skip(f"long form only (FAULT_TRIALS): stops an install for {_lock_wait() + 5:.0f} s")
        hold = _lock_wait() + 5.0
    else:
        hold = 3.0
    app = textstat
    inst = tmp_path / "inst"
    inst.mkdir()
    exe = kit.copy_exe(app.old, inst / app.name)
    server = ReleaseServer(app.root, port=app.port)
    clean = _run(exe, ["count"], env=kit.app_env(log="", **kit.LOOK_ENV), stdin=TEXT)
    assert clean.returncode == 0 and clean.stdout.strip(), clean
    try:
        first = _run(exe, ["--version"], env=kit.app_env(log="info"))
        assert (inst / f".{app.name}.staged.json").exists(), first.stderr
        installer = subprocess.Popen([str(exe), "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=kit.app_env(log="info"), start_new_session=True)
        caught = kit.wait_until(
            lambda: any(p.name.startswith(f".{app.name}.new.") for p in inst.iterdir()), 60, 0.0002
        )
        if caught:
            os.killpg(installer.pid, signal.SIGSTOP)
        other = subprocess.Popen([str(exe), "count"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=kit.app_env(log="info"),
                                 start_new_session=True)
        time.sleep(hold)
        if caught:
            os.killpg(installer.pid, signal.SIGCONT)
        # the other launch gets its input now: the installer may wait at its exit
        # for it to end (it started after the installer) before installing
        other.stdin.write(TEXT)
        other.stdin.close()
        a_out, a_err = installer.communicate(timeout=180)
        other.wait(timeout=180)  # its output is small: the pipes cannot fill up
        b_out, b_err = other.stdout.read(), other.stderr.read()
        state = kit.judge(exe, app.versions, execute=False).state
        outputs = []
        for _ in range(2):
            nxt = _run(exe, ["--version"], env=kit.app_env(log="info"))
            outputs.append((nxt.returncode, nxt.stdout.strip()))
            if app.new_version in nxt.stdout:
                break
    finally:
        server.close()
    tally = kit.record(kit.Tally(
        f"an install frozen (SIGSTOP) {hold:.0f}s while another launch starts (frozen app)", 0,
        "make test PYTEST_ARGS='tests/faults/test_frozen_faults.py -k "
        + ("frozen-3s'" if hold == 3.0 else "frozen-beyond-wait'") + (" (with FAULT_TRIALS set)" if hold != 3.0 else ""),
    ))
    tally.trials = 1
    tally.outcomes[f"executable {state}"] += 1
    tally.outcomes[f"installer exit {installer.returncode} ({a_out.strip()}), other exit {other.returncode}"] += 1
    tally.notes.append("installer log: " + " / ".join(a_err.strip().splitlines()[:3])[:400])
    tally.notes.append("other launch log: " + " / ".join(b_err.strip().splitlines()[:3])[:400])
    print(tally.summary())
    assert caught, "the installer was never seen claiming the staged file"
    assert installer.returncode == 0 and a_out.strip() in (f"textstat {app.old_version}", f"textstat {app.new_version}"), a_err
    assert other.returncode == 0 and b_out == clean.stdout, (b_out, b_err)
    assert state in ("old", "new")
    assert outputs[-1] == (0, f"textstat {app.new_version}"), outputs
    assert kit.leftovers(inst, app.name) == []
    tally.recovery_tried = tally.recovered = 1
