"""Benchmark: a frozen app in the field: launch time against a dead, silent or slow server; a slow link.

Builds example_app (textstat) 1.0 and 1.1 onefile with the shipped schedule
(``check_time = 24``, ``exit_wait = 10``), releases them, and measures:

1. the launch time of ``textstat --version`` with no check (updating disabled),
   then with the update server refusing connections, accepting and never
   answering, and answering a byte a second: the first launch (which checks)
   and the median of the next ones (backing off), each side by side in one run,
   as ratios to the launch without a check;
2. a 19 MB update (the ``.gz``: the patch is missing) over a link of 1 MB/s,
   with launches that each run 1 s (killed, as a closed terminal would): how
   many launches until the update is staged, and the bytes sent by the server
   against the file's size.

Run: ``python benchmarks/field_bench.py`` (from the repository's virtualenv,
after ``make setup``; about three minutes). Writes ``benchmarks/results/field.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the tests' HTTP server: throttling, faults, range requests

from _server import Fault, ReleaseServer  # noqa: E402

NAME = "textstat"
LAUNCHES = 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(work: Path, version: str, port: int) -> Path:
    src = work / f"src-{version}"
    shutil.copytree(REPO / "example_app", src, ignore=shutil.ignore_patterns("__pycache__", "build", "dist"))
    core = src / "textstat_core.py"
    core.write_text(core.read_text().replace('__version__ = "1.0"', f'__version__ = "{version}"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE_")}
    env.update(PYTHONHASHSEED="0", PYI_SELFUPDATE_API_URL=f"http://127.0.0.1:{port}/",
               PYI_SELFUPDATE_CURRENT_VERSION=version, PYI_SELFUPDATE_CHECK_TIME="24",
               PYI_SELFUPDATE_EXIT_WAIT="10")
    env.pop("PYTHONPATH", None)
    out = work / f"build-{version}"
    subprocess.run([sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--log-level", "ERROR",
                    "--name", NAME, "--distpath", str(out / "dist"), "--workpath", str(out / "build"),
                    "--specpath", str(out), str(src / "textstat.py")], cwd=src, env=env, check=True,
                   capture_output=True)
    return out / "dist" / NAME


def release(public: Path, exe: Path, version: str) -> None:
    subprocess.run([sys.executable, "-m", "pyi_selfupdate", "release", "-o", str(public), str(exe), version],
                   check=True, capture_output=True, cwd=public.parent)


def app_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE_")}
    env.update(extra)
    return env


def launch(exe: Path, **env: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(exe), "--version"], capture_output=True, env=app_env(**env), cwd=exe.parent,
                   timeout=120, check=True)
    return time.perf_counter() - t0


def fresh(exe: Path, folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    dest = folder / NAME
    shutil.copyfile(exe, dest)
    dest.chmod(0o755)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pyi-su-field-bench-") as tmp:
        tmp = Path(tmp)
        print("building textstat 1.0 and 1.1 (PyInstaller) ...", file=sys.stderr)
        v1, v2 = build(tmp, "1.0", port), build(tmp, "1.1", port)
        public = tmp / "public"
        public.mkdir()
        release(public, v1, "1.0")
        release(public, v2, "1.1")
        from pyi_selfupdate.protocol import current_platform

        plat = current_platform()
        manifest, gz = f"{NAME}/{plat}.json", f"{NAME}/1.1/{plat}.gz"
        (public / NAME / "1.0" / "1.1" / plat).unlink()  # the .gz path: the large download

        # 1. launch times, side by side in one run
        rows = []
        cases = [
            ("no check (updating disabled)", None, None),
            ("server refuses connections", "refused", None),
            ("server accepts, never answers", "silent", Fault(delay=120)),
            ("server sends a byte a second", "slow", Fault(chunk_size=1, chunk_delay=1.0)),
        ]
        for label, kind, fault in cases:
            print(f"launching: {label} ...", file=sys.stderr)
            exe = fresh(v1, tmp / "inst" / (kind or "none"))
            server = None
            if fault is not None:
                server = ReleaseServer(public, port=port)
                server.faults[manifest] = fault
            try:
                env = {"PYI_SELFUPDATE_DISABLE": "1"} if kind is None else {}
                times = [launch(exe, **env) for _ in range(LAUNCHES)]
            finally:
                if server is not None:
                    server.close()
            rows.append((label, times[0], statistics.median(times[1:])))
        base = rows[0][2]

        # 2. a slow link and short launches
        print("a 19 MB update at 1 MB/s, launches of 1 s ...", file=sys.stderr)
        server = ReleaseServer(public, port=port)
        server.faults[gz] = Fault(chunk_size=64 << 10, chunk_delay=0.0625)
        exe = fresh(v1, tmp / "inst" / "slow-link")
        gz_size = (public / gz).stat().st_size
        launches = 0
        t0 = time.monotonic()
        try:
            while not (exe.parent / f".{NAME}.staged.json").exists() and launches < 100:
                launches += 1
                proc = subprocess.Popen([str(exe), "top"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=app_env(PYI_SELFUPDATE_FORCE_CHECK="1"),
                                        cwd=exe.parent, start_new_session=True)
                time.sleep(1.0)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            elapsed = time.monotonic() - t0
            sent = server.bytes_sent.get(gz, 0)
            resumed = sum(1 for _, _, status in server.ranges if status == 206)
        finally:
            server.close()
        staged = (exe.parent / f".{NAME}.staged.json").exists()

    lines = [
        "# In the field: launch time against a failing server, and a slow link",
        "",
        f"Command: `python benchmarks/field_bench.py` (one run, cases side by side). Machine: "
        f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs.",
        "",
        "example_app (textstat, onefile, 18 MB) built with the shipped schedule (`check_time = 24`, "
        f"`exit_wait = 10`); `textstat --version` launched {LAUNCHES} times per case, each case on a "
        "fresh install (no schedule yet: the first launch checks).",
        "",
        "| server | first launch (checks) | ratio | later launches (median) | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, first, later in rows:
        lines.append(f"| {label} | {first:.2f} s | {first / base:.2f}x | {later:.2f} s | {later / base:.2f}x |")
    lines += [
        "",
        "The first launch against a server that does not answer waits at most `LIMITS.exit_check` (1 s) "
        "at exit for the manifest, then exits; the check counts as failed, so the next launches back "
        "off (60 s, doubling) and make no request at all.",
        "",
        f"A {gz_size / 1e6:.1f} MB `.gz` at about 1 MB/s, launches killed after 1 s each: "
        f"**{'staged' if staged else 'NOT staged'} after {launches} launches** ({elapsed:.0f} s); the "
        f"server sent {sent:,} B, {sent / gz_size:.2f}x the file ({resumed} launches resumed with a "
        "range request).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = REPO / "benchmarks" / "results" / "field.md"
        out.write_text(text)
        print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
