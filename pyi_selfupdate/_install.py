"""Installing: temporary files, the atomic swap, staging, the instance lock, cleanup.

File names, all in the target's folder, for a target named ``<name>``:

``.<name>.new.<token>``    a new binary (or sidecar) being written; while its
                           writer lives it holds an exclusive ``flock`` on it
                           (POSIX), so a later launch can tell a live download
                           from the leftover of a killed one
``.<name>.old``            the previous binary during a Windows swap
``.<name>.staged``         a verified binary waiting for the next launch
``.<name>.staged.json``    its sidecar, written last: it marks the staged file
                           complete (``from``, ``to``, ``sha256``, ``method``, ``bytes``)
``.<name>.lock``           the instance lock

The swap on POSIX is one ``os.replace(new, target)`` followed by an ``fsync`` of
the folder: at every instant the target path names a complete executable, the
old one or the new one. Processes still running the old file keep their open
mapping, but a PyInstaller app reads its modules from its executable *by path*,
so the swap is only done under the exclusive instance lock (no other instance
running).

Windows (written with care, NOT tested): a running executable can be renamed
but not deleted or overwritten, so the swap renames the target to
``.<name>.old``, renames the new file into place (renaming ``.old`` back if that
fails), then tries to delete ``.old``; when it cannot (the old program still
runs) the file is hidden and :func:`cleanup_leftovers` removes it at a later
launch. During that swap the target path is briefly absent.

Everything the swap and the code after it need is imported before the swap:
after a swap, a frozen old process must not import anything new from its
(replaced) executable. ``base64``, ``hashlib``, ``json``, ``secrets`` and ``pathlib`` are
imported on first use (the usual launch of a frozen app stages and installs
nothing); every install goes through :mod:`pyi_selfupdate.updater`, which
imports them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Union

from . import _lazy
from ._lazy import log
from .errors import InstallError

if TYPE_CHECKING:
    from pathlib import Path

    import base64
    import hashlib
    import json
    import secrets
else:  # the usual launch stages and installs nothing (pyi_selfupdate.updater imports these)
    base64, hashlib, json, secrets = map(_lazy.module, ("base64", "hashlib", "json", "secrets"))

if os.name == "nt":  # pragma: no cover - Windows only
    import ctypes
    import msvcrt

    fcntl = None
else:
    import fcntl

    msvcrt = None

__all__ = [
    "InstanceLock",
    "instance_lock",
    "NewFile",
    "swap",
    "StagedInfo",
    "staged_path",
    "sidecar_path",
    "lock_path",
    "promote_to_staged",
    "read_staged",
    "discard_staged",
    "cleanup_leftovers",
    "file_sha256",
]

_PathLike = Union[str, "os.PathLike[str]"]

#: A staged binary without its sidecar is a leftover after this many seconds.
ORPHAN_STAGED_AGE = 600.0

_CHUNK = 1 << 20


# ------------------------------------------------------------------ names


def _path(path: _PathLike) -> "Path":
    # pathlib costs the usual launch of a frozen app several ms: it is imported
    # only where a Path is returned (the client imports it before any install).
    from pathlib import Path

    return Path(path)


def _split(target: _PathLike) -> "tuple[str, str]":
    """The folder (absolute) and the name of ``target``, as strings."""
    path = os.path.abspath(os.fspath(target))
    return os.path.dirname(path), os.path.basename(path)


def _beside(target: _PathLike, suffix: str) -> str:
    folder, name = _split(target)
    return os.path.join(folder, f".{name}{suffix}")


def _new_path(target: _PathLike) -> "Path":
    """A fresh ``.<name>.new.<token>`` beside ``target`` (a file being written or claimed)."""
    return _path(_beside(target, f".new.{secrets.token_hex(6)}"))


def staged_path(target: _PathLike) -> "Path":
    """``.<name>.staged`` beside ``target``."""
    return _path(_beside(target, ".staged"))


def sidecar_file(target: _PathLike) -> str:
    """``.<name>.staged.json`` beside ``target``, as a string (no pathlib: the launch path)."""
    return _beside(target, ".staged.json")


def sidecar_path(target: _PathLike) -> "Path":
    """``.<name>.staged.json`` beside ``target``."""
    return _path(sidecar_file(target))


def lock_path(target: _PathLike) -> "Path":
    """``.<name>.lock`` beside ``target``."""
    return _path(_beside(target, ".lock"))


def old_path(target: _PathLike) -> "Path":
    """``.<name>.old`` beside ``target`` (Windows swap)."""
    return _path(_beside(target, ".old"))


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # pragma: no cover - no directory handles to fsync
        return
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: _PathLike) -> bytes:
    """SHA-256 digest of a file, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            hasher.update(block)
    return hasher.digest()


