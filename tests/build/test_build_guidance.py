"""What a developer sees while building: the `--additional-hooks-dir` route, the seed
warning of a spec-file build, an `init` spec with its REQUIRED lines unfilled, and the
CLI's own conveniences (--version, -v/-q anywhere, suggestions for a mistyped option).

Tests that run a PyInstaller analysis are marked e2e; the rest run in seconds.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pyi_selfupdate.release._builtin.frozen import read_embedded_config

from _installed import PACKAGE_DIR, PATH_ENTRY

API = "http://127.0.0.1:9/updates/"
APP = "import pyi_selfupdate\nprint('hello')\n"
PYPROJECT = f'[project]\nname = "app"\nversion = "1.0"\n\n[tool.pyi-selfupdate]\napi_url = "{API}"\n'
DUPLICATE = "have already been defined"


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYI_SELFUPDATE_")}
    env.pop("PYTHONHASHSEED", None)
    env.update(extra)
    return env


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- hooks-dir


def test_hooks_dir_of_an_installed_package_adds_no_second_runtime_hook(tmp_path):
    out = cli("hooks-dir", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip())
    entry_point_dir = PACKAGE_DIR / "_hooks"
    # Installed, PyInstaller already has the entry point's folder: the printed one must not
    # register the runtime hook again (PyInstaller warns "... have already been defined").
    assert folder != entry_point_dir and folder.parent == entry_point_dir
    assert not (folder / "rthooks.dat").exists() and not list(folder.glob("hook-*.py"))
    assert (folder / "pre_find_module_path" / "hook-pyi_selfupdate.py").read_bytes() == \
        (entry_point_dir / "pre_find_module_path" / "hook-pyi_selfupdate.py").read_bytes()


def _pre_find(hook: Path, search_dirs):
    ns = runpy.run_path(str(hook))
    api = SimpleNamespace(module_name="pyi_selfupdate", search_dirs=search_dirs,
                          module_graph=SimpleNamespace(path=[]))
    ns["pre_find_module_path"](api)


@pytest.mark.parametrize("where", ["pre_find_module_path", "installed/pre_find_module_path"])
def test_a_pyinstaller_that_cannot_import_the_package_stops_with_the_fix(tmp_path, where):
    hook = PACKAGE_DIR / "_hooks" / where / "hook-pyi_selfupdate.py"
    _pre_find(hook, [PATH_ENTRY])  # importable: nothing happens
    with pytest.raises(SystemExit) as stopped:
        _pre_find(hook, [str(tmp_path)])  # the app would crash at launch: the build stops
    message = str(stopped.value)
    assert "cannot import it" in message and "ModuleNotFoundError" in message
    assert "Install pyi-selfupdate into the environment that runs PyInstaller" in message


@pytest.mark.e2e
def test_additional_hooks_dir_build_has_no_duplicate_warning_and_embeds_the_settings(frozen, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text(APP)
    (src / "pyproject.toml").write_text(PYPROJECT)
    folder = cli("hooks-dir", cwd=tmp_path).stdout.strip()
    spec = dict(name="hooksdirapp", env={"PYTHONPATH": ""}, args=["--additional-hooks-dir", folder,
                                                                     "--log-level", "INFO"])
    frozen.prefetch(src, "app.py", **spec)  # started now: its output goes to pyinstaller.log
    exe = frozen.build(src, "app.py", **spec)
    log = (exe.parent.parent / "pyinstaller.log").read_text()
    assert DUPLICATE not in log, log[-4000:]
    assert "pre-find-module-path hook 'hook-pyi_selfupdate.py'" in log  # the folder was used
    assert read_embedded_config(exe)["api_url"] == API
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                         env=clean_env(PYI_SELFUPDATE_DISABLE="1"))
    assert run.returncode == 0 and run.stdout.strip() == "hello", run.stderr


# ---------------------------------------------------------------- spec files


def test_init_spec_with_required_lines_unfilled_fails_before_the_analysis(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    out = cli("init", "app.py", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "REQUIRED" in (tmp_path / "app.spec").read_text()
    build = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "app.spec"], cwd=tmp_path,
                           env=clean_env(PYTHONHASHSEED="0"), capture_output=True, text=True, timeout=300)
    assert build.returncode != 0
    assert "pyi-selfupdate: build stopped: the self-update setting api_url is missing" in build.stderr
    assert "PYI_SELFUPDATE_API_URL" in build.stderr
    # Stopped while PyInstaller read the spec: no module graph, no analysis.
    assert "module dependency graph" not in build.stderr and "Analyzing" not in build.stderr
    assert not (tmp_path / "build" / "app" / "base_library.zip").exists()


SPEC = """\
{prelude}
a = Analysis(["app.py"], hiddenimports=["pyi_selfupdate"],
             hooksconfig={{"pyi_selfupdate": {{"current_version": "1.0"}}}})
