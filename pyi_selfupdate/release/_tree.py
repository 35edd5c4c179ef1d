"""What the release tool reads from, and writes into, the release tree, kept inside it.

- :func:`check_tree_name`: a cmd name or version becomes a folder name on any
  OS and a URL segment a Go client can fetch (go-selfupdate escapes each
  segment with ``url.QueryEscape``);
- :func:`refuse_links`: no symbolic link is followed inside the output folder
  (a write through a linked folder would land outside it, a read through a
  linked file would publish what it points to);
- :func:`read_gz`: an earlier release's ``.gz`` is decompressed as a stream,
  bounded, hashed and compared with a hash a verified manifest names.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Iterable, Optional, Tuple

from ..errors import InvalidNameError, ManifestError, ReleaseError, VerificationError
from ..protocol import Manifest, decode_manifest, validate_name
from ..settings import LIMITS

__all__ = ["check_tree_name", "refuse_links", "open_in_tree", "read_tree_manifest", "read_gz", "record_path"]

#: Characters Windows refuses in file names (``:`` also makes ``C:evil`` a drive-relative path).
_WINDOWS_CHARS = '<>:"|?*'
#: Device names Windows reserves, with any extension (``NUL.txt`` is NUL).
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{p}{n}" for p in ("COM", "LPT") for n in list("123456789") + ["\u00b9", "\u00b2", "\u00b3"]
}


def check_tree_name(value: str, what: str) -> str:
    """``value`` if it can be a cmd name, version or file name of the release tree; else ReleaseError.

    On top of :func:`~pyi_selfupdate.protocol.validate_name` (no separator, no
    control character, not ``.``/``..``): valid UTF-8 (a name given as bytes
    that are not would be signed but never verify on a client); no space (Go's
    ``url.QueryEscape`` writes it ``+``, which a server reads as a plus: no Go
    client could fetch the release); nothing Windows cannot name a file
    (``<>:"|?*``, a trailing dot or space, ``CON``, ``NUL``, ``COM1``...), so
    the tree can be written, copied and served from any OS.
    """
    try:  # first: bytes from the command line that are not UTF-8 arrive as lone surrogates
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            shown = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no undecodable byte gives
            shown = value.encode("utf-8", "backslashreplace")
        raise ReleaseError(
            f"the {what} {shown!r} is not valid UTF-8: it would be signed, but no client could "
            f"read it back; give the {what} as UTF-8 text"
        ) from None
    try:
        validate_name(value, what)
    except InvalidNameError as exc:
        raise ReleaseError(str(exc)) from None
    if " " in value:
        raise ReleaseError(
            f"the {what} {value!r} contains a space, which go-selfupdate clients ask for as '+' "
            f"(url.QueryEscape) and no server maps back to a space; use '-' or '_' instead"
        )
    bad = sorted({c for c in value if c in _WINDOWS_CHARS})
    if bad or value.endswith(".") or value.split(".")[0].upper() in _WINDOWS_DEVICES:
        why = f"contains {', '.join(repr(c) for c in bad)}" if bad else (
            "ends with a dot, which Windows drops" if value.endswith(".") else "is a Windows device name")
        raise ReleaseError(
            f"the {what} {value!r} {why}: Windows cannot hold it as a file name (and 'C:name' "
            f"names a drive, outside the tree); choose a {what} of letters, digits, '.', '-', '_' or '+'"
        )
    return value


def record_path(cmd_name: str, version: str, plat: str) -> str:
    """``<cmd>/<version>/<plat>.json``: the signed manifest a signed release keeps beside its ``.gz``,
    the record of the hash an earlier release must have before it is diffed from or re-signed."""
    return f"{cmd_name}/{version}/{plat}.json"


def refuse_links(out: Path, parts: Iterable[str]) -> None:
    """Refuse a symbolic link at ``out/parts[0]``, ``out/parts[0]/parts[1]``, ... (``out`` itself may be one).

    Stops at the first component that does not exist yet (it will be created
    as a real folder or file).
    """
    path = Path(out)
    for part in parts:
        path = path / part
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise ReleaseError(
                f"cannot inspect {path} ({exc.strerror}); check the output folder's permissions"
            ) from None
        if stat.S_ISLNK(st.st_mode):
            raise ReleaseError(
                f"{path} is a symbolic link: the release tool never follows links inside the "
                f"output folder {out} (a write would land, or a read come from, outside it); "
                "replace the link with the folder or file itself"
            )


def open_in_tree(out: Path, relpath: str):
    """Open ``out/relpath`` for reading, refusing any symbolic link on the way (binary file object)."""
    parts = relpath.split("/")
    refuse_links(out, parts)
    path = Path(out).joinpath(*parts)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    return os.fdopen(fd, "rb")


def read_tree_manifest(out: Path, relpath: str) -> Optional[Manifest]:
    """The manifest at ``out/relpath`` (None when there is none); links refused, size bounded."""
    path = Path(out).joinpath(*relpath.split("/"))
    try:
        with open_in_tree(Path(out), relpath) as fh:
            data = fh.read(LIMITS.manifest_bytes + 1)
    except (FileNotFoundError, NotADirectoryError):  # no release yet (or no tree: publish says so)
        return None
    except OSError as exc:
        raise ReleaseError(f"cannot read the manifest {path} ({exc.strerror}); fix its permissions") from None
    if len(data) > LIMITS.manifest_bytes:
        raise ReleaseError(f"{path} is larger than {LIMITS.manifest_bytes} bytes, which no release "
                           "writes; restore it from a backup")
    try:
        return decode_manifest(data, source=str(path))
    except ManifestError as exc:
        raise ReleaseError(f"the manifest is unreadable: {exc}") from None


def read_gz(
    path: Path,
    *,
    max_size: int,
    sha256: Optional[bytes] = None,
    write: Optional[Callable[[bytes], object]] = None,
    why: str = "",
) -> Tuple[int, bytes]:
    """Decompress the ``.gz`` at ``path`` as a stream into ``write``; return ``(size, digest)``.

    ``path`` comes from :meth:`ReleaseContext.target` (no link on the way);
    the file itself is opened without following a link. At most ``max_size``
    decompressed bytes are produced (a decompression bomb stops there); with
    ``sha256``, the result must hash to it. Every refusal is a
    :class:`ReleaseError` naming the file; ``why`` says where the bound or
    hash comes from (default with ``sha256``: the signed manifest).
    """
    if sha256 is not None and not why:
        why = "the size and SHA-256 its signed manifest gives"
    from .._patch import gunzip_to

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            size, digest = gunzip_to(fh.read, write or (lambda _b: None), max_size=max_size, source=str(path))
    except VerificationError as exc:
        raise ReleaseError(
            f"{exc}{f' ({why})' if why else ''}; the tree was altered or damaged: restore {path} from "
            "a backup, or remove it if it is not a release of yours"
        ) from None
    except OSError as exc:
        raise ReleaseError(
            f"cannot read {path} ({exc.strerror}); restore it from a backup, or remove that version's folder"
        ) from None
    if sha256 is not None and digest != sha256:
        raise ReleaseError(
            f"{path} does not hash to the SHA-256 {why or 'a signed manifest names'}: the tree was "
            "altered; restore it from a backup (never re-sign or diff from it as it is)"
        )
    return size, digest