# ------------------------------------------------------------ instance lock


class InstanceLock:
    """The lock every running instance of one executable shares (one per process).

    Get it with :func:`instance_lock`. A running instance calls
    :meth:`hold_shared` once and keeps it for its lifetime; an installer uses
    ``with lock.exclusive() as acquired:`` and replaces the executable only if
    ``acquired`` is True, i.e. no other process holds the lock.

    POSIX: ``fcntl.lockf`` (POSIX record locks) on ``.<name>.lock``. Record
    locks are owned by the process, and converting a shared lock to an
    exclusive one is atomic: a failed non-blocking upgrade keeps the shared
    lock. (``flock`` may drop the shared lock while converting, which would let
    two instances that upgrade at the same moment both believe they are alone.)
    The catch of record locks, closing any descriptor of the file drops them,
    is why there is exactly one object, and one descriptor, per lock file and
    process; never open the lock file yourself. Locks are not inherited by
    forked children and are released on exec and at exit (also on kill -9).

    Windows (NOT tested): ``msvcrt.locking`` on the first byte, exclusive only:
    :meth:`hold_shared` holds nothing there, so :meth:`exclusive` cannot see
    other running instances; the Windows swap renames the running file aside
    instead of deleting it.
    """

    def __init__(self, path: _PathLike) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self._shared = False
        self._exclusive = False
        self._mutex = threading.RLock()

    @property
    def held_shared(self) -> bool:
        """True while this process holds the shared lock."""
        return self._shared

    def _open(self) -> int:
        if self._fd is None:
            try:
                os.makedirs(os.path.dirname(os.fspath(self.path)), exist_ok=True)
                fd = os.open(os.fspath(self.path), os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise InstallError(
                    f"cannot open the instance lock {self.path} ({exc}); the folder of the "
                    "executable must be writable by the user running it to install updates"
                ) from None
            self._fd = fd
        return self._fd

    def _lock(self, kind: str, blocking: bool) -> bool:
        fd = self._open()
        if fcntl is not None:
            op = {"sh": fcntl.LOCK_SH, "ex": fcntl.LOCK_EX, "un": fcntl.LOCK_UN}[kind]
            if kind != "un" and not blocking:
                op |= fcntl.LOCK_NB
            try:
                fcntl.lockf(fd, op)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise InstallError(f"cannot lock {self.path} ({exc})") from None
            return True
        # Windows: one byte, exclusive only.  # pragma: no cover
        if kind == "sh":
            return True
        os.lseek(fd, 0, os.SEEK_SET)
        if kind == "un":
            try:
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            except OSError:
                pass
            return True
        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def hold_shared(self, timeout: float = 10.0) -> bool:
        """Hold the shared lock (idempotent); False if it cannot be had within ``timeout`` s.

        It cannot be had only while another process installs (holds it
        exclusively, for the swap alone: well under a second). Waiting for that
        matters: a launch that went on without the lock could have its
        executable replaced under it. ``timeout=0`` does not wait. False is
        also returned (and logged) when the lock file cannot be opened.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._mutex:
            if self._shared or self._exclusive:
                self._shared = True
                return True
            while True:
                try:
                    ok = self._lock("sh", blocking=False)
                except InstallError as exc:
                    log.info("running without the instance lock: %s", exc)
                    return False
                if ok or time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
            if not ok and timeout > 0:  # timeout=0 is a probe: the caller decides
                log.warning("another process holds %s exclusively; running without the "
                            "instance lock", self.path)
            self._shared = ok
            return ok

    def release(self) -> None:
        """Release whatever this process holds and close the descriptor."""
        with self._mutex:
            if self._fd is not None:
                try:
                    self._lock("un", blocking=True)
                finally:
                    os.close(self._fd)
                    self._fd = None
            self._shared = self._exclusive = False

    @contextlib.contextmanager
    def exclusive(self, blocking: bool = False) -> Iterator[bool]:
        """Upgrade to the exclusive lock for the ``with`` block; yields whether it was acquired.

        Afterwards the lock goes back to shared if it was shared before, else
        it is released. Raises :class:`InstallError` if the lock file cannot
        be opened (the folder is not writable).
        """
        with self._mutex:
            was_shared = self._shared
            acquired = self._lock("ex", blocking)
            self._exclusive = acquired
            try:
                yield acquired
            finally:
                if acquired:
                    self._exclusive = False
                    if was_shared:
                        self._lock("sh", blocking=True)
                    else:
                        self._lock("un", blocking=True)


_locks: Dict[str, InstanceLock] = {}
_locks_mutex = threading.Lock()


def instance_lock(target: _PathLike) -> InstanceLock:
    """The process-wide :class:`InstanceLock` of ``target`` (one object per lock file)."""
    path = _beside(os.path.realpath(os.fspath(target)), ".lock")  # a string: the launch path
    key = os.path.normcase(path)
    with _locks_mutex:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = InstanceLock(path)
        return lock


# ------------------------------------------------------------ new files

#: Finished or claimed temporary files (path -> the descriptor holding their
#: ``flock``): a live install's files, never a leftover (POSIX only: Windows
#: cannot rename an open file, and an open file cannot be deleted there anyway).
_claims: Dict[str, int] = {}
_claims_mutex = threading.Lock()


def _keep_claim(path: _PathLike, fd: int) -> None:
    if fcntl is None:  # pragma: no cover - Windows
        os.close(fd)
        return
    with _claims_mutex:
        _claims[os.fspath(path)] = fd


def _release_claim(path: _PathLike) -> None:
    with _claims_mutex:
        fd = _claims.pop(os.fspath(path), None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass



class NewFile:
    """A temporary ``.<name>.new.<token>`` file beside ``target``, being written.

    Created exclusively, with mode 0600 until :meth:`finish` gives it ``mode``
    (default: the target's mode) and fsyncs it. While open, the file is
    ``flock``-ed so :func:`cleanup_leftovers` leaves it alone. Use as a context
    manager: leaving the block with an exception deletes the file.
    """

    def __init__(self, target: _PathLike, mode: Optional[int] = None) -> None:
        self.target = _path(os.path.abspath(os.fspath(target)))
        if mode is None:
            try:
                mode = stat.S_IMODE(os.stat(self.target).st_mode)
            except OSError:
                mode = 0o755
        self.mode = mode
        self.path = _new_path(target)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            self._fd: Optional[int] = os.open(str(self.path), flags, 0o600)
        except OSError as exc:
            raise InstallError(
                f"cannot create {self.path} ({exc}); the folder of {self.target} must be "
                "writable, with free space, to install updates"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # pragma: no cover - a fresh file: nobody else has it
                pass
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append ``data``; :class:`InstallError` on a write failure (disk full, ...)."""
        assert self._fd is not None, "file already finished"
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.size += n
        except OSError as exc:
            raise InstallError(f"cannot write {self.path} ({exc}); {_write_advice(exc, self.target)}") from None

    def finish(self) -> Path:
        """Set the mode and fsync; returns the path (still a temporary name).

        The file stays ``flock``-ed by this process until :func:`swap`,
        :func:`promote_to_staged` or :func:`_remove_quietly` is done with it.
        """
        assert self._fd is not None, "file already finished"
        fd = self._fd
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, self.mode)
                _copy_owner(fd, self.target)
            os.fsync(fd)
        except OSError as exc:
            self.discard()
            raise InstallError(f"cannot complete {self.path} ({exc})") from None
        # Keep the descriptor, and with it the flock, until the file is swapped
        # in, staged or removed: until then it is a live install, not a leftover.
        _keep_claim(self.path, fd)
        self._fd = None
        return self.path

    def discard(self) -> None:
        """Close (if open) and delete the file; never raises."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        _remove_quietly(self.path)

    def __enter__(self) -> "NewFile":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()


def _write_advice(exc: OSError, target: Path) -> str:
    """What the user can do about a failed write beside ``target``."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"free some disk space in {target.parent} (or raise the disk quota) and retry"
    if exc.errno == errno.EFBIG:
        return ("the file size limit of this process is too small for the update; raise it "
                "(`ulimit -f unlimited`) and retry")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"make {target.parent} writable by the user running the app and retry"
    return f"check the disk holding {target.parent} and retry"


def _copy_owner(fd: int, target: Path) -> None:
    """As root, give the new file the target's owner (a root-run update of a user's app)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        st = os.stat(target)
        os.fchown(fd, st.st_uid, st.st_gid)
    except OSError:
        pass


def _remove_quietly(path: _PathLike) -> bool:
    try:
        os.unlink(path)
        _release_claim(path)
        return True
    except FileNotFoundError:
        _release_claim(path)
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ swap


def swap(new: _PathLike, target: _PathLike) -> None:
    """Put the finished file ``new`` (same folder) in place of ``target``.

    POSIX: ``os.replace`` then ``fsync`` of the folder; the target path always
    names a complete file. Windows (untested): rename target to ``.<name>.old``,
    rename ``new`` into place, roll back on failure, delete ``.old`` or leave
    it (hidden) for :func:`cleanup_leftovers`. On failure ``new`` is deleted
    and :class:`InstallError` raised; the target is unchanged.
    """
    new = _path(new)
    folder, name = _split(target)
    target = _path(folder) / name
    if os.name != "nt":
        try:
            os.replace(new, target)
        except FileNotFoundError:
            _release_claim(new)
            raise InstallError(
                f"the new version {new} vanished before it could replace {target} (another "
                "process removed it); the old version is kept and the update is fetched "
                "again at the next check"
            ) from None
        except OSError as exc:
            _remove_quietly(new)
            raise InstallError(
                f"cannot replace {target} ({exc}); the old version is kept. Make the "
                "folder writable by the user running the app"
            ) from None
        _release_claim(new)
        _fsync_dir(folder)
        return
    _swap_windows(new, target)  # pragma: no cover


def _swap_windows(new: Path, target: Path) -> None:  # pragma: no cover - Windows only
    old = old_path(target)
    if old.exists() and not _remove_quietly(old):
        old = old.with_name(f"{old.name}.{secrets.token_hex(4)}")
    try:
        os.replace(target, old)
    except OSError as exc:
        _remove_quietly(new)
        raise InstallError(f"cannot move {target} aside ({exc}); the old version is kept") from None
    try:
        os.replace(new, target)
    except OSError as exc:
        try:
            os.replace(old, target)
        except OSError as exc2:
            raise InstallError(
                f"cannot put the new version in place ({exc}) nor restore the old one "
                f"({exc2}); rename {old} back to {target} by hand"
            ) from None
        _remove_quietly(new)
        raise InstallError(f"cannot put the new version in place ({exc}); the old version is kept") from None
    if not _remove_quietly(old):
        _hide(old)
        log.info("%s is still running; it is removed at a later launch", old)


def _hide(path: Path) -> None:  # pragma: no cover - Windows only
    try:
        ctypes.windll.kernel32.SetFileAttributesW(str(path), 0x2)
    except Exception:
        pass


# --------------------------------------------------------------- staging


@dataclass(frozen=True)
class StagedInfo:
    """What a staged update's sidecar says."""

    from_version: str
    to_version: str
    sha256: bytes
    method: str
    bytes_fetched: int

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "from": self.from_version,
                "to": self.to_version,
                "sha256": base64.b64encode(self.sha256).decode("ascii"),
                "method": self.method,
                "bytes": self.bytes_fetched,
            },
            indent=1,
        ).encode("utf-8")


