"""Built-in release plugin: find the artifacts in the input path.

Accepted shapes (anything else is refused before anything is written):

- one executable file: platform ``--platform`` or this machine's, cmd name
  ``--cmd-name`` or the file name without ``.exe``;
- a directory of ``<os>-<arch>[.exe]`` files (go-selfupdate's cross-compile
  layout; ``.exe`` is not part of the platform name): needs ``--cmd-name``;
- a directory of ``<os>-<arch>/`` folders each holding one executable (a CI
  build matrix): cmd name = that file's name without ``.exe``;
- a PyInstaller ``dist/`` folder holding one onefile executable.

Hidden entries (names starting with ``.``) are ignored everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List

from ...errors import ReleaseError
from ...protocol import current_platform, parse_platform
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


def _refuse_onedir(folder: Path, entries: List[Path]) -> None:
    names = {p.name for p in entries}
    libs = [p for p in entries if p.is_file() and p.name.lower().endswith(_LIB_SUFFIXES)]
    if names & set(_ONEDIR_HINTS) or len(libs) >= 2:
        raise ReleaseError(
            f"{folder} is a PyInstaller onedir build (it holds "
            f"{'_internal/' if '_internal' in names else 'libraries beside the executable'}); "
            "the update protocol replaces one file: rebuild with --onefile "
            "(pyi-selfupdate build does by default) and release dist/<app>"
        )


def _single_file(path: Path, context: ReleaseContext) -> List[Artifact]:
    if context.platform:
        plat = check_platform(context.platform)
    else:
        plat = current_platform()
        if path.name.lower().endswith(".exe") and not plat.startswith("windows-"):
            raise ReleaseError(
                f"{path.name} is named like a Windows executable but this machine is {plat}; "
                "give its platform with --platform (for example --platform windows-amd64)"
            )
    cmd = context.cmd_name or _stem(path.name)
    return [Artifact(path=path, cmd_name=cmd, platform=plat, version=context.version)]


def _no_platform_flag(context: ReleaseContext, folder: Path, layout: str) -> None:
    if context.platform:
        raise ReleaseError(
            f"--platform {context.platform} was given but {folder} is {layout}, whose names "
            "give the platforms; drop --platform, or pass one executable file to release "
            "a single platform"
        )


def collect_artifacts(context: ReleaseContext) -> List[Artifact]:
    """The artifacts found in ``context.path`` (see the module docstring)."""
    path = Path(context.path)
    if not path.exists():
        raise ReleaseError(f"{path} does not exist; give the executable or the folder holding it")
    if path.is_file():
        return _single_file(path, context)
    if not path.is_dir():
        raise ReleaseError(f"{path} is neither a file nor a folder; give the executable to release")

    entries = _visible(path)
    if not entries:
        raise ReleaseError(
            f"{path} is empty; build the app first (pyi-selfupdate build app.py writes dist/<app>)"
        )
    _refuse_onedir(path, entries)
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
            _refuse_onedir(d, inner)
            sub = [p for p in inner if p.is_dir()]
            if sub:
                raise ReleaseError(
                    f"{d} holds the folder {sub[0].name!r}; each <os>-<arch>/ folder must hold "
                    "exactly one executable (a onefile build): remove the folder"
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

    # A PyInstaller dist/ folder with one onefile executable.
    if dirs:
        d = dirs[0]
        if (d / "_internal").is_dir() or any((d / h).exists() for h in _ONEDIR_HINTS):
            raise ReleaseError(
                f"{d} is a PyInstaller onedir build; the update protocol replaces one file: "
                "rebuild with --onefile (pyi-selfupdate build does by default) and release dist/<app>"
            )
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
        with open(artifact.path, "rb") as fh:
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
