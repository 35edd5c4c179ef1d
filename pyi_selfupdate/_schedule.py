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

import os
import time
from typing import TYPE_CHECKING, Optional

from . import _lazy
from ._files import PathLike as _PathLike, write_atomic
from ._lazy import log
from .settings import LIMITS

if TYPE_CHECKING:
    import datetime as _dt
    import random
    from pathlib import Path
else:  # the usual launch only asks is_due(), answered without datetime
    _dt, random = _lazy.module("datetime"), _lazy.module("random")

__all__ = [
    "cktime_file",
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


def cktime_file(target: _PathLike, dir: str) -> str:
    """``<folder of target>/<dir>cktime`` (go: ``filepath.Join(exeDir, Dir + "cktime")``)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(target)))
    rel = (dir + "cktime").lstrip("/\\") if os.path.isabs(dir + "cktime") else dir + "cktime"
    return os.path.normpath(os.path.join(folder, rel))


def cktime_path(target: _PathLike, dir: str) -> "Path":
    """:func:`cktime_file` as a Path."""
    from pathlib import Path

    return Path(cktime_file(target, dir))


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


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _go_layout_epoch(text: str) -> Optional[float]:
    """Seconds since the epoch of a time in exactly Go's layout, without :mod:`datetime`.

    Only ``YYYY-MM-DDTHH:MM:SS`` followed by ``Z`` or ``+HH:MM``/``-HH:MM`` (what
    go-selfupdate and :func:`format_rfc3339` write) with valid fields; None for
    anything else, which :func:`parse_rfc3339` then judges.
    """
    text = text.strip()
    if len(text) == 20 and text[19] in "Zz":
        offset = 0
    elif len(text) == 25 and text[19] in "+-" and text[22] == ":":
        hours, minutes = text[20:22], text[23:25]
        if not (hours.isdigit() and minutes.isdigit()) or int(hours) > 23 or int(minutes) > 59:
            return None
        offset = (int(hours) * 60 + int(minutes)) * 60 * (1 if text[19] == "+" else -1)
    else:
        return None
    if (text[4], text[7], text[10], text[13], text[16]) not in (("-", "-", "T", ":", ":"),
                                                               ("-", "-", "t", ":", ":")):
        return None
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    if not all(f.isdigit() for f in fields):
        return None
    year, month, day, hour, minute, second = map(int, fields)
    if year < 1 or not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 59:
        return None
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _MONTH_DAYS[month - 1] + leap:
        return None
    return _days_from_civil(year, month, day) * 86400.0 + hour * 3600 + minute * 60 + second - offset


def is_due(path: _PathLike, now: Optional[_dt.datetime] = None) -> bool:
    """True if no valid next-check time is recorded, or it has come."""
    if now is None:
        # The usual launch of a frozen app asks this: a file in Go's layout is
        # answered without importing datetime. Anything else takes the full path.
        try:
            with open(path, "rb") as fh:
                stamp = _go_layout_epoch(fh.read(256).decode("ascii"))
        except (OSError, UnicodeDecodeError):
            stamp = None
        if stamp is not None:
            return time.time() >= stamp
    when = read_next_check(path)
    if when is None:
        return True
    return (now or _now()) >= when


def write_next_check(path: _PathLike, when: _dt.datetime) -> bool:
    """Write ``when`` to ``path`` (folders created, atomic replace); False if it failed.

    The schedule is advisory: failing to write it is logged, never raised.
    """
    try:
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        write_atomic(path, format_rfc3339(when).encode("ascii"))
        return True
    except OSError as exc:
        log.warning("cannot write the update schedule %s (%s); the next launch checks again",
                    os.fspath(path), exc)
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
    return max(0.0, min(LIMITS.retry_hours, float(check_time)))


def schedule_retry(
    path: _PathLike, check_time: float, now: Optional[_dt.datetime] = None
) -> _dt.datetime:
    """After a failed check: retry in :func:`retry_delay_hours`, not the full interval."""
    when = (now or _now()) + _dt.timedelta(hours=retry_delay_hours(check_time))
    write_next_check(path, when)
    return when