def promote_to_staged(new: _PathLike, target: _PathLike, info: StagedInfo) -> Path:
    """Rename the finished file ``new`` to ``.<name>.staged``, then write the sidecar.

    The sidecar is written (temporary name, fsync, rename) only once the staged
    binary is complete on disk, so its presence marks a complete staged update.
    """
    staged = staged_path(target)
    sidecar = sidecar_path(target)
    _remove_quietly(sidecar)  # an older sidecar must not vouch for the new file
    try:
        os.replace(os.fspath(new), staged)
    except OSError as exc:
        _remove_quietly(_path(new))
        raise InstallError(f"cannot stage the update as {staged} ({exc})") from None
    _release_claim(new)
    _fsync_dir(staged.parent)
    with NewFile(target, mode=0o644) as side:
        side.write(info.to_json())
        done = side.finish()
    try:
        os.replace(done, sidecar)
    except OSError as exc:
        _remove_quietly(done)
        raise InstallError(f"cannot write {sidecar} ({exc})") from None
    _release_claim(done)
    _fsync_dir(staged.parent)
    return staged


def read_staged(target: _PathLike) -> Optional[StagedInfo]:
    """The sidecar of a staged update, or None if there is none.

    A sidecar that cannot be parsed, or a sidecar without its staged file, is
    discarded (both files) with a WARNING.
    """
    sidecar = sidecar_path(target)
    try:
        raw = sidecar.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s); ignoring the staged update", sidecar, exc)
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
        info = StagedInfo(
            from_version=_str(doc["from"]),
            to_version=_str(doc["to"]),
            sha256=base64.b64decode(_str(doc["sha256"]), validate=True),
            method=_str(doc.get("method", "full")),
            bytes_fetched=int(doc.get("bytes", 0)),
        )
        if len(info.sha256) != 32:
            raise ValueError("sha256 is not 32 bytes")
    except Exception as exc:  # any malformation: the file is not ours to trust
        discard_staged(target, f"its sidecar {sidecar.name} is corrupt ({exc})")
        return None
    if not staged_path(target).is_file():
        discard_staged(target, "the staged binary is missing")
        return None
    return info


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def discard_staged(target: _PathLike, reason: str, *, warn: bool = True) -> None:
    """Remove the staged binary and its sidecar, logging ``reason``."""
    (log.warning if warn else log.info)(
        "discarding the staged update beside %s: %s", os.fspath(target), reason
    )
    _remove_quietly(sidecar_path(target))
    _remove_quietly(staged_path(target))


