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

Each concern has one implementation per OS, picked once by :func:`select`:

=========  ==========================  ====================================  ==========================
OS         lock                        processes running a file              start time, replaced check
=========  ==========================  ====================================  ==========================
Linux      ``fcntl.lockf`` (record)    ``/proc/<pid>/exe`` (dev, inode)      ``/proc``; ``/proc/self/exe``
macOS      ``fcntl.lockf`` (record)    libproc ``proc_listallpids`` and      ``proc_pidinfo``; the
           (NOT tested)                ``proc_pidpath`` (:mod:`._osmac`)     install stamp (below)
Windows    ``LockFileEx`` on bytes of  Toolhelp snapshot and                 ``GetProcessTimes``; the
           the lock file (:mod:`._oswin`)  ``QueryFullProcessImageNameW``    install stamp (below)
other      ``fcntl.lockf``             none found                            none
=========  ==========================  ====================================  ==========================

The install stamp: every swap sets the new executable's modification time to
the moment of the swap (:func:`pyi_selfupdate._files.stamp`), so a process
created before it (or whose onefile bootloader was) knows its file was replaced
since, where no ``/proc/self/exe`` can tell.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Dict, Iterable, Iterator, List, Optional, Set
    from ._files import PathLike

from . import _files
from ._files import beside
from ._lazy import log
from .errors import InstallError

fcntl = _files.fcntl

LINUX, MACOS, WINDOWS, OTHER = "linux", "macos", "windows", "other"


def select(platform: str = sys.platform) -> str:
    """Which implementation of the lock, the process scan and the start time serves ``platform``."""
    if platform.startswith("linux"):
        return LINUX
    if platform == "darwin":
        return MACOS
    if platform in ("win32", "cygwin"):
        return WINDOWS
    return OTHER


#: The implementation this process uses.
OS = select()
if OS == WINDOWS:  # pragma: no cover - Windows only (tested under Wine: tests/windows)
    from . import _oswin
elif OS == MACOS:  # pragma: no cover - macOS only
    from . import _osmac

#: Processes never counted as other copies: the processes of this launch that
#: restarted into this one (:func:`pyi_selfupdate._restart.restarted_from`).
_ignored: Set[int] = set()


def parent_pid() -> int:
    """This process's parent. Windows: from a Toolhelp snapshot, not ``os.getppid()``, which
    calls ``PssCaptureSnapshot``: Wine 8 aborts the process there."""
    if OS == WINDOWS:  # pragma: no cover - Windows only
        parent = _oswin.parent_pid(os.getpid())
        return parent if parent is not None else -1
    return os.getppid()


def ignore(pids: Iterable[int]) -> None:
    """Never count ``pids`` as other running copies (this launch's own, waiting for it)."""
    _ignored.update(pids)

