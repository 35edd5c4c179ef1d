"""The check schedule: go-selfupdate's ``cktime`` file.

The file lives at ``<folder of the target>/<dir>cktime`` (``dir`` and
``"cktime"`` concatenated as they are, as go-selfupdate does) and holds the
time of the next check in Go's ``time.RFC3339`` layout, local time with its
offset (``Z`` for a zero offset), no newline: ``2026-11-28T10:00:00+01:00``.

Unlike the reference, a missing, unreadable or garbled file means "check now"
(the reference waits 1000 hours), and a failed check schedules a retry soon
(:func:`retry_delay_hours`) instead of the full interval.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import random
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "cktime_path",
    "format_rfc3339",
    "parse_rfc3339",
    "read_next_check",
    "write_next_check",
    "is_due",
    "schedule_success",
    "schedule_retry",
    "retry_delay_hours",
]

log = logging.getLogger("pyi_selfupdate")

_PathLike = Union[str, "os.PathLike[str]"]

#: Longest wait after a failed check, in hours.
RETRY_HOURS = 1.0


def cktime_path(target: _PathLike, dir: str) -> Path:
    """``<folder of target>/<dir>cktime`` (go: ``filepath.Join(exeDir, Dir + "cktime")``)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(target)))
    rel = (dir + "cktime").lstrip("/\\") if os.path.isabs(dir + "cktime") else dir + "cktime"
    return Path(os.path.normpath(os.path.join(folder, rel)))


def _now() -> _dt.datetime:
    return _dt.datetime.now().astimezone()


def format_rfc3339(when: _dt.datetime) -> str:
    """Go's ``time.RFC3339`` rendering: seconds precision, ``Z`` for a zero offset."""
    if when.tzinfo is None:
        when = when.astimezone()
    when = when.replace(microsecond=0)
    offset = when.utcoffset() or _dt.timedelta(0)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    if offset == _dt.timedelta(0):
        return stamp + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{stamp}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse_rfc3339(text: str) -> Optional[_dt.datetime]:
    """Parse an RFC 3339 timestamp (fractional seconds allowed); None if it is not one."""
    text = text.strip()
    if len(text) < 20 or text[10] not in "Tt":
        return None
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    main, offset = text[:-6], text[-6:]
    if offset[0] not in "+-" or offset[3] != ":":
        return None
    if "." in main:  # Go writes none, but accepts any number of digits
        head, frac = main.split(".", 1)
        if not frac.isdigit():
            return None
        main = f"{head}.{(frac + '000000')[:6]}"
    try:
        return _dt.datetime.fromisoformat(main + offset)
    except ValueError:
        return None


def read_next_check(path: _PathLike) -> Optional[_dt.datetime]:
    """The next check time written in ``path``; None if missing, unreadable or garbled."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(256)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s); checking for updates now", path, exc)
        return None
    try:
        when = parse_rfc3339(raw.decode("ascii"))
    except UnicodeDecodeError:
        when = None
    if when is None:
        log.warning("%s does not hold an RFC 3339 time; checking for updates now", path)
    return when


def is_due(path: _PathLike, now: Optional[_dt.datetime] = None) -> bool:
    """True if no valid next-check time is recorded, or it has come."""
    when = read_next_check(path)
    if when is None:
        return True
    return (now or _now()) >= when


def write_next_check(path: _PathLike, when: _dt.datetime) -> bool:
    """Write ``when`` to ``path`` (folders created, atomic replace); False if it failed.

    The schedule is advisory: failing to write it is logged, never raised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(format_rfc3339(when).encode("ascii"))
        os.replace(tmp, path)
        return True
    except OSError as exc:
        log.warning("cannot write the update schedule %s (%s); the next launch checks again",
                    path, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def schedule_success(
    path: _PathLike, check_time: float, randomize_time: float,
    now: Optional[_dt.datetime] = None,
) -> _dt.datetime:
    """After a successful check: next = now + check_time h + uniform(0, randomize_time) h."""
    extra = random.uniform(0, randomize_time) if randomize_time > 0 else 0.0
    when = (now or _now()) + _dt.timedelta(hours=float(check_time) + extra)
    write_next_check(path, when)
    return when


def retry_delay_hours(check_time: float) -> float:
    """Hours to wait after a failed check: ``min(1, check_time)``."""
    return max(0.0, min(RETRY_HOURS, float(check_time)))


def schedule_retry(
    path: _PathLike, check_time: float, now: Optional[_dt.datetime] = None
) -> _dt.datetime:
    """After a failed check: retry in :func:`retry_delay_hours`, not the full interval."""
    when = (now or _now()) + _dt.timedelta(hours=retry_delay_hours(check_time))
    write_next_check(path, when)
    return when
