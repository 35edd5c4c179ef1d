"""The Windows tier: example_app built for windows-amd64 under Wine, run as Windows processes.

What a Windows user sees: textstat 1.0 becomes 1.1 (patch, or the .gz); copies
running at once never crash and exactly one installs; the restart propagates
the exit status; a folder nobody may write gets a clear message and no download.
Windows semantics (sharing, locks, TerminateProcess) are exercised by Windows
processes: the apps themselves and ``winharness.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from _server import Fault, ReleaseServer
from _wine import NAME, PLAT, V1, V2

TEXT = "the cat saw the hat\nand the cat sat\n"
TOP = "the 3\ncat 2\n"
PATCH = f"/{NAME}/{V1}/{V2}/{PLAT}"
GZ = f"/{NAME}/{V2}/{PLAT}.gz"
MANIFEST = f"/{NAME}/{PLAT}.json"

pytestmark = [pytest.mark.windows, pytest.mark.e2e]


def app_env(**extra: str) -> dict:
    env = {"PYI_SELFUPDATE_LOG": "info"}
    env.update(extra)
    return env


@pytest.fixture
def serve(win_port):
    servers = []

    def start(root: Path) -> ReleaseServer:
        server = ReleaseServer(Path(root), port=win_port)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def tree(tmp_path, win_trees):
    def copy(kind: str = "file", tag: str = "") -> Path:
        dest = tmp_path / f"public-{kind}{tag}"
        shutil.copytree(win_trees[kind], dest)
        return dest

    return copy


@pytest.fixture
def installed(wine, request):
    """``installed(build)``: a copy of a Windows build in a fresh folder on D: (a user's install)."""

    def do(build: Path, folder: str = "inst") -> Path:
        dest = wine.workdir(f"{request.node.name[:40]}-{folder}")
        if build.is_dir():
            shutil.copytree(build, dest / NAME, copy_function=shutil.copyfile)
            return dest / NAME / f"{NAME}.exe"
        shutil.copyfile(build, dest / f"{NAME}.exe")
        return dest / f"{NAME}.exe"

    return do


def run(wine, exe: Path, *args: str, input: str = None, **env: str):
    return wine.run([wine.win(exe), *args], input=input, cwd=exe.parent, env=app_env(**env))


def ok(proc, stdout: str = None) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    if stdout is not None:
        assert proc.stdout.replace("\r\n", "\n") == stdout, proc.stderr


def crashed(text: str) -> bool:
    return "Traceback" in text or "zlib.error" in text or "Failed to execute script" in text


# ------------------------------------------------------------------ updating


def test_onefile_1_0_becomes_1_1_through_the_patch(wine, win_builds, tree, serve, installed):
    server = serve(tree())
    exe = installed(win_builds["v1"])
    t0 = time.monotonic()
    ok(run(wine, exe, "--version"), f"{NAME} {V1}\n")  # checks, downloads the patch, stages it
    t_stage = time.monotonic() - t0
    assert server.log == [MANIFEST, PATCH]
    assert exe.read_bytes() == win_builds["v1"].read_bytes()
    t0 = time.monotonic()
    second = run(wine, exe, "top", "-n", "2", input=TEXT)  # installs, restarts as 1.1, reads stdin
    t_install = time.monotonic() - t0
    ok(second, TOP)
    assert "installed staged update 1.0 -> 1.1; restarting" in second.stderr
    assert exe.read_bytes() == win_builds["v2"].read_bytes()
    ok(run(wine, exe, "--version"), f"{NAME} {V2}\n")
    leftovers = sorted(p.name for p in exe.parent.iterdir() if p.name.startswith(".") and p.suffix != ".lock")
    assert leftovers == [], leftovers
    print(f"\nFIGURE windows onefile: stage launch {t_stage:.2f} s, install+restart launch {t_install:.2f} s")


def test_onefile_1_0_becomes_1_1_through_the_gz(wine, win_builds, tree, serve, installed):
    public = tree()
    (public / PATCH.lstrip("/")).unlink()
    server = serve(public)
    exe = installed(win_builds["v1"])
    ok(run(wine, exe, "--version"), f"{NAME} {V1}\n")
    assert server.log == [MANIFEST, PATCH, GZ]
    ok(run(wine, exe, "--version"), f"{NAME} {V2}\n")
    assert exe.read_bytes() == win_builds["v2"].read_bytes()


def _older_than_a_burst(started: float) -> None:
    """Wait until a copy started at ``started`` is older than LIMITS.burst: a launch then
    knows it will not end soon, and does not wait at its exit for it (exit_wait is 60 s)."""
    from pyi_selfupdate.settings import LIMITS

    time.sleep(max(0.0, started + LIMITS.burst + 1 - time.monotonic()))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until ``path`` exists, written by the running ``proc``; its output if it never does."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"{path.name} did not appear; exit {proc.returncode}\n{out}\n{err}")
        time.sleep(0.2)


def _stage(wine, exe: Path, sidecar: Path = None) -> None:
    """Have 1.0 stage 1.1 (``sidecar`` beside the onefile exe by default): a launch kept running
    (reading its input) until its background check has staged the update, as a user's
    session would. A launch that ends at once leaves a check that has not had its manifest
    within a second to a later launch: on a loaded machine, that is most quick launches."""
    sidecar = sidecar or exe.parent / f".{exe.name}.staged.json"
    proc = wine.popen([wine.win(exe), "top", "-n", "2"], cwd=exe.parent, env=app_env(), stdin=subprocess.PIPE)
    _wait_for(sidecar, proc)
    out, err = proc.communicate(TEXT, timeout=120)
    assert proc.returncode == 0 and out.replace("\r\n", "\n") == TOP and not crashed(err), err


def test_ten_launches_at_once_exactly_one_installs_and_none_crashes(wine, win_builds, tree, serve, installed):
    serve(tree())
    exe = installed(win_builds["v1"])
    _stage(wine, exe)
    results = wine.harness("launch", "10", wine.win(exe), "--version", env=app_env())
    assert len(results) == 10
    for r in results:
        assert r["rc"] == 0 and not crashed(r["err"]), r
        assert r["out"].strip() in (f"{NAME} {V1}", f"{NAME} {V2}"), r
    installs = [r for r in results if "installed staged update" in r["err"]]
    assert len(installs) == 1, [r["err"] for r in results]
    deferred = [r for r in results if "other processes run" in r["err"]]
    assert deferred, "the ten launches did not overlap"
    assert exe.read_bytes() == win_builds["v2"].read_bytes()
    ok(run(wine, exe, "--version"), f"{NAME} {V2}\n")


def test_a_long_running_copy_keeps_running_through_the_update(wine, win_builds, tree, serve, installed):
    """A copy runs through ten launches with the update staged: nobody installs under it.

    It imports ``textstat_report`` from its executable after the launches (the
    import that crashed with zlib.error when the file was replaced under it);
    once it has ended, the next launch installs and runs 1.1.
    """
    serve(tree())
    exe = installed(win_builds["v1"])
    # The long-running copy starts first (a launch finding an update staged and no other
    # copy would install it at once): it downloads and stages the update itself.
    started = time.monotonic()
    long = wine.popen([wine.win(exe), "top", "-n", "2"], cwd=exe.parent, env=app_env(),
                      stdin=subprocess.PIPE)
    _wait_for(exe.parent / f".{exe.name}.staged.json", long)
    _older_than_a_burst(started)
    results = wine.harness("launch", "10", wine.win(exe), "--version", env=app_env())
    for r in results:
        assert r["rc"] == 0 and not crashed(r["err"]) and r["out"].strip() == f"{NAME} {V1}", r
        assert "installed staged update" not in r["err"], r
    assert exe.read_bytes() == win_builds["v1"].read_bytes()
    out, err = long.communicate(TEXT, timeout=120)
    assert long.returncode == 0 and out.replace("\r\n", "\n") == TOP and not crashed(err), err
    after = run(wine, exe, "--version")
    ok(after, f"{NAME} {V2}\n")
    assert exe.read_bytes() == win_builds["v2"].read_bytes()


# ------------------------------------------------------------------ restart


@pytest.mark.parametrize("code", [-1, 0xC000013A, 3])
def test_restart_gives_the_parent_the_childs_exit_status(wine, code):
    """The restarted child exits with ``code``; the parent (Windows) ends with the same 32-bit value."""
    work = wine.workdir(f"restart{code & 0xFFFFFFFF}")
    script = work / "app.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {wine.win(wine.project)!r})\n"
        "from pyi_selfupdate import restart\n"
        "if sys.argv[1:] == ['first']:\n"
        "    restart(['second'])\n"
        "    print('not reached')\n"
        f"print('child', os.environ.get('PYI_SELFUPDATE_RESTARTED') is not None, flush=True)\n"
        f"os._exit({code if code < 2**31 else code - 2**32})\n")
    r = wine.harness("exitcode", wine.python, wine.win(script), "first")
    assert r["rc"] == code & 0xFFFFFFFF, r
    assert r["out"].split() == ["child", "True"], r