def claim_staged(target: _PathLike) -> Optional[Path]:
    """Atomically move the staged binary to a private temporary name; None if absent.

    The claimed file stays ``flock``-ed by this process until it is swapped in
    (:func:`swap`), staged again (:func:`promote_to_staged`) or removed
    (:func:`_remove_quietly`), so another launch's :func:`cleanup_leftovers`
    never takes it for the leftover of a killed install, however long this
    install is stalled. None also when another process is claiming it now.
    """
    staged = staged_path(target)
    private = _new_path(target)
    fd: Optional[int] = None
    if fcntl is not None:  # lock first: the lock follows the file through the rename
        try:
            fd = os.open(str(staged), os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InstallError(f"cannot take the staged update ({exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another process is claiming it this very moment
            os.close(fd)
            return None
    try:
        os.replace(staged, private)
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        if isinstance(exc, FileNotFoundError):
            return None
        raise InstallError(f"cannot take the staged update ({exc})") from None
    if fd is not None:
        _keep_claim(private, fd)
    return private


# --------------------------------------------------------------- cleanup


def _is_abandoned(path: _PathLike) -> bool:
    """True if no live process writes ``path`` (its writer's flock is gone)."""
    if fcntl is None:  # pragma: no cover - Windows: an open file cannot be deleted anyway
        return True
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the probe's flock


def cleanup_leftovers(target: _PathLike) -> "List[Path]":
    """Remove what interrupted updates left beside ``target``; returns what was removed.

    - ``.<name>.new`` and ``.<name>.new.<token>`` files no live process is
      writing (their writer's ``flock`` is gone: killed, crashed);
    - ``.<name>.old`` files (a Windows swap, or go-selfupdate's own);
    - a ``.<name>.staged`` without its sidecar, older than 10 minutes (a
      staging interrupted between its two renames);
    - a sidecar without its staged binary.

    Safe to call while other instances run; each removal is logged at INFO.
    """
    # Strings and os.path throughout: this runs at every launch of a frozen app.
    folder, name = _split(target)
    removed: "List[Path]" = []
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        log.info("cannot list %s for leftovers (%s)", folder, exc)
        return removed
    new_prefix = f".{name}.new"
    old_name = f".{name}.old"
    staged = _beside(target, ".staged")
    sidecar = sidecar_file(target)
    for entry in entries:
        leftover = False
        if entry.name == new_prefix or entry.name.startswith(new_prefix + "."):
            leftover = _is_abandoned(entry.path)
        elif entry.name == old_name or entry.name.startswith(old_name + "."):
            leftover = True
        if leftover and _remove_quietly(entry.path):
            log.info("removed %s, left by an interrupted update", entry.path)
            removed.append(_path(entry.path))
    has_sidecar = os.path.exists(sidecar)
    if os.path.exists(staged) and not has_sidecar:
        try:
            age = time.time() - os.stat(staged).st_mtime
        except OSError:
            age = 0.0
        if age > ORPHAN_STAGED_AGE and _remove_quietly(staged):
            log.info("removed %s, an incomplete staged update", staged)
            removed.append(_path(staged))
    elif has_sidecar and not os.path.exists(staged):
        if _remove_quietly(sidecar):
            log.info("removed %s, the sidecar of a missing staged update", sidecar)
            removed.append(_path(sidecar))
    return removed
    new_prefix = f".{name}.new"
    old_name = f".{name}.old"
    staged = staged_path(target)
    sidecar = sidecar_path(target)
    for entry in entries:
        path = Path(entry.path)
        leftover = False
        if entry.name == new_prefix or entry.name.startswith(new_prefix + "."):
            leftover = _is_abandoned(path)
        elif entry.name == old_name or entry.name.startswith(old_name + "."):
            leftover = True
        if leftover and _remove_quietly(path):
            log.info("removed %s, left by an interrupted update", path)
            removed.append(path)
    has_sidecar = sidecar.exists()
    if staged.exists() and not has_sidecar:
        try:
            age = time.time() - staged.stat().st_mtime
        except OSError:
            age = 0.0
        if age > ORPHAN_STAGED_AGE and _remove_quietly(staged):
            log.info("removed %s, an incomplete staged update", staged)
            removed.append(staged)
    elif has_sidecar and not staged.exists():
        if _remove_quietly(sidecar):
            log.info("removed %s, the sidecar of a missing staged update", sidecar)
            removed.append(sidecar)
    return removed
