"""Windows primitives through ctypes: byte-range locks, the processes running a file, start times.

Imported on Windows only (by :mod:`pyi_selfupdate._instances`); tested under Wine
by the Windows tier (``tests/windows``), with Windows processes.

Locks are ``LockFileEx`` on single bytes of the instance lock file. Windows
cannot convert a shared lock into an exclusive one: the holder must unlock
first, and in that instant two upgraders could each see the other's lock gone.
So an upgrade happens only while holding :data:`GATE` exclusively (upgraders
one at a time); only gate holders ever take :data:`RUN` exclusively.
"""

from __future__ import annotations

import ctypes
import ntpath
import os
from ctypes import wintypes

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Any, List, Optional, Set

__all__ = ["RUN", "GATE", "CLAIM", "lock_byte", "unlock_byte", "pids_running", "start_time",
           "image_path", "hold_folder"]

#: The byte every running copy holds shared; an installer holds it exclusively.
RUN = 0
#: The byte an upgrade from shared to exclusive holds exclusively (see the module's doc).
GATE = 1
#: The byte the launch that installs a staged update at its exit holds (the install claim).
CLAIM = 2

_LOCKFILE_FAIL_IMMEDIATELY = 0x1
_LOCKFILE_EXCLUSIVE_LOCK = 0x2
_ERROR_LOCK_VIOLATION = 33
_ERROR_IO_PENDING = 997
_TH32CS_SNAPPROCESS = 0x2
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value
_FILE_FLAG_BACKUP_SEMANTICS = 0x02000000  # what opens a folder

class _OVERLAPPED(ctypes.Structure):
    _fields_ = [("Internal", ctypes.c_void_p), ("InternalHigh", ctypes.c_void_p),
                ("Offset", wintypes.DWORD), ("OffsetHigh", wintypes.DWORD),
                ("hEvent", wintypes.HANDLE)]


class _PROCESSENTRY32W(ctypes.Structure):
    _fields_ = [("dwSize", wintypes.DWORD), ("cntUsage", wintypes.DWORD),
                ("th32ProcessID", wintypes.DWORD), ("th32DefaultHeapID", ctypes.c_void_p),
                ("th32ModuleID", wintypes.DWORD), ("cntThreads", wintypes.DWORD),
                ("th32ParentProcessID", wintypes.DWORD), ("pcPriClassBase", wintypes.LONG),
                ("dwFlags", wintypes.DWORD), ("szExeFile", wintypes.WCHAR * 260)]


_k32: Any = None


def _kernel32() -> Any:
    """kernel32 with the prototypes used here (loaded on first use: Windows only)."""
    global _k32
    if _k32 is None:
        k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        k32.LockFileEx.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.DWORD, wintypes.DWORD,
                                    wintypes.DWORD, ctypes.POINTER(_OVERLAPPED)]
        k32.LockFileEx.restype = wintypes.BOOL
        k32.UnlockFileEx.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.DWORD, wintypes.DWORD,
                                      ctypes.POINTER(_OVERLAPPED)]
        k32.UnlockFileEx.restype = wintypes.BOOL
        k32.CreateToolhelp32Snapshot.argtypes = [wintypes.DWORD, wintypes.DWORD]
        k32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
        k32.Process32FirstW.argtypes = [wintypes.HANDLE, ctypes.POINTER(_PROCESSENTRY32W)]
        k32.Process32NextW.argtypes = [wintypes.HANDLE, ctypes.POINTER(_PROCESSENTRY32W)]
        k32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        k32.OpenProcess.restype = wintypes.HANDLE
        k32.QueryFullProcessImageNameW.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.LPWSTR,
                                                    ctypes.POINTER(wintypes.DWORD)]
        k32.GetProcessTimes.argtypes = [wintypes.HANDLE] + [ctypes.POINTER(wintypes.FILETIME)] * 4
        k32.CloseHandle.argtypes = [wintypes.HANDLE]
        _k32 = k32
    return _k32


def _overlapped(offset: int) -> _OVERLAPPED:
    ov = _OVERLAPPED()
    ov.Offset = offset
    return ov


def lock_byte(fd: int, offset: int, exclusive: bool, blocking: bool) -> bool:
    """Lock byte ``offset`` of the open file ``fd``; False if another process holds it (non-blocking)."""
    flags = (_LOCKFILE_EXCLUSIVE_LOCK if exclusive else 0) | (0 if blocking else _LOCKFILE_FAIL_IMMEDIATELY)
    ov = _overlapped(offset)
    import msvcrt

    if _kernel32().LockFileEx(msvcrt.get_osfhandle(fd), flags, 0, 1, 0, ctypes.byref(ov)):
        return True
    err = ctypes.get_last_error()
    if err in (_ERROR_LOCK_VIOLATION, _ERROR_IO_PENDING):
        return False
    raise ctypes.WinError(err)