# ------------------------------------------------------------------ folders


def _switched(folder: Path, timeout: float = 30) -> float:
    """Wait for the folder switch a launch's exit handed to cmd.exe; its duration in seconds."""
    t0 = time.monotonic()
    staged = folder.parent / f".{NAME}.staged"
    while staged.exists() or _asides(folder):
        assert time.monotonic() - t0 < timeout, sorted(p.name for p in folder.parent.iterdir())
        time.sleep(0.05)
    return time.monotonic() - t0


def _asides(folder: Path) -> list:
    return [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{NAME}.old")]


def _version_of(folder: Path, builds) -> str:
    """V1 or V2 if ``folder`` holds exactly that onedir build (every file, byte for byte)."""
    def files(root: Path) -> dict:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    have = files(folder)
    for version, key in ((V1, "dir_v1"), (V2, "dir_v2")):
        if have == files(builds[key]):
            return version
    raise AssertionError(f"{folder} is neither build: {sorted(have)[:5]}...")


@pytest.mark.parametrize("via", ["patch", "gz"])
def test_onedir_1_0_becomes_1_1_once_the_app_has_exited(wine, win_builds, tree, serve, installed, via):
    """onedir on Windows: nobody can rename a folder a program runs from, so the launch that
    installs verifies the staged folder and hands the switch to cmd.exe at its exit; the next
    launch runs 1.1 and says so."""
    public = tree("folder", f"-{via}")
    if via == "gz":
        (public / PATCH.lstrip("/")).unlink()
    server = serve(public)
    exe = installed(win_builds["dir_v1"])
    folder = exe.parent
    _stage(wine, exe, folder.parent / f".{NAME}.staged.json")  # checks, downloads, stages
    assert [p for p in server.log if p != MANIFEST] == ([PATCH] if via == "patch" else [PATCH, GZ])
    t0 = time.monotonic()
    first = run(wine, exe, "top", "-n", "2", input=TEXT)  # 1.0 as usual; the switch at its exit
    ok(first, TOP)
    assert "the folder switches once this process has exited" in first.stderr, first.stderr
    t_switch = _switched(folder)
    t_total = time.monotonic() - t0
    assert _version_of(folder, win_builds) == V2
    after = run(wine, exe, "top", "-n", "2", input=TEXT)  # (--version would end before the news)
    ok(after, TOP)
    assert "textstat: updated from 1.0 to 1.1" in after.stderr, after.stderr
    ok(run(wine, exe, "--version"), f"{NAME} {V2}\n")
    leftovers = sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".") and p.suffix != ".lock")
    assert leftovers == [], leftovers
    assert [p for p in server.log if p != MANIFEST] == ([PATCH] if via == "patch" else [PATCH, GZ])
    print(f"\nFIGURE windows onedir ({via}): launch + switch after its exit {t_total:.2f} s "
          f"(switch done {t_switch:.2f} s after the launch ended)")


