"""kill -9 during ``pyi-selfupdate release``: the tree stays consistent and a re-run completes it.

The tree already holds two releases of a 2 MB executable; the third is
released by the real CLI in a subprocess (compressing, diffing against both
earlier versions, publishing) and killed at a random moment: half the trials
draw it uniformly over the measured duration of an unkilled run (mostly the
diffs), half over the measured publishing window (from the first new file
appearing in the tree to the manifest's rename, with margins), where the
renames happen. After the kill, every manifest must
point at complete files (its ``.gz`` decompresses to bytes whose SHA-256 is the
manifest's) and every file under a final name must be complete (a ``.gz`` is
exactly its version, a patch turns the old version into exactly the new one);
temporary files may remain. Re-running the same command must complete the
release.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bsdiff4
import pytest

import _faultkit as kit

CMD = "relapp"
VERSIONS = ["1.0", "1.1", "1.2"]

#: kill -9 trials: real processes over many seconds, outside the fast tier
pytestmark = pytest.mark.e2e


def _inputs(base: Path):
    data = {v: kit.script_version(v, size=2 << 20, variant=7) for v in VERSIONS}
    files = {}
    for v, b in data.items():
        folder = base / "inputs" / v
        folder.mkdir(parents=True)
        files[v] = kit.copy_exe(b, folder / CMD)
    return data, files


def _release_cmd(out: Path, exe: Path, version: str):
    return [sys.executable, "-m", "pyi_selfupdate", "release", "-o", str(out),
            "--platform", kit.PLAT, "--cmd-name", CMD, str(exe), version]


def _check_tree(out: Path, data: dict) -> tuple:
    """(problems, temp files, manifest version) of a release tree."""
    from pyi_selfupdate import protocol

    problems, temps = [], []
    digests = {v: hashlib.sha256(b).digest() for v, b in data.items()}
    manifest_version = None
    app = out / CMD
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).parts
        if rel == (CMD, f"{kit.PLAT}.json"):
            try:
                m = protocol.decode_manifest(path.read_bytes())
            except Exception as exc:  # a torn manifest is a finding, not a crash of the check
                problems.append(f"manifest unreadable: {exc}")
                continue
            manifest_version = m.version
            gz = app / m.version / f"{kit.PLAT}.gz"
            try:
                body = gzip.decompress(gz.read_bytes())
            except Exception as exc:
                problems.append(f"manifest -> {m.version}, whose .gz is not complete: {exc}")
                continue
            if hashlib.sha256(body).digest() != m.sha256:
                problems.append(f"manifest -> {m.version}: its .gz does not hash to the manifest's Sha256")
        elif len(rel) == 3 and rel[0] == CMD and rel[2] == f"{kit.PLAT}.gz" and rel[1] in data:
            try:
                ok = hashlib.sha256(gzip.decompress(path.read_bytes())).digest() == digests[rel[1]]
            except Exception:
                ok = False
            if not ok:
                problems.append(f"{path.relative_to(out)} is under its final name but incomplete")
        elif len(rel) == 4 and rel[0] == CMD and rel[3] == kit.PLAT and rel[1] in data and rel[2] in data:
            try:
                ok = hashlib.sha256(bsdiff4.patch(data[rel[1]], path.read_bytes())).digest() == digests[rel[2]]
            except Exception:
                ok = False
            if not ok:
                problems.append(f"{path.relative_to(out)} is under its final name but incomplete")
        else:
            temps.append(str(path.relative_to(out)))
    if manifest_version is None:
        problems.append("no manifest at all")
    return problems, temps, manifest_version


def test_kill9_during_release(tmp_path):
    data, exes = _inputs(tmp_path)
    base_tree = tmp_path / "base"
    env = kit.child_env()
    for v in VERSIONS[:2]:
        proc = subprocess.run(_release_cmd(base_tree, exes[v], v), env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    problems, temps, version = _check_tree(base_tree, {v: data[v] for v in VERSIONS[:2]})
    assert not problems and not temps and version == VERSIONS[1], (problems, temps, version)

    new = VERSIONS[2]
    gz_dir = Path(CMD) / new  # the new .gz's folder: written first, before the diffs

    def publishing(tree: Path, before: set) -> bool:
        """True once the publishing step touched the tree: a file outside the new .gz's folder."""
        for p in (tree / CMD).rglob("*"):
            if p.is_file() and p not in before and gz_dir not in p.relative_to(tree).parents:
                return True
        return False

    # calibrate: an unkilled release of the third version; when does publishing start?
    out = tmp_path / "cal"
    shutil.copytree(base_tree, out)
    before = {p for p in out.rglob("*")}
    t0 = time.monotonic()
    proc = subprocess.Popen(_release_cmd(out, exes[new], new), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert kit.wait_until(lambda: publishing(out, before) or proc.poll() is not None, 120, 0.0005)
    anchor = time.monotonic() - t0
    _, err = proc.communicate(timeout=120)
    duration = time.monotonic() - t0
    assert proc.returncode == 0, err
    publish_len = max(0.02, duration - anchor)
    problems, temps, version = _check_tree(out, data)
    assert not problems and not temps and version == new, (problems, temps, version)

    n = kit.scaled_trials(5, 0.25)
    seed = kit.seed()
    print(f"seed {seed}, {n} trials, unkilled release {duration:.2f}s")
    rng = random.Random(seed)
    tally = kit.record(kit.Tally(
        "kill -9 during pyi-selfupdate release (2 MB executable, 2 earlier versions)", seed,
        kit.reproduce("tests/faults/test_kill_release.py", seed),
    ))
    tally.notes.append(
        f"an unkilled release takes {duration:.2f}s here, publishing (patches, then the manifest) "
        f"the last {publish_len:.3f}s; half the kills drawn over the whole run, half over the "
        "publishing window (timed from the first published file appearing)"
    )
    for i in range(n):
        out = tmp_path / "trial"
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(base_tree, out)
        before = {p for p in out.rglob("*")}
        schedule = rng.choice(("window", "publish"))
        delay = rng.uniform(0, duration) if schedule == "window" else rng.uniform(0, publish_len)
        proc = subprocess.Popen(_release_cmd(out, exes[new], new), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        if schedule == "publish":
            kit.wait_until(lambda: publishing(out, before) or proc.poll() is not None, 120, 0.0005)
        time.sleep(delay)
        killed = kit.killpg(proc)
        tally.trials += 1
        problems, temps, version = _check_tree(out, data)
        state = "broken" if problems else ("old" if version == VERSIONS[1] else "new")
        tally.outcomes[state if killed else f"{state} (finished before the kill)"] += 1
        finals = sorted(
            str(p.relative_to(out)) for p in (out / CMD).rglob("*")
            if p.is_file() and (new in p.relative_to(out).parts) and str(p.relative_to(out)) not in temps
        )
        tally.landed[
            f"{schedule}: manifest {state} | new files under final names {len(finals)} | temp files {len(temps)}"
        ] += 1
        if problems:
            tally.failures.append(f"trial {i} (+{delay:.2f}s): {problems}")
            continue
        tally.recovery_tried += 1
        rerun = subprocess.run(_release_cmd(out, exes[new], new), env=env, capture_output=True, text=True)
        problems, temps_after, version = _check_tree(out, data)
        if rerun.returncode == 0 and not problems and version == new:
            tally.recovered += 1
            if temps_after:
                tally.notes.append(f"trial {i}: the re-run left temporary files of the killed run: {temps_after}")
        else:
            tally.failures.append(
                f"trial {i} (+{delay:.2f}s): re-run exit {rerun.returncode}, manifest {version}, "
                f"{problems}: {rerun.stderr[-600:]}"
            )

    print(tally.summary())
    assert not any(k.startswith("broken") for k in tally.outcomes), tally.summary()
    assert tally.recovered == tally.recovery_tried, tally.summary()
