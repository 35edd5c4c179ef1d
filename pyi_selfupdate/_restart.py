"""Restart the running app: after an install, the launch continues as the new version.

A frozen app reads its modules from its executable, by path, at every new import
(see the project's design notes). Once a new binary has been swapped in, the old
process must not import anything more: :func:`restart` therefore imports nothing
when called (everything it needs is imported here, at module import time).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Dict, List, NoReturn, Optional, Sequence

from ._instances import parent_pid
from ._lazy import log
from .errors import InstallError

if os.name == "nt":  # pragma: no cover - Windows only
    import subprocess  # imported now: nothing may be imported after a swap

__all__ = ["restart", "restart_command", "restart_environ", "restarted_from", "exit_status",
           "MAIN_MARKER", "RESTART_MARKER"]

#: Environment variable :func:`restart` sets in the new process: the pids of the
#: process that restarted and of its parent. The new process is then a restart
#: of this launch: it never restarts again (a launch restarts at most once), and
#: those processes, waiting for it, are not other copies of the app.
RESTART_MARKER = "PYI_SELFUPDATE_RESTARTED"

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


def restarted_from(environ: Optional[Dict[str, str]] = None) -> Optional[List[int]]:
    """The pids :func:`restart` left in ``environ`` (default ``os.environ``), removed from it.

    None when this process is no restart. Removed so that the app's own children
    (another launch it starts) are not taken for restarts.
    """
    env = os.environ if environ is None else environ
    value = env.pop(RESTART_MARKER, None)
    if value is None:
        return None
    pids = []
    for part in value.split(","):
        try:
            pids.append(int(part))
        except ValueError:
            pass
    return pids


def exit_status(code: int) -> int:
    """The argument of ``os._exit`` that ends this process with the child's status ``code``.

    Windows exit codes are 32-bit unsigned (``sys.exit(-1)`` is 4294967295,
    Ctrl+C 0xC000013A) and ``subprocess`` reports them so, but ``os._exit``
    takes a C ``int``: the same 32 bits, as a signed value. POSIX statuses
    (0-255) pass through; a negative ``subprocess`` code (killed by signal N)
    becomes 128 + N, as a shell reports it.
    """
    if os.name != "nt" and code < 0:
        return 128 + (-code & 0x7F)
    code &= 0xFFFFFFFF
    return code - (1 << 32) if code >= (1 << 31) else code


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
    ``os.execve``; on Windows the new process is spawned and waited for, and
    its exit status, all 32 bits of it, becomes this process's (this process
    never returns into the app, not even on Ctrl+C). The new process carries
    :data:`RESTART_MARKER`: it never restarts again.

    ``atexit`` handlers of the old process do not run. Raises
    :class:`pyi_selfupdate.errors.InstallError` only if the new process cannot
    be started at all.
    """
    cmd = restart_command(argv)
    env = restart_environ()
    env[RESTART_MARKER] = f"{os.getpid()},{parent_pid()}"
    log.info("restarting: %s", " ".join(cmd))
    _flush()
    try:
        if os.name == "nt":  # pragma: no cover - Windows only (tested under Wine)
            child = subprocess.Popen(cmd, env=env)
        else:
            os.execve(cmd[0], cmd, env)
    except OSError as exc:
        raise InstallError(
            f"cannot restart {cmd[0]}: {exc}; start the app again by hand"
        ) from exc
    _wait_and_exit(child)  # pragma: no cover - Windows only


def _wait_and_exit(child: "subprocess.Popen") -> NoReturn:  # pragma: no cover - Windows only
    """Wait for the restarted ``child`` and end this process with its exit status.

    Whatever happens meanwhile, this process never returns into the app: its
    executable may have been replaced. Ctrl+C reaches the child too (one
    console): the child decides, this process keeps waiting for its status.
    """
    code = 1
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                continue
        _flush()
    except BaseException:  # anything else: still never continue
        pass
    finally:
        os._exit(exit_status(code))