def test_onedir_ten_launches_at_once_one_switch_and_none_crashes(wine, win_builds, tree, serve, installed):
    serve(tree("folder"))
    exe = installed(win_builds["dir_v1"])
    folder = exe.parent
    _stage(wine, exe, folder.parent / f".{NAME}.staged.json")
    results = wine.harness("launch", "10", wine.win(exe), "--version", env=app_env())
    assert len(results) == 10
    for r in results:  # none switched under the others: all ran 1.0 to their end
        assert r["rc"] == 0 and not crashed(r["err"]) and r["out"].strip() == f"{NAME} {V1}", r
    handed = [r for r in results if "the folder switches once this process has exited" in r["err"]]
    assert len(handed) == 1, [r["err"] for r in results]
    assert [r for r in results if "other processes run" in r["err"]], "the ten launches did not overlap"
    _switched(folder)
    assert _version_of(folder, win_builds) == V2
    ok(run(wine, exe, "--version"), f"{NAME} {V2}\n")


def test_onedir_a_long_running_copy_keeps_its_folder_through_the_update(
        wine, win_builds, tree, serve, installed):
    """A copy runs while ten launches come and go with the update staged: its folder is never
    switched under it (it holds the folder open); after it ends, a launch's exit switches it."""
    server = serve(tree("folder"))
    exe = installed(win_builds["dir_v1"])
    folder = exe.parent
    started = time.monotonic()
    long = wine.popen([wine.win(exe), "top", "-n", "2"], cwd=folder, env=app_env(), stdin=subprocess.PIPE)
    _wait_for(folder.parent / f".{NAME}.staged.json", long)  # the running copy staged the update
    _older_than_a_burst(started)
    assert server.log == [MANIFEST, PATCH]
    results = wine.harness("launch", "10", wine.win(exe), "--version", env=app_env())
    for r in results:
        assert r["rc"] == 0 and not crashed(r["err"]) and r["out"].strip() == f"{NAME} {V1}", r
        assert "the folder switches" not in r["err"], r
    time.sleep(1.5)  # a switch, had one started, would have happened by now
    assert _version_of(folder, win_builds) == V1
    out, err = long.communicate(TEXT, timeout=120)  # imports textstat_report from _internal now
    assert long.returncode == 0 and out.replace("\r\n", "\n") == TOP and not crashed(err), err
    ok(run(wine, exe, "--version"), f"{NAME} {V1}\n")  # alone: hands the switch over at its exit
    _switched(folder)
    ok(run(wine, exe, "--version"), f"{NAME} {V2}\n")
    assert [p for p in server.log if p != MANIFEST] == [PATCH], server.log  # downloaded once


