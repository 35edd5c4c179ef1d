"""Built-in release plugin: find the artifacts in the input path.

Accepted shapes (anything else is refused before anything is written):

- one executable file: platform ``--platform`` or this machine's, cmd name
  ``--cmd-name`` or the file name without ``.exe``;
- a directory of ``<os>-<arch>[.exe]`` files (go-selfupdate's cross-compile
  layout; ``.exe`` is not part of the platform name): needs ``--cmd-name``;
- a directory of ``<os>-<arch>/`` folders each holding one executable or one
  app folder (a CI build matrix): cmd name = the executable's name without ``.exe``;
- a PyInstaller ``dist/`` folder holding one onefile executable or one app folder;
- an app folder itself: a PyInstaller onedir app (``<app>/<app>`` beside
  ``_internal/``) or a macOS ``.app`` bundle (``Contents/MacOS/<exe>``), released
  as a whole (its canonical archive, :mod:`pyi_selfupdate.archive`). Where a
  ``dist/`` holds both ``<app>/`` and ``<app>.app`` (PyInstaller's ``--windowed``
  on macOS), the ``.app`` is released.

Hidden entries (names starting with ``.``) are ignored everywhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional, Tuple

from ...errors import ReleaseError
from ...protocol import FOLDER, current_platform, parse_platform
from .._model import Artifact, ReleaseContext
from ..hookspecs import hookimpl

log = logging.getLogger("pyi_selfupdate.release")

_ONEDIR_HINTS = ("_internal", "base_library.zip")
_LIB_SUFFIXES = (".so", ".dll", ".dylib", ".pyd", ".zip")


def check_platform(name: str) -> str:
    """Validate a ``--platform`` value; raise :class:`ReleaseError` naming the fix."""
    if parse_platform(name) is None:
        hint = ""
        low = name.lower()
        if low.endswith(".exe"):
            hint = f" (drop '.exe': {low[:-4]})"
        elif "_" in low:
            hint = f" (Go spells it with '-': {low.replace('_', '-')})"
        raise ReleaseError(
            f"unknown platform {name!r}{hint}; give <GOOS>-<GOARCH> as Go names it, "
            "for example linux-amd64, darwin-arm64 or windows-amd64"
        )
    return name


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".exe") else name


def _visible(folder: Path) -> List[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise ReleaseError(f"cannot list {folder} ({exc.strerror}); check its permissions") from None


def app_folder(folder: Path) -> Optional[Path]:
    """The launcher of the app folder ``folder`` (onedir or macOS ``.app``), or None if it is not one."""
    if folder.name.endswith(".app") and (folder / "Contents" / "MacOS").is_dir():
        exes = [p for p in _visible(folder / "Contents" / "MacOS") if p.is_file()]
        if len(exes) != 1:
            raise ReleaseError(
                f"{folder}/Contents/MacOS holds {len(exes)} files; a macOS app bundle has exactly "
                "one executable there: rebuild it"
            )
        return exes[0]
    entries = _visible(folder)
    names = {p.name for p in entries}
    libs = [p for p in entries if p.is_file() and p.name.lower().endswith(_LIB_SUFFIXES)]
    if not (names & set(_ONEDIR_HINTS) or len(libs) >= 2):
        return None
    exes = [p for p in entries if p.is_file() and not p.name.lower().endswith(_LIB_SUFFIXES)
            and (p.name.lower().endswith(".exe") or os.access(p, os.X_OK))]
    named = [p for p in exes if _stem(p.name) == folder.name]
    if len(named) == 1 or len(exes) == 1:
        return (named or exes)[0]
    raise ReleaseError(
        f"{folder} looks like a PyInstaller onedir app but its executable cannot be told "
        f"({', '.join(p.name for p in exes) or 'none found'}); name the folder like the executable "
        "(PyInstaller's dist/<app>/<app>)"
    )


def _folder_artifact(folder: Path, exe: Path, context: ReleaseContext, plat: str = "") -> Artifact:
    cmd = context.cmd_name or _stem(exe.name)
    return Artifact(path=folder, cmd_name=cmd, platform=plat, version=context.version,
                    kind=FOLDER, executable=exe)


def _one_app(entries: List[Path], where: Path) -> Optional[Tuple[Path, Path]]:
    """``(folder, launcher)`` when ``entries`` (a dist/ or <os>-<arch>/ folder) hold one app folder."""
    apps = [(p, exe) for p in entries if p.is_dir() for exe in [app_folder(p)] if exe is not None]
    bundles = [a for a in apps if a[0].name.endswith(".app")]
    if bundles:  # PyInstaller --windowed on macOS writes both <app>/ and <app>.app
        twins = {b[0].name[:-4] for b in bundles}
        apps = bundles + [a for a in apps if a[0].name not in twins and not a[0].name.endswith(".app")]
    if not apps:
        return None
    if len(apps) > 1:
        raise ReleaseError(
            f"{where} holds several app folders ({', '.join(a[0].name for a in apps)}), which looks "
            "like several apps at once; release one at a time (give its folder)"
        )
    stray = [p for p in entries if p != apps[0][0] and not (p.is_dir() and app_folder(p) is not None)]
    if stray:
        raise ReleaseError(
            f"{where} holds the app folder {apps[0][0].name!r} and also {stray[0].name!r}; "
            f"move {stray[0].name!r} out of {where}, or release {apps[0][0]} itself"
        )
    return apps[0]


def _this_platform(path: Path, context: ReleaseContext) -> str:
    """The platform of one artifact given alone: ``--platform``, or this machine's."""
    if context.platform:
        return check_platform(context.platform)
    plat = current_platform()
    if path.name.lower().endswith(".exe") and not plat.startswith("windows-"):
        raise ReleaseError(
            f"{path.name} is named like a Windows executable but this machine is {plat}; "
            "give its platform with --platform (for example --platform windows-amd64)"
        )
    if path.name.endswith(".app") and not plat.startswith("darwin-"):
        raise ReleaseError(
            f"{path.name} is a macOS app bundle but this machine is {plat}; give its platform "
            "with --platform (darwin-arm64 or darwin-amd64)"
        )
    return plat