def unlock_byte(fd: int, offset: int) -> None:
    """Unlock byte ``offset`` of ``fd`` (no error if it was not locked)."""
    ov = _overlapped(offset)
    import msvcrt

    _kernel32().UnlockFileEx(msvcrt.get_osfhandle(fd), 0, 1, 0, ctypes.byref(ov))


def image_path(pid: int) -> Optional[str]:
    """The full path of the executable process ``pid`` runs, or None (gone, not ours to ask)."""
    k32 = _kernel32()
    handle = k32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return None
    try:
        buf = ctypes.create_unicode_buffer(32768)
        size = wintypes.DWORD(len(buf))
        if not k32.QueryFullProcessImageNameW(handle, 0, buf, ctypes.byref(size)):
            return None
        return buf.value
    finally:
        k32.CloseHandle(handle)


def _processes() -> List[tuple]:
    """``(pid, parent pid, executable base name)`` of every process (a Toolhelp snapshot)."""
    k32 = _kernel32()
    snap = k32.CreateToolhelp32Snapshot(_TH32CS_SNAPPROCESS, 0)
    if not snap or snap == _INVALID_HANDLE_VALUE:
        return []
    found = []
    try:
        entry = _PROCESSENTRY32W()
        entry.dwSize = ctypes.sizeof(entry)
        ok = k32.Process32FirstW(snap, ctypes.byref(entry))
        while ok:
            found.append((entry.th32ProcessID, entry.th32ParentProcessID, entry.szExeFile))
            ok = k32.Process32NextW(snap, ctypes.byref(entry))
    finally:
        k32.CloseHandle(snap)
    return found


def same_file_name(a: str, b: str) -> bool:
    """Whether two Windows paths name the same file (case-insensitive, normalized)."""
    return ntpath.normcase(ntpath.normpath(a)) == ntpath.normcase(ntpath.normpath(b))


def pids_running(target: str, exclude: Set[int]) -> List[int]:
    """Pids of the processes whose executable is ``target``, but those in ``exclude``."""
    base = ntpath.basename(target).lower()
    full = os.path.abspath(target)
    found = []
    for pid, _, exe in _processes():
        if pid in exclude or exe.lower() != base:  # the name first: no handle for others
            continue
        image = image_path(pid)
        if image is not None and same_file_name(image, full):
            found.append(pid)
    return found


def parent_pid(pid: int) -> Optional[int]:
    """The parent of ``pid`` (from the snapshot), or None."""
    for p, parent, _ in _processes():
        if p == pid:
            return parent
    return None


def start_time(pid: int) -> Optional[float]:
    """When process ``pid`` was created, in seconds since the epoch (``GetProcessTimes``), or None."""
    k32 = _kernel32()
    handle = k32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return None
    try:
        times = [wintypes.FILETIME() for _ in range(4)]
        if not k32.GetProcessTimes(handle, *(ctypes.byref(t) for t in times)):
            return None
        created = times[0]
        return filetime_to_epoch((created.dwHighDateTime << 32) | created.dwLowDateTime)
    finally:
        k32.CloseHandle(handle)


def filetime_to_epoch(filetime: int) -> float:
    """A FILETIME (100 ns since 1601-01-01 UTC) in seconds since 1970-01-01 UTC."""
    return (filetime - 116444736000000000) / 1e7


_held: List[int] = []


def hold_folder(folder: str) -> None:
    """Keep ``folder`` open, without delete sharing, until this process ends.

    The handle a working directory is: while it is open, nobody can rename or
    delete the folder (the folder switch of :mod:`pyi_selfupdate._winswitch`
    waits for it). Windows refuses to rename a folder a program runs from in
    any case; Wine does not, hence the explicit handle. ``_winapi`` is built
    into CPython on Windows: no import cost at launch.
    """
    import _winapi  # type: ignore[import-not-found]

    share = 0x1 | 0x2  # FILE_SHARE_READ | FILE_SHARE_WRITE, not FILE_SHARE_DELETE
    _held.append(_winapi.CreateFile(folder, _winapi.GENERIC_READ, share, 0, _winapi.OPEN_EXISTING,
                                    _FILE_FLAG_BACKUP_SEMANTICS, 0))
