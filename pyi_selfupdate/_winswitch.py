"""Windows: switch an app folder to its staged new version once the app has exited.

Windows refuses to rename a folder while a program runs from it, and the
launch that would install a onedir update always runs from the folder it must
replace. So at that launch's exit (:meth:`pyi_selfupdate.Updater.install_staged`
with ``at_exit=True``), with the staged folder verified and no other copy
running, :func:`start` hands the switch to ``cmd.exe``, which runs from outside
the folder and outlives the app. Its script, :data:`SCRIPT`, is kept as ``switch.cmd`` in the app's
state folder (the same for every switch: nothing is left per run). It retries,
once a second, for at most ``LIMITS.switch_wait`` seconds:

1. rename the app folder ``<name>`` to ``.<name>.old.<token>``, which Windows
   allows only once no program runs from it (the app's exit, or that of a copy
   started meanwhile);
2. rename ``.<name>.staged`` to ``<name>`` (if that fails, rename the old folder
   back and try again at the next round);
3. delete the sidecar and the old folder.

It gives up (the update stays staged, and the next launch's exit tries again)
when the staged folder is gone (another launch took the install on) or when the
time is up. Paths travel in environment variables, expanded inside double
quotes, so no character of a path is parsed as syntax by ``cmd.exe``. Between steps 1 and 2 the app's path is absent
for the time of one rename: Windows has no atomic exchange of two folders.
A killed switch leaves the staged update and its sidecar (killed before 1), the
new version in place (after 2), and ``.<name>.old.<token>``, which the next
launch removes (:func:`pyi_selfupdate._staging.cleanup_leftovers`).
"""

from __future__ import annotations

import os
import subprocess

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Dict
    from ._files import PathLike

from ._files import beside
from ._lazy import log
from .errors import InstallError
from .settings import LIMITS

__all__ = ["SCRIPT", "write_script", "start"]

_CREATE_NEW_PROCESS_GROUP = 0x00000200
_CREATE_BREAKAWAY_FROM_JOB = 0x01000000
_CREATE_NO_WINDOW = 0x08000000

#: The switch, run by ``cmd.exe``; the paths come in ``PYI_SU_*`` environment variables.
SCRIPT = "\r\n".join([
    "@echo off",
    "rem pyi-selfupdate: switch an app folder to its staged update once no program runs from it.",
    "rem Written by pyi_selfupdate/_winswitch.py; the paths come in PYI_SU_* variables.",
    "set /a n=%PYI_SU_ROUNDS%",
    ":round",
    'if not exist "%PYI_SU_STAGED%\\" exit /b 2',
    'move "%PYI_SU_TARGET%" "%PYI_SU_ASIDE%" >nul 2>nul',
    'if exist "%PYI_SU_TARGET%\\" goto wait',
    'move "%PYI_SU_STAGED%" "%PYI_SU_TARGET%" >nul 2>nul',
    'if exist "%PYI_SU_TARGET%\\" goto done',
    'move "%PYI_SU_ASIDE%" "%PYI_SU_TARGET%" >nul 2>nul',
    ":wait",
    "set /a n-=1",
    "if %n% leq 0 exit /b 1",
    "ping -n 2 127.0.0.1 >nul",
    "goto round",
    ":done",
    'del /f /q "%PYI_SU_SIDECAR%" >nul 2>nul',
    'rd /s /q "%PYI_SU_ASIDE%" >nul 2>nul',
    "exit /b 0",
    "",
])


def write_script(state_dir: PathLike) -> str:
    """``switch.cmd`` in the app's state folder, holding :data:`SCRIPT` (written only when it differs)."""
    from ._files import write_atomic

    script = os.path.join(os.fspath(state_dir), "switch.cmd")
    data = SCRIPT.encode("ascii")
    try:
        with open(script, "rb") as fh:
            if fh.read(len(data) + 1) == data:
                return script
    except OSError:
        pass
    os.makedirs(os.fspath(state_dir), exist_ok=True)
    write_atomic(script, data)
    return script


def start(staged: PathLike, target: PathLike, sidecar: PathLike, state_dir: PathLike) -> None:
    """Start the switch of the folder ``target`` to ``staged`` after this process exits.

    Raises :class:`~pyi_selfupdate.errors.InstallError` when the script cannot
    be written or ``cmd.exe`` started (the update then stays staged).
    """
    import secrets

    target = os.path.abspath(os.fspath(target))
    try:
        script = write_script(state_dir)
    except OSError as exc:
        raise InstallError(f"cannot write the folder switch script in {os.fspath(state_dir)} "
                           f"({exc}); the update stays staged for a later launch") from None
    env: Dict[str, str] = dict(os.environ)
    env.update(PYI_SU_STAGED=os.path.abspath(os.fspath(staged)), PYI_SU_TARGET=target,
               PYI_SU_SIDECAR=os.path.abspath(os.fspath(sidecar)),
               PYI_SU_ASIDE=beside(target, f".old.{secrets.token_hex(4)}"),
               PYI_SU_ROUNDS=str(max(1, round(LIMITS.switch_wait))))
    comspec = env.get("ComSpec") or os.path.join(env.get("SystemRoot", r"C:\Windows"), "System32", "cmd.exe")
    line = f'"{comspec}" /d /s /c ""{script}""'
    flags = _CREATE_NEW_PROCESS_GROUP | _CREATE_NO_WINDOW
    for extra in (_CREATE_BREAKAWAY_FROM_JOB, 0):  # outlive a job that ends with the app, if allowed
        try:
            # cwd outside the folder: a working directory inside it would keep it in use.
            subprocess.Popen(line, cwd=os.path.dirname(target), env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             close_fds=True, creationflags=flags | extra)
            break
        except OSError as exc:
            if extra:
                continue
            raise InstallError(f"cannot start cmd.exe to switch {target} after the app exits "
                               f"({exc}); the update stays staged for a later launch") from None
    log.info("%s switches to the staged update once no program runs from it (cmd.exe, up to "
             "%.0f s)", target, LIMITS.switch_wait)
