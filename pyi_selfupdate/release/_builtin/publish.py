"""Built-in release plugin: write files into the output folder, atomically.

Each file goes to a temporary name in its final folder, is fsynced, made
0644 (world-readable, not executable: the tree is served, never run) and
renamed into place; the folder is fsynced after the rename. A temporary file
is removed when its write fails; one left by a killed run is removed by the
next write of the same file.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Iterable, Optional

from ...errors import ReleaseError
from .._model import ReleaseContext
from ..hookspecs import hookimpl

log = logging.getLogger("pyi_selfupdate.release")

FILE_MODE = 0o644
_TMP_MARK = ".pyi-tmp-"


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temps(folder: Path, name: str) -> None:
    prefix = f".{name}{_TMP_MARK}"
    try:
        stale = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for p in stale:
        try:
            p.unlink()
            log.debug("removed %s, left by an interrupted release", p)
        except OSError:
            pass


def atomic_write(target: Path, data: "bytes | Iterable[bytes]") -> None:
    """Write ``data`` (bytes, or chunks written as they come) to ``target`` through a fsynced
    temporary file and a rename."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReleaseError(
            f"cannot create the folder {folder} ({exc.strerror}); check the output folder's permissions"
        ) from None
    _remove_stale_temps(folder, target.name)
    tmp = folder / f".{target.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            for chunk in ((data,) if isinstance(data, (bytes, bytearray, memoryview)) else data):
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            if hasattr(os, "fchmod"):  # the umask must not change the mode
                os.fchmod(fd, FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        if not hasattr(os, "fchmod"):  # pragma: no cover - Windows
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ReleaseError(
                f"cannot write {target} ({exc.strerror}); check the free space and the "
                "permissions of the output folder, then run the same release again"
            ) from None
        raise
    _fsync_dir(folder)


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing parent."""
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be written; creates nothing lasting."""
    base = nearest_existing(out)
    if not base.is_dir():
        raise ReleaseError(
            f"the output {out} cannot be a folder: {base} is a file; choose another -o folder"
        )
    probe = base / f".write-test{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise ReleaseError(
            f"the output folder {base} is not writable ({exc.strerror}); fix its permissions "
            "or choose another -o folder"
        ) from None


@hookimpl(trylast=True)
def release_prepare(context: ReleaseContext) -> None:
    """Fail before the slow work when the output folder cannot be written."""
    check_writable(Path(context.out))


@hookimpl(trylast=True)
def release_write_file(context: ReleaseContext, relpath: str, data: "bytes | Iterable[bytes]") -> Optional[str]:
    """Write one file of the tree atomically, 0644."""
    target = context.target(relpath)
    atomic_write(target, data)
    return str(target)
