"""macOS primitives through ctypes (libproc): the processes running a file, start times.

NOT tested on macOS (none can run here): the parsing functions are unit-tested
on recorded data (``tests/client/test_os_select.py``), the calls themselves are
not. The lock is POSIX ``fcntl`` as on Linux.
"""

from __future__ import annotations

import ctypes
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Any, List, Optional, Sequence, Set

__all__ = ["pids_running", "start_time", "parse_pids", "parse_bsdinfo_start", "same_file"]

_PROC_PIDTBSDINFO = 3
#: ``sizeof(struct proc_bsdinfo)``; ``pbi_start_tvsec``/``pbi_start_tvusec`` at 120/128.
BSDINFO_SIZE = 136
_PROC_PIDPATHINFO_MAXSIZE = 4096

_lib: Any = None


def _libproc() -> Any:
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("/usr/lib/libproc.dylib", use_errno=True)
        lib.proc_listallpids.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.proc_pidpath.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
        lib.proc_pidinfo.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint64, ctypes.c_void_p,
                                     ctypes.c_int]
        _lib = lib
    return _lib


def parse_pids(raw: bytes, count: int) -> List[int]:
    """The pids in the buffer ``proc_listallpids`` filled (``count`` native ints), zeros dropped."""
    return [pid for pid in struct.unpack_from(f"={count}i", raw) if pid > 0]


def parse_bsdinfo_start(raw: bytes) -> Optional[float]:
    """``pbi_start_tvsec + pbi_start_tvusec / 1e6`` of a ``struct proc_bsdinfo``, or None."""
    if len(raw) < BSDINFO_SIZE:
        return None
    sec, usec = struct.unpack_from("=QQ", raw, 120)
    return sec + usec / 1e6


def same_file(a: str, b: str, stat=os.stat) -> bool:
    """Whether the paths ``a`` and ``b`` name one file (same device and inode)."""
    try:
        sa, sb = stat(a), stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _all_pids() -> List[int]:
    lib = _libproc()
    n = lib.proc_listallpids(None, 0)
    if n <= 0:
        return []
    size = n + 64  # room for processes started meanwhile
    buf = ctypes.create_string_buffer(size * ctypes.sizeof(ctypes.c_int))
    n = lib.proc_listallpids(buf, len(buf))
    return parse_pids(buf.raw, max(0, min(n, size)))


def _pid_path(pid: int) -> Optional[str]:
    buf = ctypes.create_string_buffer(_PROC_PIDPATHINFO_MAXSIZE)
    n = _libproc().proc_pidpath(pid, buf, len(buf))
    return os.fsdecode(buf.raw[:n]) if n > 0 else None


def pids_running(target: str, exclude: Set[int], pids: Optional[Sequence[int]] = None) -> List[int]:
    """Pids of the processes whose executable is the file ``target``, but those in ``exclude``."""
    found = []
    for pid in (_all_pids() if pids is None else pids):
        if pid in exclude:
            continue
        path = _pid_path(pid)
        if path is not None and same_file(path, target):
            found.append(pid)
    return found


def start_time(pid: int) -> Optional[float]:
    """When ``pid`` started, in seconds since the epoch (``proc_pidinfo``), or None."""
    buf = ctypes.create_string_buffer(BSDINFO_SIZE)
    n = _libproc().proc_pidinfo(pid, _PROC_PIDTBSDINFO, 0, buf, BSDINFO_SIZE)
    return parse_bsdinfo_start(buf.raw[:n]) if n == BSDINFO_SIZE else None