pyz = PYZ(a.pure)
exe = EXE(pyz, a.scripts, a.binaries, a.datas, [], name="specapp")
"""


def _warning_part(stderr: str) -> str:
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if "NOT REPRODUCIBLE" in line), None)
    return "\n".join(lines[start:start + 14]) if start is not None else ""


@pytest.mark.e2e
def test_the_seed_warning_tells_a_spec_user_what_to_put_in_the_spec(tmp_path):
    """The hook warns, then stops at the missing api_url: the analysis runs, the EXE is never assembled."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "specapp.spec").write_text(SPEC.format(prelude=""))
    build = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "specapp.spec"], cwd=tmp_path,
                           env=clean_env(), capture_output=True, text=True, timeout=600)
    assert "api_url is missing" in build.stderr, build.stderr[-4000:]
    warning = _warning_part(build.stderr)
    assert "pyi-selfupdate build specapp.spec" in warning and "PYTHONHASHSEED=0" in warning
    assert "app.py" not in warning
    # The lines it gives, put at the top of the spec, make plain `pyinstaller specapp.spec` seeded.
    snippet = [line for line in build.stderr.splitlines()[build.stderr.splitlines().index(
        next(line for line in build.stderr.splitlines() if "by putting these lines" in line)) + 1:]][:4]
    snippet = [line.split("WARNING: ", 1)[-1] for line in snippet]
    assert snippet[0].startswith("import os, subprocess, sys"), snippet
    (tmp_path / "specapp.spec").write_text(SPEC.format(prelude="\n".join(snippet) + "\n"))
    again = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "specapp.spec"], cwd=tmp_path,
                           env=clean_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "api_url is missing" in again.stderr, again.stderr[-4000:]
    assert "NOT REPRODUCIBLE" not in again.stderr


# ---------------------------------------------------------------------- CLI


def test_version_and_verbosity_anywhere(tmp_path):
    from pyi_selfupdate import __version__

    out = cli("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"pyi-selfupdate {__version__}"
    exe = tmp_path / "myapp"
    exe.write_bytes(os.urandom(3000))
    for args in (["-q", "release"], ["release", "-q"]):
        proc = cli(*args, "-o", "public", "--platform", "linux-amd64", str(exe), "1.0", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""  # quiet: no progress lines
    for args in (["-v", "keygen", "k1"], ["keygen", "k2", "--verbose"]):
        assert cli(*args, cwd=tmp_path).returncode == 0
    proc = cli("release", "-o", "public", "--platform", "linux-amd64", str(exe), "1.1", "-v", cwd=tmp_path)
    assert proc.returncode == 0 and "DEBUG" in proc.stderr, proc.stderr


def test_a_mistyped_option_or_command_suggests_the_right_one(tmp_path):
    proc = cli("release", "--sign-kye", "k", "dist", "1.0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unrecognized arguments: --sign-kye" in proc.stderr and "did you mean --sign-key?" in proc.stderr
    proc = cli("prune", "public", "--keeep", "3", cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean --keep?" in proc.stderr
    proc = cli("relase", "dist", "1.0", cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean release?" in proc.stderr


def test_the_installed_hooks_folder_holds_the_same_check():
    """``hooks-dir`` prints ``hooks/installed/`` when the package is installed: its copy of the
    pre-find check must stay the one in ``hooks/``."""
    from pathlib import Path

    hooks = Path(__file__).resolve().parents[2] / "hooks"
    name = "pre_find_module_path/hook-pyi_selfupdate.py"
    assert (hooks / "installed" / name).read_bytes() == (hooks / name).read_bytes()
