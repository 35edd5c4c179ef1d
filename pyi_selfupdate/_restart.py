"""Restart the running app: after an install, the launch continues as the new version.

A frozen app reads its modules from its executable, by path, at every new import
(see the project's design notes). Once a new binary has been swapped in, the old
process must not import anything more: :func:`restart` therefore imports nothing
when called (everything it needs is imported here, at module import time).
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, NoReturn, Optional, Sequence

from ._lazy import log
from .errors import InstallError

if os.name == "nt":  # pragma: no cover - Windows only
    import subprocess  # imported now: nothing may be imported after a swap

__all__ = ["restart", "restart_command", "restart_environ", "MAIN_MARKER"]

#: Environment variable the runtime bootstrap sets to the pid of the app's main
#: process; a process that inherits it with another pid is a worker/child.
MAIN_MARKER = "PYI_SELFUPDATE_MAIN"

#: Library search path variables the PyInstaller bootloader may have changed
#: (it saves the user's value as ``<NAME>_ORIG``).
_LIBPATH_VARS = ("LD_LIBRARY_PATH", "LIBPATH")


def _frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def restart_environ(environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment a restarted app gets (a copy; ``environ`` defaults to ``os.environ``).

    For a frozen app: ``PYINSTALLER_RESET_ENVIRONMENT=1`` (the new bootloader
    starts afresh instead of reusing the old extraction folder) and the library
    search path restored from ``LD_LIBRARY_PATH_ORIG`` (or removed when the user
    had none). Always: the bootstrap's main-process marker removed, so that the
    new process is a main process again.
    """
    env = dict(os.environ if environ is None else environ)
    env.pop(MAIN_MARKER, None)
    if _frozen():
        env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
        for name in _LIBPATH_VARS:
            orig = env.pop(name + "_ORIG", None)
            if orig is not None:
                env[name] = orig
            else:
                env.pop(name, None)
    return env


def restart_command(argv: Optional[Sequence[str]] = None) -> List[str]:
    """The command line :func:`restart` executes (``argv``: the arguments after the program).

    Frozen: ``[sys.executable, *argv]`` (``argv`` defaults to ``sys.argv[1:]``).
    Not frozen: the interpreter with its original options and script
    (``sys.orig_argv`` where available), or ``[python, script, *argv]``.
    """
    if _frozen():
        return [sys.executable, *(sys.argv[1:] if argv is None else argv)]
    if argv is None:
        orig = getattr(sys, "orig_argv", None)  # Python >= 3.10
        if orig:
            return [sys.executable, *orig[1:]]
        return [sys.executable, *sys.argv]
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else None
    if script is None:
        raise InstallError(
            "cannot restart: the interpreter runs no script file; call restart() from an app "
            "started as `python script.py` or from a frozen app"
        )
    return [sys.executable, script, *argv]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # a closed or broken stream must not stop the restart
            pass


def restart(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Replace the running process by a fresh start of the app's executable.

    Call it at once after an update was installed: the new version then runs
    with the same arguments (or ``argv``, the arguments after the program name),
    the same standard streams and, on POSIX, the same pid. On POSIX this is an
    ``os.execve``; on Windows (not covered by the test suite) the new process is
    spawned, waited for, and its exit code becomes this process's exit code.

    ``atexit`` handlers of the old process do not run. Raises
    :class:`pyi_selfupdate.errors.InstallError` only if the new process cannot
    be started at all.
    """
    cmd = restart_command(argv)
    env = restart_environ()
    log.info("restarting: %s", " ".join(cmd))
    _flush()
    try:
        if os.name == "nt":  # pragma: no cover - Windows only
            code = subprocess.call(cmd, env=env)
            _flush()
            os._exit(code)
        os.execve(cmd[0], cmd, env)
    except OSError as exc:
        raise InstallError(
            f"cannot restart {cmd[0]}: {exc}; start the app again by hand"
        ) from exc
    raise AssertionError("unreachable")  # pragma: no cover
