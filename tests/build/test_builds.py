"""Real PyInstaller builds: what the hook embeds, what it leaves out, reproducibility,
the CLI (init, build, hooks-dir) and the release-side check of embedded settings.

Builds run one at a time through the session fixture ``frozen``; the installed
pyi_selfupdate (not the source tree) is what PyInstaller sees.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyi_selfupdate.errors import ReleaseError
from pyi_selfupdate.release._builtin.frozen import check_frozen_artifact, read_embedded_config

pytestmark = pytest.mark.e2e

API = "http://127.0.0.1:9/updates/"
KEY = "ed25519:" + base64.b64encode(bytes(range(32))).decode()

APP = """\
import importlib
import json
import sys

import pyi_selfupdate
from pyi_selfupdate.settings import load_embedded

config = load_embedded()
if config and config["public_keys"]:  # a signed build must be able to verify (dynamic import: unseen)
    importlib.import_module("nacl.signing").VerifyKey(bytes(range(32)))
print(json.dumps(config, sort_keys=True))
"""

HELLO = 'print("hello")\n'

PYPROJECT = f"""\
[project]
name = "cfgapp"
version = "1.4"

[tool.pyi-selfupdate]
api_url = "{API}"
check_time = 3
enabled = false
"""

# The build must use the installed package (its hooks mapping), never a source tree on PYTHONPATH.
NO_SRC_PATH = {"PYTHONPATH": ""}


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYI_SELFUPDATE_")}
    env.pop("PYTHONHASHSEED", None)
    env.update(extra)
    return env


def _cli() -> list:
    return [sys.executable, "-m", "pyi_selfupdate"]


def _archive_names(exe: Path) -> list:
    from PyInstaller.archive.readers import pkg_archive_contents

    return pkg_archive_contents(str(exe))


@pytest.fixture(scope="module")
def cfg_src(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("cfgapp")
    (src / "app.py").write_text(APP)
    (src / "pyproject.toml").write_text(PYPROJECT)
    return src


@pytest.fixture(scope="module")
def cfg_app(frozen, cfg_src) -> Path:
    return frozen.build(cfg_src, "app.py", name="cfgapp", env=NO_SRC_PATH)


def test_pyproject_config_is_embedded_and_seen_at_run_time(cfg_app):
    embedded = read_embedded_config(cfg_app)
    assert embedded is not None
    assert embedded["api_url"] == API
    assert embedded["current_version"] == "1.4"  # [project] version
    assert embedded["check_time"] == 3
    assert embedded["enabled"] is False
    assert embedded["mode"] == "background"  # default filled in
    out = subprocess.run([str(cfg_app)], capture_output=True, text=True, timeout=60, env=_clean_env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == embedded


def test_embedded_bytes_are_the_deterministic_json(cfg_app):
    from PyInstaller.archive.readers import CArchiveReader

    raw = CArchiveReader(str(cfg_app)).extract("pyi_selfupdate/_embedded_config.json")
    config = json.loads(raw)
    assert raw == json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    print(f"embedded configuration: {len(raw)} bytes")


def test_app_ships_the_client_not_the_release_side(cfg_app):
    names = set(_archive_names(cfg_app))
    assert {"pyi_selfupdate", "pyi_selfupdate.settings", "pyi_selfupdate.protocol", "pyi_selfupdate.archive",
            "requests", "bsdiff4"} <= names
    assert "pyi_rth_pyi_selfupdate" in names
    leaked = sorted(
        n for n in names
        if n.startswith(("pyi_selfupdate.release", "pyi_selfupdate._cli", "pyi_selfupdate._buildconfig",
                         "pyi_selfupdate.spec", "pyi_selfupdate._hooks", "pluggy", "PyInstaller"))
    )
    assert leaked == []
    assert not [n for n in names if n.startswith("nacl")]  # no public_keys: no PyNaCl


def test_pyi_selfupdate_build_is_byte_identical(cfg_app, cfg_src, tmp_path):
    """`pyi-selfupdate build` (no PYTHONHASHSEED in the environment) rebuilds the same bytes."""
    src = tmp_path / "src"
    shutil.copytree(cfg_src, src)
    proc = subprocess.run(
        [*_cli(), "build", "--noconfirm", "--log-level", "WARN", "--name", "cfgapp",
         "--distpath", str(tmp_path / "dist"), "--workpath", str(tmp_path / "build"),
         "--specpath", str(tmp_path), str(src / "app.py")],
        cwd=src, env=_clean_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "PYTHONHASHSEED=0" in proc.stderr
    assert "NOT REPRODUCIBLE" not in proc.stderr
    rebuilt = tmp_path / "dist" / cfg_app.name
    assert rebuilt.read_bytes() == cfg_app.read_bytes()


def test_missing_api_url_fails_the_build_and_unseeded_build_is_warned(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text(APP)
    (src / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.0"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(tmp_path / "dist"), "--workpath", str(tmp_path / "build"),
         "--specpath", str(tmp_path), str(src / "app.py")],
        cwd=src, env=_clean_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    err = proc.stderr
    assert "THIS BUILD IS NOT REPRODUCIBLE" in err
    assert "~80x larger" in err
    assert "api_url is missing" in err
    assert "hooksconfig" in err and "[tool.pyi-selfupdate]" in err and "PYI_SELFUPDATE_API_URL" in err
    assert not (tmp_path / "dist" / "app").exists()


def test_app_without_pyi_selfupdate_is_untouched(frozen, tmp_path):
    src = tmp_path / "hello"
    src.mkdir()
    (src / "hello.py").write_text(HELLO)
    # A pyproject without api_url would fail the build if the hook ran.
    (src / "pyproject.toml").write_text('[project]\nname = "hello"\nversion = "1.0"\n')
    exe = frozen.build(src, "hello.py", name="hello", env=NO_SRC_PATH)
    names = _archive_names(exe)
    assert not [n for n in names if "selfupdate" in n]
    assert read_embedded_config(exe) is None
    assert check_frozen_artifact(exe, version="9", cmd_name="other") is None
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "hello"


def test_release_check_refuses_a_wrong_version_or_cmd_name(cfg_app):
    assert check_frozen_artifact(cfg_app, version="1.4", cmd_name="cfgapp")["current_version"] == "1.4"
    with pytest.raises(ReleaseError, match=r"built as version '1.4' but is being released as '1.5'.*rebuild"):
        check_frozen_artifact(cfg_app, version="1.5", cmd_name="cfgapp")
    # Built without cmd_name, the app gets its build name (fixed at build time, rename-proof):
    # a release under another name would never reach it.
    with pytest.raises(ReleaseError, match="built with cmd_name 'cfgapp' but is being released as 'othername'"):
        check_frozen_artifact(cfg_app, version="1.4", cmd_name="othername")


def test_release_pipeline_refuses_a_wrong_version(cfg_app, tmp_path):
    from pyi_selfupdate.release import release

    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copy2(cfg_app, dist / "cfgapp")
    out = tmp_path / "public"
    with pytest.raises(ReleaseError, match="built as version '1.4' but is being released as '1.5'"):
        release(dist, "1.5", out=out)
    assert not out.exists() or not any(out.rglob("*"))  # refused before anything is written
    release(dist, "1.4", out=out)
    assert (out / "cfgapp" / "1.4").is_dir()


def test_non_frozen_files_are_not_checked(tmp_path):
    script = tmp_path / "tool"
    script.write_bytes(b"#!/bin/sh\necho hi\n" * 10)
    assert read_embedded_config(script) is None
    # Bytes that merely contain the archive cookie magic are not an archive either.
    fake = tmp_path / "fake"
    fake.write_bytes(b"\0" * 500 + b"MEI\014\013\012\013\016" + b"\xff" * 200)
    assert read_embedded_config(fake) is None


def test_init_renders_a_spec_that_builds(tmp_path):
    src = tmp_path / "proj"
    src.mkdir()
    (src / "tool.py").write_text(APP)
    env = _clean_env()
    proc = subprocess.run([*_cli(), "init", "--api-url", API, "--version", "2.0", "tool.py"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    spec = src / "tool.spec"
    text = spec.read_text()
    assert '"pyi_selfupdate": {' in text and f'"api_url": "{API}"' in text
    again = subprocess.run([*_cli(), "init", "--api-url", API, "--version", "3.0", "tool.py"],
                           cwd=src, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert spec.read_text() == text
    # Runtime off for this check: only the embedded data is under test here.
    build = subprocess.run([*_cli(), "build", "--noconfirm", "--log-level", "WARN", "tool.spec"],
                           cwd=src, env=_clean_env(PYI_SELFUPDATE_ENABLED="0"),
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    exe = src / "dist" / "tool"
    embedded = read_embedded_config(exe)
    assert (embedded["api_url"], embedded["current_version"], embedded["cmd_name"]) == (API, "2.0", "tool")
    assert embedded["enabled"] is False  # the environment overrides the spec
    with pytest.raises(ReleaseError, match="cmd_name 'tool' but is being released as 'other'"):
        check_frozen_artifact(exe, version="2.0", cmd_name="other")
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, env=_clean_env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["current_version"] == "2.0"
    # Same sources, new settings in the environment only: even plain PyInstaller, which
    # would reuse its cached analysis and skip the hook, embeds the new settings.
    rebuild = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "tool.spec"],
                             cwd=src, env=_clean_env(PYI_SELFUPDATE_ENABLED="0", PYI_SELFUPDATE_CURRENT_VERSION="2.1",
                                                     PYI_SELFUPDATE_PUBLIC_KEYS=KEY, PYTHONHASHSEED="0"),
                             capture_output=True, text=True, timeout=600)
    assert rebuild.returncode == 0, rebuild.stderr[-4000:]
    assert "no public_keys" not in rebuild.stderr
    embedded = read_embedded_config(exe)
    assert (embedded["current_version"], embedded["public_keys"]) == ("2.1", [KEY])
    # With public_keys the app verifies signatures: PyNaCl is collected (and only then), and works.
    names = _archive_names(exe)
    assert "nacl.signing" in names and [n for n in names if n.startswith("_cffi_backend")]
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, env=_clean_env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["public_keys"] == [KEY]
    # `<os>-<arch>` files carry no name: the release names them by the embedded cmd_name.
    from pyi_selfupdate.protocol import current_platform
    from pyi_selfupdate.release import release

    folder = tmp_path / "bins"
    folder.mkdir()
    shutil.copy2(exe, folder / current_platform())
    release(folder, "2.1", out=tmp_path / "public")
    assert (tmp_path / "public" / "tool" / f"{current_platform()}.json").is_file()


def test_init_refuses_bad_input_with_the_fix(tmp_path):
    (tmp_path / "app.py").write_text(HELLO)
    proc = subprocess.run([*_cli(), "init", "--api-url", "https://x.example/api", "app.py"],
                          cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "does not end in '/'" in proc.stderr
    assert not (tmp_path / "app.spec").exists()


def test_hook_dirs_found_by_entry_points_and_hooks_dir(tmp_path):
    """Installed: the pyinstaller40 entry points name the hooks and the hook tests."""
    code = (
        "import json, importlib.metadata as m\n"
        "eps = {e.name: e.load()() for e in m.entry_points(group='pyinstaller40') "
        "if e.value.startswith('pyi_selfupdate')}\n"
        "print(json.dumps(eps))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    eps = json.loads(proc.stdout)
    assert (Path(eps["hook-dirs"][0]) / "hook-pyi_selfupdate.py").is_file()
    assert (Path(eps["hook-dirs"][0]) / "rthooks.dat").is_file()
    assert (Path(eps["tests"][0]) / "test_pyi_selfupdate.py").is_file()
    out = subprocess.run([*_cli(), "hooks-dir"], cwd=tmp_path, env=_clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Installed: the entry point's folder is PyInstaller's already; hooks-dir prints one that
    # adds only the import check (tests/build/test_build_guidance.py).
    assert Path(out.stdout.strip()) == Path(eps["hook-dirs"][0]) / "installed"


def test_hooks_dir_works_from_a_source_checkout(tmp_path):
    """``python -m pyi_selfupdate hooks-dir`` run from the checkout (not installed) names its hooks/."""
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in _clean_env().items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    out = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv = ['pyi-selfupdate', 'hooks-dir']; "
                          f"sys.path.insert(0, {str(repo)!r}); runpy.run_module('pyi_selfupdate', run_name='__main__')"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == repo / "hooks"
    assert (repo / "hooks" / "hook-pyi_selfupdate.py").is_file()
