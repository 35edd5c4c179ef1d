"""restart(): the environment and command of the re-exec, and a real re-exec of a script."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pyi_selfupdate import _restart
from pyi_selfupdate._bootstrap import updater_from_config
from pyi_selfupdate.errors import ConfigError


def test_frozen_environment_is_reset_and_library_path_restored(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    env = _restart.restart_environ({
        "LD_LIBRARY_PATH": "/tmp/_MEI123:/usr/local/lib",
        "LD_LIBRARY_PATH_ORIG": "/usr/local/lib",
        "PYI_SELFUPDATE_MAIN": "42:/opt/app",
        "HOME": "/home/u",
    })
    assert env == {"LD_LIBRARY_PATH": "/usr/local/lib", "PYINSTALLER_RESET_ENVIRONMENT": "1",
                   "HOME": "/home/u"}


def test_frozen_library_path_set_by_the_bootloader_alone_is_removed(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    env = _restart.restart_environ({"LD_LIBRARY_PATH": "/tmp/_MEI123"})
    assert "LD_LIBRARY_PATH" not in env
    assert env["PYINSTALLER_RESET_ENVIRONMENT"] == "1"


def test_not_frozen_keeps_the_environment_but_the_marker(monkeypatch):
    monkeypatch.delattr(sys, "frozen", raising=False)
    env = _restart.restart_environ({"LD_LIBRARY_PATH": "/x", "PYI_SELFUPDATE_MAIN": "1:/a"})
    assert env == {"LD_LIBRARY_PATH": "/x"}


def test_frozen_command_is_the_executable_with_the_arguments(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "argv", ["textstat", "top", "-n", "3"])
    assert _restart.restart_command() == [sys.executable, "top", "-n", "3"]
    assert _restart.restart_command(["--version"]) == [sys.executable, "--version"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX execve; Windows spawns and exits")
def test_restart_re_executes_a_script_in_the_same_process(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        from pyi_selfupdate import restart
        print(sys.argv[1:], os.getpid(), os.environ.get("PYI_SELFUPDATE_MAIN"), flush=True)
        if sys.argv[1:] == ["first"]:
            print("unflushed before restart", end="")
            restart(["second", "arg with space"])
            print("not reached")
    """))
    env = dict(os.environ, PYI_SELFUPDATE_MAIN="1:/somewhere")
    proc = subprocess.run([sys.executable, str(script), "first"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("unflushed before restart")
    argv1, pid1, marker1 = first.strip().rsplit(" ", 2)
    argv2, pid2, marker2 = second.strip().rsplit(" ", 2)
    assert argv1 == "['first']" and argv2 == "['second', 'arg with space']"
    assert pid1 == pid2  # execve: the same process continues
    assert marker1 == "1:/somewhere" and marker2 == "None"
    assert "not reached" not in proc.stdout


def test_updater_from_config_outside_a_frozen_app_says_what_to_do():
    with pytest.raises(ConfigError, match="not a frozen app"):
        updater_from_config()


@pytest.mark.parametrize(
    "marker, expected",
    [
        ("", None),  # nothing inherited: the main process
        ("7:/opt/app/textstat", "7"),  # started by this app's main process: a worker
        ("9:/opt/app/textstat", None),  # our own marker (same pid): still the main process
        ("7:/opt/other/tool", None),  # started by another self-updating app: a main process
        ("garbage", None),
    ],
)
def test_children_are_told_from_main_processes_of_this_or_other_apps(marker, expected):
    from pyi_selfupdate._bootstrap import _parent_main

    assert _parent_main(marker, "9:/opt/app/textstat") == expected
