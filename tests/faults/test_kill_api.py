"""kill -9 at random moments of ``Updater.update()``: the target is always old or new, never broken.

A child process runs the public API on a real executable (a 2 MB shell script)
while the server is slowed chunk by chunk, and is killed (its whole process
group, SIGKILL) at a random moment. Half the trials draw the moment uniformly
over the whole run (start-up, manifest, download); the other half draw it
uniformly over the measured time between the last byte of the patch or ``.gz``
leaving the server and the child logging that it installed the update (x1.25):
that window holds the patch, the verification, the write of the new file, the
fsyncs and the rename, and there is no
test hook in the library, so many uniform draws over it are what hits each
step. Where a kill landed is read from what it left behind (the files beside
the target) and from the child's last library log line.

Then "the next launch": a fresh process cleans leftovers and updates against
the healthy server; it must end with the new version and nothing stray.
"""

from __future__ import annotations

import random
import shutil
import statistics
from pathlib import Path

import pytest

import _faultkit as kit

#: kill -9 trials: real processes over many seconds, outside the fast tier
pytestmark = pytest.mark.e2e


def _fresh(work: Path, data: bytes) -> Path:
    if work.exists():
        shutil.rmtree(work)
    (work / "inst").mkdir(parents=True)
    (work / "logs").mkdir()
    return kit.copy_exe(data, work / "inst" / kit.CMD, 0o750)


def test_kill9_during_updater_update(tmp_path, serve, script_pair, script_tree):
    root, files = script_tree
    server = serve(root)
    n = kit.trials(24)
    seed = kit.seed()
    print(f"seed {seed}, {n} trials")
    rng = random.Random(seed)
    tally = kit.record(kit.Tally(
        "kill -9 during Updater.update() (2 MB executable, slowed server)", seed,
        kit.reproduce("tests/faults/test_kill_api.py", seed),
    ))

    # Calibrate: how long an unkilled update takes per path, and how long after the
    # last byte of the artifact it exits. The unkilled runs must succeed, too.
    timing = {}
    for path_kind in ("patch", "full"):
        totals, afters = [], []
        for i in range(2):
            target = _fresh(tmp_path / f"cal-{path_kind}-{i}", script_pair["old"])
            want = kit.arm_slow(server, root, files, path_kind)
            run = kit.run_child(server, target, target.parent.parent / "logs", want=want)
            result = kit.parse_child(run["stdout"])
            assert run["rc"] == 0 and result and result.get("result"), run["stderr"][-3000:]
            assert result["result"]["method"] == path_kind, result
            assert kit.judge(target, script_pair).state == "new"
            totals.append(run["total"])
            # the install window: from the artifact's last byte leaving the server to
            # the child's "updated" log line (both clocks are the system's monotonic one)
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
        target = _fresh(tmp_path / "trial", script_pair["old"])
        inst, logs = target.parent, target.parent.parent / "logs"
        want = kit.arm_slow(server, root, files, path_kind)
        run = kit.run_child(server, target, logs, want=want, kill_at=(schedule, delay))
        tally.trials += 1
        verdict = kit.judge(target, script_pair)
        if not run["killed"]:
            tally.outcomes[f"{verdict.state} (finished before the kill)"] += 1
        else:
            tally.outcomes[verdict.state] += 1
        left = kit.describe_leftovers(inst, kit.CMD, script_pair)
        tally.landed[f"{verdict.state} | {left} | {kit.last_log(run['stderr'])}"] += 1
        if verdict.state == "broken":
            tally.failures.append(f"trial {i} ({path_kind}, {schedule} +{delay:.3f}s): {verdict.detail}")
            continue

        # the next launch, against the healthy server
        server.faults.clear()
        tally.recovery_tried += 1
        rec = kit.run_child(server, target, logs, cleanup=True)
        result = kit.parse_child(rec["stdout"]) or {}
        after_verdict = kit.judge(target, script_pair)
        stray = kit.leftovers(inst, kit.CMD)
        if rec["rc"] == 0 and "error" not in result and after_verdict.state == "new" and not stray:
            tally.recovered += 1
        else:
            tally.failures.append(
                f"trial {i} ({path_kind}, {schedule} +{delay:.3f}s): recovery ended "
                f"{after_verdict.state}, stray {stray}, result {result}, rc {rec['rc']}: "
                f"{rec['stderr'][-600:]}"
            )

    print(tally.summary())
    assert tally.outcomes.get("broken", 0) == 0, tally.summary()
    assert not any(k.startswith("broken") for k in tally.outcomes), tally.summary()
    assert tally.recovered == tally.recovery_tried, tally.summary()
    assert tally.trials == n
