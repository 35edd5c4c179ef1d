"""`pyi-selfupdate prune` never breaks an update path: after it, an app at any kept version
still updates through its patch, and an app at a pruned version takes the `.gz`
(a real HTTP server on 127.0.0.1, the tree written and pruned by the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyi_selfupdate import Updater

from _installed import python_env

PLAT = "linux-amd64"
VERSIONS = ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"]
BASE = os.urandom(30000)


def body(version: str) -> bytes:
    return BASE + version.encode() * 200


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], capture_output=True, text=True,
                          env=python_env(), cwd=cwd, timeout=120)


def tree_files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for v in VERSIONS:
        exe = tmp_path / "builds" / v / "myapp"
        exe.parent.mkdir(parents=True)
        exe.write_bytes(body(v))
        proc = cli("release", "-o", "public", "--platform", PLAT, "--patches-from", "all", str(exe), v,
                   cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    return tmp_path / "public"


def update_from(server, tmp_path: Path, version: str) -> str:
    folder = tmp_path / f"app-{version}"
    folder.mkdir(parents=True)
    target = folder / "myapp"
    target.write_bytes(body(version))
    target.chmod(0o755)
    result = Updater(current_version=version, api_url=server.url, cmd_name="myapp", platform=PLAT,
                     target=target).update()
    assert result is not None and result.to_version == "1.5"
    assert target.read_bytes() == body("1.5")
    return result.method


def test_prune_keeps_every_kept_version_updating_by_patch(tmp_path, tree, serve):
    before = tree_files(tree)
    dry = cli("prune", str(tree), "--keep", "3", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert tree_files(tree) == before  # a dry run removes nothing
    assert "would remove myapp/1.0/linux-amd64.gz" in dry.stdout
    proc = cli("prune", str(tree), "--keep", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.replace("would remove", "removed").replace(" (dry run: nothing removed)", "") == \
        dry.stdout.replace("would remove", "removed").replace(" (dry run: nothing removed)", "")
    after = tree_files(tree)
    gone = set(before) - set(after)
    # 1.0, 1.1, 1.2 are pruned: their .gz, every patch from them, every patch between them
    assert {f"myapp/{v}/{PLAT}.gz" for v in ("1.0", "1.1", "1.2")} <= gone
    assert not [r for r in after if r.split("/")[1] in ("1.0", "1.1", "1.2")]
    assert not [r for r in after if len(r.split("/")) == 4 and r.split("/")[2] in ("1.0", "1.1", "1.2")]
    # everything the current manifest and the kept versions need is untouched
    for rel in ("myapp/linux-amd64.json", "myapp/1.5/linux-amd64.gz", "myapp/1.3/1.5/linux-amd64",
                "myapp/1.4/1.5/linux-amd64", "myapp/1.3/1.4/linux-amd64", "myapp/1.3/linux-amd64.gz"):
        assert after[rel] == before[rel]
    freed = sum(len(before[r]) for r in gone)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(gone) + 1
    assert lines[-1].startswith(f"removed {len(gone)} file(s) of 3 release(s) (kept 3)")
    assert not (tree / "myapp" / "1.0").exists()  # emptied folders go too
    server = serve(tree)
    for v in ("1.3", "1.4"):
        assert update_from(server, tmp_path, v) == "patch"
    for v in ("1.0", "1.2"):
        assert update_from(server, tmp_path, v) == "full"
    # Running it again finds nothing left to do.
    again = cli("prune", str(tree), "--keep", "3", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("removed 0 file(s)")
    assert tree_files(tree) == after


def test_prune_checks_everything_before_removing_anything(tmp_path, tree):
    other = tree / "other"
    other.mkdir()
    (other / f"{PLAT}.json").write_text("{not json")
    before = tree_files(tree)
    proc = cli("prune", str(tree), "--keep", "1", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert "pyi-selfupdate: error:" in proc.stderr and "other/linux-amd64.json" in proc.stderr
    assert tree_files(tree) == before
    (other / f"{PLAT}.json").unlink()
    before = tree_files(tree)
    os.symlink("/etc", tree / "myapp" / "link")
    proc = cli("prune", str(tree), "--keep", "1", cwd=tmp_path)
    assert proc.returncode == 2 and "symbolic link" in proc.stderr
    assert tree_files(tree) == before
    proc = cli("prune", str(tree), "--keep", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "--keep" in proc.stderr


def test_a_prune_cut_short_at_any_file_keeps_every_update_path_and_a_rerun_finishes(tmp_path, tree, serve,
                                                                                  monkeypatch):
    """A prune stopped after any number of removals (a failure, or a kill between two atomic
    unlinks) leaves a tree where kept versions update by patch and removed ones by the .gz."""
    import pathlib
    import shutil

    from pyi_selfupdate.errors import ReleaseError
    from pyi_selfupdate.release._prune import prune

    planned = len(prune(tree, keep=3, dry_run=True).removed)
    assert planned >= 10
    root = tmp_path / "served"
    root.mkdir()
    server = serve(root)
    real_unlink = pathlib.Path.unlink
    for cut in range(planned):
        copy = root / f"cut{cut}"
        shutil.copytree(tree, copy)
        calls = []

        def failing_unlink(self, *args, **kwargs):
            calls.append(self)
            if len(calls) > cut:
                raise PermissionError(13, "Permission denied")
            return real_unlink(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "unlink", failing_unlink)
        with pytest.raises(ReleaseError, match="run the same prune again to finish"):
            prune(copy, keep=3)
        monkeypatch.setattr(pathlib.Path, "unlink", real_unlink)
        sub = type("Sub", (), {"url": f"{server.url}cut{cut}/"})()
        assert update_from(sub, tmp_path / f"c{cut}", "1.4") == "patch"
        assert update_from(sub, tmp_path / f"c{cut}", "1.0") in ("patch", "full")
        prune(copy, keep=3)  # the same prune again finishes it
        assert sorted(tree_files(copy)) == sorted(
            r for r in tree_files(tree) if not any(f"/{v}/" in f"/{r}" for v in ("1.0", "1.1", "1.2")))