__all__ = [
    "InstanceLock", "instance_lock", "other_processes", "others_running",
    "format_pids", "start_time", "replaced_since_start", "claim_install", "select", "ignore", "parent_pid",
    "hold_folder",
    "parse_proc_stat_start", "OS", "LINUX", "MACOS", "WINDOWS", "OTHER",
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

    Windows: ``LockFileEx`` shared/exclusive on byte ``_oswin.RUN`` of the lock
    file, upgrades serialized by byte ``_oswin.GATE`` (Windows cannot convert a
    lock in place); released when the process ends, also when it is terminated.

    The lock file is created mode 0600, never through a symlink
    (:func:`pyi_selfupdate._files.open_lock_file`): another user who could open
    it could hold it shared for ever, and no install would ever happen.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = path
        #: why the lock file cannot be used at all (a folder the user cannot write), or None
        self.unusable: Optional[str] = None
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
                fd = _files.open_lock_file(self.path)
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
        return self._lock_windows(fd, kind, blocking)  # pragma: no cover - Windows only

    def _lock_windows(self, fd: int, kind: str, blocking: bool) -> bool:  # pragma: no cover
        """``LockFileEx``: ``_oswin.RUN`` shared by every copy, exclusive for an install.

        Windows cannot convert a shared lock: an upgrade drops it and retakes
        it, under ``_oswin.GATE`` so that two upgraders never both see the
        other's shared lock gone.
        """
        run, gate = _oswin.RUN, _oswin.GATE
        try:
            if kind == "sh":
                if self._exclusive:  # back from exclusive to shared
                    if not _oswin.lock_byte(fd, gate, True, True):
                        return False
                    try:
                        _oswin.unlock_byte(fd, run)
                        return _oswin.lock_byte(fd, run, False, True)
                    finally:
                        _oswin.unlock_byte(fd, gate)
                return _oswin.lock_byte(fd, run, False, blocking)
            if kind == "un":
                _oswin.unlock_byte(fd, run)
                return True
            if not _oswin.lock_byte(fd, gate, True, blocking):
                return False
            try:
                if self._shared:
                    _oswin.unlock_byte(fd, run)
                if _oswin.lock_byte(fd, run, True, blocking):
                    return True
                if self._shared:  # immediate: only gate holders take RUN exclusively
                    _oswin.lock_byte(fd, run, False, True)
                return False
            finally:
                _oswin.unlock_byte(fd, gate)
        except OSError as exc:
            raise InstallError(f"cannot lock {self.path} ({exc})") from None

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
                    self.unusable = str(exc)
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
                    if was_shared:
                        self._lock("sh", blocking=True)
                    else:
                        self._lock("un", blocking=True)
                    self._exclusive = False


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


def hold_folder(target: str) -> None:
    """Windows: keep the app folder ``target`` in use for the life of this process (no-op elsewhere).

    A folder update on Windows is switched after the app exits, by a process
    that renames the folder once no copy runs from it
    (:mod:`pyi_selfupdate._winswitch`): each running copy holds its folder open,
    so that rename waits for all of them.
    """
    if OS == WINDOWS and os.path.isdir(target):  # pragma: no cover - Windows only
        try:
            _oswin.hold_folder(target)
        except OSError as exc:
            log.info("cannot hold %s open (%s)", target, exc)


# ------------------------------------------------------------ process scan


def other_processes(target: str) -> List[int]:
    """Pids of other processes running the file ``target`` now ([] where the OS has no scan).

    The instance lock only covers processes that reached the bootstrap; one that
    is still starting already reads its modules from ``target`` by path. This
    process, its parent (the onefile bootloader, or whatever started it) and the
    processes this launch restarted from (:func:`ignore`) are not counted.
    """
    mine = {os.getpid(), parent_pid()} | _ignored
    try:
        if OS == LINUX:
            return _linux_pids_running(target, mine)
        if OS == WINDOWS:  # pragma: no cover - Windows only
            return _oswin.pids_running(target, mine)
        if OS == MACOS:  # pragma: no cover - macOS only
            return _osmac.pids_running(target, mine)
    except OSError as exc:  # pragma: no cover - a scan that fails finds nobody; say so
        log.info("cannot list the processes running %s (%s)", target, exc)
    return []


def _linux_pids_running(target: str, mine: Set[int]) -> List[int]:
    try:
        st = os.stat(target)
        entries = os.listdir("/proc")
    except OSError:
        return []
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
    """When process ``pid`` started, in seconds (comparable between processes), or None.

    Linux: since boot (``/proc/<pid>/stat``); Windows and macOS: since the epoch.
    """
    if OS == LINUX:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                return parse_proc_stat_start(fh.read(), os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError):
            return None
    try:
        if OS == WINDOWS:  # pragma: no cover - Windows only
            return _oswin.start_time(pid)
        if OS == MACOS:  # pragma: no cover - macOS only
            return _osmac.start_time(pid)
    except OSError:  # pragma: no cover
        return None
    return None


def parse_proc_stat_start(raw: bytes, ticks_per_second: int) -> Optional[float]:
    """The start time (s since boot) in the contents of a Linux ``/proc/<pid>/stat``."""
    fields = raw.rpartition(b")")[2].split()
    try:
        return int(fields[19]) / ticks_per_second
    except (IndexError, ValueError):
        return None


def replaced_since_start(target: str) -> bool:
    """True if ``target`` is no longer the file this process was started from.

    Another instance may have installed an update between this process's start
    and its taking the shared lock: it then runs an old image while every new
    import would read the new file. Linux: ``/proc/self/exe`` against the file.
    Elsewhere: the file's install stamp (its modification time, set at the swap)
    is later than the creation of this process, or of its parent when the parent
    runs the same file (a onefile bootloader, which unpacked this process's
    libraries from the old file).
    """
    if OS == LINUX:
        try:
            running = os.stat("/proc/self/exe")
            on_disk = os.stat(target)
        except OSError:
            return False
        return (running.st_dev, running.st_ino) != (on_disk.st_dev, on_disk.st_ino)
    if OS == OTHER:
        return False
    try:  # pragma: no cover - Windows (tested under Wine) and macOS
        stamp = os.stat(target).st_mtime
    except OSError:  # pragma: no cover
        return False
    started = [start_time(os.getpid())]  # pragma: no cover
    for parent in _parents_running(target):  # pragma: no cover
        started.append(start_time(parent))
    known = [t for t in started if t is not None]  # pragma: no cover
    return bool(known) and stamp > min(known)  # pragma: no cover


def _parents_running(target: str) -> List[int]:  # pragma: no cover - Windows and macOS
    """This process's parent if it runs ``target`` too (the onefile bootloader), else []."""
    parent = parent_pid()
    if OS == WINDOWS:
        image = _oswin.image_path(parent)
        return [parent] if image is not None and _oswin.same_file_name(image, target) else []
    if OS == MACOS:
        return [parent] if parent in _osmac.pids_running(target, set(), pids=[parent]) else []
    return []


# ------------------------------------------------------------ install claim


def claim_install(sidecar: str) -> Optional[int]:
    """A descriptor holding the staged ``sidecar``'s ``flock`` (the right to install), or None.

    Kept open for the life of the process by its caller; None if another
    process holds it, or nothing is staged.
    """
    if OS == WINDOWS:  # pragma: no cover - Windows only
        return _claim_install_windows(sidecar)
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


def _claim_install_windows(sidecar: str) -> Optional[int]:  # pragma: no cover - Windows only
    """The install claim on Windows: byte ``_oswin.CLAIM`` of the instance lock file.

    Not a lock on the sidecar itself: an open sidecar could not be deleted
    when the install is done. Held until this process ends.
    """
    if not os.path.exists(sidecar):
        return None
    suffix = ".staged.json"
    lock_path = (sidecar[: -len(suffix)] if sidecar.endswith(suffix) else sidecar) + ".lock"
    with _locks_mutex:
        lock = _locks.get(os.path.normcase(lock_path))
    if lock is None:
        lock = InstanceLock(lock_path)
        with _locks_mutex:
            lock = _locks.setdefault(os.path.normcase(lock_path), lock)
    try:
        fd = lock._open()
        return fd if _oswin.lock_byte(fd, _oswin.CLAIM, True, False) else None
    except (OSError, InstallError):
        return None