# ------------------------------------------------------------------ unwritable folder


def test_a_folder_the_user_cannot_write_gets_the_fix_and_no_download(wine, win_builds, tree, serve, installed):
    """C:\\Program Files for a user: here a read-only mount (root, which runs Wine, bypasses modes)."""
    server = serve(tree())
    exe = installed(win_builds["v1"])
    ro = exe.parent.parent / "readonly"
    ro.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(exe.parent), str(ro)], check=True)
    try:
        proc = run(wine, ro / exe.name, "--version")
        ok(proc, f"{NAME} {V1}\n")
        assert "is not writable by the user running the app" in proc.stderr, proc.stderr
        assert "Install the app per user" in proc.stderr and "nothing was downloaded" in proc.stderr
        assert server.log == []
    finally:
        subprocess.run(["umount", str(ro)], check=False)


# ------------------------------------------------------------------ kills


def _sound(wine, exe: Path, builds) -> str:
    """The executable is byte for byte 1.0 or 1.1, and it runs (recovering if need be)."""
    data = exe.read_bytes()
    assert data in (builds["v1"].read_bytes(), builds["v2"].read_bytes()), "a broken executable"
    proc = run(wine, exe, "--version")
    assert proc.returncode == 0 and not crashed(proc.stderr), proc.stderr
    return proc.stdout.strip()


