"""Who else runs the executable: the instance lock, the process scan, the install claim.

A PyInstaller app reads its modules from its executable (onefile) or its folder
(onedir) *by path*, after start-up too: replacing the file under another running
copy crashes that copy at its next import. So an install happens only when no
other copy runs, which three mechanisms tell:

* the instance lock ``.<name>.lock``: every running copy holds it shared for its
  lifetime (:meth:`InstanceLock.hold_shared`), an installer takes it
  exclusively for the swap (:meth:`InstanceLock.exclusive`);
* the process scan (:func:`other_processes`): a copy still starting (the onefile
  bootloader extracting, PyInstaller's own runtime hooks importing) already
  reads the file but holds no lock yet;
* the install claim (:func:`claim_install`): of several launches that find an
  update staged while others run, the one holding the staged sidecar's
  ``flock`` installs, at its exit.

POSIX: ``fcntl`` record locks and ``flock``; the process scan reads Linux's
``/proc`` (elsewhere it finds nothing). Windows (NOT tested): ``msvcrt.locking``
on one byte, exclusive only, so :meth:`InstanceLock.hold_shared` holds nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from typing import Dict, Iterator, List, Optional

from . import _files
from ._files import PathLike, beside
from ._lazy import log
from .errors import InstallError

if os.name == "nt":  # pragma: no cover - Windows only
    import msvcrt
fcntl = _files.fcntl

__all__ = [
    "InstanceLock", "instance_lock", "other_processes", "others_running",
    "format_pids", "start_time", "replaced_since_start", "claim_install",
]


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

    def __init__(self, path: PathLike) -> None:
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


def instance_lock(target: PathLike) -> InstanceLock:
    """The process-wide :class:`InstanceLock` of ``target`` (one object per lock file)."""
    path = beside(os.path.realpath(os.fspath(target)), ".lock")  # a string: the launch path
    key = os.path.normcase(path)
    with _locks_mutex:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = InstanceLock(path)
        return lock


# ------------------------------------------------------------ process scan


def other_processes(target: str) -> List[int]:
    """Pids of other processes running the file ``target`` now (Linux ``/proc``; [] elsewhere).

    The instance lock only covers processes that reached the bootstrap; one that
    is still starting already reads its modules from ``target`` by path. This
    process and its onefile bootloader parent are not counted.
    """
    try:
        st = os.stat(target)
        entries = os.listdir("/proc")
    except OSError:
        return []
    mine = {os.getpid(), os.getppid()}
    found = []
    for entry in entries:
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            exe = os.stat(f"/proc/{entry}/exe")
        except OSError:  # gone, or another user's process
            continue
        if (exe.st_dev, exe.st_ino) == (st.st_dev, st.st_ino):
            found.append(int(entry))
    return found


def format_pids(pids: List[int]) -> str:
    """The first few ``pids`` for a log line."""
    return ", ".join(map(str, pids[:5]))


def others_running(target: str) -> Optional[str]:
    """Why ``target`` must not be replaced now (other processes run it), or None.

    The ``swap_guard`` the bootstrap gives its :class:`~pyi_selfupdate.Updater`.
    """
    others = other_processes(target)
    return f"other processes run it (pids {format_pids(others)})" if others else None


def start_time(pid: int) -> Optional[float]:
    """When process ``pid`` started, in seconds since boot (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def replaced_since_start(target: str) -> bool:
    """True if ``target`` is no longer the file this process was started from (Linux only).

    Another instance may have installed an update between this process's start
    and its taking the shared lock: it then runs an old image while every new
    import would read the new file.
    """
    try:
        running = os.stat("/proc/self/exe")
        on_disk = os.stat(target)
    except OSError:
        return False
    return (running.st_dev, running.st_ino) != (on_disk.st_dev, on_disk.st_ino)


# ------------------------------------------------------------ install claim


def claim_install(sidecar: str) -> Optional[int]:
    """A descriptor holding the staged ``sidecar``'s ``flock`` (the right to install), or None.

    Kept open for the life of the process by its caller; None if another
    process holds it, or nothing is staged.
    """
    if fcntl is None:  # pragma: no cover - Windows: no flock; the instance lock decides
        return -1
    try:
        fd = os.open(sidecar, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
