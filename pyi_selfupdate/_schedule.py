"""The app's state folder and its check schedule (go-selfupdate's ``cktime`` file, and back-off).

Each app keeps its state in its own folder, ``<folder of the target>/<dir><cmd>/``
(``dir`` is ``update/`` by default, ``cmd`` the app's cmd name), so apps that share
a folder never share a schedule:

``cktime``      the time of the next check, in Go's ``time.RFC3339`` layout, local
                time with its offset (``Z`` for a zero offset), no newline:
                ``2026-11-28T10:00:00+01:00``
``failures``    how many checks failed in a row (absent after a success)
``serial``      the highest signed serial accepted (:mod:`pyi_selfupdate.signing`)
``partial/``    downloads in progress, resumed by the next run
``installed.json``  the update installed last, until the app has read it
``log``, ``log.1``  the last checks, downloads, installs and errors, for support
                (``LIMITS.log_bytes`` at most)

go-selfupdate keeps ``cktime`` at ``<folder>/<dir>cktime`` (``dir`` and ``"cktime"``
concatenated as they are); such a file (and ``<dir>serial``) is still read
while the app's own has not been written yet, and never removed, since another
app of the folder may use it.

Unlike the reference, a missing, unreadable or garbled file means "check now"
(the reference waits 1000 hours). A check is recorded as failed before it is
made (:func:`schedule_attempt`) and as a success once it succeeded, so a check
that never ends (the app exited, the server hangs) counts as a failure: after
``n`` failures in a row the next check waits ``LIMITS.backoff_first * 2**(n-1)``
seconds, jittered down by up to half, and never more than ``check_time``.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Optional
    from ._files import PathLike as _PathLike

from . import _lazy
from ._files import write_atomic
from ._lazy import log
from .settings import LIMITS

if TYPE_CHECKING:
    import datetime as _dt
    import random
    from pathlib import Path
else:  # the usual launch only asks is_due(), answered without datetime
    _dt, random = _lazy.module("datetime"), _lazy.module("random")

__all__ = [
    "state_folder",
    "legacy_file",
    "cktime_file",
    "cktime_path",
    "schedule_attempt",
    "backoff_seconds",
    "read_failures",
    "format_rfc3339",
    "parse_rfc3339",
    "read_next_check",
    "write_next_check",
    "is_due",
    "schedule_success",
    "record_event",
    "write_installed",
    "take_installed",
]


def legacy_file(target: _PathLike, dir: str, name: str) -> str:
    """go-selfupdate's ``<folder of target>/<dir><name>`` (``filepath.Join(exeDir, Dir + name)``)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(target)))
    rel = (dir + name).lstrip("/\\") if os.path.isabs(dir + name) else dir + name
    return os.path.normpath(os.path.join(folder, rel))


def state_folder(target: _PathLike, dir: str, cmd_name: str) -> str:
    """The app's own state folder, ``<folder of target>/<dir><cmd_name>`` (``.<cmd_name>-update``
    for an empty ``dir``, which would name the executable itself)."""
    return legacy_file(target, dir, cmd_name if dir else f".{cmd_name}-update")


def cktime_file(target: _PathLike, dir: str, cmd_name: str) -> str:
    """The schedule to read: the app's own, else go-selfupdate's shared one if it exists."""
    own = os.path.join(state_folder(target, dir, cmd_name), "cktime")
    if not os.path.exists(own):
        legacy = legacy_file(target, dir, "cktime")
        if os.path.exists(legacy):
            return legacy
    return own


def cktime_path(target: _PathLike, dir: str, cmd_name: str) -> "Path":
    """Where the app writes its schedule: ``<state folder>/cktime``."""
    from pathlib import Path

    return Path(state_folder(target, dir, cmd_name)) / "cktime"


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
    now: Optional[_dt.datetime] = None, failures_path: Optional[_PathLike] = None,
) -> _dt.datetime:
    """After a successful check: next = now + check_time h + uniform(0, randomize_time) h; no failures."""
    extra = random.uniform(0, randomize_time) if randomize_time > 0 else 0.0
    when = (now or _now()) + _dt.timedelta(hours=float(check_time) + extra)
    write_next_check(path, when)
    if failures_path is not None:
        try:
            os.unlink(failures_path)
        except OSError:
            pass
    return when


def backoff_seconds(failures: int, check_time: float) -> float:
    """The wait after ``failures`` failed checks in a row (exponential, jittered, capped at ``check_time``)."""
    if failures <= 0:
        return 0.0
    base = LIMITS.backoff_first * 2.0 ** min(failures - 1, 40)
    return min(float(check_time) * 3600.0, base * random.uniform(0.5, 1.0))


def read_failures(path: _PathLike) -> int:
    """The count in a ``failures`` file; 0 when it is missing or unreadable."""
    try:
        with open(path, "rb") as fh:
            return max(0, int(fh.read(32).decode("ascii").strip() or 0))
    except (OSError, ValueError, UnicodeDecodeError):
        return 0


def schedule_attempt(path: _PathLike, failures_path: _PathLike, check_time: float,
                     now: Optional[_dt.datetime] = None) -> _dt.datetime:
    """Before a check: count it as failed until it succeeds, and schedule the next after the back-off.

    Returns the time written. A check that never ends (the process exits, the
    server hangs) thus costs one attempt per back-off period, not one per launch.
    """
    failures = read_failures(failures_path) + 1
    when = (now or _now()) + _dt.timedelta(seconds=backoff_seconds(failures, check_time))
    try:
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(failures_path))), exist_ok=True)
        write_atomic(failures_path, str(failures).encode("ascii"))
    except OSError as exc:
        log.info("cannot record the check in %s (%s)", os.fspath(failures_path), exc)
    write_next_check(path, when)
    return when


def record_event(state_dir: _PathLike, text: str) -> None:
    """Append ``<time> <text>`` to the app's update log (``log``, rotated to ``log.1``); never raises."""
    path = os.path.join(os.fspath(state_dir), "log")
    line = f"{format_rfc3339(_now())} {text}\n".encode("utf-8", "replace")
    try:
        os.makedirs(os.fspath(state_dir), exist_ok=True)
        try:
            if os.path.getsize(path) + len(line) > LIMITS.log_bytes // 2:
                os.replace(path, path + ".1")
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        log.debug("cannot write the update log %s (%s)", path, exc)


def write_installed(state_dir: _PathLike, record: dict) -> None:
    """Remember the update just installed (``installed.json``) for the app to read at its next start."""
    import json

    try:
        os.makedirs(os.fspath(state_dir), exist_ok=True)
        write_atomic(os.path.join(os.fspath(state_dir), "installed.json"),
                     json.dumps(record, sort_keys=True).encode("utf-8"))
    except OSError as exc:
        log.info("cannot record the install in %s (%s)", os.fspath(state_dir), exc)


def take_installed(state_dir: _PathLike, current_version: str) -> Optional[dict]:
    """The update recorded by :func:`write_installed` if it installed ``current_version``; the record
    is removed either way (it is told once, to the first launch of the new version)."""
    path = os.path.join(os.fspath(state_dir), "installed.json")
    if not os.path.exists(path):  # the usual launch: one stat
        return None
    import json

    try:
        with open(path, "rb") as fh:
            record = json.loads(fh.read(1 << 16).decode("utf-8"))
        os.unlink(path)
    except (OSError, ValueError) as exc:
        log.info("cannot read %s (%s)", path, exc)
        return None
    return record if isinstance(record, dict) and record.get("to") == current_version else None
