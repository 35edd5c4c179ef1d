"""dev and the cktime schedule: when the client checks, and what it writes."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from _server import Fault
from pyi_selfupdate import FetchError, _schedule

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")


def _now():
    return dt.datetime.now().astimezone()


def test_dev_never_updates_and_makes_no_request(make_app, updater_for, server, payload_of):
    target = make_app("1.0")
    updater = updater_for(target, "dev", force_check=True)
    assert updater.update() is None
    assert updater.update_available() is None
    assert updater.background_run() is None
    assert updater.stage() is None
    assert updater.install_staged() is None
    assert server.log == []
    assert target.read_bytes() == payload_of("1.0")
    assert not updater.cktime_path.exists()


def test_state_folder_is_per_app(tmp_path, updater_for):
    target = tmp_path / "myapp"
    updater = updater_for(target, "1.0")
    assert updater.state_dir == tmp_path / "update" / "myapp"  # <dir><cmd_name>, concatenated
    assert updater.cktime_path == tmp_path / "update" / "myapp" / "cktime"
    assert updater.serial_path == tmp_path / "update" / "myapp" / "serial"
    assert updater_for(target, "1.0", dir="my-").cktime_path == tmp_path / "my-myapp" / "cktime"
    assert updater_for(target, "1.0", dir="").cktime_path == tmp_path / ".myapp-update" / "cktime"
    assert updater_for(target, "1.0", cmd_name="other").state_dir == tmp_path / "update" / "other"


def test_two_apps_in_one_folder_keep_separate_schedules(make_app, updater_for, server, install_dir):
    first = make_app("1.4+meta")
    second = install_dir / "tool"
    second.write_bytes(first.read_bytes())
    server.root.joinpath("tool").symlink_to(server.root / "myapp")
    assert updater_for(first, "1.4+meta", check_time=24).background_run() is None  # checks, schedules
    tool = updater_for(second, "1.4+meta", cmd_name="tool", check_time=24)
    assert tool.check_due()  # the first app's check does not stop this one's
    assert tool.background_run() is None
    assert server.log == ["/myapp/linux-amd64.json", "/tool/linux-amd64.json"]


def test_go_selfupdates_shared_cktime_is_read_until_the_app_has_its_own(make_app, updater_for, server):
    target = make_app("1.4+meta")
    legacy = target.parent / "update" / "cktime"
    _schedule.write_next_check(legacy, _now() + dt.timedelta(hours=5))
    updater = updater_for(target, "1.4+meta", check_time=24)
    assert not updater.check_due()  # the go-selfupdate schedule still holds
    _schedule.write_next_check(legacy, _now() - dt.timedelta(minutes=1))
    assert updater.background_run() is None and updater.cktime_path.is_file()
    _schedule.write_next_check(legacy, _now() - dt.timedelta(hours=5))
    assert not updater.check_due()  # its own schedule now; the shared file is left for others
    assert legacy.is_file()


def test_failures_back_off_exponentially_up_to_check_time(make_app, updater_for, server):
    target = make_app("1.0")
    server.faults["myapp/linux-amd64.json"] = Fault(status=500)
    updater = updater_for(target, "1.0", check_time=0.5)  # 30 min between checks at most
    waits = []
    for _ in range(8):
        before = _now()
        with pytest.raises(FetchError):
            updater.update()
        waits.append((_schedule.read_next_check(updater.cktime_path) - before).total_seconds())
        assert not updater.check_due()  # no second attempt at the next launch
    assert _schedule.read_failures(updater.failures_path) == 8
    assert 25 <= waits[0] <= 61 and 50 <= waits[1] <= 121  # 60 s, then 120 s, jittered down to half
    assert all(w <= 1801 for w in waits) and waits[-1] >= 899  # capped at check_time (1800 s)
    del server.faults["myapp/linux-amd64.json"]
    assert updater.update().installed
    assert not updater.failures_path.exists()


def test_success_writes_next_check_in_go_format(make_app, updater_for, payload_of):
    target = make_app("1.0")
    updater = updater_for(target, "1.0", check_time=24, randomize_time=2)
    before = _now()
    assert updater.background_run().installed
    text = updater.cktime_path.read_text()
    assert RFC3339.match(text), text  # no newline, seconds, offset or Z
    when = _schedule.parse_rfc3339(text)
    low = before + dt.timedelta(hours=24) - dt.timedelta(seconds=2)
    high = _now() + dt.timedelta(hours=26) + dt.timedelta(seconds=2)
    assert low <= when <= high
    assert target.read_bytes() == payload_of("1.4+meta")


def test_future_cktime_means_no_request(make_app, updater_for, server):
    target = make_app("1.0")
    updater = updater_for(target, "1.0", check_time=24)
    _schedule.write_next_check(updater.cktime_path, _now() + dt.timedelta(hours=5))
    assert not updater.check_due()
    assert updater.background_run() is None
    assert server.log == []


def test_force_check_overrides_schedule(make_app, updater_for, server):
    target = make_app("1.0")
    updater = updater_for(target, "1.0", check_time=24, force_check=True)
    _schedule.write_next_check(updater.cktime_path, _now() + dt.timedelta(hours=5))
    assert updater.background_run().installed
    assert server.log[0] == "/myapp/linux-amd64.json"


def test_past_cktime_checks(make_app, updater_for, server):
    target = make_app("1.0")
    updater = updater_for(target, "1.0", check_time=24)
    _schedule.write_next_check(updater.cktime_path, _now() - dt.timedelta(minutes=1))
    assert updater.background_run().installed
    assert len(server.log) == 2


@pytest.mark.parametrize("content", [b"garbage", b"", b"\xff\xfe\x00", b"2026-13-45T99:00:00Z",
                                     b"1000h"])
def test_unreadable_cktime_checks_now(content, make_app, updater_for, server):
    target = make_app("1.0")
    updater = updater_for(target, "1.0", check_time=24)
    updater.cktime_path.parent.mkdir(parents=True, exist_ok=True)
    updater.cktime_path.write_bytes(content)
    assert updater.check_due()
    assert updater.background_run().installed
    assert server.log[0] == "/myapp/linux-amd64.json"


def test_cktime_folder_is_created(make_app, updater_for):
    target = make_app("1.0")
    updater = updater_for(target, "1.0", dir="deep/er/")
    updater.background_run()
    assert (target.parent / "deep" / "er" / "myapp" / "cktime").is_file()


def test_failure_does_not_block_for_days(make_app, updater_for, server, payload_of):
    target = make_app("1.0")
    server.faults["myapp/linux-amd64.json"] = Fault(status=500)
    updater = updater_for(target, "1.0", check_time=72)
    with pytest.raises(FetchError):
        updater.background_run()
    when = _schedule.read_next_check(updater.cktime_path)
    assert when is not None and when <= _now() + dt.timedelta(hours=1, seconds=5)
    assert target.read_bytes() == payload_of("1.0")
    # the server heals; once the retry time has come, the next run succeeds
    del server.faults["myapp/linux-amd64.json"]
    _schedule.write_next_check(updater.cktime_path, when - dt.timedelta(hours=2))
    assert updater.background_run().installed


def test_zero_check_time_checks_every_run(make_app, updater_for, server):
    target = make_app("1.4+meta")
    updater = updater_for(target, "1.4+meta", check_time=0)
    assert updater.background_run() is None
    assert updater.background_run() is None
    assert server.log == ["/myapp/linux-amd64.json"] * 2


def test_format_rfc3339_like_go():
    utc = dt.datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
    assert _schedule.format_rfc3339(utc) == "2026-11-28T10:00:00Z"
    cet = dt.datetime(2026, 11, 28, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert _schedule.format_rfc3339(cet) == "2026-11-28T10:00:00+01:00"
    ist = dt.datetime(2026, 11, 28, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30)))
    assert _schedule.format_rfc3339(ist) == "2026-11-28T10:00:00-03:30"


@pytest.mark.parametrize("text,expected", [
    ("2026-11-28T10:00:00+01:00", dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.timezone.utc)),
    ("2026-11-28T10:00:00Z", dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc)),
    ("2026-11-28T10:00:00.5Z", dt.datetime(2026, 11, 28, 10, 0, 0, 500000, tzinfo=dt.timezone.utc)),
])
def test_parse_rfc3339(text, expected):
    assert _schedule.parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["", "2026-11-28", "2026-11-28 10:00:00", "tomorrow",
                                  "2026-11-28T10:00:00", "2026-11-28T10:00:00+0100"])
def test_parse_rfc3339_rejects(text):
    assert _schedule.parse_rfc3339(text) is None


def test_is_due_reads_go_layout_without_datetime_like_the_full_parser():
    # is_due() answers a cktime in Go's layout without datetime (the usual launch
    # of a frozen app); it must mean the same instant as parse_rfc3339().
    import random as _random

    rng = _random.Random(3)
    texts = ["2026-11-28T10:00:00+01:00", "1970-01-01T00:00:00Z", "2000-02-29T23:59:59-23:59",
             "2099-12-31T23:59:59z", "0001-01-01T00:00:00+00:30", "9999-12-31T23:59:59Z",
             "2024-02-29t12:00:00+05:45", " 2026-01-01T00:00:00Z\n"]
    for _ in range(3000):
        text = f"{rng.randint(1, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}T" \
               f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        k = rng.randint(0, 2)
        text += "Z" if k == 0 else f"{'+-'[k - 1]}{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        texts.append(text)
    checked = 0
    for text in texts:
        full = _schedule.parse_rfc3339(text)
        fast = _schedule._go_layout_epoch(text)
        if full is None:
            assert fast is None, text
            continue
        try:
            expected = full.timestamp()
        except (OverflowError, ValueError):  # out of the platform's range: nothing to compare
            continue
        assert fast == expected, text
        checked += 1
    assert checked > 2500
    for bad in ["2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z",
                "2026-01-01T00:60:00Z", "2026-01-01T00:00:60Z", "2026-01-01T00:00:00+24:00",
                "0000-01-01T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00.5Z",
                "garbage", "", "2026-01-01T00:00:00+0100"]:
        assert _schedule._go_layout_epoch(bad) is None, bad


@pytest.mark.parametrize("delta, due", [(-3600, True), (-1, True), (3600, False), (86400 * 400, False)])
def test_is_due_without_now_follows_the_clock(tmp_path, delta, due):
    path = tmp_path / "cktime"
    for offset in (dt.timezone.utc, dt.timezone(dt.timedelta(hours=-7, minutes=-30))):
        when = dt.datetime.now(offset) + dt.timedelta(seconds=delta)
        path.write_text(_schedule.format_rfc3339(when))
        assert _schedule.is_due(path) is due
        assert _schedule.is_due(path, now=_now()) is due
