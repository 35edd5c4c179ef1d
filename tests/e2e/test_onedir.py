"""End to end with PyInstaller's default build, onedir: the whole app folder updates itself.

Real onedir builds of textstat 1.0 and 1.1, released with the release tool,
served on 127.0.0.1, installed where a user would put them, and launched.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from _apps import APP_SRC, NAME, V1, V2, app_env, release, run_app
from pyi_selfupdate.archive import FolderArchive
from pyi_selfupdate.protocol import current_platform

pytestmark = pytest.mark.e2e

TEXT = "the cat saw the hat\nand the cat sat\n"
TOP_OUTPUT = "the 3\ncat 2\n"


def _build(frozen, port: int, version: str) -> Path:
    env = {
        "PYI_SELFUPDATE_API_URL": f"http://127.0.0.1:{port}/",
        "PYI_SELFUPDATE_CHECK_TIME": "0",
        "PYI_SELFUPDATE_EXIT_WAIT": "60",
        "PYI_SELFUPDATE_CURRENT_VERSION": version,
    }
    files = {}
    if version != V1:
        core = (APP_SRC / "textstat_core.py").read_text()
        files["textstat_core.py"] = core.replace(f'__version__ = "{V1}"', f'__version__ = "{version}"')
    return frozen.build(APP_SRC, "textstat.py", name=NAME, env=env, files=files, onedir=True)


@pytest.fixture(scope="session")
def dir_v1(frozen, app_port) -> Path:
    return _build(frozen, app_port, V1)


@pytest.fixture(scope="session")
def dir_v2(frozen, app_port) -> Path:
    return _build(frozen, app_port, V2)


@pytest.fixture(scope="session")
def dir_tree(tmp_path_factory, dir_v1, dir_v2) -> Path:
    public = tmp_path_factory.mktemp("dir_tree") / "public"
    release(public, dir_v1, V1)
    release(public, dir_v2, V2)
    return public


@pytest.fixture
def install_dir(tmp_path):
    def do(build: Path) -> Path:
        dest = tmp_path / "apps" / NAME
        shutil.copytree(build, dest, symlinks=True)
        return dest

    return do


def archive(folder: Path) -> bytes:
    with FolderArchive(folder) as a:
        return b"".join(a.stream())


def beside(app: Path) -> list:
    return sorted(p.name for p in app.parent.iterdir() if p.name.startswith("."))


def _patch_rel() -> str:
    return f"{NAME}/{V1}/{V2}/{current_platform()}"


def _ok(proc, out: str) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout == out, proc.stderr


def test_the_tree_marks_the_release_a_folder(dir_tree, dir_v2):
    from pyi_selfupdate.protocol import decode_manifest

    manifest = decode_manifest((dir_tree / NAME / f"{current_platform()}.json").read_bytes())
    assert manifest.kind == "folder" and manifest.version == V2
    import gzip

    assert gzip.decompress((dir_tree / NAME / V2 / f"{current_platform()}.gz").read_bytes()) == archive(dir_v2)


def test_onedir_v1_becomes_v2_through_the_patch(dir_v1, dir_v2, dir_tree, copy_tree, serve_app, install_dir):
    server = serve_app(copy_tree(dir_tree))
    app = install_dir(dir_v1)
    exe = app / NAME
    _ok(run_app(exe, "--version"), f"textstat {V1}\n")
    assert f"/{_patch_rel()}" in server.log and not any(p.endswith(".gz") for p in server.log)
    assert archive(app) == archive(dir_v1), "the running app's folder must not change"
    assert beside(app) == [f".{NAME}.lock", f".{NAME}.staged", f".{NAME}.staged.json"]

    second = run_app(exe, "top", "-n", "2", stdin=TEXT)  # installs, restarts, runs as 1.1
    _ok(second, TOP_OUTPUT)
    assert "restarting" in second.stderr
    _ok(run_app(exe, "--version"), f"textstat {V2}\n")
    assert archive(app) == archive(dir_v2)  # byte-identical to the released 1.1 folder
    assert beside(app) == [f".{NAME}.lock"]


def test_onedir_takes_the_gz_when_the_patch_is_missing(dir_v1, dir_v2, dir_tree, copy_tree, serve_app,
                                                       install_dir):
    public = copy_tree(dir_tree)
    (public / _patch_rel()).unlink()
    server = serve_app(public)
    app = install_dir(dir_v1)
    _ok(run_app(app / NAME, "--version"), f"textstat {V1}\n")
    assert any(p.endswith(".gz") for p in server.log)
    _ok(run_app(app / NAME, "--version"), f"textstat {V2}\n")
    assert archive(app) == archive(dir_v2)


def test_an_edited_install_is_repaired_by_the_gz(dir_v1, dir_v2, dir_tree, copy_tree, serve_app, install_dir):
    server = serve_app(copy_tree(dir_tree))
    app = install_dir(dir_v1)
    victim = app / "_internal" / "base_library.zip"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF  # a corrupted byte the app itself never reads
    victim.write_bytes(bytes(data))
    _ok(run_app(app / NAME, "--version"), f"textstat {V1}\n")
    assert f"/{_patch_rel()}" in server.log and any(p.endswith(".gz") for p in server.log)
    _ok(run_app(app / NAME, "--version"), f"textstat {V2}\n")
    assert archive(app) == archive(dir_v2)


def test_ten_launches_at_once_install_once_and_none_crashes(dir_v1, dir_v2, dir_tree, copy_tree, serve_app,
                                                            install_dir):
    serve_app(copy_tree(dir_tree))
    app = install_dir(dir_v1)
    exe = app / NAME
    _ok(run_app(exe, "--version"), f"textstat {V1}\n")  # stages 1.1
    procs = [subprocess.Popen([str(exe), "top", "-n", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=app_env(), cwd=app.parent)
             for _ in range(10)]
    time.sleep(1.0)
    alive = sum(p.poll() is None for p in procs)
    assert alive >= 2, "the launches did not overlap"
    for p in procs:  # every one gets its input now: none waits for the test to read another
        p.stdin.write(TEXT)
        p.stdin.close()
    results = [(p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.wait(timeout=120)
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert out == TOP_OUTPUT, err
        assert "Traceback" not in err, err
    installs = sum(err.count("installed staged update") for _, err in results)
    assert installs == 1, [err[-600:] for _, err in results]
    assert archive(app) == archive(dir_v2)  # installed at the exit of the one that took it on
    after = run_app(exe, "--version")
    _ok(after, f"textstat {V2}\n")
    assert "installed staged update" not in after.stderr
    assert beside(app) == [f".{NAME}.lock"]


def test_a_onefile_app_and_a_onedir_app_never_cross_install(app_v1, dir_v1, dir_tree, tree_v2, copy_tree,
                                                           serve_app, install, install_dir, tmp_path):
    server = serve_app(copy_tree(dir_tree))  # a folder release of textstat
    exe = install(app_v1)  # a onefile textstat
    proc = run_app(exe, "--version")
    _ok(proc, f"textstat {V1}\n")
    assert "folder release" in proc.stderr
    assert exe.read_bytes() == app_v1.read_bytes()
    assert not any(p.endswith(".gz") or p.count("/") > 2 for p in server.log)
    server.close()

    tree = tmp_path / "onefile-tree"
    shutil.copytree(tree_v2, tree)
    server = serve_app(tree)  # a single-file release of textstat
    app = install_dir(dir_v1)
    proc = run_app(app / NAME, "--version")
    _ok(proc, f"textstat {V1}\n")
    assert "a onefile app never installs a folder" in proc.stderr
    assert archive(app) == archive(dir_v1)
    assert not (app / "_internal").is_file()
