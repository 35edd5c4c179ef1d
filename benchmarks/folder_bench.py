"""Benchmark: folder updates (onedir, macOS .app) beside single files, sizes and client cost.

Three app pairs, each 1.0 and 1.1 with one module (or one file) changed:

- ``example_app`` built onedir (PyInstaller's default) with PYTHONHASHSEED=0;
- the same app built onefile, beside it;
- a large onedir-shaped folder built from real files of this Python installation
  (its standard library and site-packages, 62 MB), where 1.1 changes one
  module: the size of a requests or Qt app's bundle.

Each pair is released with the release tool into a tree served on 127.0.0.1.
Then a fresh child process per trial installs 1.1 over an installed copy of 1.0
with ``Updater.update()``: through the patch, then (patch removed) through the
``.gz``. Reported: archive / ``.gz`` / patch sizes, the release time, and the
client's wall time and peak RSS (``VmHWM``, with its baseline after imports)
for rebuilding the installed folder's archive, applying the patch, verifying,
unpacking and switching the folder.

Run: ``python benchmarks/folder_bench.py`` (from the repository's virtualenv,
after ``make setup``; about five minutes). Writes ``benchmarks/results/folder.md``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP_SRC = REPO / "example_app"
PLAT = "linux-amd64"
TRIALS = 3
BIG_MB = 62


# ------------------------------------------------------------------ the inputs


def build_example(work: Path, version: str, onedir: bool) -> Path:
    """example_app at ``version`` (textstat_core.py changed), built onedir or onefile."""
    src = work / f"src-{version}"
    if not src.exists():
        shutil.copytree(APP_SRC, src, ignore=shutil.ignore_patterns("__pycache__", "build", "dist"))
        core = (src / "textstat_core.py").read_text()
        (src / "textstat_core.py").write_text(core.replace('__version__ = "1.0"', f'__version__ = "{version}"'))
    mode = "onedir" if onedir else "onefile"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE_")}
    env.update(PYTHONHASHSEED="0", PYI_SELFUPDATE_API_URL="http://127.0.0.1:9/",
               PYI_SELFUPDATE_CURRENT_VERSION=version)
    env.pop("PYTHONPATH", None)
    out = work / f"{mode}-{version}"
    subprocess.run([sys.executable, "-m", "PyInstaller", f"--{mode}", "--noconfirm", "--log-level", "ERROR",
                    "--name", "textstat", "--distpath", str(out / "dist"), "--workpath", str(out / "build"),
                    "--specpath", str(out), str(src / "textstat.py")],
                   cwd=src, env=env, check=True, capture_output=True)
    return out / "dist" / "textstat"


def build_big(work: Path, version: str) -> Path:
    """A ~60 MB onedir-shaped folder of real files; 1.1 changes one module."""
    app = work / f"big-{version}" / "bigapp"
    internal = app / "_internal"
    internal.mkdir(parents=True)
    launcher = app / "bigapp"
    launcher.write_bytes(f"#!/bin/sh\necho bigapp {version}\n".encode())
    launcher.chmod(0o755)
    roots = [Path(p) for p in dict.fromkeys([sys.base_prefix + "/lib", sys.prefix + "/lib"])]
    files = sorted((r, p) for r in roots if r.is_dir() for p in r.rglob("*")
                   if p.is_file() and not p.is_symlink() and "pyi_selfupdate" not in str(p))
    total = 0
    for root, path in files:
        dest = internal / root.parent.name / path.relative_to(root)
        if dest.exists():
            continue
        size = path.stat().st_size
        if total + size > BIG_MB * 1_000_000:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        total += size
    module = internal / "app" / "core.py"
    module.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(2000))
    module.write_text(f'__version__ = "{version}"\n' + body)
    return app


# ------------------------------------------------------------------ the client


def peak_kib() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(url: str, target: str, kind: str, cmd: str) -> None:
    """One trial, in a fresh process: import, then time update(); print JSON."""
    import bsdiff4  # noqa: F401  (the patch path needs it: keep it in the baseline)
    import requests  # noqa: F401

    from pyi_selfupdate import Updater

    base = peak_kib()
    updater = Updater(current_version="1.0", api_url=url, cmd_name=cmd, platform=PLAT,
                      target=target, kind=kind)
    t0 = time.perf_counter()
    result = updater.update()
    wall = time.perf_counter() - t0
    peak = peak_kib()
    print(json.dumps({"wall": wall, "base_kib": base, "peak_kib": peak,
                      "method": result.method, "bytes": result.bytes_fetched}))


def content_sha(path: Path) -> bytes:
    from pyi_selfupdate._files import content_sha256

    return content_sha256(path)


def trials(url: str, old: Path, new_sha: bytes, kind: str, cmd: str, n: int, work: Path) -> list:
    runs = []
    for _ in range(n):
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        target = work / old.name
        if kind == "folder":
            shutil.copytree(old, target, symlinks=True)
        else:
            shutil.copy2(old, target)
        out = subprocess.run([sys.executable, __file__, "--child", url, str(target), kind, cmd],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if content_sha(target) != new_sha:
            raise SystemExit(f"benchmark error: {target} does not hold the new version")
    return runs


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def measure(name: str, old: Path, new: Path, tmp: Path, n: int) -> dict:
    """Release the pair, then time the client's patch and full updates."""
    from pyi_selfupdate.protocol import full_path, patch_path
    from pyi_selfupdate.release import release

    kind = "folder" if old.is_dir() else "file"
    cmd = old.name
    tree = tmp / f"tree-{name}"
    release(old, "1.0", out=tree, platform=PLAT, cmd_name=cmd)
    t0 = time.perf_counter()
    release(new, "1.1", out=tree, platform=PLAT, cmd_name=cmd)
    release_s = time.perf_counter() - t0
    if kind == "folder":
        from pyi_selfupdate.archive import FolderArchive

        with FolderArchive(new) as a:
            content = a.size
        files = sum(1 for _ in new.rglob("*"))
    else:
        content, files = new.stat().st_size, 1
    patch_file = tree / patch_path(cmd, "1.0", "1.1", PLAT)
    sizes = {"content": content, "files": files, "gz": (tree / full_path(cmd, "1.1", PLAT)).stat().st_size,
             "patch": patch_file.stat().st_size, "release_s": release_s}
    new_sha = content_sha(new)
    httpd, url = serve(tree)
    try:
        patch_runs = trials(url, old, new_sha, kind, cmd, n, tmp / f"inst-{name}")
        patch_file.unlink()
        full_runs = trials(url, old, new_sha, kind, cmd, n, tmp / f"inst-{name}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert all(r["method"] == "patch" for r in patch_runs) and all(r["method"] == "full" for r in full_runs)

    def summary(runs: list) -> dict:
        return {"wall": statistics.median(r["wall"] for r in runs),
                "peak": statistics.median(r["peak_kib"] for r in runs) / 1024,
                "base": statistics.median(r["base_kib"] for r in runs) / 1024,
                "bytes": runs[0]["bytes"]}

    return {"name": name, "kind": kind, **sizes, "patch_run": summary(patch_runs), "full_run": summary(full_runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="pyi-su-folder-bench-") as tmp:
        tmp = Path(tmp)
        print("building example_app 1.0 and 1.1, onedir and onefile (PyInstaller) ...", file=sys.stderr)
        pairs = [
            ("example_app onedir", build_example(tmp, "1.0", True), build_example(tmp, "1.1", True)),
            ("example_app onefile", build_example(tmp, "1.0", False), build_example(tmp, "1.1", False)),
            (f"{BIG_MB} MB folder of real files", build_big(tmp, "1.0"), build_big(tmp, "1.1")),
        ]
        for name, old, new in pairs:
            print(f"measuring {name} ...", file=sys.stderr)
            results.append(measure(name, old, new, tmp, args.trials))

    mib = 1 << 20
    lines = [
        "# Folder updates beside single files",
        "",
        f"Command: `python benchmarks/folder_bench.py` ({args.trials} trials per path, median; a fresh "
        "child process per trial; server on 127.0.0.1).",
        "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs.",
        "",
        "Each pair is 1.0 and 1.1 with one module changed. For a folder, \"content\" is its canonical "
        "archive (what is hashed, gzipped and diffed); for a onefile app, the executable.",
        "",
        "| app | kind | files | content | `.gz` | patch | patch / `.gz` | release of 1.1 (diff vs 1.0) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['files']:,} | {r['content'] / mib:.1f} MiB | "
            f"{r['gz'] / mib:.1f} MiB | {r['patch']:,} B | {r['patch'] / r['gz']:.3%} | {r['release_s']:.1f} s |")
    lines += [
        "",
        "Client, `Updater.update()` from 1.0 to 1.1 (manifest, download, rebuild of the installed "
        "folder's archive, patch, SHA-256, unpack or write, fsync, switch):",
        "",
        "| app | path | bytes fetched | wall time | peak RSS (VmHWM) | baseline after imports | peak - baseline |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        for path in ("patch", "full"):
            s = r[f"{path}_run"]
            lines.append(f"| {r['name']} | {path} | {s['bytes']:,} | {s['wall']:.2f} s | {s['peak']:.1f} MiB | "
                         f"{s['base']:.1f} MiB | {s['peak'] - s['base']:.1f} MiB |")
    lines += [
        "",
        "The client never builds or caches the installed folder's archive: the patch reads the "
        "byte ranges it needs straight from the installed files, and the result is unpacked as it "
        "is produced, so memory stays a few MiB over the baseline whatever the app's size.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = REPO / "benchmarks" / "results" / "folder.md"
        out.write_text(text)
        print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
