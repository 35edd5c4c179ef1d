"""``pyi-selfupdate doctor`` without a frozen build: the verdicts that need an app built with keys.

The app here is a onedir folder laid out as PyInstaller lays it out
(``myapp/myapp`` beside ``myapp/_internal/pyi_selfupdate/_embedded_config.json``,
the file the release tool and doctor read), released with the real release
tool and served by the real test server. ``tests/e2e/test_doctor.py`` runs
doctor against a real frozen app in each state of its schedule and folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from _doctorkit import doctor, row, snapshot, verdict

from pyi_selfupdate.release import release
from pyi_selfupdate.release.keys import generate_private_key, write_private_key

CMD, PLAT = "myapp", "linux-amd64"


def _folder_app(root: Path, version: str, url: str, keys=(), **settings) -> Path:
    app = root / CMD
    (app / "_internal" / "pyi_selfupdate").mkdir(parents=True, exist_ok=True)
    (app / CMD).write_bytes(b"\x7fELF an executable " * 2000)
    os.chmod(app / CMD, 0o755)
    (app / "_internal" / "core.py").write_text(f"VERSION = {version!r}\n" + "# code\n" * 3000)
    config = {"api_url": url, "cmd_name": CMD, "platform": PLAT, "current_version": version,
              "public_keys": list(keys), "check_time": 24, "mode": "background"}
    config.update(settings)
    (app / "_internal" / "pyi_selfupdate" / "_embedded_config.json").write_text(json.dumps(config))
    return app


@pytest.fixture
def signed(tmp_path, serve):
    """A tree of myapp 1.0 and 1.1 signed with a key; ``installed(keys)``: 1.0 installed, built with ``keys``."""
    key = generate_private_key()
    write_private_key(tmp_path / "release.key", key)
    out = tmp_path / "public"
    server = serve(out)
    for v in ("1.0", "1.1"):
        app = _folder_app(tmp_path / f"dist-{v}", v, server.url, [key.public_key_text])
        release(app, v, out, platform=PLAT, options={"sign_keys": [str(tmp_path / "release.key")]})

    def installed(keys, version: str = "1.0", **settings) -> Path:
        return _folder_app(tmp_path / "installed", version, server.url, keys, **settings)

    return key, out, installed


def test_a_signed_update_is_taken_through_the_patch(signed):
    key, out, installed = signed
    app = installed([key.public_key_text])
    proc = doctor(app)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert row(proc, "signature") == f"valid, key {key.key_id}, serial 2"
    assert verdict(proc).startswith("updates to 1.1 at its next launch (the check is due), through a ")
    assert row(proc, "app") == f"{app} (folder app)"
    by_exe = doctor(app / CMD)  # the onedir app's executable names the same app
    assert by_exe.returncode == 1 and by_exe.stdout == proc.stdout


@pytest.mark.parametrize("case", ["another key", "rollback", "unsigned"])
def test_a_refused_signature_is_the_verdict_and_nothing_changes(signed, case):
    key, out, installed = signed
    keys = [generate_private_key().public_key_text] if case == "another key" else [key.public_key_text]
    app = installed(keys)
    if case == "rollback":  # the app already accepted serial 5: serial 2 is a replay
        state = app.parent / "update" / CMD
        state.mkdir(parents=True)
        (state / "serial").write_text(json.dumps({"Serial": 5, "Version": "1.2"}))
    if case == "unsigned":
        manifest = out / CMD / f"{PLAT}.json"
        doc = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({"Version": doc["Version"], "Sha256": doc["Sha256"]}))
    before = snapshot(app.parent)
    proc = doctor(app)
    assert snapshot(app.parent) == before
    assert proc.returncode == 5, proc.stdout + proc.stderr
    expected = {"another key": "none of which this app trusts", "rollback": "lower than serial 5",
                "unsigned": "is not signed"}[case]
    assert verdict(proc).startswith("refuses the update: ") and expected in verdict(proc)
    assert row(proc, "signature").startswith("REFUSED: ")


def test_an_app_without_the_updater_is_told_how_to_build_it(tmp_path):
    exe = tmp_path / "tool"
    exe.write_bytes(b"#!/bin/sh\necho hi\n")
    proc = doctor(exe)
    assert proc.returncode == 3
    assert "embeds no pyi-selfupdate configuration" in verdict(proc) and "import pyi_selfupdate" in verdict(proc)


def test_a_missing_path_is_a_usage_error(tmp_path):
    proc = doctor(tmp_path / "nope")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_release_without_patch_or_gz_is_the_verdict(signed):
    key, out, installed = signed
    app = installed([key.public_key_text])
    (out / CMD / "1.0" / "1.1" / PLAT).unlink()
    proc = doctor(app)
    assert proc.returncode == 1 and "through the full" in verdict(proc)
    (out / CMD / "1.1" / f"{PLAT}.gz").unlink()
    proc = doctor(app)
    assert proc.returncode == 5
    assert "neither the patch nor the .gz" in verdict(proc) and "HTTP 404" in verdict(proc)


@pytest.mark.parametrize("settings, status, expected", [
    ({"mode": "manual"}, 3, "does not update by itself (mode manual): its code must call Updater; "
                            "the server offers 1.1 through a "),
    ({"enabled": False}, 3, "never updates: it was built with enabled = false"),
    ({"current_version": "dev"}, 3, "never updates: version 'dev' never does"),
    ({"mode": "immediate"}, 1, "updates to 1.1 at its next launch (the check is due), through a "),
    ({"api_url": "http://updates.example.invalid/"}, 3, "cannot update: api_url "),
])
def test_what_the_build_settings_say(signed, settings, status, expected):
    key, out, installed = signed
    app = installed([] if "api_url" in settings else [key.public_key_text], **settings)
    proc = doctor(app)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert verdict(proc).startswith(expected), verdict(proc)
    if settings.get("mode") == "immediate":
        assert verdict(proc).endswith("it downloads it then and installs it and restarts")


def test_the_state_beside_the_app_is_reported(signed):
    key, out, installed = signed
    app = installed([key.public_key_text])
    state = app.parent / "update" / CMD
    (state / "partial").mkdir(parents=True)
    (state / "partial" / "0123abcd").write_bytes(b"x" * 1500)
    (state / "partial" / "0123abcd.json").write_text("{}")
    (state / "installed.json").write_text(json.dumps({"from": "0.9", "to": "1.0", "method": "full"}))
    (state / "serial").write_text(json.dumps({"Serial": 1, "Version": "1.0"}))
    (state / "log").write_text("".join(f"2026-11-30T09:00:0{i}Z line {i}\n" for i in range(10)))
    (app.parent / f".{CMD}.staged.json").write_text("{not json")
    before = snapshot(app.parent)
    proc = doctor(app)
    assert snapshot(app.parent) == before
    assert row(proc, "downloads") == "1 in progress, 1.5 KB received: the next check resumes them"
    assert row(proc, "installed").startswith("0.9 -> 1.0 via full, not yet reported to the app")
    assert row(proc, "serial") == "1 accepted (version 1.0)"
    assert row(proc, "staged").startswith("a corrupt sidecar ") and "the app discards it" in row(proc, "staged")
    assert "line 9" in proc.stdout and "line 1\n" not in proc.stdout  # the last 8 lines
    assert proc.returncode == 1


def test_a_missing_manifest_is_an_answer_of_the_server(signed):
    key, out, installed = signed
    app = installed([key.public_key_text])
    (out / CMD / f"{PLAT}.json").unlink()
    proc = doctor(app)
    assert proc.returncode == 4
    assert verdict(proc).startswith("the update server answers an error for the manifest: ")
    assert "HTTP 404; check that the release is published at this URL" in verdict(proc)
