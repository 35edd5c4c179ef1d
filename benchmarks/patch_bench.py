"""Patch generation at scale: the reference generator (``--diff bsdiff4``) against ours (``--diff fast``).

In one process tree and one run:

- **example_app onefile, against 4 earlier versions**: example_app built
  onefile with PyInstaller (PYTHONHASHSEED=0) as 1.0 ... 1.4, each changing its
  version string (the ~18 MB app of the release figures); 1.0-1.3 are released
  first, then 1.4 is released into two copies of that tree, once per generator.
- **example_app onedir, against 1 earlier version** (its canonical archive, ~43 MB).
- **a ~300 MB onedir-style folder of real files** (the libraries and standard
  libraries of this machine's Python installations), against 1 earlier version.
  1.1 is a realistic release: 40 modules edited, 2 shared libraries rebuilt
  (bytes inserted and changed in the middle), one new 3 MB file, 6 files
  removed. bsdiff4 on this input needs about 17 x 300 MB = 5 GB and many
  minutes: it runs only with ``--reference-large``.

Each release is ``python -m pyi_selfupdate release`` in a child process.
Reported: wall time, CPU time (the child and any children of its,
``RUSAGE_CHILDREN``), peak memory summed over the processes of the release
(their ``VmRSS`` sampled every 20 ms) and the largest single process, and the
patch sizes; then ours / bsdiff4, the peak memory of the large input cut to a
quarter and a half (how memory grows with the input), and the goals. Finally the client applies each patch as the
installed app does (``_patch.patch_stream``: the old file read where the patch
points, the result written and hashed as it is produced) in a fresh child:
wall time and peak RSS (``VmHWM``) over its baseline after imports.

Usage: ``python benchmarks/patch_bench.py [--reference-large] [--work DIR]``
(about 4 minutes without ``--reference-large``, PyInstaller builds included;
``--work DIR`` keeps the builds for the next run). Writes
``benchmarks/results/patch.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "results" / "patch.md"
PLAT = "linux-amd64"
BIG_MB = 300
SCALES = (75, 150, BIG_MB)  # sizes of the large input for the memory-against-size table


# ------------------------------------------------------------------ the inputs


def build_example(work: Path, version: str, onedir: bool) -> Path:
    from folder_bench import build_example as build

    mode = "onedir" if onedir else "onefile"
    done = work / f"{mode}-{version}" / "dist" / "textstat"
    if done.exists():
        return done
    return build(work, version, onedir)


def _real_files():
    """Files of this machine's Python installations (beside this one's), in a stable order."""
    for root in sorted({Path(sys.base_prefix).parent, Path(sys.base_prefix)}):
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and d != "pyi_selfupdate")
            for name in sorted(names):
                path = Path(folder) / name
                try:
                    if path.is_file() and not path.is_symlink() and path.stat().st_size:
                        yield path
                except OSError:
                    continue


def build_big(work: Path, mb: int = BIG_MB) -> tuple:
    """``(1.0 folder, 1.1 folder)``, ~``mb`` MB each, 1.1 a realistic release of 1.0."""
    name = "big" if mb == BIG_MB else f"big{mb}"
    old_app, new_app = work / f"{name}-1.0" / "bigapp", work / f"{name}-1.1" / "bigapp"
    if (new_app / "bigapp").exists():
        return old_app, new_app
    shutil.rmtree(work / f"{name}-1.0", ignore_errors=True)
    shutil.rmtree(work / f"{name}-1.1", ignore_errors=True)
    internal = old_app / "_internal"
    total, placed = 0, []
    for path in _real_files():
        size = path.stat().st_size
        if total + size > mb * 1_000_000 or size > 40_000_000:
            continue
        rel = Path(*path.parts[1:])  # keep the installation's layout
        dest = internal / rel
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(path, dest)
        except OSError:
            continue
        placed.append(rel)
        total += size
        if total > mb * 1_000_000 - 2_000_000:
            break
    for app, version in ((old_app, "1.0"), (new_app, "1.1")):
        app.mkdir(parents=True, exist_ok=True)
        (app / "bigapp").write_text(f"#!/bin/sh\necho bigapp {version}\n")
        (app / "bigapp").chmod(0o755)
    rng = random.Random(11)
    sources = [r for r in placed if r.suffix == ".py"]
    libs = [r for r in placed if ".so" in r.suffixes and (internal / r).stat().st_size > 500_000]
    edited = set(rng.sample(sources, 40))
    rebuilt = set(rng.sample(libs, 2))
    removed = set(rng.sample([r for r in placed if r not in edited and r not in rebuilt], 6))
    for rel in placed:
        if rel in removed:
            continue
        src, dest = internal / rel, new_app / "_internal" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if rel in edited:
            dest.write_bytes(src.read_bytes() + b"\n# changed in 1.1\nVERSION = '1.1'\n")
        elif rel in rebuilt:  # relinked: some bytes inserted and some changed mid-file
            data = bytearray(src.read_bytes())
            mid = len(data) // 2
            data[mid:mid] = rng.randbytes(4096)
            for at in range(mid // 3, mid, max(1, mid // 50)):
                data[at:at + 8] = rng.randbytes(8)
            dest.write_bytes(bytes(data))
        else:
            os.link(src, dest)
    new_lib = new_app / "_internal" / "newdep" / "libnew.so"
    new_lib.parent.mkdir(parents=True)
    new_lib.write_bytes(b"".join((internal / r).read_bytes()[:300_000] for r in libs[:10])[:3_000_000])
    return old_app, new_app


# ------------------------------------------------------------------ measuring


def _tree_rss(root: int) -> tuple:
    """``(sum, largest)`` VmRSS in bytes of ``root`` and its descendants."""
    parents, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{entry}/statm") as fh:
                pages = int(fh.read().split()[1])
        except OSError:
            continue
        pid = int(entry)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    members = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                changed = True
    values = [rss.get(p, 0) for p in members]
    return sum(values), max(values)


def run_release(out: Path, path: Path, version: str, generator: str, jobs: int = 2) -> dict:
    cmd = [sys.executable, "-m", "pyi_selfupdate", "release", "-o", str(out), "--platform", PLAT,
           "--cmd-name", "textstat" if "textstat" in str(path) else "bigapp", "--diff", generator, "--jobs", str(jobs), str(path), version]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"sum": 0, "max": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            s, m = _tree_rss(proc.pid)
            peak["sum"], peak["max"] = max(peak["sum"], s), max(peak["max"], m)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"release failed:\n{stderr}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"wall": wall, "cpu": cpu, "peak_sum": peak["sum"], "peak_max": peak["max"], "stderr": stderr}


def patches_of(out: Path, version: str) -> dict:
    return {p.parent.parent.name: p.stat().st_size for p in out.glob(f"*/*/{version}/{PLAT}")}


def apply_child(old: str, patch: str, size: str) -> None:
    """In a fresh process: apply ``patch`` to ``old`` as the client does; print JSON figures."""
    import bsdiff4  # noqa: F401  (the patch path needs it: keep it in the baseline)

    from pyi_selfupdate._patch import patch_stream
    from pyi_selfupdate.archive import FolderArchive

    def hwm() -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))

    base = hwm()
    start = time.perf_counter()
    data = Path(patch).read_bytes()
    h = hashlib.sha256()
    with open(os.devnull, "wb") as sink:
        def write(chunk: bytes) -> None:  # hashed while written, as the client's _NewTarget does
            h.update(chunk)
            sink.write(chunk)

        if os.path.isdir(old):
            with FolderArchive(Path(old)) as archive:
                patch_stream(archive.read_at, archive.size, data, write, max_new_size=int(size))
        else:
            with open(old, "rb") as fh:
                def read_at(offset: int, n: int) -> bytes:
                    fh.seek(offset)
                    return fh.read(n)

                patch_stream(read_at, os.path.getsize(old), data, write, max_new_size=int(size))
    print(json.dumps({"wall": time.perf_counter() - start, "base": base, "peak": hwm(),
                      "sha256": h.hexdigest(), "patch": len(data)}))


def measure_apply(old: Path, patch: Path, new_sha: str, size: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--apply", str(old), str(patch), str(size)],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    if result["sha256"] != new_sha:
        raise SystemExit(f"{patch} did not rebuild the new release")
    return result


def stages(old_path: Path, new_path: Path) -> dict:
    """Where a release's time goes, each stage alone in this process: ``(wall, CPU)`` seconds."""
    from pyi_selfupdate.release import _syncdiff
    from pyi_selfupdate.release._builtin.compress import gzip_bytes
    from pyi_selfupdate.release._builtin.diff import _verify
    from pyi_selfupdate.release._model import read_content

    out = {}

    def timed(name: str, fn):
        w, c = time.perf_counter(), time.process_time()
        value = fn()
        out[name] = (time.perf_counter() - w, time.process_time() - c)
        return value

    new = timed("reading the new release (its canonical archive)", lambda: read_content(new_path))
    old = read_content(old_path)
    digest = timed("SHA-256 of the new release", lambda: hashlib.sha256(new).digest())
    timed("gzip (level 6, 1 MiB pieces on every core, incompressible ones stored)", lambda: len(gzip_bytes(new)))
    patch = timed("diff (`--diff fast`, old release in memory)", lambda: _syncdiff.diff(old, new))
    timed("applying the patch once to check it", lambda: _verify(old, patch, digest, len(new)))
    return out


