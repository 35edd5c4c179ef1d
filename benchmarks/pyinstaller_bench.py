"""Figures of the PyInstaller integration (issue: PyInstaller integration).

1. Patch size and full ``.gz`` size for example_app with one module changed,
   reproducible builds (PYTHONHASHSEED=0) and non-reproducible ones.
2. Launch time of example_app with the plugin (no update available: the server
   answers the app's own version) divided by the same app built without the
   plugin, median of repeated runs. The launches of the apps compared are
   interleaved (one of each per round, the order rotating), so that a load
   change on the machine hits them alike; the spread is reported. Where the
   extra time goes: the same app without the plugin but built with the
   plugin's dependencies (``--hidden-import requests --hidden-import bsdiff4``:
   their binaries and data, which the onefile bootloader extracts at every
   launch whatever is imported, and their modules in the PYZ) separates what
   the dependencies cost from what pyi-selfupdate's own bootstrap costs (its
   runtime hook, imports, file checks and embedded configuration).
3. Bytes the plugin adds to a frozen hello-world app.

Run: ``make bench`` or ``.venv/bin/python benchmarks/pyinstaller_bench.py``.
Writes ``benchmarks/results/pyinstaller.md``. Takes a few minutes (9 builds).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import bsdiff4

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from _server import ReleaseServer  # noqa: E402

from pyi_selfupdate.release import release  # noqa: E402

HELLO = "import sys\n{imp}print('hello', sys.argv[1:])\n"


def build(work: Path, src: Path, name: str, *, env: dict, reproducible: bool, extra: Sequence[str] = ()) -> Path:
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "PYTHONPATH")}
    if reproducible:
        run_env["PYTHONHASHSEED"] = "0"
    run_env.update(env)
    out = work / f"out-{name}"
    cmd = [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--log-level", "ERROR",
           "--name", "app", "--distpath", str(out / "dist"), "--workpath", str(out / "build"),
           "--specpath", str(out), *extra, str(src)]
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


def launch(exe: Path, env: dict) -> float:
    """Seconds of one ``exe --version``, from spawn to exit."""
    t0 = time.perf_counter()
    subprocess.run([str(exe), "--version"], env=env, capture_output=True, check=True, cwd=exe.parent)
    return time.perf_counter() - t0


def interleaved_launches(exes: Dict[str, Path], runs: int, env: dict) -> Dict[str, List[float]]:
    """``runs`` rounds; each round launches every app once, in an order that rotates."""
    names = list(exes)
    for name in names:  # warm the page cache
        for _ in range(3):
            launch(exes[name], env)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for i in range(runs):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(launch(exes[name], env))
    return times


def quartiles(values: Sequence[float]) -> Tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def archive_entries(exe: Path) -> Dict[str, Tuple[str, int, int]]:
    """name -> (typecode, compressed size, uncompressed size) of a onefile's CArchive."""
    from PyInstaller.archive.readers import CArchiveReader

    return {name: (typ, clen, ulen)
            for name, (_off, clen, ulen, _cflag, typ) in CArchiveReader(str(exe)).toc.items()}


#: CArchive typecodes of the entries the onefile bootloader extracts at every launch.
EXTRACTED = {"b": "binary", "x": "data", "d": "dependency", "n": "symlink"}


