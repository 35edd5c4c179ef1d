"""Build real frozen apps with PyInstaller, once per test session.

``FrozenBuilder.build(...)`` runs PyInstaller in a subprocess (the test
interpreter's own, with the installed pyi_selfupdate) and memoizes the result by
its inputs, so every test that needs "example_app v1" shares one build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence


class FrozenBuilder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: Dict[str, Path] = {}

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

        With ``onedir`` the app is built as PyInstaller's default onedir folder
        (``<name>/<name>`` beside ``<name>/_internal/``) and the folder is returned.

        ``files`` are written into a copy of ``source_dir`` first (e.g. a changed
        module or a pyproject.toml), ``env`` is added to PyInstaller's environment
        (e.g. ``PYI_SELFUPDATE_API_URL``) and ``args`` to its command line.
        With ``reproducible`` PYTHONHASHSEED is fixed, as the documented build does.
        """
        key_src = json.dumps(
            [str(source_dir), script, name, sorted((env or {}).items()), list(args),
             sorted((files or {}).items()), reproducible, onedir],
        )
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        if key in self._cache:
            return self._cache[key]
        work = self.root / key
        if work.exists():
            shutil.rmtree(work)
        src = work / "src"
        shutil.copytree(source_dir, src, ignore=shutil.ignore_patterns("__pycache__", "build", "dist"))
        for rel, text in (files or {}).items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text)
        run_env = dict(os.environ)
        run_env.pop("PYTHONHASHSEED", None)
        run_env.pop("PYTHONPATH", None)  # the hooks exist only in the installed package
        if reproducible:
            run_env["PYTHONHASHSEED"] = "0"
        run_env.update(env or {})
        cmd = [
            sys.executable, "-m", "PyInstaller", "--onedir" if onedir else "--onefile", "--noconfirm",
            "--log-level", "WARN", "--name", name,
            "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
            "--specpath", str(work), *args, str(src / script),
        ]
        proc = subprocess.run(cmd, cwd=src, env=run_env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"PyInstaller failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
            )
        exe = work / "dist" / name if onedir else work / "dist" / (name + (".exe" if os.name == "nt" else ""))
        self._cache[key] = exe
        return exe