def _single_file(path: Path, context: ReleaseContext) -> List[Artifact]:
    cmd = context.cmd_name or _stem(path.name)
    return [Artifact(path=path, cmd_name=cmd, platform=_this_platform(path, context),
                     version=context.version)]


def _single_folder(folder: Path, exe: Path, context: ReleaseContext) -> List[Artifact]:
    return [_folder_artifact(folder, exe, context, _this_platform(folder, context))]


def _no_platform_flag(context: ReleaseContext, folder: Path, layout: str) -> None:
    if context.platform:
        raise ReleaseError(
            f"--platform {context.platform} was given but {folder} is {layout}, whose names "
            "give the platforms; drop --platform, or pass one executable file to release "
            "a single platform"
        )


def _inside_input(context: ReleaseContext, artifacts: List[Artifact]) -> List[Artifact]:
    """Refuse an artifact reached through a symbolic link that leads out of the input folder.

    The input path itself may be a link (it is what the publisher named);
    below it, a link is followed only while it stays inside, as the canonical
    archive of an app folder keeps only links inside the folder: a link to,
    say, a private key would otherwise be published, world-readable.
    """
    root = os.path.realpath(context.path)
    for a in artifacts:
        for p in {Path(a.path), Path(a.executable or a.path)}:
            real = os.path.realpath(p)
            if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
                raise ReleaseError(
                    f"{p} leads through a symbolic link to {real}, outside the input folder "
                    f"{context.path}; nothing is published from outside it: copy the file into "
                    "the folder, or give its path itself"
                )
    return artifacts


def collect_artifacts(context: ReleaseContext) -> List[Artifact]:
    """The artifacts found in ``context.path`` (see the module docstring)."""
    return _inside_input(context, _collect_artifacts(context))