def added_files(plugin: Path, bare: Path) -> List[Tuple[str, str, int, int]]:
    """(name, kind, compressed, extracted size) of the files the plugin adds to the extracted part."""
    mine, theirs = archive_entries(plugin), archive_entries(bare)
    return [(name, EXTRACTED[mine[name][0]], mine[name][1], mine[name][2])
            for name in sorted(set(mine) - set(theirs)) if mine[name][0] in EXTRACTED]


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
        rows = added_files(v1, bare)
        bare_deps = build(work, example_src(work, "bare-deps", "1.0", False, False), "bare-deps", env=env,
                          reproducible=True, extra=["--hidden-import", "requests", "--hidden-import", "bsdiff4"])
        own = sorted(set(archive_entries(v1)) - set(archive_entries(bare_deps)))
        # Two copies of the same v1 binary: "due" checks at every launch (check_time 0,
        # no cktime); "not due" is the usual launch between two checks (cktime in the future).
        apps: Dict[str, Path] = {}
        for tag in ("due", "notdue"):
            (work / tag).mkdir()
            apps[tag] = work / tag / "textstat"
            shutil.copy2(v1, apps[tag])
        (work / "notdue" / "update").mkdir()
        (work / "notdue" / "update" / "cktime").write_text("2099-01-01T00:00:00Z")
        apps["deps"], apps["bare"] = bare_deps, bare
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE")}
        served = len(server.log)
        times = interleaved_launches(apps, args.runs, run_env)
        checks = sum(1 for p in server.log[served:] if p.endswith(".json"))
        base = statistics.median(times["bare"])

        def row(label: str, key: str) -> str:
            t = times[key]
            q1, q3 = quartiles(t)
            paired = statistics.median(a / b for a, b in zip(t, times["bare"]))
            return (f"| {label} | {statistics.median(t) * 1000:.1f} ms | {q1 * 1000:.0f}-{q3 * 1000:.0f} ms "
                    f"| {min(t) * 1000:.0f}-{max(t) * 1000:.0f} ms | {statistics.median(t) / base:.3f} | {paired:.3f} |")

        lines += ["", "## Launch time, `textstat --version`, no update available", "",
                  f"{args.runs} rounds; each round launches every app below once, the order rotating "
                  "(interleaved: a change of load on the machine hits all apps alike). \"ratio\": median "
                  "over median without the plugin; \"paired\": median of the per-round ratios. "
                  "\"no check due\": the usual launch between two checks (default check_time is 24 h). "
                  f"\"check due\": the app checks at this launch (check_time 0; {checks} manifest requests "
                  "served, each answering the app's own version) and waits at exit for that background "
                  "check to finish, which imports `requests`.", "",
                  "| app | median | IQR | min-max | ratio | paired |", "| --- | ---: | ---: | ---: | ---: | ---: |",
                  row("with pyi-selfupdate, no check due", "notdue"),
                  row("with pyi-selfupdate, check due", "due"),
                  row("without, with the plugin's dependencies (requests, bsdiff4)", "deps"),
                  row("without", "bare"),
                  ""]
        med = {k: statistics.median(v) for k, v in times.items()}
        own_ratio = med["notdue"] / med["deps"]
        own_paired = statistics.median(a / b for a, b in zip(times["notdue"], times["deps"]))
        lines += [f"**The plugin's own cost** (the usual launch, against the same app built with the plugin's "
                  f"dependencies bundled; target <= 1.01): {own_ratio:.3f} (medians), {own_paired:.3f} (paired). "
                  f"**The total** against the bare app: {med['notdue'] / base:.3f} (medians), of which the "
                  f"dependencies {med['deps'] / base:.3f}."]
        lines += ["", "Where the extra time of the usual launch goes (differences of medians; the spread "
                  "above shows how far to trust them):", "",
                  f"- the dependencies (requests, bsdiff4 and theirs: the files below, extracted at every "
                  f"launch, and a larger PYZ): {(med['deps'] - base) * 1000:+.1f} ms "
                  f"({(med['deps'] - base) / base:+.1%});",
                  f"- pyi-selfupdate's own bootstrap (archive entries {', '.join(f'`{n}`' for n in own)}; its imports, "
                  f"instance lock and file checks): {(med['notdue'] - med['deps']) * 1000:+.1f} ms "
                  f"({(med['notdue'] - med['deps']) / base:+.1%})."]
        # The bootstrap's own time, measured inside the app by its runtime hook
        # (PYI_SELFUPDATE_LOG=debug; logging is imported before its clock starts).
        hook_ms: Dict[str, List[float]] = {"total": [], "imports": [], "run": []}
        debug_env = dict(run_env, PYI_SELFUPDATE_LOG="debug")
        for _ in range(min(args.runs, 21)):
            out = subprocess.run([str(apps["notdue"]), "--version"], env=debug_env, capture_output=True,
                                 text=True, check=True, cwd=apps["notdue"].parent).stderr
            found = re.search(r"runtime hook done in ([\d.]+) ms \(imports ([\d.]+) ms, run ([\d.]+) ms\)", out)
            if found:
                for key, value in zip(("total", "imports", "run"), found.groups()):
                    hook_ms[key].append(float(value))
        if hook_ms["total"]:
            lines += ["", f"Measured inside the app by its runtime hook (`PYI_SELFUPDATE_LOG=debug`, median of "
                      f"{len(hook_ms['total'])} usual launches): the bootstrap takes "
                      f"{statistics.median(hook_ms['total']):.1f} ms, of which importing its modules "
                      f"{statistics.median(hook_ms['imports']):.1f} ms and running "
                      f"{statistics.median(hook_ms['run']):.1f} ms "
                      f"({statistics.median(hook_ms['total']) / (med['deps'] * 1000):.1%} of the launch of the "
                      "same app with the dependencies only). A module it imports that the app itself imports "
                      "later anyway counts here but costs the app nothing more."]
        total_c = sum(r[2] for r in rows)
        total_u = sum(r[3] for r in rows)
        lines += ["", "Files the plugin adds to the onefile archive that the bootloader extracts at every "
                  "launch (the PYZ, read in place, is not extracted):", "",
                  "| file | kind | compressed | extracted |", "| --- | --- | ---: | ---: |"]
        lines += [f"| `{name}` | {kind} | {c:,} B | {u:,} B |" for name, kind, c, u in rows]
        lines += [f"| total | | {total_c:,} B | {total_u:,} B |"]
        pyz_a, pyz_b = archive_entries(bare)["PYZ.pyz"][1], archive_entries(v1)["PYZ.pyz"][1]
        lines += ["", f"PYZ (compressed Python modules, read in place): {pyz_a:,} B without, {pyz_b:,} B with."]
        print("\n".join(lines[-(len(rows) + 20):]), flush=True)
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
