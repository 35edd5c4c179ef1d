"""Figures of the PyInstaller integration (issue: PyInstaller integration).

1. Patch size and full ``.gz`` size for example_app with one module changed,
   reproducible builds (PYTHONHASHSEED=0) and non-reproducible ones.
2. Launch time of example_app with the plugin (no update available: the server
   answers the app's own version) divided by the same app built without the
   plugin, median of repeated runs.
3. Bytes the plugin adds to a frozen hello-world app.

Run: ``make bench`` or ``.venv/bin/python benchmarks/pyinstaller_bench.py``.
Writes ``benchmarks/results/pyinstaller.md``. Takes a few minutes (8 builds).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bsdiff4

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from _server import ReleaseServer  # noqa: E402

from pyi_selfupdate.release import release  # noqa: E402

HELLO = "import sys\n{imp}print('hello', sys.argv[1:])\n"


def build(work: Path, src: Path, name: str, *, env: dict, reproducible: bool) -> Path:
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "PYTHONPATH")}
    if reproducible:
        run_env["PYTHONHASHSEED"] = "0"
    run_env.update(env)
    out = work / f"out-{name}"
    cmd = [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--log-level", "ERROR",
           "--name", "app", "--distpath", str(out / "dist"), "--workpath", str(out / "build"),
           "--specpath", str(out), str(src)]
    proc = subprocess.run(cmd, cwd=src.parent, env=run_env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"build {name} failed:\n{proc.stderr[-4000:]}")
    return out / "dist" / "app"


def example_src(work: Path, tag: str, version: str, changed: bool, plugin: bool) -> Path:
    src = work / f"src-{tag}"
    shutil.copytree(REPO / "example_app", src, ignore=shutil.ignore_patterns("__pycache__", "demo.py"))
    core = src / "textstat_core.py"
    if changed:
        core.write_text(core.read_text().replace('__version__ = "1.0"', f'__version__ = "{version}"'))
    pp = src / "pyproject.toml"
    pp.write_text(pp.read_text().replace('version = "1.0"', f'version = "{version}"'))
    if not plugin:  # the same app without pyi-selfupdate: drop the import and the self-update command
        main = src / "textstat.py"
        text = main.read_text().replace("import pyi_selfupdate\n", "")
        text = text.replace("from pyi_selfupdate import updater_from_config\n", "updater_from_config = None\n")
        main.write_text(text)
    return src / "textstat.py"


def median_launch(exe: Path, runs: int, env: dict) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--version"], env=env, capture_output=True, check=True, cwd=exe.parent)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="launches per app for the median")
    args = parser.parse_args()
    lines = ["# PyInstaller integration figures", "",
             f"Python {sys.version.split()[0]}, {os.uname().sysname} {os.uname().machine}, "
             f"{os.cpu_count()} cores; `python benchmarks/pyinstaller_bench.py --runs {args.runs}`.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = ReleaseServer(work / "public")
        (work / "public").mkdir()
        env = {"PYI_SELFUPDATE_API_URL": server.url, "PYI_SELFUPDATE_CHECK_TIME": "0"}
        # 1. patch sizes
        lines += ["## Patch size, example_app 1.0 -> 1.1 (one module changed)", "",
                  "| build | full binary | full .gz | patch | patch / .gz |", "| --- | ---: | ---: | ---: | ---: |"]
        exes = {}
        for repro in (True, False):
            tag = "repro" if repro else "nonrepro"
            v1 = build(work, example_src(work, f"{tag}-1", "1.0", False, True), f"{tag}-1", env=env, reproducible=repro)
            v2 = build(work, example_src(work, f"{tag}-2", "1.1", True, True), f"{tag}-2", env=env, reproducible=repro)
            exes[tag] = v1
            a, b = v1.read_bytes(), v2.read_bytes()
            patch = len(bsdiff4.diff(a, b))
            gz = len(gzip.compress(b, 9))
            lines.append(f"| {'reproducible (PYTHONHASHSEED=0)' if repro else 'not reproducible'} "
                         f"| {len(b):,} B | {gz:,} B | {patch:,} B | {patch / gz:.4%} |")
            print(lines[-1], flush=True)
        # 2. launch time, no update available
        v1 = exes["repro"]
        release(v1, "1.0", work / "public", cmd_name="textstat")
        bare = build(work, example_src(work, "bare", "1.0", False, False), "bare", env=env, reproducible=True)
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE")}
        for exe in (v1, bare):  # warm the page cache
            median_launch(exe, 3, run_env)
        with_plugin = median_launch(v1, args.runs, run_env)
        checks = sum(1 for p in server.log if p.endswith(".json"))
        without = median_launch(bare, args.runs, run_env)
        # the common launch: the last check was recent, no check is due (cktime in the future)
        (v1.parent / "update").mkdir(exist_ok=True)
        (v1.parent / "update" / "cktime").write_text("2099-01-01T00:00:00Z")
        not_due = median_launch(v1, args.runs, run_env)
        lines += ["", "## Launch time, `textstat --version`, no update available", "",
                  f"Median of {args.runs} launches. \"check due\": the app checks at this launch "
                  f"(check_time 0; {checks} manifest requests served, each answering the app's own version) "
                  "and waits at exit for that background check to finish; \"no check due\": the usual "
                  "launch between two checks (default check_time is 24 h).", "",
                  "| app | median launch | ratio to without |", "| --- | ---: | ---: |",
                  f"| with pyi-selfupdate, check due | {with_plugin * 1000:.1f} ms | {with_plugin / without:.3f} |",
                  f"| with pyi-selfupdate, no check due | {not_due * 1000:.1f} ms | {not_due / without:.3f} |",
                  f"| without | {without * 1000:.1f} ms | 1.000 |",
                  "", "Target: ratio <= 1.03."]
        print("\n".join(lines[-6:]), flush=True)
        # 3. bytes added to hello world
        hello_plain = work / "hello-plain" / "hello.py"
        hello_plugin = work / "hello-plugin" / "hello.py"
        for path, imp in ((hello_plain, ""), (hello_plugin, "import pyi_selfupdate\n")):
            path.parent.mkdir()
            path.write_text(HELLO.format(imp=imp))
        hello_env = dict(env, PYI_SELFUPDATE_CURRENT_VERSION="1.0")
        a = build(work, hello_plain, "hello-plain", env=hello_env, reproducible=True).stat().st_size
        b = build(work, hello_plugin, "hello-plugin", env=hello_env, reproducible=True).stat().st_size
        lines += ["", "## Bytes the plugin adds to a frozen hello-world (onefile, no public_keys)", "",
                  f"| hello world | {a:,} B |", "| --- | ---: |", f"| hello world + `import pyi_selfupdate` | {b:,} B |",
                  f"| added | {b - a:,} B |"]
        print("\n".join(lines[-4:]), flush=True)
        server.close()
    out = REPO / "benchmarks" / "results" / "pyinstaller.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
