"""Wall time and peak memory of ``pyi-selfupdate release`` for an ~18 MB executable.

Inputs are built deterministically to look like a PyInstaller onefile app: the
files of this interpreter's site-packages, concatenated in path order, shared
libraries raw and Python sources zlib-compressed one by one (as PyInstaller's
archive stores them), up to ~18 MB. Version N changes two "modules" (one
line appended to each source, recompressed), a small local edit like a
one-line change rebuilt with a fixed PYTHONHASHSEED.

Scenarios: release a new version into a tree holding 1 earlier version, and
into a tree holding 4. Each release runs as ``python -m pyi_selfupdate release``
in a child process; its peak memory is ``ru_maxrss`` of that child's own
children (the CLI and its diff workers, the largest single process), read in a
fresh measuring process per scenario so runs do not mask each other.

Usage: ``python benchmarks/release_bench.py`` (results printed and written to
benchmarks/results/release.md).
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "release.md"
TARGET_SIZE = 18_000_000
PLAT = "linux-amd64"
CMD = "benchapp"


def _entries() -> list:
    """(source or None, stored bytes) entries, in a stable order, about TARGET_SIZE in all."""
    roots = [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"])]
    out, total = [], 0
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                           and "site-packages" not in p.relative_to(root).parts):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if not data:
                continue
            entry = (data, zlib.compress(data, 9)) if path.suffix == ".py" else (None, data)
            if total + len(entry[1]) > TARGET_SIZE:
                continue  # a file too big for what is left (static libraries, ...)
            out.append(entry)
            total += len(entry[1])
            if total >= TARGET_SIZE - 200_000:
                return out
    return out


def build(entries: list, version: int) -> bytes:
    """The 'executable' of ``version``: two sources edited, everything else identical."""
    sources = [i for i, (src, _) in enumerate(entries) if src is not None]
    edited = {sources[(version * 37) % len(sources)], sources[(version * 101 + 7) % len(sources)]}
    parts = [b"\x7fELF" + b"\0" * 60]
    for i, (src, stored) in enumerate(entries):
        if i in edited:
            stored = zlib.compress(src + f"\n# built as version {version}.0\n".encode(), 9)
        parts.append(stored)
    return b"".join(parts)


def _release_cmd(out: Path, exe: Path, version: str) -> list:
    return [sys.executable, "-m", "pyi_selfupdate", "release", "-o", str(out),
            "--platform", PLAT, "--cmd-name", CMD, str(exe), version]


def measure(out: str, exe: str, version: str) -> None:
    """Run one release as a child; print its wall time and peak RSS as JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    proc = subprocess.run(_release_cmd(Path(out), Path(exe), version), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"release failed:\n{proc.stderr}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"wall": wall, "maxrss_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime,
                      "stdout": proc.stdout, "stderr": proc.stderr}))


def _prepare_tree(out: Path, blobs: dict, versions: list) -> None:
    """Earlier releases: their .gz and manifest are all a release reads back."""
    for v in versions:
        folder = out / CMD / f"{v}.0"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{PLAT}.gz").write_bytes(gzip.compress(blobs[v], compresslevel=6, mtime=0))


def _scenario(tmp: Path, blobs: dict, earlier: list, new: int) -> dict:
    out = tmp / f"public-{len(earlier)}"
    _prepare_tree(out, blobs, earlier)
    exe = tmp / f"v{new}" / CMD
    exe.parent.mkdir(exist_ok=True)
    exe.write_bytes(blobs[new])
    proc = subprocess.run([sys.executable, __file__, "--measure", str(out), str(exe), f"{new}.0"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr or proc.stdout)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    patches = sorted(p.stat().st_size for p in (out / CMD).glob(f"*/{new}.0/{PLAT}"))
    gz = (out / CMD / f"{new}.0" / f"{PLAT}.gz").stat().st_size
    result.update(earlier=len(earlier), patches=patches, gz=gz, size=len(blobs[new]))
    return result


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        measure(*sys.argv[2:5])
        return
    t0 = time.perf_counter()
    entries = _entries()
    blobs = {v: build(entries, v) for v in range(1, 6)}
    print(f"input: {len(blobs[1]) / 1e6:.1f} MB executable-like file ({len(entries)} entries); "
          f"built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="release-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for earlier, new in (([1], 2), ([1, 2, 3, 4], 5)):
            r = _scenario(tmp, blobs, earlier, new)
            rows.append(r)
            print(f"against {len(earlier)} earlier version(s): "
                  f"{r['wall']:.1f} s (CPU {r['cpu']:.1f} s), peak RSS {r['maxrss_kb'] / 1024:.0f} MB", file=sys.stderr)
    lines = [
        "# `pyi-selfupdate release` figures",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}.",
        f"Input: a {rows[0]['size'] / 1e6:.1f} MB executable-like file (site-packages, then the standard library: binaries raw, "
        "sources zlib-compressed one by one, like a PyInstaller archive); each version edits two sources.",
        "Each release runs as `python -m pyi_selfupdate release` in a child process (default: 2 diff workers); "
        "peak memory is `ru_maxrss` of that child and its diff workers (the largest single process; "
        "with 2 workers diffing at once, the release holds about twice that).",
        "",
        "The machine's 2 cores are shared with other work: CPU time (all processes of the release) "
        "is the steadier figure; wall time varies with the load.",
        "",
        "| earlier versions | wall time | CPU time | peak RSS | full .gz | patches |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        patches = ", ".join(f"{p / 1e3:.1f} KB" for p in r["patches"])
        lines.append(f"| {r['earlier']} | {r['wall']:.1f} s | {r['cpu']:.1f} s | {r['maxrss_kb'] / 1024:.0f} MB | "
                     f"{r['gz'] / 1e6:.2f} MB | {patches} |")
    lines += ["", f"Benchmark wall time including input preparation: {time.perf_counter() - t0:.0f} s.", ""]
    text = "\n".join(lines)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
