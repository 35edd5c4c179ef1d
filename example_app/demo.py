"""The pyi-selfupdate demo (``make demo``): a frozen app updates itself through a patch.

1. builds example_app (``textstat``) at 1.0 and at 1.1 (one module changed) with
   PyInstaller, reproducibly (``pyi-selfupdate build``: PYTHONHASHSEED=0);
2. releases both with ``pyi-selfupdate release`` into ``public/`` (manifest,
   full ``.gz``, bsdiff patch 1.0 -> 1.1);
3. serves ``public/`` on 127.0.0.1;
4. "installs" textstat 1.0 in a folder and runs it: the first launch checks and
   downloads in the background, the next launch installs the verified update
   and continues as 1.1;
5. prints the figures: full size, ``.gz`` size, patch size, time to update.

Run it with the Python that has pyi-selfupdate installed::

    python example_app/demo.py [--workdir DIR] [--onedir]

With ``--onedir`` (``make demo-onedir``) textstat is built as PyInstaller's
default onedir folder, and the whole folder updates itself the same way.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
EXE_SUFFIX = ".exe" if os.name == "nt" else ""
SAMPLE = """\
It was the best of times, it was the worst of times, it was the age of wisdom,
it was the age of foolishness, it was the epoch of belief, it was the epoch of
incredulity, it was the season of Light, it was the season of Darkness.
"""


def say(text: str = "") -> None:
    print(text, flush=True)


def fail(text: str) -> "None":
    print(f"\ndemo failed: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def human(n: int) -> str:
    return f"{n:,} B" if n < 10_000 else f"{n:,} B ({n / 1_048_576:.1f} MiB)"


# ------------------------------------------------------------------ server


class Server:
    """A small threaded static server for public/, logging every request path."""

    def __init__(self, root: Path, port: int) -> None:
        self.log: List[Tuple[int, str, int]] = []  # (status, raw path, bytes)
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_request(self, code="-", size="-") -> None:
                try:
                    code = int(code)
                except (TypeError, ValueError):
                    code = 0
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                file = root / path
                server.log.append((code, self.path, file.stat().st_size if code == 200 and file.is_file() else 0))

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}/"

    def take(self) -> List[Tuple[int, str, int]]:
        time.sleep(0.05)  # let the handler thread record the last request
        out, self.log[:] = list(self.log), []
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------ steps


def build(work: Path, version: str, port: int, change: bool, onedir: bool) -> Path:
    src = work / f"src-{version}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(HERE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "dist", "demo.py"))
    pyproject = src / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.0"', f'version = "{version}"'))
    if change:  # the one module changed between the releases
        core = src / "textstat_core.py"
        core.write_text(core.read_text().replace('__version__ = "1.0"', f'__version__ = "{version}"'))
    # The demo's own settings only: PYI_SELFUPDATE_* variables of the caller would change the build.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE_")}
    env["PYI_SELFUPDATE_API_URL"] = f"http://127.0.0.1:{port}/"
    env["PYI_SELFUPDATE_CHECK_TIME"] = "0"  # check at every launch: the demo has no day to wait
    out = work / f"build-{version}"
    cmd = [
        sys.executable, "-m", "pyi_selfupdate", "build", "--noconfirm", "--log-level", "WARN",
        "--name", "textstat", "--distpath", str(out / "dist"), "--workpath", str(out / "build"),
        "--specpath", str(out), *(["--onedir"] if onedir else []), "textstat.py",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"PyInstaller failed for {version}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    if onedir:
        app = out / "dist" / "textstat"
        size = sum(p.stat().st_size for p in app.rglob("*") if p.is_file() and not p.is_symlink())
        say(f"      built the folder {app.relative_to(work)}/ in {time.monotonic() - t0:.1f} s, {human(size)}")
        return app
    exe = out / "dist" / ("textstat" + EXE_SUFFIX)
    say(f"      built {exe.relative_to(work)} in {time.monotonic() - t0:.1f} s, {human(exe.stat().st_size)}")
    return exe


def release(public: Path, exe: Path, version: str) -> None:
    cmd = [sys.executable, "-m", "pyi_selfupdate", "release", "-o", str(public), str(exe), version]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        fail(f"pyi-selfupdate release {version} failed:\n{proc.stdout}")
    for line in proc.stdout.strip().splitlines():
        say(f"      | {line}")


def launch(exe: Path, args: List[str], server: Server, stdin: str = "") -> Tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE_")}
    env["PYI_SELFUPDATE_LOG"] = "info"  # show what the bootstrap does
    say(f"  $ {exe.parent.name}/{exe.name} {' '.join(args)}")
    t0 = time.monotonic()
    proc = subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=exe.parent, timeout=120)
    elapsed = time.monotonic() - t0
    for line in proc.stdout.splitlines():
        say(f"    {line}")
    for line in proc.stderr.splitlines():
        say(f"    | {line}")
    for status, path, size in server.take():
        what = ""
        if path.endswith(".json"):
            what = "manifest"
        elif path.endswith(".gz"):
            what = "full binary (.gz)"
        elif status == 200:
            what = "PATCH"
        say(f"    server: GET {path} -> {status} {size:,} B  {what}")
    say(f"    (exit {proc.returncode}, {elapsed:.2f} s)")
    if proc.returncode != 0:
        fail(f"{exe.name} {' '.join(args)} exited with {proc.returncode}")
    return elapsed, proc.stdout


def quiet_launch(exe: Path, args: List[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE_")}
    t0 = time.monotonic()
    subprocess.run([str(exe), *args], capture_output=True, env=env, cwd=exe.parent, timeout=120)
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="folder for the builds and the release tree (default: a new temp folder)")
    parser.add_argument("--onedir", action="store_true",
                        help="build textstat as a onedir folder (PyInstaller's default) and update the folder")
    opts = parser.parse_args()

    try:
        import PyInstaller  # noqa: F401
        from pyi_selfupdate.protocol import current_platform
    except ImportError as exc:
        fail(f"{exc}; run the demo with `make demo` (it installs pyi-selfupdate and PyInstaller in .venv)")

    work = Path(opts.workdir).resolve() if opts.workdir else Path(tempfile.mkdtemp(prefix="pyi-selfupdate-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    plat = current_platform()
    port = free_port()
    kind = "onedir folder" if opts.onedir else "onefile executable"
    say(f"pyi-selfupdate demo: textstat, a frozen app ({kind}), updates itself from 1.0 to 1.1 through a patch")
    say(f"work folder: {work}   platform: {plat}")
    say()

    say("[1/5] building textstat 1.0 with PyInstaller (reproducible: PYTHONHASHSEED=0)")
    v1 = build(work, "1.0", port, change=False, onedir=opts.onedir)
    say("[2/5] building textstat 1.1 (textstat_core.py changed)")
    v2 = build(work, "1.1", port, change=True, onedir=opts.onedir)

    public = work / "public"
    shutil.rmtree(public, ignore_errors=True)
    say("[3/5] releasing both: pyi-selfupdate release -o public/ <binary> <version>")
    release(public, v1, "1.0")
    release(public, v2, "1.1")
    manifest_file = public / "textstat" / f"{plat}.json"
    manifest = json.loads(manifest_file.read_text())
    gz = public / "textstat" / "1.1" / f"{plat}.gz"
    patch = public / "textstat" / "1.0" / "1.1" / plat
    for f in (manifest_file, gz, patch):
        if not f.is_file():
            fail(f"the release tree lacks {f.relative_to(work)}")
    say(f"      manifest {manifest_file.relative_to(work)}: {json.dumps(manifest)}")

    say(f"[4/5] serving public/ on http://127.0.0.1:{port}/")
    server = Server(public, port)

    installed = work / "installed"
    shutil.rmtree(installed, ignore_errors=True)
    installed.mkdir()
    if opts.onedir:
        app_dir = installed / "textstat"
        shutil.copytree(v1, app_dir, symlinks=True)
        exe = app_dir / ("textstat" + EXE_SUFFIX)
    else:
        exe = installed / ("textstat" + EXE_SUFFIX)
        shutil.copy2(v1, exe)
    say(f"[5/5] textstat 1.0 installed as {exe.relative_to(work)}; running it")
    say()
    try:
        say("First launch: the app runs as 1.0; a background thread checks, downloads the patch,")
        say("verifies the result and stages it beside the executable.")
        t_stage, out1 = launch(exe, ["--version"], server)
        staged = sorted(p.name for p in installed.iterdir() if p.name.startswith("."))
        say(f"    files beside the {'app folder' if opts.onedir else 'executable'}: {', '.join(staged) or '(none)'}")
        say()
        say("Next launch: the staged update is installed before the app's code runs, and the")
        say("launch continues as 1.1 (same arguments).")
        t_install, out2 = launch(exe, ["top", "-n", "3"], server, stdin=SAMPLE)
        say()
        say("Any later launch: up to date.")
        t_plain, out3 = launch(exe, ["--version"], server)
        plain = [t_plain] + [quiet_launch(exe, ["--version"]) for _ in range(4)]
        server.take()
    finally:
        server.close()

    if "1.0" not in out1 or "1.1" not in out3:
        fail(f"expected 1.0 then 1.1, got {out1.strip()!r} then {out3.strip()!r}")
    from pyi_selfupdate._files import content_sha256

    digest = content_sha256(exe.parent if opts.onedir else exe)
    same = base64.b64encode(digest).decode() == manifest.get("Sha256") and digest == content_sha256(v2)
    if not same:
        fail("the installed app differs from the released 1.1")

    say()
    say("Figures")
    if opts.onedir:
        from pyi_selfupdate.archive import FolderArchive

        with FolderArchive(v2) as archive:
            full = archive.size
        label = "folder archive 1.1"
    else:
        full, label = v2.stat().st_size, "full binary 1.1"
    gz_size, patch_size = gz.stat().st_size, patch.stat().st_size
    say(f"  {label:<24} {human(full)}")
    say(f"  full download (.gz)      {human(gz_size)}")
    say(f"  patch 1.0 -> 1.1         {human(patch_size)}  ({patch_size / gz_size:.3%} of the .gz)")
    median = sorted(plain)[len(plain) // 2]
    rows = [
        ("launch that downloads (1.0, background check + download + verify)", t_stage),
        ("launch that installs (install + restart, then runs as 1.1)", t_install),
        (f"an ordinary launch of 1.1 (median of {len(plain)})", median),
    ]
    for label, seconds in rows:
        say(f"  {label + ':':<70} {seconds:.2f} s")
    say(f"  so the update cost about {max(0.0, t_stage - median) + max(0.0, t_install - median):.2f} s "
        f"over two ordinary launches, and {patch_size:,} B of download instead of {gz_size:,} B")
    say(f"  installed {'folder' if opts.onedir else 'executable'} == released 1.1 (sha256 {manifest['Sha256']}): yes")
    say()
    say(f"Everything is kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