def _collect_artifacts(context: ReleaseContext) -> List[Artifact]:
    path = Path(context.path)
    if not path.exists():
        raise ReleaseError(f"{path} does not exist; give the executable or the folder holding it")
    if path.is_file():
        return _single_file(path, context)
    if not path.is_dir():
        raise ReleaseError(f"{path} is neither a file nor a folder; give the executable to release")

    exe = app_folder(path)
    if exe is not None:
        return _single_folder(path, exe, context)
    entries = _visible(path)
    if not entries:
        raise ReleaseError(
            f"{path} is empty; build the app first (pyi-selfupdate build app.py writes dist/<app>)"
        )
    files = [p for p in entries if p.is_file()]
    dirs = [p for p in entries if p.is_dir()]
    others = [p for p in entries if not p.is_file() and not p.is_dir()]
    if others:
        raise ReleaseError(f"{others[0]} is not a regular file or folder; remove it from {path}")
    plat_files = [p for p in files if parse_platform(_stem(p.name))]
    plat_dirs = [p for p in dirs if parse_platform(p.name)]

    # A directory of <os>-<arch>/ folders, each with one executable.
    if plat_dirs:
        stray = [p for p in entries if p not in plat_dirs]
        if stray:
            raise ReleaseError(
                f"{path} holds <os>-<arch>/ folders and also {stray[0].name!r}, which is not one; "
                f"move {stray[0].name!r} out of {path} (each platform goes in its own <os>-<arch>/ folder)"
            )
        _no_platform_flag(context, path, "a folder of <os>-<arch>/ folders")
        arts: List[Artifact] = []
        names = set()
        for d in plat_dirs:
            inner = _visible(d)
            app = _one_app(inner, d)
            if app is not None:
                names.add(_stem(app[1].name))
                arts.append(_folder_artifact(app[0], app[1], context, d.name))
                continue
            sub = [p for p in inner if p.is_dir()]
            if sub:
                raise ReleaseError(
                    f"{d} holds the folder {sub[0].name!r}, which is not an app folder; each "
                    "<os>-<arch>/ folder must hold exactly one executable or one app folder "
                    "(PyInstaller's dist/<app>): remove the folder"
                )
            if len(inner) != 1:
                shown = ", ".join(p.name for p in inner) or "nothing"
                raise ReleaseError(
                    f"{d} holds {shown}; each <os>-<arch>/ folder must hold exactly one "
                    "executable: leave only the app's onefile executable there"
                )
            names.add(_stem(inner[0].name))
            arts.append(Artifact(path=inner[0], cmd_name="", platform=d.name, version=context.version))
        if context.cmd_name:
            cmd = context.cmd_name
        elif len(names) == 1:
            cmd = names.pop()
        else:
            raise ReleaseError(
                f"the <os>-<arch>/ folders of {path} hold executables with different names "
                f"({', '.join(sorted(names))}), which looks like two apps at once; give the "
                "app's name with --cmd-name, or release each app on its own"
            )
        for a in arts:
            a.cmd_name = cmd
        return arts

    # A directory of <os>-<arch>[.exe] files (go-selfupdate's layout).
    if plat_files:
        stray = [p for p in entries if p not in plat_files]
        if stray:
            kind = "folder" if stray[0].is_dir() else "file"
            raise ReleaseError(
                f"{path} holds <os>-<arch> executables and also the {kind} {stray[0].name!r}; "
                f"move {stray[0].name!r} out of {path} so only <os>-<arch>[.exe] files remain"
            )
        _no_platform_flag(context, path, "a folder of <os>-<arch> files")
        seen = {}
        for p in plat_files:
            plat = _stem(p.name)
            if plat in seen:
                raise ReleaseError(
                    f"{path} holds both {seen[plat].name!r} and {p.name!r} for {plat}; keep one"
                )
            seen[plat] = p
        return [
            Artifact(path=p, cmd_name=context.cmd_name or "", platform=_stem(p.name), version=context.version)
            for p in plat_files
        ]

    # A PyInstaller dist/ folder with one app folder, or one onefile executable.
    app = _one_app(entries, path)
    if app is not None:
        return _single_folder(app[0], app[1], context)
    if dirs:
        d = dirs[0]
        raise ReleaseError(
            f"{path} holds the folder {d.name!r}, which is neither an executable nor an "
            "<os>-<arch>/ folder; release the executable itself, or remove the folder"
        )
    if len(files) > 1:
        shown = ", ".join(p.name for p in files[:4]) + (", ..." if len(files) > 4 else "")
        raise ReleaseError(
            f"{path} holds several files ({shown}), which looks like two apps at once; release one "
            "executable at a time (give its path), or name them <os>-<arch>[.exe] for a multi-platform release"
        )
    return _single_file(files[0], context)


@hookimpl(trylast=True)
def release_collect(context: ReleaseContext) -> List[Artifact]:
    """The built-in input layouts (see the module docstring)."""
    return collect_artifacts(context)


#: Executable formats by their first bytes, and the GOOS values that run them.
_FORMATS = [
    (b"\x7fELF", "an ELF (Linux/BSD) executable", ("linux", "android", "freebsd", "netbsd", "openbsd",
                                                   "dragonfly", "solaris", "illumos", "hurd")),
    (b"MZ", "a Windows (PE) executable", ("windows",)),
    (b"\xcf\xfa\xed\xfe", "a macOS (Mach-O) executable", ("darwin", "ios")),
    (b"\xce\xfa\xed\xfe", "a macOS (Mach-O) executable", ("darwin", "ios")),
    (b"\xca\xfe\xba\xbe", "a macOS universal (Mach-O) executable", ("darwin", "ios")),
]


@hookimpl
def release_check_artifact(context: ReleaseContext, artifact: Artifact) -> None:
    """Warn when the file's format does not run on its platform (a likely mix-up)."""
    try:
        with open(artifact.executable or artifact.path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return
    goos = artifact.platform.split("-", 1)[0]
    for magic, what, systems in _FORMATS:
        if head.startswith(magic):
            if goos not in systems:
                log.warning(
                    "%s looks like %s but is released for %s: check --platform or the folder names",
                    artifact.path, what, artifact.platform,
                )
            return
