"""The OS-specific code behind its interfaces: which implementation each OS gets, and the
pure parts of the macOS and Windows ones fed recorded data (those OSes cannot run here;
Windows runs for real under Wine in tests/windows)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import pytest

from pyi_selfupdate import _instances, _osmac, _oswin, _restart


@pytest.mark.parametrize("platform, expected", [
    ("linux", "linux"), ("darwin", "macos"), ("win32", "windows"), ("cygwin", "windows"),
    ("freebsd14", "other"), ("aix", "other"),
])
def test_each_os_gets_its_own_implementation(platform, expected):
    assert _instances.select(platform) == expected


def test_this_machine_uses_the_linux_implementation_and_imports_no_other():
    code = textwrap.dedent("""
        import sys
        from pyi_selfupdate import _instances
        print(_instances.OS, "pyi_selfupdate._oswin" in sys.modules, "pyi_selfupdate._osmac" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["linux", "False", "False"]


def test_proc_checks_are_linux_only(monkeypatch, tmp_path):
    """Elsewhere (Wine maps / as Z:, so /proc/self/exe can open Linux's), /proc is never read."""
    exe = tmp_path / "app"
    exe.write_bytes(b"x")
    monkeypatch.setattr(_instances, "OS", _instances.OTHER)
    opened = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: opened.append(str(p)) or real_stat(p, *a, **k))
    assert _instances.replaced_since_start(str(exe)) is False
    assert _instances.other_processes(str(exe)) == []
    assert _instances.start_time(os.getpid()) is None
    assert not [p for p in opened if p.startswith("/proc")]


def test_linux_start_time_parsing_of_a_recorded_stat_line():
    # /proc/<pid>/stat of a process whose name holds ") (" and spaces: field 22 is the start.
    raw = (b"4242 (evil) (name x) S 1 4242 4242 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 1 0 "
           b"123456 10000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
    assert _instances.parse_proc_stat_start(raw, 100) == 1234.56
    assert _instances.parse_proc_stat_start(b"garbage", 100) is None


def test_macos_pid_list_parsing_of_a_recorded_buffer():
    raw = struct.pack("=6i", 1, 88, 4242, 0, 0, 0)  # proc_listallpids filled 3 of 6 slots
    assert _osmac.parse_pids(raw, 6) == [1, 88, 4242]


def test_macos_start_time_parsing_of_a_recorded_proc_bsdinfo():
    info = bytearray(_osmac.BSDINFO_SIZE)
    struct.pack_into("=II", info, 12, 4242, 1)  # pbi_pid, pbi_ppid
    info[48:55] = b"textsta"  # pbi_comm
    struct.pack_into("=QQ", info, 120, 1764490000, 250000)  # pbi_start_tvsec, _tvusec
    assert _osmac.parse_bsdinfo_start(bytes(info)) == 1764490000.25
    assert _osmac.parse_bsdinfo_start(bytes(info[:100])) is None


def test_macos_process_match_is_by_file_identity(tmp_path):
    exe = tmp_path / "app"
    exe.write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(exe)
    other = tmp_path / "other"
    other.write_bytes(b"x")
    assert _osmac.same_file(str(link), str(exe))
    assert not _osmac.same_file(str(other), str(exe))
    assert not _osmac.same_file(str(tmp_path / "gone"), str(exe))


def test_windows_pure_parts():
    assert _oswin.filetime_to_epoch(116444736000000000) == 0.0
    assert _oswin.filetime_to_epoch(116444736000000000 + 15_000_000) == 1.5
    assert _oswin.same_file_name(r"C:\Users\Me\AppData\Local\Programs\TextStat.EXE",
                                 r"c:\users\me\appdata\local\programs\.\textstat.exe")
    assert not _oswin.same_file_name(r"C:\a\textstat.exe", r"C:\b\textstat.exe")
    assert {_oswin.RUN, _oswin.GATE, _oswin.CLAIM} == {0, 1, 2}


@pytest.mark.parametrize("code, windows, posix", [
    (0, 0, 0), (3, 3, 3), (4294967295, -1, None), (0xC000013A, -1073741510, None),
    (-1, -1, 129), (-9, -9, 137), (255, 255, 255),
])
def test_exit_status_keeps_all_32_bits_on_windows(monkeypatch, code, windows, posix):
    monkeypatch.setattr(os, "name", "nt")
    assert _restart.exit_status(code) == windows
    assert _restart.exit_status(code) & 0xFFFFFFFF == code & 0xFFFFFFFF  # the status Windows reports
    monkeypatch.setattr(os, "name", "posix")
    if posix is not None:
        assert _restart.exit_status(code) == posix


def test_restart_marker_is_read_once_and_removed():
    env = {"PYI_SELFUPDATE_RESTARTED": "120,118", "HOME": "/h"}
    assert _restart.restarted_from(env) == [120, 118]
    assert env == {"HOME": "/h"}
    assert _restart.restarted_from(env) is None
    assert _restart.restarted_from({"PYI_SELFUPDATE_RESTARTED": "x,7"}) == [7]


def test_the_restarted_process_ignores_the_processes_it_restarted_from(monkeypatch):
    monkeypatch.setattr(_instances, "_ignored", set())
    _instances.ignore([os.getppid() + 100000])
    assert os.getppid() + 100000 in _instances._ignored