TRIALS = int(os.environ.get("WINDOWS_KILL_TRIALS", "6"))


def test_terminate_during_download_and_install_breaks_nothing(wine, win_builds, tree, serve, installed):
    """TerminateProcess on the app's process tree (taskkill /F /T) at random moments of a
    download (a slowed server) and of an install (the launch finding the update staged)."""
    seed = int(os.environ.get("FAULT_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    rng = random.Random(seed)
    v1, v2 = win_builds["v1"].read_bytes(), win_builds["v2"].read_bytes()
    table = {}
    kept_bytes = []
    for phase in ("download", "install"):
        for i in range(TRIALS):
            server = serve(tree("file", f"-{phase}{i}"))
            if phase == "download":
                server.faults[PATCH.lstrip("/")] = Fault(chunk_size=2000, chunk_delay=0.2)
            exe = installed(win_builds["v1"], folder=f"{phase}{i}")
            if phase == "install":
                _stage(wine, exe)
            delay = rng.uniform(1.0, 4.0) if phase == "download" else rng.uniform(0.3, 2.5)
            r = wine.harness("kill", f"{delay:.2f}", wine.win(exe), "--version", env=app_env())
            data = exe.read_bytes()
            assert data in (v1, v2), f"{phase} trial {i} (seed {seed}): a broken executable"
            after = "new" if data == v2 else "old"
            if not r["killed"]:
                after += ", ended before the kill"
            elif phase == "download":  # where the kill landed: the bytes the next launch resumes from
                kept = sum(p.stat().st_size for p in (exe.parent / "update" / NAME / "partial").glob("*")
                           if p.is_file() and p.suffix != ".json")
                staged = (exe.parent / f".{exe.name}.staged.json").exists()
                after += (", killed after the download (staged)" if staged else
                          ", killed mid-download" if kept else ", killed before any byte")
                if kept:
                    kept_bytes.append(kept)
            launches = 0
            version = None
            while version != f"{NAME} {V2}":  # recovered: launches go on until 1.1 runs
                assert launches < 4, f"{phase} trial {i} (seed {seed}): not recovered"
                version = _sound(wine, exe, win_builds)
                launches += 1
            key = (phase, after, launches)
            table[key] = table.get(key, 0) + 1
            server.close()
    rows = "; ".join(f"{p}: {a}, 1.1 after {n} launch(es) x{c}" for (p, a, n), c in sorted(table.items()))
    kept = f"; partial downloads kept {min(kept_bytes)}-{max(kept_bytes)} bytes" if kept_bytes else ""
    print(f"\nFIGURE windows kills (seed {seed}, {TRIALS} per phase): 0 broken; {rows}{kept}")


def test_terminate_during_the_folder_switch_breaks_nothing(wine, win_builds, tree, serve, installed):
    """onedir: TerminateProcess on the launch that hands the switch over, at a random moment
    of its run and exit ("exit"), and on the switch itself (cmd.exe, killed a random moment
    after the app ended: "switch"). The folder is always exactly 1.0 or 1.1 and runs; the
    launches after it finish the update."""
    seed = int(os.environ.get("FAULT_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    rng = random.Random(seed)
    handover = "the folder switches once this process has exited"
    table = {}
    for phase in ("exit", "switch"):
        for i in range(TRIALS):
            server = serve(tree("folder", f"-{phase}{i}"))
            exe = installed(win_builds["dir_v1"], folder=f"{phase}{i}")
            folder = exe.parent
            _stage(wine, exe, folder.parent / f".{NAME}.staged.json")
            if phase == "exit":
                delay = rng.uniform(0.2, 1.6)
                r = wine.harness("kill", f"{delay:.2f}", wine.win(exe), "--version", env=app_env())
                landed = "killed" if r["killed"] else "ended before the kill"
                if handover in r["err"]:  # the kill of the tree may have ended the switch too
                    landed += " after the handover"
                    try:
                        _switched(folder, timeout=3)
                    except AssertionError:
                        pass
            else:
                delay = rng.uniform(0.0, 2.5)
                r = wine.harness("exitkill", f"{delay:.2f}", wine.win(exe), "--version", env=app_env())
                assert r["rc"] == 0 and handover in r["err"] and r["left"], r
                landed = "switch killed" if r["killed"] else "switch ended before the kill"
            assert folder.is_dir(), (f"{phase} trial {i} (seed {seed}): no app folder; beside it: "
                                     f"{sorted(p.name for p in folder.parent.iterdir())}")
            landed += f", left {_version_of(folder, win_builds)}"
            launches, version = 0, None
            while version != V2:  # recovered: launches go on until 1.1 runs
                assert launches < 5, f"{phase} trial {i} (seed {seed}): not recovered"
                proc = run(wine, exe, "--version")
                assert proc.returncode == 0 and not crashed(proc.stderr), proc.stderr
                version = proc.stdout.split()[-1]
                if handover in proc.stderr:
                    _switched(folder)
                launches += 1
            assert not _asides(folder) or run(wine, exe, "--version").returncode == 0
            key = (phase, landed, launches)
            table[key] = table.get(key, 0) + 1
            server.close()
    rows = "; ".join(f"{p}: {a}, 1.1 after {n} launch(es) x{c}" for (p, a, n), c in sorted(table.items()))
    print(f"\nFIGURE windows folder-switch kills (seed {seed}, {TRIALS} per phase): 0 broken; {rows}")


# ------------------------------------------------------------------ hostile servers


@pytest.mark.parametrize("attack", ["dripped headers", "endless empty gzip"])
def test_the_deadline_holds_on_windows_against_a_hostile_server(wine, tmp_path, serve, attack):
    """The watchdog shuts a Windows socket (through a duplicate of its handle) at the deadline,
    and the byte caps count what came over the wire: Updater(deadline=3) in a Windows CPython
    gives up within the deadline, the installed file untouched."""
    import hashlib

    from _hostile import drip_headers, endless_empty_gzip
    from pyi_selfupdate.protocol import Manifest, encode_manifest

    public = tmp_path / "public"
    (public / NAME).mkdir(parents=True)
    server = serve(public)
    if attack == "dripped headers":
        sent = drip_headers(server, MANIFEST)
    else:  # a manifest of 1.1, no patch, a .gz that never decodes to anything
        new = b"textstat 1.1" * 1000
        (public / MANIFEST.lstrip("/")).write_bytes(encode_manifest(Manifest("1.1", hashlib.sha256(new).digest())))
        sent = endless_empty_gzip(server, GZ, limit=1 << 40)  # endless: only the deadline ends it
    work = wine.workdir(f"deadline-{attack.split()[0]}")
    target = work / f"{NAME}.exe"
    target.write_bytes(b"textstat 1.0" * 1000)
    script = work / "check.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {wine.win(wine.project)!r})\n"
        "from pyi_selfupdate import Updater\n"
        "from pyi_selfupdate.errors import SelfUpdateError\n"
        f"u = Updater(current_version={V1!r}, api_url={server.url!r}, cmd_name={NAME!r}, platform={PLAT!r},\n"
        f"            target={wine.win(target)!r}, deadline=3)\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    u.update()\n"
        "    print('0 no error')\n"
        "except SelfUpdateError as exc:\n"
        "    print(f'{time.monotonic() - t:.2f}', exc)\n")
    t0 = time.monotonic()
    proc = wine.run([wine.python, wine.win(script)], timeout=60)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    seconds, message = proc.stdout.strip().split(" ", 1)
    assert message != "no error" and float(seconds) < 3 + 2, proc.stdout
    assert "deadline" in message, proc.stdout
    assert target.read_bytes() == b"textstat 1.0" * 1000
    print(f"\nFIGURE windows {attack}: Updater(deadline=3) gave up after {seconds} s "
          f"({wall:.1f} s with the Windows interpreter's start-up), {sent.total} bytes sent: {message}")
