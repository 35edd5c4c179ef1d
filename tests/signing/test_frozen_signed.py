"""Signed updates in a real frozen app: textstat built with public_keys, a hostile server.

The app updates through a signed release, and keeps running, untouched, when
the server relabels a version or drops the signatures.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from _apps import APP_SRC, NAME, V1, V2, run_app, staged_files  # noqa: E402
from _server import Fault, ReleaseServer  # noqa: E402

from pyi_selfupdate.protocol import current_platform  # noqa: E402
from pyi_selfupdate.release import release  # noqa: E402
from pyi_selfupdate.release.keys import generate_private_key, sign_fields, write_private_key  # noqa: E402

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    folder = tmp_path_factory.mktemp("key")
    k = generate_private_key()
    write_private_key(folder / "release.key", k)
    return k, folder / "release.key"


def _build(frozen, port: int, key, version: str, start: bool = False) -> Path:
    # No --hidden-import: the pyi_selfupdate hook must collect PyNaCl because public_keys is set.
    env = {
        "PYI_SELFUPDATE_API_URL": f"http://127.0.0.1:{port}/",
        "PYI_SELFUPDATE_CHECK_TIME": "0",
        "PYI_SELFUPDATE_EXIT_WAIT": "60",
        "PYI_SELFUPDATE_CURRENT_VERSION": version,
        "PYI_SELFUPDATE_PUBLIC_KEYS": key[0].public_key_text,
    }
    files = {}
    if version != V1:
        core = (APP_SRC / "textstat_core.py").read_text()
        files["textstat_core.py"] = core.replace(f'__version__ = "{V1}"', f'__version__ = "{version}"')
    return (frozen.prefetch if start else frozen.build)(APP_SRC, "textstat.py", name=NAME, env=env, files=files)


@pytest.fixture(scope="module")
def apps(frozen, port, key):
    _build(frozen, port, key, V2, start=True)  # builds beside V1
    return _build(frozen, port, key, V1), _build(frozen, port, key, V2)


@pytest.fixture(scope="module")
def signed_tree(tmp_path_factory, apps, key) -> Path:
    public = tmp_path_factory.mktemp("signed") / "public"
    for exe, version in zip(apps, (V1, V2)):
        release(exe, version, public, options={"sign_keys": [str(key[1])]})
    return public


@pytest.fixture
def served(tmp_path, signed_tree, port):
    servers = []

    def start() -> ReleaseServer:
        public = tmp_path / "public"
        shutil.copytree(signed_tree, public)
        server = ReleaseServer(public, port=port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _install(tmp_path: Path, exe: Path) -> Path:
    dest = tmp_path / "installed"
    dest.mkdir()
    shutil.copy2(exe, dest / NAME)
    return dest / NAME


def _ok(proc, stdout: str) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout == stdout, proc.stderr


def test_frozen_app_updates_through_a_signed_release(tmp_path, apps, served):
    server = served()
    exe = _install(tmp_path, apps[0])
    _ok(run_app(exe, "--version"), f"{NAME} {V1}\n")
    assert any(p.endswith(current_platform()) for p in server.log)  # the patch was fetched
    _ok(run_app(exe, "--version"), f"{NAME} {V2}\n")
    assert exe.read_bytes() == apps[1].read_bytes()
    state = json.loads((exe.parent / "update" / NAME / "serial").read_text())
    assert state == {"Serial": 2, "Version": V2}


def _forge(server, attack: str) -> None:
    """Serve the manifest forged: ``relabelled`` (another version, the old signature), ``unsigned``,
    or the same release signed by a key this build does not trust (``rotated-out key``)."""
    rel = f"{NAME}/{current_platform()}.json"
    doc = json.loads((server.root / rel).read_bytes())
    if attack == "relabelled":
        doc["Version"] = "9.9"
    elif attack == "unsigned":
        doc = {"Version": doc["Version"], "Sha256": doc["Sha256"]}
    else:
        import base64

        doc.update(sign_fields(
            [generate_private_key()], cmd_name=NAME, platform=current_platform(),
            version=doc["Version"], sha256=base64.b64decode(doc["Sha256"]), size=doc["Size"],
            serial=doc["Serial"] + 1))
    server.faults[rel] = Fault(body=json.dumps(doc).encode())


@pytest.mark.parametrize("attack", ["relabelled", "unsigned", "rotated-out key"])
def test_frozen_app_refuses_a_forged_manifest_and_keeps_running(tmp_path, apps, served, attack):
    server = served()
    _forge(server, attack)
    exe = _install(tmp_path, apps[0])
    before = exe.read_bytes()
    for _ in range(2):
        proc = run_app(exe, "top", "-n", "1", stdin="a b a\n")
        _ok(proc, "a 2\n")
        assert "refusing the update" in proc.stderr, proc.stderr
    assert exe.read_bytes() == before
    assert staged_files(exe) == []
    assert [p for p in server.log if not p.endswith(".json")] == []  # nothing but manifests


@pytest.mark.parametrize("attack", ["relabelled", "unsigned"])
def test_doctor_says_the_app_refuses_a_forged_manifest(tmp_path, apps, served, attack):
    """``pyi-selfupdate doctor`` on the keyed build: the signature verdict, exit status 5, nothing written."""
    from _doctorkit import doctor, snapshot, verdict

    server = served()
    _forge(server, attack)
    exe = _install(tmp_path, apps[0])
    before = snapshot(exe.parent)
    proc = doctor(exe)
    assert snapshot(exe.parent) == before, "doctor changed the app's folder"
    assert proc.returncode == 5, proc.stdout + proc.stderr
    line = verdict(proc)
    assert "refuse" in line and "sign" in line, proc.stdout
