"""The Windows tier's machinery: a prepared Wine folder, Windows builds, Windows processes.

One folder W (``$PYI_SELFUPDATE_WINE_CACHE``, default ``~/.cache/pyi-selfupdate-wine``,
then a key of ``setup_wine.sh`` and ``requirements-win.txt``) holds the Wine prefix, the
embedded CPython (``D:\\py``: D: is W), the installed pyi_selfupdate copied from the
test interpreter (``D:\\proj\\<hash>``), cached builds (``D:\\builds\\<key>``) and each
session's work folders (``D:\\runs\\...``). Windows processes see only D: and C:
(Z:, which maps /, is removed by setup_wine.sh).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

HERE = Path(__file__).resolve().parent
SETUP = HERE / "setup_wine.sh"
REQUIREMENTS = HERE / "requirements-win.txt"
HARNESS = HERE / "winharness.py"
REPO = HERE.parents[1]
APP_SRC = REPO / "example_app"
NAME = "textstat"
V1, V2 = "1.0", "1.1"
PLAT = "windows-amd64"


def cache_dir() -> Path:
    root = Path(os.environ.get("PYI_SELFUPDATE_WINE_CACHE", "~/.cache/pyi-selfupdate-wine")).expanduser()
    key = hashlib.sha256(SETUP.read_bytes() + REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return root / key


def _tree_hash(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for top in paths:
        for p in sorted(top.rglob("*")) if top.is_dir() else [top]:
            if p.is_file() and "__pycache__" not in p.parts and p.name != "RECORD":
                h.update(str(p.relative_to(top.parent)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


class Wine:
    """A prepared Wine folder: run Windows processes, translate paths, build frozen apps."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PYI_SELFUPDATE_", "PYTHON"))}
        self.env.update(WINEPREFIX=str(self.root / "prefix"), WINEARCH="win64", WINEDEBUG="-all",
                        WINEDLLOVERRIDES="mscoree,mshtml=")
        self.python = r"D:\py\python.exe"
        self.versions = (self.root / "versions.txt").read_text().strip()

    # ------------------------------------------------------------ set-up

    @classmethod
    def prepare(cls, log: Path) -> "Wine":
        """Run setup_wine.sh (a no-op when its folder is complete); fails loudly."""
        root = cache_dir()
        root.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            proc = subprocess.run(["bash", str(SETUP), str(root), sys.executable], stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"tests/windows/setup_wine.sh failed ({proc.returncode}):\n"
                               + log.read_text()[-6000:])
        return cls(root)

    def start_server(self) -> None:
        """One wineserver for the session: no start-up cost per Windows process.

        Kept up by a process that lives as long as the session (below); it lingers
        10 s after the last Windows process, and another session may share it.
        """
        # Exit status 2: one runs already for this prefix (another session's): share it.
        subprocess.run(["wineserver", "-p10"], env=self.env, stdin=subprocess.DEVNULL)
        # The first Windows process starts Wine's own (services.exe, ...), which inherit its
        # standard streams and outlive it: started here without pipes, no later process's
        # output waits for them to end.
        # Likewise the desktop process (explorer.exe /desktop) that the first process with a
        # window starts (a onefile bootloader makes a hidden one): it lives while some process
        # uses the desktop, so one that does for the whole session keeps it from ever being
        # started by, and holding the pipes of, a test's process.
        self._keeper = subprocess.Popen(
            ["wine", self.python, "-c",
             "import ctypes, time; ctypes.windll.user32.GetDesktopWindow(); print('up', flush=True); "
             "time.sleep(86400)"],
            env=self.env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        assert self._keeper.stdout.readline().strip() == b"up", "the Wine desktop did not start"
        self._keeper.stdout.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _explorer_running():
            time.sleep(0.2)

    def stop_server(self) -> None:
        """End the session's keeper; the wineserver ends 10 s after the last Windows process."""
        keeper = getattr(self, "_keeper", None)
        if keeper is not None:
            keeper.kill()
            keeper.wait()

    def install_project(self) -> Path:
        """Copy the test interpreter's installed pyi_selfupdate (package + dist-info) to D:\\proj\\<hash>."""
        import pyi_selfupdate
        from importlib import metadata

        pkg = Path(pyi_selfupdate.__file__).resolve().parent
        dist = metadata.distribution("pyi-selfupdate")
        info = Path(dist._path)  # type: ignore[attr-defined]
        key = _tree_hash([pkg, info])
        dest = self.root / "proj" / key
        if not dest.is_dir():
            tmp = dest.with_name(f"{key}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(pkg, tmp / pkg.name, ignore=ignore)
            shutil.copytree(info, tmp / info.name, ignore=ignore)
            os.replace(tmp, dest)
        self.project = dest
        self.project_key = key
        return dest

    # ------------------------------------------------------------ paths

    def win(self, path: Path) -> str:
        """The Windows path (on D:) of ``path``, which must be inside the Wine folder."""
        rel = Path(os.path.abspath(path)).relative_to(self.root)
        return "D:\\" + "\\".join(rel.parts)

    def workdir(self, name: str) -> Path:
        d = self.root / "runs" / f"{os.getpid()}" / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    # ------------------------------------------------------------ processes

    def popen(self, args: Sequence[str], *, cwd: Optional[Path] = None, env: Optional[Mapping[str, str]] = None,
              stdin=subprocess.DEVNULL) -> subprocess.Popen:
        """Start a Windows process. Its standard streams are pipes (Wine needs pipes or /dev/null)."""
        run_env = dict(self.env)
        run_env.update(env or {})
        return subprocess.Popen(["wine", *args], cwd=cwd or self.root, env=run_env, stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, args: Sequence[str], *, input: Optional[str] = None, timeout: float = 180,
            **kwargs) -> subprocess.CompletedProcess:
        proc = self.popen(args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, **kwargs)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:  # a process it started may hold the pipes: do not wait for it
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                out, err = "", "(its output is held by a process it started)"
            raise AssertionError(f"{args} timed out after {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
        return subprocess.CompletedProcess(args, proc.returncode, out, _clean(err))

    def harness(self, *args: str, env: Optional[Mapping[str, str]] = None, timeout: float = 300) -> dict:
        """Run winharness.py (a Windows python.exe that starts, times, kills Windows processes)."""
        harness = self.root / "harness.py"
        if not harness.exists() or harness.read_bytes() != HARNESS.read_bytes():
            tmp = harness.with_suffix(f".tmp{os.getpid()}")
            shutil.copyfile(HARNESS, tmp)
            os.replace(tmp, harness)
        proc = self.run([self.python, self.win(harness), *args], env=env, timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        assert proc.returncode == 0 and lines, f"harness {args} failed:\n{proc.stdout}\n{proc.stderr}"
        return json.loads(lines[-1])

    # ------------------------------------------------------------ builds

    def build(self, source: Path, script: str, *, name: str, env: Mapping[str, str],
              files: Optional[Mapping[str, str]] = None, onedir: bool = False) -> Path:
        """Build ``source/script`` with PyInstaller under Wine, cached; the .exe (or the onedir folder)."""
        return self.start_build(source, script, name=name, env=env, files=files, onedir=onedir)()

    def start_build(self, source: Path, script: str, *, name: str, env: Mapping[str, str],
                    files: Optional[Mapping[str, str]] = None, onedir: bool = False):
        """Start the build (unless cached); returns a function that waits and returns the result."""
        srcs = {p.name: p.read_text() for p in sorted(source.glob("*.py"))}
        srcs.update(files or {})
        key = hashlib.sha256(json.dumps([self.versions, self.project_key, script, name, sorted(env.items()),
                                         sorted(srcs.items()), onedir]).encode()).hexdigest()[:16]
        out = self.root / "builds" / key
        result = out / "dist" / (name if onedir else name + ".exe")
        if (out / ".done").exists():
            os.utime(out / ".done")
            return lambda: result
        shutil.rmtree(out, ignore_errors=True)
        (out / "src").mkdir(parents=True)
        for rel, text in srcs.items():
            (out / "src" / rel).write_text(text)
        (out / "build.py").write_text(
            "import sys\n"
            f"sys.path.insert(0, {str(self.win(self.project))!r})\n"
            "from PyInstaller.__main__ import run\n"
            "run(sys.argv[1:])\n")
        build_env = {"PYTHONHASHSEED": "0", **env}
        args = [self.python, self.win(out / "build.py"), "--onedir" if onedir else "--onefile",
                "--noconfirm", "--log-level", "WARN", "--name", name, "--paths", self.win(self.project),
                "--distpath", self.win(out / "dist"), "--workpath", self.win(out / "build"),
                "--specpath", self.win(out), self.win(out / "src" / script)]
        started = time.monotonic()
        proc = self.popen(args, cwd=out / "src", env=build_env)

        def wait() -> Path:
            stdout, stderr = proc.communicate(timeout=900)
            (out / "build.log").write_text(stdout + stderr)
            if proc.returncode != 0 or not result.exists():
                raise RuntimeError(f"Windows build of {name} failed ({proc.returncode}):\n{stderr[-6000:]}")
            (out / "seconds").write_text(f"{time.monotonic() - started:.1f}")
            (out / ".done").touch()
            return result

        return wait

    def prune(self, days: float = 3) -> None:
        """Remove builds, project copies and runs unused for ``days`` (the cache must not grow forever)."""
        cutoff = time.time() - days * 86400
        for folder in ("builds", "proj", "runs"):
            for entry in (self.root / folder).glob("*") if (self.root / folder).is_dir() else []:
                try:
                    stamp = (entry / ".done") if (entry / ".done").exists() else entry
                    if stamp.stat().st_mtime < cutoff:
                        shutil.rmtree(entry, ignore_errors=True)
                except OSError:
                    pass


def _explorer_running() -> bool:
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if b"explorer.exe" in fh.read().lower():
                    return True
        except OSError:
            continue
    return False


def _clean(stderr: str) -> str:
    """Wine's own noise removed from a Windows process's stderr."""
    return "\n".join(line for line in stderr.splitlines()
                     if not line.startswith(("wine: could not open working directory",))) + (
        "\n" if stderr.endswith("\n") else "")
