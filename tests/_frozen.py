"""Build real frozen apps with PyInstaller, once per test session.

``FrozenBuilder.build(...)`` runs PyInstaller in a subprocess (the test
interpreter's own, with the installed pyi_selfupdate) and memoizes the result by
its inputs, so every test that needs "example_app v1" shares one build.
``prefetch(...)`` starts a build a fixture will need soon, so that builds run
side by side (two at once on this two-core machine) instead of one after another.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple


class FrozenBuilder:
    def __init__(self, root: Path, jobs: Optional[int] = None) -> None:
        self.root = root
        self._cache: Dict[str, Path] = {}
        # At most ``jobs`` PyInstaller runs at once (the one a test waits for
        # included); a build takes one core for most of its run.
        self.jobs = jobs or max(1, min(2, os.cpu_count() or 1))
        self._queued: Dict[str, dict] = {}  # prefetch()ed, not started yet (in order)
        self._running: Dict[str, Tuple[subprocess.Popen, Path, Path]] = {}  # key -> (proc, exe, log)
        self._done: Dict[str, Tuple[subprocess.Popen, Path, Path]] = {}  # ended, not yet asked for

    def build(
        self,
        source_dir: Path,
        script: str,
        *,
        name: str,
        env: Optional[Mapping[str, str]] = None,
        args: Sequence[str] = (),
        files: Optional[Mapping[str, str]] = None,
        reproducible: bool = True,
        onedir: bool = False,
    ) -> Path:
        """Build ``source_dir/script`` as a onefile app called ``name``; return the executable.

        ``files`` are written into a copy of ``source_dir`` first (e.g. a changed
        module or a pyproject.toml), ``env`` is added to PyInstaller's environment
        (e.g. ``PYI_SELFUPDATE_API_URL``) and ``args`` to its command line.
        With ``reproducible`` PYTHONHASHSEED is fixed, as the documented build does.
        With ``onedir`` the app is built as PyInstaller's default onedir folder
        (``<name>/<name>`` beside ``<name>/_internal/``) and the folder is returned.
        A build started by :meth:`prefetch` with the same inputs is waited for.
        """
        spec = dict(source_dir=source_dir, script=script, name=name, env=env, args=args,
                    files=files, reproducible=reproducible, onedir=onedir)
        key = self._key(spec)
        if key in self._cache:
            return self._cache[key]
        if key in self._running or key in self._done:
            return self._finish(key)
        self._queued.pop(key, None)  # needed now: built in the foreground
        self._pump(reserve=1)
        cmd, cwd, run_env, exe = self._prepare(key, spec)
        proc = subprocess.run(cmd, cwd=cwd, env=run_env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"PyInstaller failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
            )
        self._cache[key] = exe
        self._pump()
        return exe

    def prefetch(self, source_dir: Path, script: str, **kwargs) -> None:
        """Start the build ``build(source_dir, script, **kwargs)`` will need, if a core is free.

        For fixtures that know which builds their tests need: builds run in
        parallel (``jobs`` at once) and :meth:`build` waits for the one it needs.
        """
        spec = dict(source_dir=source_dir, script=script, env=None, args=(), files=None,
                    reproducible=True, onedir=False)
        spec.update(kwargs)
        key = self._key(spec)
        if not any(key in d for d in (self._cache, self._running, self._done, self._queued)):
            self._queued[key] = spec
        self._pump()

    def close(self) -> None:
        """End the builds still running (the session is over; nobody needs them)."""
        self._queued.clear()
        for proc, _, _ in self._running.values():
            proc.kill()
            proc.wait()
        self._running.clear()

    @staticmethod
    def _key(spec: dict) -> str:
        key_src = json.dumps(
            [str(spec["source_dir"]), spec["script"], spec["name"], sorted((spec["env"] or {}).items()),
             list(spec["args"]), sorted((spec["files"] or {}).items()), spec["reproducible"],
             spec["onedir"]],
        )
        return hashlib.sha256(key_src.encode()).hexdigest()[:16]

    def _prepare(self, key: str, spec: dict):
        work = self.root / key
        if work.exists():
            shutil.rmtree(work)
        src = work / "src"
        shutil.copytree(spec["source_dir"], src, ignore=shutil.ignore_patterns("__pycache__", "build", "dist"))
        for rel, text in (spec["files"] or {}).items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text)
        run_env = dict(os.environ)
        run_env.pop("PYTHONHASHSEED", None)
        run_env.pop("PYTHONPATH", None)  # the hooks exist only in the installed package
        if spec["reproducible"]:
            run_env["PYTHONHASHSEED"] = "0"
        run_env.update(spec["env"] or {})
        name = spec["name"]
        cmd = [
            sys.executable, "-m", "PyInstaller", "--onedir" if spec["onedir"] else "--onefile", "--noconfirm",
            "--log-level", "WARN", "--name", name,
            "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
            "--specpath", str(work), *spec["args"], str(src / spec["script"]),
        ]
        exe = work / "dist" / (name + (".exe" if os.name == "nt" and not spec["onedir"] else ""))
        return cmd, src, run_env, exe

    def _pump(self, reserve: int = 0) -> None:
        """Start queued builds while fewer than ``jobs - reserve`` run (finished ones do not count)."""
        for key in [k for k, (proc, _, _) in self._running.items() if proc.poll() is not None]:
            self._done[key] = self._running.pop(key)
        while self._queued and len(self._running) < self.jobs - reserve:
            key = next(iter(self._queued))
            spec = self._queued.pop(key)
            cmd, cwd, run_env, exe = self._prepare(key, spec)
            log = exe.parent.parent / "pyinstaller.log"
            with open(log, "w") as out:
                proc = subprocess.Popen(cmd, cwd=cwd, env=run_env, stdout=out, stderr=subprocess.STDOUT)
            self._running[key] = (proc, exe, log)

    def _finish(self, key: str) -> Path:
        proc, exe, log = self._done.pop(key) if key in self._done else self._running.pop(key)
        proc.wait()
        self._pump()
        if proc.returncode != 0:
            raise RuntimeError(f"PyInstaller failed ({proc.returncode}):\n{log.read_text()[-12000:]}")
        self._cache[key] = exe
        return exe
