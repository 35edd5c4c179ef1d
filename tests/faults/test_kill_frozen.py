"""kill -9 at random moments of a real frozen app updating itself (example_app 1.0 -> 1.1).

The app checks and downloads in the background and installs at the next
launch, before its own code runs, then re-executes itself as the new version.
Two phases are attacked, half the trials each:

- the launch that stages (manifest, slowed patch or ``.gz`` download, verify,
  the staged file and its sidecar), killed at a moment drawn uniformly over
  the measured duration of an unkilled such launch;
- the launch that installs (re-hash of the staged file, the swap, the folder
  fsync, the restart and the new version's start), likewise.

The kill hits the whole process group: the bootloader and the Python process.
After it, the executable must be byte-identical to 1.0 or 1.1 and the next
launch must start (exit 0, printing one of the two versions); the "next
launches" against the healthy server (at most three) must end with 1.1
installed, its output saying so, and nothing stray beside it.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import _faultkit as kit
from _server import Fault, ReleaseServer

SLOW_PATCH = Fault(chunk_size=256, chunk_delay=0.02)
SLOW_FULL = Fault(chunk_size=256 << 10, chunk_delay=0.02)


def _launch(exe: Path, logs: Path, kill_after=None, args=("--version",)):
    out, err = open(logs / "stdout", "w+"), open(logs / "stderr", "w+")
    start = time.monotonic()
    proc = subprocess.Popen([str(exe), *args], stdout=out, stderr=err, env=kit.app_env(),
                            cwd=exe.parent, start_new_session=True)
    killed = False
    if kill_after is not None:
        time.sleep(kill_after)
        killed = kit.killpg(proc)
    else:
        proc.wait(timeout=120)
    took = time.monotonic() - start
    out.seek(0)
    err.seek(0)
    return {"rc": proc.returncode, "killed": killed, "took": took,
            "stdout": out.read(), "stderr": err.read()}


def _arm(server: ReleaseServer, app: kit.FrozenPair, path_kind: str) -> None:
    server.faults.clear()
    if path_kind == "healthy":
        return
    patch_key = kit.rel_url_path(app.files["patch"], app.root)
    if path_kind == "patch":
        server.faults[patch_key] = SLOW_PATCH
    else:
        server.faults[patch_key] = Fault(status=404)
        server.faults[kit.rel_url_path(app.files["full"], app.root)] = SLOW_FULL


def _install_dir(work: Path, app: kit.FrozenPair) -> Path:
    if work.exists():
        shutil.rmtree(work)
    (work / "inst").mkdir(parents=True)
    (work / "logs").mkdir()
    return kit.copy_exe(app.old, work / "inst" / app.name)


def _staged(exe: Path) -> bool:
    return (exe.parent / f".{exe.name}.staged.json").exists()


def test_kill9_during_frozen_self_update(tmp_path, textstat):
    app = textstat
    server = ReleaseServer(app.root, port=app.port)
    try:
        _run_trials(tmp_path, app, server)
    finally:
        server.close()


def _run_trials(tmp_path: Path, app: kit.FrozenPair, server: ReleaseServer) -> None:
    n = kit.scaled_trials(8, 0.25)
    seed = kit.seed()
    print(f"seed {seed}, {n} trials")
    rng = random.Random(seed)
    tally = kit.record(kit.Tally(
        f"kill -9 during a frozen app's self-update (example_app {app.old_version} -> "
        f"{app.new_version}, {len(app.old) >> 20} MB onefile)", seed,
        kit.reproduce("tests/faults/test_kill_frozen.py", seed),
    ))

    # calibrate both phases (and prove the unkilled flow works)
    timing = {}
    install_t = []
    for path_kind in ("patch", "full"):
        stage_t = []
        for i in range(1):
            exe = _install_dir(tmp_path / "cal", app)
            logs = exe.parent.parent / "logs"
            _arm(server, app, path_kind)
            first = _launch(exe, logs)
            assert first["rc"] == 0 and app.old_version in first["stdout"], first
            assert _staged(exe), f"launch 1 did not stage the update:\n{first['stderr'][-3000:]}"
            stage_t.append(first["took"])
            _arm(server, app, "healthy")
            second = _launch(exe, logs)
            assert second["rc"] == 0 and app.new_version in second["stdout"], second
            assert kit.judge(exe, app.versions, execute=False).state == "new"
            install_t.append(second["took"])
        timing[path_kind] = statistics.median(stage_t)
    timing["install"] = statistics.median(install_t)
    tally.notes.append(
        "calibration (s): staging launch via patch %.2f, via .gz %.2f; installing launch %.2f"
        % (timing["patch"], timing["full"], timing["install"])
    )

    for i in range(n):
        phase = rng.choice(("stage", "install"))
        path_kind = rng.choice(("patch", "full"))
        exe = _install_dir(tmp_path / "trial", app)
        inst, logs = exe.parent, exe.parent.parent / "logs"
        if phase == "install":
            _arm(server, app, "healthy")
            first = _launch(exe, logs)
            if not _staged(exe):
                tally.failures.append(f"trial {i}: the staging launch staged nothing: {first['stderr'][-500:]}")
                continue
            delay = rng.uniform(0, timing["install"])
        else:
            _arm(server, app, path_kind)
            delay = rng.uniform(0, timing[path_kind])
        run = _launch(exe, logs, kill_after=delay)
        tally.trials += 1
        # bytes and mode now; that it runs, the next launch shows (it must exit 0
        # printing one of the two versions, or the trial counts as broken)
        verdict = kit.judge(exe, app.versions, execute=False)
        label = verdict.state if run["killed"] else f"{verdict.state} (finished before the kill)"
        tally.outcomes[label] += 1
        left = kit.describe_leftovers(inst, app.name, app.versions)
        tally.landed[f"{phase}: {verdict.state} | {left} | {kit.last_log(run['stderr'])}"] += 1
        if verdict.state == "broken":
            tally.failures.append(f"trial {i} ({phase}, {path_kind}, +{delay:.3f}s): {verdict.detail}")
            continue

        # next launches, healthy server: at most three to end as the new version
        _arm(server, app, "healthy")
        outputs = []
        for _ in range(3):
            nxt = _launch(exe, logs)
            outputs.append((nxt["rc"], nxt["stdout"].strip()))
            if nxt["rc"] != 0:
                break
            if app.new_version in nxt["stdout"]:
                break
        first_rc, first_out = outputs[0]
        if first_rc != 0 or first_out not in {f"textstat {app.old_version}", f"textstat {app.new_version}"}:
            tally.outcomes[label] -= 1
            tally.outcomes["broken (does not start)"] += 1
            tally.failures.append(f"trial {i} ({phase}, {path_kind}, +{delay:.3f}s): the next launch "
                                  f"failed: {outputs[0]}: {nxt['stderr'][-800:]}")
            continue
        tally.recovery_tried += 1
        ok = (
            all(rc == 0 for rc, _ in outputs)
            and app.new_version in outputs[-1][1]
            and kit.judge(exe, app.versions, execute=False).state == "new"
            and not kit.leftovers(inst, app.name)
        )
        if ok:
            tally.recovered += 1
            tally.landed[f"  recovery took {len(outputs)} launch(es)"] += 1
        else:
            tally.failures.append(
                f"trial {i} ({phase}, {path_kind}, +{delay:.3f}s): recovery launches {outputs}, "
                f"stray {kit.leftovers(inst, app.name)}: {nxt['stderr'][-800:]}"
            )

    print(tally.summary())
    assert not any(k.startswith("broken") for k in tally.outcomes), tally.summary()
    assert tally.recovered == tally.recovery_tried, tally.summary()
    assert not tally.failures, tally.summary()
