"""kill -9 at random moments of a folder app's update: the folder is always the complete old or new app.

The app is a folder shaped like a onedir build: a launcher (a shell script that
prints its version) beside ``_internal/`` holding a 2 MB library, 400 small
modules, data files and a link. The release tool releases 1.0 and 1.1 (one library changed, a file
added), so the patch path applies a bsdiff patch to the installed folder's
canonical archive and unpacks the result, and the full path gunzips and unpacks
the ``.gz``. A child process runs ``Updater(kind="folder").update()`` against a
slowed server and is killed (its process group, SIGKILL) at a random moment:
half the trials over the whole run, half over the window from the last byte of
the patch or ``.gz`` to the child's "updated" log line (x1.25), which holds the
patch, the unpack, the fsyncs and the exchange of the two folders.

A folder is judged by its canonical archive: byte-identical to the released
1.0 or 1.1 archive, and its launcher runs; anything else is broken. Then "the
next launch" cleans leftovers and updates against the healthy server: it must
end at 1.1 with nothing stray beside the folder.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

import _faultkit as kit
from _server import Fault
from pyi_selfupdate import protocol
from pyi_selfupdate.archive import FolderArchive
from pyi_selfupdate.release import release

#: kill -9 trials: real processes over many seconds, outside the fast tier
pytestmark = pytest.mark.e2e

def make_folder(root: Path, version: str) -> Path:
    """The app folder of ``version``: launcher, a 2 MB library, data, a link, an empty folder."""
    internal = root / "_internal"
    (internal / "lib" / "empty").mkdir(parents=True)
    launcher = root / kit.CMD
    launcher.write_bytes(f"#!/bin/sh\necho \"{kit.CMD} {version}\"\nexit 0\n".encode())
    launcher.chmod(0o755)
    (internal / "lib" / "libcore.so").write_bytes(kit.script_version(version, size=2 << 20))
    (internal / "base_library.zip").write_bytes(kit.script_version("stdlib", size=256 << 10, variant=1))
    (internal / "VERSION").write_text(version)
    (internal / "libcore.so").symlink_to("lib/libcore.so")
    if version == kit.NEW:
        (internal / "added-in-new.dat").write_bytes(b"n" * 5000)
    modules = internal / "pkg"
    modules.mkdir()
    for i in range(400):  # many small files, as a real bundle's modules: unpacking and removing take time
        body = hashlib.sha256(f"{i}".encode()).digest() * (40 + i % 60)
        if version == kit.NEW and i == 123:
            body = b"changed " + body
        (modules / f"mod{i:03d}.pyc").write_bytes(body)
    return root


def archive_digest(folder: Path) -> bytes:
    h = hashlib.sha256()
    with FolderArchive(folder) as archive:
        for block in archive.stream():
            h.update(block)
    return h.digest()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("folder-builds")
    builds = {v: make_folder(base / v / kit.CMD, v) for v in (kit.OLD, kit.NEW)}
    root = base / "public"
    for version, folder in builds.items():
        release(folder, version, out=root, platform=kit.PLAT)
    files = {
        "manifest": root / protocol.manifest_path(kit.CMD, kit.PLAT),
        "patch": root / protocol.patch_path(kit.CMD, kit.OLD, kit.NEW, kit.PLAT),
        "full": root / protocol.full_path(kit.CMD, kit.NEW, kit.PLAT),
    }
    digests = {"old": archive_digest(builds[kit.OLD]), "new": archive_digest(builds[kit.NEW])}
    return builds, root, files, digests


def judge(folder: Path, digests: dict) -> kit.Verdict:
    """Complete old or new (archive and a launcher that runs), or broken."""
    if not folder.is_dir():
        return kit.Verdict("broken", "the app folder is missing")
    try:
        digest = archive_digest(folder)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the folder is not a released app
        return kit.Verdict("broken", f"cannot read the folder: {exc}")
    state = next((name for name, d in digests.items() if d == digest), None)
    if state is None:
        return kit.Verdict("broken", "the folder matches no released version")
    proc = subprocess.run([str(folder / kit.CMD)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return kit.Verdict("broken", f"launcher exit {proc.returncode}")
    return kit.Verdict(state, proc.stdout.strip())


def _fresh(work: Path, build: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    (work / "logs").mkdir(parents=True)
    folder = work / "inst" / kit.CMD
    shutil.copytree(build, folder, symlinks=True)
    return folder


def _child(folder: Path) -> dict:
    return {"exe": str(folder / kit.CMD), "kind": "folder"}


def test_kill9_during_a_folder_update(tmp_path, serve, folders):
    builds, root, files, digests = folders
    server = serve(root)
    n = kit.trials(30)
    seed = kit.seed()
    print(f"seed {seed}, {n} trials")
    rng = random.Random(seed)
    tally = kit.record(kit.Tally(
        "kill -9 during a folder update (onedir-shaped app, Updater(kind='folder'), slowed server)", seed,
        kit.reproduce("tests/faults/test_kill_folder.py", seed),
    ))

    timing = {}
    for path_kind in ("patch", "full"):
        totals, afters = [], []
        for i in range(2):
            folder = _fresh(tmp_path / f"cal-{path_kind}-{i}", builds[kit.OLD])
            want = kit.arm_slow(server, root, files, path_kind)
            run = kit.run_child(server, folder, folder.parent.parent / "logs", want=want, **_child(folder))
            result = kit.parse_child(run["stdout"])
            assert run["rc"] == 0 and result and result.get("result"), run["stderr"][-3000:]
            assert result["result"]["method"] == path_kind, result
            assert judge(folder, digests).state == "new"
            totals.append(run["total"])
            afters.append(kit.logged_at(run["stderr"], "updated ") - run["sent_at"])
        timing[path_kind] = (statistics.median(totals), statistics.median(afters) * 1.25)
    tally.notes.append(
        "calibration (median, s): "
        + "; ".join(f"{k}: whole run {t:.2f}, last byte -> installed {a / 1.25:.3f}"
                    for k, (t, a) in timing.items())
        + "; install-phase kills are drawn over 1.25x that window"
    )

    for i in range(n):
        path_kind = rng.choice(("patch", "full"))
        schedule = rng.choice(("window", "install"))
        total, after = timing[path_kind]
        delay = rng.uniform(0, total if schedule == "window" else after)
        folder = _fresh(tmp_path / "trial", builds[kit.OLD])
        logs = folder.parent.parent / "logs"
        want = kit.arm_slow(server, root, files, path_kind)
        run = kit.run_child(server, folder, logs, want=want, kill_at=(schedule, delay), **_child(folder))
        tally.trials += 1
        verdict = judge(folder, digests)
        tally.outcomes[verdict.state if run["killed"] else f"{verdict.state} (finished before the kill)"] += 1
        left = kit.normalize(kit.leftovers(folder.parent, kit.CMD), kit.CMD)
        tally.landed[f"{verdict.state} | {left} | {kit.last_log(run['stderr'])}"] += 1
        if verdict.state == "broken":
            tally.failures.append(f"trial {i} ({path_kind}, {schedule} +{delay:.3f}s): {verdict.detail}")
            continue
        server.faults.clear()
        tally.recovery_tried += 1
        rec = kit.run_child(server, folder, logs, cleanup=True, **_child(folder))
        result = kit.parse_child(rec["stdout"]) or {}
        after_verdict = judge(folder, digests)
        stray = kit.leftovers(folder.parent, kit.CMD)
        if rec["rc"] == 0 and "error" not in result and after_verdict.state == "new" and not stray:
            tally.recovered += 1
        else:
            tally.failures.append(
                f"trial {i} ({path_kind}, {schedule} +{delay:.3f}s): recovery ended "
                f"{after_verdict.state}, stray {stray}, result {result}, rc {rec['rc']}: "
                f"{rec['stderr'][-600:]}"
            )

    print(tally.summary())
    assert not any(k.startswith("broken") for k in tally.outcomes), tally.summary()
    assert tally.recovered == tally.recovery_tried, tally.summary()
    assert tally.trials == n


@pytest.mark.parametrize("path_kind", ["patch", "full"])
def test_a_file_size_limit_while_unpacking_keeps_the_old_folder(tmp_path, serve, folders, path_kind):
    """The 2 MB library cannot be written (RLIMIT_FSIZE 1 MB): a clear error, the old app intact, nothing left."""
    import resource
    import signal

    builds, root, files, digests = folders
    server = serve(root)
    if path_kind == "full":
        server.faults[kit.rel_url_path(files["patch"], root)] = Fault(status=404)
    folder = _fresh(tmp_path / "disk", builds[kit.OLD])

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = subprocess.run(kit.updater_cmd(folder, server.url, **_child(folder)), capture_output=True,
                          text=True, env=kit.child_env(), preexec_fn=limit, timeout=120)
    result = kit.parse_child(proc.stdout) or {}
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result.get("error") == "InstallError", result
    assert "file size limit" in result["message"] and "ulimit -f" in result["message"], result
    assert judge(folder, digests).state == "old"
    assert kit.leftovers(folder.parent, kit.CMD) == []
    # the fault gone, the same update succeeds
    rec = subprocess.run(kit.updater_cmd(folder, server.url, **_child(folder)), capture_output=True,
                         text=True, env=kit.child_env(), timeout=120)
    assert (kit.parse_child(rec.stdout) or {}).get("result"), rec.stderr[-3000:]
    assert judge(folder, digests).state == "new"


def test_kill9_during_the_install_of_a_staged_folder(tmp_path, serve, folders):
    """What a launch does with a staged folder (claim, verify, exchange, remove the old), killed anywhere.

    The update is staged by a first child (``stage()``); a second child runs
    ``install_staged()`` and is killed at a moment drawn around the install:
    over the last 20 % of the time its unkilled runs take from their start to
    logging the install, and as long again after it (claim, verify, exchange,
    removal of the old folder).
    """
    builds, root, files, digests = folders
    server = serve(root)
    n = kit.scaled_trials(15, 0.5)
    seed = kit.seed()
    rng = random.Random(seed)
    tally = kit.record(kit.Tally(
        "kill -9 during install_staged() of a staged folder (the launch's install)", seed,
        kit.reproduce("tests/faults/test_kill_folder.py::test_kill9_during_the_install_of_a_staged_folder", seed),
    ))

    def staged_copy(work: Path) -> Path:
        folder = _fresh(work, builds[kit.OLD])
        run = kit.run_child(server, folder, work / "logs", call="stage", **_child(folder))
        assert (kit.parse_child(run["stdout"]) or {}).get("result"), run["stderr"][-2000:]
        return folder

    windows = []
    for i in range(2):
        folder = staged_copy(tmp_path / f"cal-{i}")
        run = kit.run_child(server, folder, tmp_path / f"cal-{i}" / "logs", call="install_staged", **_child(folder))
        assert judge(folder, digests).state == "new", run["stderr"][-2000:]
        windows.append(kit.logged_at(run["stderr"], "installed the staged update") - run["started_at"])
    window = statistics.median(windows)
    tally.notes.append(f"calibration: an unkilled install_staged() child logs the install {window:.3f} s "
                       "after it was started (median); kills are drawn over 0.8x to 1.2x that")

    for i in range(n):
        delay = rng.uniform(0.8 * window, 1.2 * window)
        work = tmp_path / "trial"
        folder = staged_copy(work)
        run = kit.run_child(server, folder, work / "logs", kill_at=("window", delay), call="install_staged",
                            **_child(folder))
        tally.trials += 1
        verdict = judge(folder, digests)
        tally.outcomes[verdict.state if run["killed"] else f"{verdict.state} (finished before the kill)"] += 1
        left = kit.normalize(kit.leftovers(folder.parent, kit.CMD), kit.CMD)
        tally.landed[f"{verdict.state} | {left} | {kit.last_log(run['stderr'])}"] += 1
        if verdict.state == "broken":
            tally.failures.append(f"trial {i} (+{delay:.3f}s): {verdict.detail}")
            continue
        tally.recovery_tried += 1
        rec = kit.run_child(server, folder, work / "logs", cleanup=True, **_child(folder))
        result = kit.parse_child(rec["stdout"]) or {}
        stray = kit.leftovers(folder.parent, kit.CMD)
        if rec["rc"] == 0 and "error" not in result and judge(folder, digests).state == "new" and not stray:
            tally.recovered += 1
        else:
            tally.failures.append(f"trial {i} (+{delay:.3f}s): recovery left {stray}, {result}: "
                                  f"{rec['stderr'][-600:]}")
    print(tally.summary())
    assert not any(k.startswith("broken") for k in tally.outcomes), tally.summary()
    assert tally.recovered == tally.recovery_tried == tally.trials == n, tally.summary()
