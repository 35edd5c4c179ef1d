"""``pyi-selfupdate release`` as a user runs it: a real subprocess, its output and exit status."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyi_selfupdate.protocol import decode_manifest

from _installed import python_env


def _run(*args: str, extra_path: str = "", cwd: Path = None) -> subprocess.CompletedProcess:
    env = python_env(first=[extra_path] if extra_path else [])
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", "release", *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_release_end_to_end_with_options_after_the_positionals(tmp_path, go_vectors):
    out = tmp_path / "public"
    single = go_vectors / "payloads" / "single"
    for v in ("1.0", "1.1", "1.2"):
        # flags after PATH VERSION are honoured (the Go CLI silently ignores them)
        proc = _run(str(single / v), v, "-o", str(out), "--platform", "linux-amd64", "--cmd-name", "myapp")
        assert proc.returncode == 0, proc.stderr
    assert decode_manifest((out / "myapp" / "linux-amd64.json").read_bytes()).version == "1.2"
    for rel in ("myapp/1.0/1.2/linux-amd64", "myapp/1.1/1.2/linux-amd64"):
        assert (out / rel).read_bytes() == (go_vectors / "public" / rel).read_bytes()
    # progress on stderr, one line per slow step
    assert "compressing myapp 1.2 linux-amd64" in proc.stderr
    assert "diffing myapp 1.2 linux-amd64 against 2 earlier version(s): 1.0, 1.1" in proc.stderr
    assert "diffed 1.0 -> 1.2 linux-amd64: 650 B" in proc.stderr
    assert "published myapp/linux-amd64.json: 1.1 -> 1.2" in proc.stderr
    # the summary table on stdout: the full binary and each patch with its size and ratio
    table = proc.stdout.splitlines()
    assert table[0].split() == ["cmd", "platform", "from", "to", "size", "gz", "/", "patch", "ratio", "file"]
    rows = [line.split() for line in table[2:-1]]
    assert rows[0][:4] == ["myapp", "linux-amd64", "(full)", "1.2"]
    assert rows[1][:6] == ["myapp", "linux-amd64", "1.0", "1.2", "650", "B"]
    assert rows[2][:6] == ["myapp", "linux-amd64", "1.1", "1.2", "607", "B"]
    gz = (out / "myapp" / "1.2" / "linux-amd64.gz").stat().st_size
    assert rows[1][6] == f"{650 / gz * 100:.2f}%"  # two significant digits (0.92%, never 0.9% or 0.0%)
    assert rows[0][-1] == rows[1][-1] == "written"  # the labelled last column: written now, or reused
    assert table[-1].startswith("released 1.2 for 1 platform(s), 2 patch(es)")


def test_release_default_output_and_a_rerun_reports_reuse(tmp_path, go_vectors):
    src = go_vectors / "payloads" / "multi"
    for v in ("1.0", "2.0", "2.0"):
        proc = _run("--cmd-name", "multi", str(src / v), v, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "public" / "multi"  # OUT defaults to ./public
    assert decode_manifest((out / "windows-amd64.json").read_bytes()).version == "2.0"
    assert gzip.decompress((out / "2.0" / "windows-amd64.gz").read_bytes()) == \
        (src / "2.0" / "windows-amd64").read_bytes()
    assert proc.stdout.count("reused") == 6  # three .gz and three patches
    assert "diffing" not in proc.stderr


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyi-selfupdate: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_release_errors_are_one_line_and_exit_2(tmp_path, go_vectors):
    out = tmp_path / "public"
    line = _error_line(_run(str(tmp_path / "missing"), "1.0", "-o", str(out)))
    assert "does not exist" in line
    line = _error_line(_run(str(go_vectors / "payloads" / "multi" / "1.0"), "1.0", "-o", str(out)))
    assert "--cmd-name" in line
    line = _error_line(_run(str(go_vectors / "payloads" / "single" / "1.0"), "1.0", "--platform", "linux/amd64",
                            "-o", str(out)))
    assert "unknown platform" in line
    assert not out.exists()


def test_release_cli_loads_entry_point_plugins(tmp_path, go_vectors):
    site = tmp_path / "site"
    site.mkdir()
    (site / "cli_field_plugin.py").write_text(
        "from pyi_selfupdate.release import hookimpl\n"
        "@hookimpl\n"
        "def release_manifest_fields(context, artifact, manifest):\n"
        "    return {'Size': artifact.size}\n"
    )
    info = site / "cli_field_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cli-field-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pyi_selfupdate]\nsize = cli_field_plugin\n")
    out = tmp_path / "public"
    payload = go_vectors / "payloads" / "single" / "1.0"
    proc = _run("-o", str(out), "--platform", "linux-amd64", str(payload), "1.0", extra_path=str(site))
    assert proc.returncode == 0, proc.stderr
    m = decode_manifest((out / "1.0" / "linux-amd64.json").read_bytes())
    assert m.extra == {"Size": payload.stat().st_size}


def test_kill_9_mid_release_then_the_same_command_completes_it(tmp_path):
    """A real kill -9 while the CLI is diffing: manifests only point at complete files."""
    import hashlib

    base = bytearray(os.urandom(3_000_000))
    builds = {}
    for i, v in enumerate(("1.0", "1.1", "1.2")):
        data = bytearray(base)
        data[100_000 + i: 100_010 + i] = v.encode().ljust(10, b"-")
        builds[v] = tmp_path / "builds" / v / "app"
        builds[v].parent.mkdir(parents=True)
        builds[v].write_bytes(bytes(data))
    out = tmp_path / "public"
    common = ["-o", str(out), "--platform", "linux-amd64"]
    for v in ("1.0", "1.1"):
        assert _run(*common, str(builds[v]), v).returncode == 0
    env = python_env()
    proc = subprocess.Popen([sys.executable, "-m", "pyi_selfupdate", "release", *common, str(builds["1.2"]), "1.2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    # wait for the slow step (the diff workers started, the .gz written meanwhile), then kill the
    # whole process group (CLI and diff workers)
    seen = ""
    while "diffing" not in seen or "wrote app/1.2/linux-amd64.gz" not in seen:
        line = proc.stderr.readline()
        assert line, f"release ended before diffing: {seen}"
        seen += line
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    m = decode_manifest((out / "app" / "linux-amd64.json").read_bytes())
    assert m.version == "1.1"
    assert hashlib.sha256(gzip.decompress((out / "app" / "1.1" / "linux-amd64.gz").read_bytes())).digest() == m.sha256
    rerun = _run(*common, str(builds["1.2"]), "1.2")
    assert rerun.returncode == 0, rerun.stderr
    m = decode_manifest((out / "app" / "linux-amd64.json").read_bytes())
    assert m.version == "1.2"
    assert gzip.decompress((out / "app" / "1.2" / "linux-amd64.gz").read_bytes()) == builds["1.2"].read_bytes()
    assert "reusing app/1.2/linux-amd64.gz" in rerun.stderr
    assert sorted(p.name for p in out.rglob(".*")) == []  # the killed run's temp files are gone
    for old in ("1.0", "1.1"):
        assert (out / "app" / old / "1.2" / "linux-amd64").is_file()


def test_p_no_name_blocks_a_built_in_and_an_unknown_name_is_an_error(tmp_path, go_vectors):
    payload = go_vectors / "payloads" / "single" / "1.0"
    out = tmp_path / "public"
    proc = _run(str(payload), "1.0", "-o", str(out), "--platform", "linux-amd64", "--cmd-name", "myapp",
                "-p", "no:frozen", "-p", "no:sign")
    assert proc.returncode == 0, proc.stderr
    assert decode_manifest((out / "myapp" / "linux-amd64.json").read_bytes()).version == "1.0"
    proc = _run(str(payload), "1.1", "-o", str(out), "--platform", "linux-amd64", "--cmd-name", "myapp",
                "-p", "no:nope")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pyi-selfupdate: error: there is no built-in release plugin 'nope' to block; the built-in "
        "plugins are collect, frozen, compress, diff, manifest, sign, publish, s3"]
    assert not (out / "myapp" / "1.1").exists()
    proc = _run(str(payload), "1.1", "-o", str(out), "-p", "sign")
    assert proc.returncode == 2 and "-p only blocks a built-in plugin" in proc.stderr
