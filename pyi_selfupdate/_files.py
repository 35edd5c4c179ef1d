"""Files beside the update target: new files and folders being written, the atomic swap, small state files.

The update target is the executable (a onefile app) or the app's folder (a
onedir app, a macOS ``.app`` bundle); everything here sits beside it, in the
same folder, so that every rename stays on one file system.

Names, all in the target's folder, for a target named ``<name>``:

``.<name>.new.<token>``    a new binary, folder or sidecar being written or claimed;
                           while its owner lives it holds an exclusive ``flock``
                           on it (POSIX), so a later launch can tell a live
                           install from the leftover of a killed one
``.<name>.old``            the previous binary during a Windows swap

The swap on POSIX is one ``os.replace(new, target)`` followed by an ``fsync`` of
the folder: at every instant the target path names a complete executable, the
old one or the new one. Processes still running the old file keep their open
mapping, but a PyInstaller app reads its modules from its executable *by path*,
so the swap is only done when no other instance runs (see
:mod:`pyi_selfupdate._instances`).

A folder is switched with one atomic exchange of the two paths where the
system has one (Linux ``renameat2(RENAME_EXCHANGE)``, glibc >= 2.28; macOS
``renamex_np(RENAME_SWAP)``): at every instant the app's path names the
complete old or the complete new folder. Elsewhere (or on a file system that
refuses the exchange) the old folder is renamed aside and the new one into
place, the old one renamed back if that fails: for that instant the app's path
is absent, never half-written. Either way the parent folder must be writable.

Windows (tested under Wine, ``tests/windows``): a running executable can be renamed
but not deleted or overwritten, so the swap renames the target to
``.<name>.old``, renames the new file into place (renaming ``.old`` back if that
fails), then tries to delete ``.old``; when it cannot (the old program still
runs) the file is hidden and a later launch removes it. During that swap the
target path is briefly absent.

``hashlib`` and ``secrets`` are imported on first use (the usual launch of a
frozen app writes nothing); every install goes through
:mod:`pyi_selfupdate.updater`, which imports them before any swap.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading

from . import _lazy
from ._lazy import log
from .errors import InstallError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from pathlib import Path
    from typing import Any, Dict, Optional, TypeVar, Union

    import hashlib
    import secrets
else:
    hashlib, secrets = _lazy.module("hashlib"), _lazy.module("secrets")

if os.name == "nt":  # pragma: no cover - Windows only
    import ctypes

    fcntl = None
else:
    import fcntl

__all__ = [
    "path", "split", "beside", "new_path", "fsync_dir", "content_sha256",
    "NewFile", "NewFolder", "write_advice", "swap", "exchange", "keep_claim", "release_claim", "remove_quietly",
    "is_abandoned", "stamp", "check_writable", "FolderInUseError", "RUNNING_FOLDER_RENAMES",
    "write_atomic", "open_lock_file", "try_lock", "unlock", "fcntl",
]

if TYPE_CHECKING:  # a name for annotations only (they are strings at run time)
    PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20


def path(value: PathLike) -> "Path":
    """``Path(value)``; pathlib costs the usual launch several ms, so it is imported here, late."""
    from pathlib import Path

    return Path(value)


def split(target: PathLike) -> "tuple[str, str]":
    """The folder (absolute) and the name of ``target``, as strings."""
    full = os.path.abspath(os.fspath(target))
    return os.path.dirname(full), os.path.basename(full)


def beside(target: PathLike, suffix: str) -> str:
    """``.<name><suffix>`` in the folder of ``target``, as a string."""
    folder, name = split(target)
    return os.path.join(folder, f".{name}{suffix}")


def new_path(target: PathLike) -> "Path":
    """A fresh ``.<name>.new.<token>`` beside ``target`` (a file being written or claimed)."""
    return path(beside(target, f".new.{secrets.token_hex(6)}"))


def fsync_dir(folder: PathLike) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened)."""
    if os.name == "nt":  # pragma: no cover - no directory handles to fsync
        return
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def content_sha256(file: PathLike) -> bytes:
    """SHA-256 of a file, or of a folder's canonical archive (:mod:`pyi_selfupdate.archive`)."""
    if os.path.isdir(file):
        from .archive import FolderArchive

        hasher = hashlib.sha256()
        with FolderArchive(file) as archive:
            for block in archive.stream():
                hasher.update(block)
        return hasher.digest()
    hasher = hashlib.sha256()
    with open(file, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            hasher.update(block)
    return hasher.digest()


# ------------------------------------------------------------------ claims

#: Finished or claimed temporary files (path -> the descriptor holding their
#: ``flock``): a live install's files, never a leftover (POSIX only: Windows
#: cannot rename an open file, and an open file cannot be deleted there anyway).
_claims: Dict[str, int] = {}
_claims_mutex = threading.Lock()


def keep_claim(file: PathLike, fd: int) -> None:
    """Keep ``fd`` (holding the ``flock`` of ``file``) open until :func:`release_claim`."""
    if fcntl is None:  # pragma: no cover - Windows
        os.close(fd)
        return
    with _claims_mutex:
        _claims[os.fspath(file)] = fd


def release_claim(file: PathLike) -> None:
    """Close the descriptor :func:`keep_claim` kept for ``file``, if any."""
    with _claims_mutex:
        fd = _claims.pop(os.fspath(file), None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def remove_quietly(file: PathLike) -> bool:
    """Delete ``file``, or a whole folder (and drop its claim); True if it is gone."""
    try:
        if os.path.isdir(file) and not os.path.islink(file):
            import shutil

            shutil.rmtree(file)
        else:
            os.unlink(file)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    release_claim(file)
    return True


def is_abandoned(file: PathLike) -> bool:
    """True if no live process holds ``file`` (its writer's or claimer's ``flock`` is gone)."""
    if fcntl is None:  # pragma: no cover - Windows: an open file cannot be deleted anyway
        # but a folder being filled or claimed can (no flock, and a folder cannot be opened):
        # it is a leftover only once untouched for a long time (claim_staged touches it).
        if os.path.isdir(file):
            import time

            from .settings import LIMITS

            try:
                return time.time() - os.stat(file).st_mtime > LIMITS.orphan_staged_age
            except OSError:
                return False
        return True
    try:
        fd = os.open(os.fspath(file), os.O_RDONLY)
    except OSError:
        return False
    try:
        return try_lock(fd)
    finally:
        os.close(fd)  # releases the probe's flock


# --------------------------------------------------------------- new files


#: The descriptor of a :class:`NewFolder` where folders cannot be opened (Windows).
_NO_FD = -1


class _Claimed:
    """A new ``.<name>.new.<token>`` file or folder beside the target, ``flock``-ed while it is filled.

    Use as a context manager: leaving the block with an exception removes it.
    """

    path: "Path"
    _fd: Optional[int]

    def _claim(self) -> None:
        if fcntl is not None and self._fd is not None and self._fd != _NO_FD:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # pragma: no cover - a fresh entry: nobody else has it
                pass

    def discard(self) -> None:
        """Close (if open) and remove it, a folder with everything in it; never raises."""
        if self._fd is not None and self._fd != _NO_FD:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        remove_quietly(self.path)

    def __enter__(self: "_C") -> "_C":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()


if TYPE_CHECKING:
    _C = TypeVar("_C", bound=_Claimed)


class NewFile(_Claimed):
    """A temporary ``.<name>.new.<token>`` file beside ``target``, being written.

    Created exclusively, with mode 0600 until :meth:`finish` gives it ``mode``
    (default: the target's mode) and fsyncs it. While open, the file is
    ``flock``-ed so a later launch's leftovers cleanup leaves it alone. Use as a
    context manager: leaving the block with an exception deletes the file.
    """

    def __init__(self, target: PathLike, mode: Optional[int] = None) -> None:
        self.target = path(os.path.abspath(os.fspath(target)))
        if mode is None:
            try:
                mode = stat.S_IMODE(os.stat(self.target).st_mode)
            except OSError:
                mode = 0o755
        self.mode = mode
        self.path = new_path(target)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            self._fd: Optional[int] = os.open(str(self.path), flags, 0o600)
        except OSError as exc:
            raise InstallError(
                f"cannot create {self.path} ({exc}); the folder of {self.target} must be "
                "writable, with free space, to install updates"
            ) from None
        self._claim()
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
            raise InstallError(f"cannot write {self.path} ({exc}); {write_advice(exc, self.target)}") from None

    def finish(self) -> "Path":
        """Set the mode and fsync; returns the path (still a temporary name).

        The file stays ``flock``-ed by this process until :func:`swap`, a staging
        or :func:`remove_quietly` is done with it.
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
        keep_claim(self.path, fd)
        self._fd = None
        return self.path



class NewFolder(_Claimed):
    """A new, empty ``.<name>.new.<token>`` folder beside ``target``, to unpack an update into.

    While it is being filled its descriptor holds an exclusive ``flock`` (POSIX),
    so a later launch's leftovers cleanup leaves it alone; :meth:`finish` keeps
    that claim until the folder is swapped in, staged or removed. Use as a
    context manager: leaving the block with an exception removes the folder.
    """

    def __init__(self, target: PathLike) -> None:
        self.target = path(os.path.abspath(os.fspath(target)))
        self.path = new_path(target)
        try:
            os.mkdir(self.path, 0o755)
            # Windows cannot open a folder (EACCES), nor flock: nothing to claim there, and a
            # folder with an open file in it cannot be removed by a cleanup anyway.
            self._fd: Optional[int] = (os.open(str(self.path), os.O_RDONLY) if fcntl is not None
                                       else _NO_FD)
        except OSError as exc:
            raise InstallError(
                f"cannot create {self.path} ({exc}); {write_advice(exc, self.target)}"
            ) from None
        self._claim()

    def advice(self, exc: OSError) -> str:
        """What to do about a failed write into the folder."""
        return write_advice(exc, self.target)

    #: True where :meth:`finish` makes every file written into the folder durable with one call
    #: (Linux ``syncfs``): the writer need not fsync each file (thousands, in a large app).
    syncs_all = sys.platform.startswith("linux")

    def finish(self) -> "Path":
        """The filled folder's path (still a temporary name), claimed until swapped, staged or removed.

        Everything written into it is on disk first: ``syncfs`` of its file system
        on Linux (one call for thousands of files), else its own fsync (the
        writer fsyncs each file).
        """
        assert self._fd is not None, "folder already finished"
        if self.syncs_all:
            _syncfs(self._fd)
        fsync_dir(self.path)
        if self._fd != _NO_FD:
            keep_claim(self.path, self._fd)
        self._fd = None
        return self.path



def _syncfs(fd: int) -> None:
    """Linux ``syncfs(fd)``: flush the file system holding ``fd``; ``os.sync()`` if it is missing."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) == 0:
            return
    except (AttributeError, OSError):
        pass
    os.sync()


def check_writable(target: PathLike) -> None:
    """Raise :class:`InstallError` naming the fix if no update can be written beside ``target``.

    Asked before anything is downloaded: an app installed for all users in a
    folder its users cannot write (``C:\\Program Files\\...``, ``/Applications``,
    ``/opt``) can never install an update, so it must not fetch one.
    """
    folder, name = split(target)
    probe = os.path.join(folder, f".{name}.new.{secrets.token_hex(6)}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # pragma: no cover - the app vanished: the swap says so
            return
        raise InstallError(
            f"cannot install updates of {target}: its folder {folder} is not writable by the user "
            f"running the app ({exc.strerror or exc}). Install the app per user instead (Windows: "
            "under %LOCALAPPDATA%\\Programs, not C:\\Program Files; macOS: ~/Applications; "
            "Linux: ~/.local), or make the folder writable by its users; nothing was downloaded"
        ) from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:  # pragma: no cover - a later launch's cleanup removes it
        pass


def write_advice(exc: OSError, target: "Path") -> str:
    """What the user can do about a failed write beside ``target``."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"free some disk space in {target.parent} (or raise the disk quota) and retry"
    if exc.errno == errno.EFBIG:
        return ("the file size limit of this process is too small for the update; raise it "
                "(`ulimit -f unlimited`) and retry")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"make {target.parent} writable by the user running the app and retry"
    return f"check the disk holding {target.parent} and retry"


def _copy_owner(fd: int, target: "Path") -> None:
    """As root, give the new file the target's owner (a root-run update of a user's app)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        st = os.stat(target)
        os.fchown(fd, st.st_uid, st.st_gid)
    except OSError:
        pass


def write_atomic(file: PathLike, data: bytes, mode: int = 0o644) -> None:
    """Replace the small file ``file`` by ``data``: a fresh temporary name beside it, fsync, rename.

    The temporary name is unpredictable and created with ``O_EXCL`` (and
    ``O_NOFOLLOW`` where there is one), so a planted file or symlink is never
    written through. Raises ``OSError``; the temporary file is removed.
    """
    file = os.fspath(file)
    folder, name = os.path.split(file)
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, file)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def open_lock_file(file: PathLike) -> int:
    """Open (creating it) the lock file ``file`` for reading and writing: mode 0600, no symlink.

    A lock file another user can open is a lock he can hold: a shared lock
    taken through a read-only descriptor would block every install. So it is
    created 0600, an existing one of ours with a looser mode is narrowed to
    0600, and a symlink or anything but a regular file is refused (``OSError``).
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(os.fspath(file), flags, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(file))
        if os.name != "nt" and stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)  # (Windows: modes are not permissions; the folder's ACL rules)
    except BaseException:
        os.close(fd)
        raise
    return fd


def try_lock(fd: int) -> bool:
    """An exclusive lock on the open file ``fd``, without waiting; False if another process holds it.

    POSIX: ``flock`` (closing ``fd`` releases it). Windows: a byte-range lock on
    byte 0 (:func:`unlock` releases it).
    """
    if fcntl is None:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def unlock(fd: int) -> None:
    """Release :func:`try_lock`'s lock before closing ``fd`` (needed on Windows only)."""
    if fcntl is None:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass


# ------------------------------------------------------------------ swap


def swap(new: PathLike, target: PathLike) -> None:
    """Put the finished file ``new`` (same folder) in place of ``target``.

    POSIX: ``os.replace`` then ``fsync`` of the folder; the target path always
    names a complete file. Windows: rename target to ``.<name>.old``,
    rename ``new`` into place, roll back on failure, delete ``.old`` or leave
    it (hidden) for a later cleanup. On failure ``new`` is deleted and
    :class:`InstallError` raised; the target is unchanged.
    """
    new = path(new)
    folder, name = split(target)
    target = path(folder) / name
    if new.is_dir():
        _swap_folder(new, target)
        return
    if os.name == "nt":  # pragma: no cover - Windows only
        _swap_windows(new, target)
        return
    try:
        os.replace(new, target)
    except FileNotFoundError:
        release_claim(new)
        raise InstallError(
            f"the new version {new} vanished before it could replace {target} (another "
            "process removed it); the old version is kept and the update is fetched "
            "again at the next check"
        ) from None
    except OSError as exc:
        remove_quietly(new)
        raise InstallError(
            f"cannot replace {target} ({exc}); the old version is kept. Make the "
            "folder writable by the user running the app"
        ) from None
    release_claim(new)
    stamp(target)
    fsync_dir(folder)


def stamp(target: PathLike) -> None:
    """Set the modification time of the installed ``target`` (its executables) to now.

    The install stamp: where no ``/proc/self/exe`` tells a process that its
    executable was replaced since it started (Windows, macOS), the file's time
    does (:func:`pyi_selfupdate._instances.replaced_since_start`). For a folder,
    the files at its top and in ``Contents/MacOS`` (an ``.app``). Best effort.
    """
    target = os.fspath(target)
    files = [target]
    if os.path.isdir(target):
        files = []
        for folder in (target, os.path.join(target, "Contents", "MacOS")):
            try:
                files += [e.path for e in os.scandir(folder) if e.is_file(follow_symlinks=False)]
            except OSError:
                pass
    for file in files:
        try:
            os.utime(file)
        except OSError:  # pragma: no cover
            pass


def exchange(a: PathLike, b: PathLike) -> bool:
    """Atomically exchange the two paths (both must exist); False where the system cannot.

    Linux: ``renameat2(..., RENAME_EXCHANGE)``; macOS: ``renamex_np(..., RENAME_SWAP)``.
    Raises ``OSError`` for a real failure (permissions, a vanished path).
    """
    import ctypes
    import sys

    a, b = os.fsencode(a), os.fsencode(b)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux"):
            call = libc.renameat2
            args: tuple = (-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
        elif sys.platform == "darwin":  # pragma: no cover - macOS only
            call = libc.renamex_np
            args = (a, b, 2)  # RENAME_SWAP
        else:  # pragma: no cover
            return False
    except (AttributeError, OSError):  # pragma: no cover - an old C library
        return False
    if call(*args) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the file system or kernel cannot exchange
    raise OSError(err, os.strerror(err), os.fsdecode(b))


#: False where a folder cannot be renamed while a program runs from it (Windows): an
#: app folder is then switched after the app exits (:mod:`pyi_selfupdate._winswitch`).
RUNNING_FOLDER_RENAMES = os.name != "nt"


class FolderInUseError(InstallError):
    """Windows: the app folder cannot be renamed while a program runs from it (this one).

    The claimed new folder is left in place for the caller to stage again.
    """


def _swap_folder(new: "Path", target: "Path") -> None:
    """Put the finished folder ``new`` in place of the folder ``target``; remove the old one."""
    aside = new_path(target)
    try:
        if exchange(new, target):
            os.rename(new, aside)  # the old folder, out of the way of a new staging
        else:
            os.rename(target, aside)
            try:
                os.rename(new, target)
            except OSError:
                os.rename(aside, target)
                raise
    except FileNotFoundError:
        release_claim(new)
        raise InstallError(
            f"the new version {new} vanished before it could replace {target} (another process "
            "removed it); the old version is kept and the update is fetched again at the next check"
        ) from None
    except OSError as exc:
        if os.name == "nt" and isinstance(exc, PermissionError):  # pragma: no cover - Windows:
            # a folder in use (the parent is writable: Updater checks that before any download)
            raise FolderInUseError(
                f"cannot switch {target} to the new version while a program runs from it "
                f"({exc}); Windows does not rename a folder in use"
            ) from None
        remove_quietly(new)
        raise InstallError(
            f"cannot switch {target} to the new version ({exc}); the old version is kept. "
            f"Make {target.parent} writable by the user running the app (a folder app is "
            "replaced as a whole, inside its parent folder)"
        ) from None
    release_claim(new)
    stamp(target)
    fsync_dir(target.parent)
    if not remove_quietly(aside):  # pragma: no cover - a later launch's cleanup removes it
        log.info("cannot remove the old version %s yet; a later launch removes it", aside)


def _swap_windows(new: "Path", target: "Path") -> None:  # pragma: no cover - Windows only
    old = path(beside(target, ".old"))
    if old.exists() and not remove_quietly(old):
        old = old.with_name(f"{old.name}.{secrets.token_hex(4)}")
    try:
        os.replace(target, old)
    except OSError as exc:
        remove_quietly(new)
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
        remove_quietly(new)
        raise InstallError(f"cannot put the new version in place ({exc}); the old version is kept") from None
    stamp(target)
    if not remove_quietly(old):
        try:
            ctypes.windll.kernel32.SetFileAttributesW(str(old), 0x2)  # hidden
        except Exception:
            pass
        log.info("%s is still running; it is removed at a later launch", old)