def content(path: Path) -> tuple:
    from pyi_selfupdate.release._model import read_content

    data = read_content(path)
    return len(data), hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ scenarios


def scenario(name: str, work: Path, earlier: list, new: tuple, generators: list) -> dict:
    """Release ``earlier`` [(version, path)] with ours, then ``new`` once per generator, in copies."""
    base = work / f"tree-{name}"
    shutil.rmtree(base, ignore_errors=True)
    for version, path in earlier:
        run_release(base / "out", path, version, "fast")
    rows = {}
    for gen in generators:
        out = work / f"tree-{name}-{gen}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(base / "out", out)
        r = run_release(out, new[1], new[0], gen.split()[0], 1 if gen.endswith("--jobs 1") else 2)
        r["patches"] = patches_of(out, new[0])
        r["out"] = out
        rows[gen] = r
        print(f"{name} {gen}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, peak {r['peak_sum'] / 2**20:.0f} MiB "
              f"summed ({r['peak_max'] / 2**20:.0f} MiB largest), patches {r['patches']}", file=sys.stderr)
    return rows


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--apply":
        apply_child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-large", action="store_true",
                    help="also run bsdiff4 on the 300 MB input (about 5 GB of memory, many minutes)")
    ap.add_argument("--work", type=Path, help="keep the inputs here (reused by the next run)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="patch-bench-")
        work = Path(tmp.name)
    else:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)
    try:
        sections = []
        onefile = [(f"1.{i}", build_example(work, f"1.{i}", False)) for i in range(5)]
        onedir = [(f"1.{i}", build_example(work, f"1.{i}", True)) for i in range(2)]
        big_old, big_new = build_big(work)
        print(f"inputs ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        both = ["bsdiff4", "fast"]
        cases = [
            ("example_app onefile, 4 earlier versions", onefile[:4], onefile[4], both + ["fast --jobs 1"]),
            ("example_app onedir, 1 earlier version", onedir[:1], onedir[1], both),
            (f"{BIG_MB} MB onedir folder of real files, 1 earlier version", [("1.0", big_old)], ("1.1", big_new),
             both if args.reference_large else ["fast", "fast --jobs 1"]),
        ]
        for i, (label, earlier, new, gens) in enumerate(cases):
            rows = scenario(f"case{i}", work, earlier, new, gens)
            size, sha = content(new[1])
            applies = {}
            for gen, r in rows.items():
                if gen.endswith("--jobs 1"):
                    continue
                last = earlier[-1][0]
                applies[gen] = measure_apply(earlier[-1][1], next(r["out"].glob(f"*/{last}/{new[0]}/{PLAT}")), sha, size)
                print(f"  client applies {gen}'s {last} -> {new[0]}: {applies[gen]['wall']:.2f} s, peak "
                      f"{(applies[gen]['peak'] - applies[gen]['base']) / 2**20:.1f} MiB over baseline",
                      file=sys.stderr)
            sections.append((label, size, rows, applies, earlier[-1][0], new[0]))
            for r in rows.values():
                shutil.rmtree(r.pop("out"), ignore_errors=True)
        scaling = []  # memory against the input's size: the large input at a quarter, a half, whole
        for mb in SCALES:
            old_dir, new_dir = build_big(work, mb) if mb != BIG_MB else (big_old, big_new)
            rows = scenario(f"scale{mb}", work, [("1.0", old_dir)], ("1.1", new_dir), ["fast"])
            scaling.append((content(new_dir)[0], rows["fast"]))
            shutil.rmtree(rows["fast"].pop("out"), ignore_errors=True)
        print("timing the stages of the large release", file=sys.stderr)
        big_stages = stages(big_old, big_new)
    finally:
        if tmp is not None:
            tmp.cleanup()
    write_results(sections, scaling, big_stages, time.perf_counter() - t0, args.reference_large)


def _goals(sections: list, scaling: list) -> list:
    """The goals of the patches-at-scale work, each with the figure measured in this run."""
    out = ["", "Against the goals:", "", "| goal | measured | met |", "| --- | --- | --- |"]

    def row(goal: str, measured: str, met: bool) -> None:
        out.append(f"| {goal} | {measured} | {'yes' if met else 'no'} |")

    for label, size, rows, applies, _, _ in sections:
        if label.startswith("example_app onefile"):
            for gen in ("fast", "fast --jobs 1"):
                r = rows[gen]
                row(f"onefile app ({size / 1e6:.1f} MB), 4 earlier versions, `{gen}`: CPU <= 2 s",
                    f"{r['cpu']:.2f} s (bsdiff4: {rows['bsdiff4']['cpu']:.1f} s)", r["cpu"] <= 2.0)
                row(f"... peak memory of all processes <= 3x the binary ({_mib(3 * size)})",
                    f"{_mib(r['peak_sum'])} ({r['peak_sum'] / size:.2f}x)", r["peak_sum"] <= 3 * size)
        if label.startswith(f"{BIG_MB} MB"):
            r = rows["fast"]
            row(f"{BIG_MB} MB folder, 1 earlier version: <= 60 s wall", f"{r['wall']:.1f} s", r["wall"] <= 60)
            row("... <= 1.5 GB peak", f"{r['peak_sum'] / 1e9:.2f} GB", r["peak_sum"] <= 1.5e9)
        if "bsdiff4" in rows:
            worst = max(rows["fast"]["patches"][v] / rows["bsdiff4"]["patches"][v] for v in rows["bsdiff4"]["patches"])
            row(f"{label}: patches <= 1.25x bsdiff4's", f"{worst:.2f}x at most", worst <= 1.25)
        for gen, a in applies.items():
            limit = (64 << 20) + a["patch"]
            row(f"{label}: applying the {gen} patch <= 64 MiB + the patch", f"{_mib(a['peak'])} peak",
                a["peak"] <= limit)
    if len(scaling) >= 2:  # linear or better: peak / input does not grow with the input
        per = [r["peak_sum"] / size for size, r in scaling]
        row("memory grows no faster than the input (peak / input at "
            + ", ".join(f"{size / 1e6:.0f}" for size, _ in scaling) + " MB)",
            ", ".join(f"{x:.2f}x" for x in per), per[-1] <= 1.05 * per[0])
    return out


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def write_results(sections: list, scaling: list, big_stages: dict, elapsed: float, large: bool) -> None:
    lines = [
        "# Patch generation: bsdiff4 (reference) and ours (`--diff fast`)",
        "",
        "Command: `python benchmarks/patch_bench.py`"
        + (" --reference-large" if large else "") + f" ({elapsed:.0f} s, input builds included).",
        "",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
        "(shared with other work: CPU time is the steadier figure).",
        "",
        "Each release is `python -m pyi_selfupdate release --diff GEN --jobs 2` in a child process "
        "(two patches at once, by threads beside the `.gz` compression; `--jobs 1`: one at a time, "
        "after it). CPU: the release process (and any children). Peak memory: VmRSS of all its "
        "processes summed, sampled every 20 ms (and the largest single process), also as a multiple "
        "of the input's size. Compressing the `.gz` is part of every release.",
        "",
        "| input | generator | wall | CPU | peak memory (sum) | x input | largest process | patches |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, size, rows, _, _, _ in sections:
        for gen, r in rows.items():
            patches = ", ".join(f"{v}: {n:,} B" for v, n in sorted(r["patches"].items()))
            lines.append(f"| {label} ({size / 1e6:.1f} MB) | {gen} | {r['wall']:.1f} s | {r['cpu']:.1f} s | "
                         f"{_mib(r['peak_sum'])} | {r['peak_sum'] / size:.2f} | {_mib(r['peak_max'])} | "
                         f"{patches} |")
    lines += ["", "Ours / bsdiff4:", "",
              "| input | wall | CPU | peak memory (sum) | patch size (largest ratio) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for label, _, rows, _, _, _ in sections:
        if "bsdiff4" not in rows or "fast" not in rows:
            lines.append(f"| {label} | - | - | - | (bsdiff4 not run: `--reference-large`) |")
            continue
        ref, ours = rows["bsdiff4"], rows["fast"]
        worst = max(ours["patches"][v] / ref["patches"][v] for v in ref["patches"])
        lines.append(f"| {label} | {ours['wall'] / ref['wall']:.3f} | {ours['cpu'] / ref['cpu']:.3f} | "
                     f"{ours['peak_sum'] / ref['peak_sum']:.2f} | {worst:.3f} |")
    lines += _goals(sections, scaling)
    lines += ["", "Client: the patch from the last earlier version applied as the installed app does "
              "(streamed; SHA-256 while writing), in a fresh process:", "",
              "| input | patch from | patch | apply wall | peak RSS (VmHWM) | over the baseline after imports |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for label, _, _, applies, old_v, new_v in sections:
        for gen, a in applies.items():
            if gen.endswith("--jobs 1"):
                continue  # the same patch as with 2 jobs
            lines.append(f"| {label} | {gen} ({old_v} -> {new_v}) | {a['patch']:,} B | {a['wall']:.2f} s | "
                         f"{_mib(a['peak'])} | {(a['peak'] - a['base']) / 2**20:.1f} MiB |")
    lines += ["", "Memory against the input's size (the large input cut to its first files; `--diff fast "
              "--jobs 2`, 1 earlier version):", "",
              "| input | wall | CPU | peak memory | x input | MiB per input MB |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size, r in scaling:
        lines.append(f"| {size / 1e6:.1f} MB | {r['wall']:.1f} s | {r['cpu']:.1f} s | {_mib(r['peak_sum'])} | "
                     f"{r['peak_sum'] / size:.2f} | {r['peak_sum'] / 2**20 / (size / 1e6):.2f} |")
    lines += ["", "What a release holds: the new release (its bytes, or a folder's canonical archive), the index "
              "of the old one (about 0.12 MiB per MB), and a bounded constant: the interpreter, the `.gz` "
              "pieces in flight, and one gap's `bsdiff4` at a time (at most 4 MiB of old bytes, so about "
              "70 MiB, when a release inserts or rewrites megabytes in one place)."]
    lines += ["", f"Where the {BIG_MB} MB release's time goes (each stage alone, in one process; the release "
              "also decompresses the earlier `.gz` into a temporary file, and runs the diffs beside the "
              "compression):", "",
              "| stage | wall | CPU |", "| --- | ---: | ---: |"]
    for name, (wall, cpu) in big_stages.items():
        lines.append(f"| {name} | {wall:.1f} s | {cpu:.1f} s |")
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
