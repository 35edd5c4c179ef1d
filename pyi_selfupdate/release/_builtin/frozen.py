"""Built-in release plugin: check the update settings embedded in a frozen app.

A PyInstaller app built with pyi-selfupdate carries its update configuration as
``pyi_selfupdate/_embedded_config.json`` in its archive. Releasing such a binary
under another version than the one it was built with makes every client update
itself forever (it downloads "1.2", restarts, still says "1.1", downloads again);
releasing it under another cmd name hides the release from it. This plugin reads
the embedded configuration back with PyInstaller's own archive reader and refuses
both mistakes, and a PyInstaller app built without the updater (it forgot
``import pyi_selfupdate``: whoever installs it can never update again) unless
the option ``allow_no_updater`` is set (``--allow-no-updater``). Files that are
not PyInstaller apps (a Go binary, a script) release as before.

:func:`read_embedded_config` and :func:`check_frozen_artifact` are usable on
their own.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional

from ...errors import ReleaseError
from ...settings import EMBEDDED_DIR, EMBEDDED_NAME

log = logging.getLogger("pyi_selfupdate.release")

#: Archive entry of the embedded configuration.
EMBEDDED_ENTRY = f"{EMBEDDED_DIR}/{EMBEDDED_NAME}"

_COOKIE_MAGIC = b"MEI\014\013\012\013\016"

from ..hookspecs import hookimpl


def read_embedded_config(path: "str | os.PathLike[str]") -> Optional[Dict[str, Any]]:
    """The update configuration embedded in the frozen app at ``path``, or None.

    None when ``path`` is not a PyInstaller onefile executable (no CArchive) or
    was built without pyi-selfupdate's hook. Raises :class:`ReleaseError` when
    the embedded entry exists but is not a JSON object. For an app folder
    (onedir, macOS ``.app``) the configuration is a data file inside it.
    """
    if os.path.isdir(path):
        return _folder_config(os.fspath(path))
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ReleaseError(f"cannot read {os.fspath(path)!r} ({exc}); check the path") from None
    if size < 88:
        return None
    try:
        from PyInstaller.archive.readers import CArchiveReader
    except ImportError:  # pragma: no cover - PyInstaller is a dependency
        log.warning("PyInstaller is not installed: the settings embedded in %s are not checked", path)
        return None
    try:
        archive = CArchiveReader(os.fspath(path))
    except Exception as exc:  # not an archive, or bytes that only look like a cookie
        log.debug("%s is not a PyInstaller app (%s)", path, exc)
        return None
    # An app built on Windows names its entries with backslashes.
    entry = next((e for e in (EMBEDDED_ENTRY, EMBEDDED_ENTRY.replace("/", "\\")) if e in archive.toc), None)
    if entry is None:
        log.debug("%s is a PyInstaller app built without pyi-selfupdate's hook", path)
        return None
    try:
        data = json.loads(archive.extract(entry).decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except Exception as exc:
        raise ReleaseError(
            f"{os.fspath(path)} holds an unreadable {EMBEDDED_ENTRY} ({exc}); rebuild the app"
        ) from None
    return data


#: Where a folder app keeps its data files: onedir's contents folder (or the
#: folder itself), a macOS bundle's Resources and Frameworks.
_DATA_DIRS = ("_internal", ".", "Contents/Resources", "Contents/Frameworks")


def _folder_config(folder: str) -> Optional[Dict[str, Any]]:
    for data_dir in _DATA_DIRS:
        candidate = os.path.join(folder, *data_dir.split("/"), *EMBEDDED_ENTRY.split("/"))
        try:
            with open(candidate, "rb") as fh:
                raw = fh.read(1 << 20)
        except OSError:
            continue
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise ReleaseError(f"{candidate} is unreadable ({exc}); rebuild the app") from None
        return data
    log.debug("%s holds no pyi-selfupdate configuration", folder)
    return None


def is_pyinstaller_app(path: "str | os.PathLike[str]") -> bool:
    """True when the executable at ``path`` carries a PyInstaller archive (onefile or onedir
    launcher), whether or not it was built with pyi-selfupdate."""
    try:
        from PyInstaller.archive.readers import CArchiveReader

        CArchiveReader(os.fspath(path))
    except Exception:  # not an archive, or PyInstaller missing
        return False
    return True


def check_frozen_artifact(
    path: "str | os.PathLike[str]", *, version: str, cmd_name: str,
    executable: "str | os.PathLike[str] | None" = None, allow_no_updater: bool = True,
) -> Optional[Dict[str, Any]]:
    """Refuse a frozen app whose embedded version or cmd_name differs from the release,
    and, unless ``allow_no_updater``, a PyInstaller app built without the updater.

    Returns the embedded configuration (None for other files). When the app was
    built without ``cmd_name`` it uses its executable's file name at run time:
    a file name that differs from ``cmd_name`` is only warned about, since the
    name it is installed under is not known here.
    """
    config = read_embedded_config(path)
    shown = os.fspath(path)
    if config is None:
        launcher = executable if executable is not None else path
        if not allow_no_updater and not os.path.isdir(launcher) and is_pyinstaller_app(launcher):
            raise ReleaseError(
                f"{shown} is a PyInstaller app built without pyi-selfupdate (it embeds no update "
                "settings): whoever installs it could never update again. Add `import pyi_selfupdate` "
                "to the app (or build with --hidden-import pyi_selfupdate) and build it again; pass "
                "--allow-no-updater only to ship, on purpose, a last release that stops updating"
            )
        return None
    built = config.get("current_version")
    if built != version:
        raise ReleaseError(
            f"{shown} was built as version {built!r} but is being released as {version!r}: "
            f"its users would download it, still report {built!r} and update again at every "
            f"check; rebuild it with current_version = {version!r} (spec hooksconfig, "
            f"[tool.pyi-selfupdate] or PYI_SELFUPDATE_CURRENT_VERSION), or release it as {built!r}"
        )
    embedded_cmd = config.get("cmd_name")
    if embedded_cmd is not None:
        if embedded_cmd != cmd_name:
            raise ReleaseError(
                f"{shown} was built with cmd_name {embedded_cmd!r} but is being released as "
                f"{cmd_name!r}: it asks for updates under {embedded_cmd!r} and would never see "
                f"this release; release it with the cmd name {embedded_cmd!r} or rebuild it"
            )
    else:
        stem = os.path.basename(os.fspath(executable or path))
        if stem.lower().endswith(".exe"):
            stem = stem[:-4]
        if stem != cmd_name:
            log.warning(
                "%s was built without cmd_name, so it asks for updates under its own file name "
                "(%r here) but is released as %r: it finds this release only when installed as %r; "
                "set cmd_name at build time to make it independent of the file name",
                shown, stem, cmd_name, cmd_name,
            )
    return config


@hookimpl
def release_check_artifact(context: Any, artifact: Any) -> None:
    """Pipeline hook: :func:`check_frozen_artifact` on every input file of a release."""
    path = getattr(artifact, "path", artifact)
    version = getattr(artifact, "version", None) or getattr(context, "version")
    cmd_name = getattr(artifact, "cmd_name", None) or getattr(context, "cmd_name")
    options = getattr(context, "options", None) or {}
    config = check_frozen_artifact(path, version=version, cmd_name=cmd_name,
                                   executable=getattr(artifact, "executable", None),
                                   allow_no_updater=bool(options.get("allow_no_updater")))
    data = getattr(artifact, "data", None)
    if isinstance(data, dict):
        data["embedded_config"] = config


@hookimpl
def release_deduce_cmd_name(context: Any, artifacts: Any) -> Optional[str]:
    """Name unnamed artifacts (an ``<os>-<arch>`` folder) by the cmd_name they were built with.

    Answers only when every frozen artifact that embeds a cmd_name agrees on it.
    """
    names = set()
    for artifact in artifacts:
        config = read_embedded_config(artifact.path)
        if config and config.get("cmd_name"):
            names.add(config["cmd_name"])
    if len(names) == 1:
        return names.pop()
    if len(names) > 1:
        log.warning("the binaries were built with different cmd_names (%s)", ", ".join(sorted(names)))
    return None
