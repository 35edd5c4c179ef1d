"""Benchmark: ``Updater.update()`` on a ~18 MB executable over 127.0.0.1.

Builds a release tree by hand (bsdiff4, gzip, ``protocol.encode_manifest``; no
dependency on the release package): version 1.0 is ~18 MB of real binary content
(this interpreter's extension modules, shared libraries and compiled modules,
concatenated in a fixed order), version 2.0 is 1.0 with small local edits
(a few changed byte runs and a 200-byte insertion, as a one-module change to a
frozen app gives). Serves it on 127.0.0.1 and runs ``update()`` in a fresh child
process per trial, via the patch and, with the patch removed, via the full
``.gz``. Reports the median wall time of ``update()`` and the child's peak
resident memory (``ru_maxrss``), with the child's baseline after its imports.

Run: ``python benchmarks/update_bench.py`` (from the repository root; about a
minute). Writes ``benchmarks/results/update.md``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
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
sys.path.insert(0, str(REPO))

SIZE = 18 * 1024 * 1024
TRIALS = 3
PLAT = "linux-amd64"
CMD = "benchapp"


def real_binary_content(size: int) -> bytes:
    """``size`` bytes of real binary files from this Python installation, in a fixed order."""
    roots = [Path(sys.base_prefix), Path(sys.prefix)]
    files = []
    for root in roots:
        for pattern in ("**/*.so", "**/*.so.*", "**/*.pyd", "**/*.dll", "**/*.pyc"):
            files.extend(p for p in root.glob(pattern) if p.is_file())
    seen, chunks, total = set(), [], 0
    for path in sorted(files, key=lambda p: (p.suffix == ".pyc", str(p))):
        if path in seen:
            continue
        seen.add(path)
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if total >= size:
            break
    blob = b"".join(chunks)
    if len(blob) < size:  # a tiny installation: repeat what there is, shifted
        blob = (blob * (size // max(1, len(blob)) + 1))[:size]
    return blob[:size]


def local_edits(old: bytes) -> bytes:
    """Small local edits: three 64-byte runs changed, 200 bytes inserted mid-file."""
    new = bytearray(old)
    for offset in (len(old) // 7, len(old) // 3, (len(old) * 5) // 6):
        new[offset:offset + 64] = bytes((b + 1) & 0xFF for b in new[offset:offset + 64])
    mid = len(new) // 2
    new[mid:mid] = b"pyi-selfupdate benchmark: a new string constant. " * 4
    return bytes(new)


def build_tree(root: Path, old: bytes, new: bytes) -> dict:
    import bsdiff4

    from pyi_selfupdate import protocol

    cmd = root / CMD
    (cmd / "2.0").mkdir(parents=True)
    (cmd / "1.0" / "2.0").mkdir(parents=True)
    t0 = time.perf_counter()
    patch = bsdiff4.diff(old, new)
    diff_s = time.perf_counter() - t0
    (cmd / "1.0" / "2.0" / PLAT).write_bytes(patch)
    gz = gzip.compress(new, compresslevel=9, mtime=0)
    (cmd / "2.0" / f"{PLAT}.gz").write_bytes(gz)
    manifest = protocol.Manifest(version="2.0", sha256=hashlib.sha256(new).digest())
    (cmd / f"{PLAT}.json").write_bytes(protocol.encode_manifest(manifest))
    return {"patch": len(patch), "gz": len(gz), "diff_s": diff_s}


def serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def child(url: str, target: str) -> None:
    """One trial, in a fresh process: import, then time update(); print JSON."""
    import resource

    import bsdiff4  # noqa: F401  (imported by the patch path anyway: keep it in the baseline)
    import requests  # noqa: F401

    from pyi_selfupdate import Updater

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    updater = Updater(current_version="1.0", api_url=url, cmd_name=CMD, platform=PLAT,
                      target=target)
    t0 = time.perf_counter()
    result = updater.update()
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall": wall, "base_kib": base, "peak_kib": peak,
                      "method": result.method, "bytes": result.bytes_fetched}))


def trial(url: str, work: Path, old_file: Path, new_sha: bytes) -> dict:
    target = work / CMD
    shutil.copyfile(old_file, target)
    os.chmod(target, 0o755)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, __file__, "--child", url, str(target)],
                         capture_output=True, text=True, env=env, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    if _sha256(target) != new_sha:
        raise SystemExit("benchmark error: the target does not hold the new version")
    shutil.rmtree(work / "update", ignore_errors=True)
    return data


def _sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def prepare(tmp: Path) -> None:
    """Build the inputs and the release tree (run in its own process: see main)."""
    old = real_binary_content(SIZE)
    new = local_edits(old)
    (tmp / "old.bin").write_bytes(old)
    (tmp / "new.bin").write_bytes(new)
    sizes = build_tree(tmp / "public", old, new)
    (tmp / "sizes.json").write_text(json.dumps(sizes))


def summarize(runs: list) -> dict:
    return {
        "wall": statistics.median(r["wall"] for r in runs),
        "peak_mib": statistics.median(r["peak_kib"] for r in runs) / 1024,
        "base_mib": statistics.median(r["base_kib"] for r in runs) / 1024,
        "bytes": runs[0]["bytes"],
        "method": runs[0]["method"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("URL", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("--prepare", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.prepare:
        prepare(Path(args.prepare))
        return

    # Build the 18 MB inputs in a separate process: ru_maxrss survives fork and
    # exec on Linux, so children of a parent that once held them would inherit
    # its peak and every figure would be wrong.
    with tempfile.TemporaryDirectory(prefix="pyi-su-bench-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        subprocess.run([sys.executable, __file__, "--prepare", str(tmp)], env=env, check=True)
        sizes = json.loads((tmp / "sizes.json").read_text())
        old_file = tmp / "old.bin"
        old_size = old_file.stat().st_size
        new_sha = _sha256(tmp / "new.bin")
        httpd, url = serve(tmp / "public")
        work = tmp / "app"
        work.mkdir()
        try:
            patch_runs = [trial(url, work, old_file, new_sha) for _ in range(args.trials)]
            (tmp / "public" / CMD / "1.0" / "2.0" / PLAT).unlink()
            full_runs = [trial(url, work, old_file, new_sha) for _ in range(args.trials)]
        finally:
            httpd.shutdown()
            httpd.server_close()
    patch, full = summarize(patch_runs), summarize(full_runs)
    assert patch["method"] == "patch" and full["method"] == "full"

    lines = [
        "# `Updater.update()` benchmark",
        "",
        f"Command: `python benchmarks/update_bench.py` ({args.trials} trials each, median; "
        "a fresh child process per trial, server on 127.0.0.1).",
        "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs.",
        "",
        f"Executable: {old_size / 2**20:.1f} MiB of real binary content (this Python's "
        "extension modules, shared libraries, compiled modules); the new version has "
        "three 64-byte runs changed and 200 bytes inserted in the middle.",
        f"Patch: {sizes['patch']:,} bytes (bsdiff4, {sizes['diff_s']:.1f} s to compute); "
        f"full `.gz`: {sizes['gz']:,} bytes.",
        "",
        "| path | bytes fetched | wall time of update() | peak RSS (ru_maxrss) | baseline RSS after imports | peak - baseline |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in (("patch", patch), ("full .gz (patch missing: 404, then fallback)", full)):
        lines.append(
            f"| {name} | {s['bytes']:,} | {s['wall']:.2f} s | {s['peak_mib']:.1f} MiB | "
            f"{s['base_mib']:.1f} MiB | {s['peak_mib'] - s['base_mib']:.1f} MiB |"
        )
    lines += [
        "",
        "Wall time covers the manifest request, the patch or `.gz` download, bsdiff "
        "application or streamed gunzip, SHA-256 verification, writing and fsyncing the "
        "new file, and the atomic rename. The patch path holds the current file, the "
        "patch and the result in memory (bsdiff needs them whole); the full path streams "
        "the `.gz` through gunzip into a temporary file beside the target.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = REPO / "benchmarks" / "results" / "update.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out}")


if __name__ == "__main__":
    main()
