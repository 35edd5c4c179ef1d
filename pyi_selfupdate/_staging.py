"""The staged update: a verified binary waiting beside the executable for the next launch.

File names, in the target's folder, for a target named ``<name>``:

``.<name>.staged``         a verified binary (or app folder) waiting for the next launch
``.<name>.staged.json``    its sidecar, written last: it marks the staged file
                           complete (``from``, ``to``, ``sha256``, ``method``, ``bytes``)

This module stages (:func:`promote_to_staged`), reads (:func:`read_staged`),
claims (:func:`claim_staged`), verifies and swaps (:func:`install_claimed`) and
discards a staged update, and removes what interrupted updates left behind
(:func:`cleanup_leftovers`, run at every launch of a frozen app).

``base64`` and ``json`` are imported on first use (the usual launch of a frozen
app stages nothing); every install goes through :mod:`pyi_selfupdate.updater`,
which imports them before any swap.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Any, Callable, List, Optional
    from ._files import PathLike

from . import _files, _lazy
from ._files import beside, remove_quietly
from ._lazy import log
from .errors import InstallError, SelfUpdateError
from .settings import LIMITS

if TYPE_CHECKING:
    from pathlib import Path

    import base64
    import json
else:
    base64, json = _lazy.module("base64"), _lazy.module("json")

__all__ = [
    "StagedInfo", "staged_path", "sidecar_file", "sidecar_path", "promote_to_staged",
    "read_staged", "discard_staged", "claim_staged", "claim_verified", "install_claimed",
    "INSTALLED", "SWITCHING",
    "cleanup_leftovers",
]


class StagedInfo:
    """What a staged update's sidecar says (a plain slotted class: this module loads at every
    launch, and a dataclass or a typing.NamedTuple would bring their modules with them)."""

    __slots__ = ("from_version", "to_version", "sha256", "method", "bytes_fetched", "notes")

    def __init__(self, from_version: str, to_version: str, sha256: bytes, method: str,
                 bytes_fetched: int, notes: str = "") -> None:
        self.from_version = from_version
        self.to_version = to_version
        self.sha256 = sha256
        self.method = method
        self.bytes_fetched = bytes_fetched
        self.notes = notes

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StagedInfo):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "StagedInfo(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "from": self.from_version,
                "to": self.to_version,
                "sha256": base64.b64encode(self.sha256).decode("ascii"),
                "method": self.method,
                "bytes": self.bytes_fetched,
                "notes": self.notes,
            },
            indent=1,
        ).encode("utf-8")


def staged_path(target: PathLike) -> "Path":
    """``.<name>.staged`` beside ``target``."""
    return _files.path(beside(target, ".staged"))


def sidecar_file(target: PathLike) -> str:
    """``.<name>.staged.json`` beside ``target``, as a string (no pathlib: the launch path)."""
    return beside(target, ".staged.json")


def sidecar_path(target: PathLike) -> "Path":
    """``.<name>.staged.json`` beside ``target``."""
    return _files.path(sidecar_file(target))


def promote_to_staged(new: PathLike, target: PathLike, info: StagedInfo) -> "Path":
    """Rename the finished file ``new`` to ``.<name>.staged``, then write the sidecar.

    The sidecar is written (temporary name, fsync, rename) only once the staged
    binary is complete on disk, so its presence marks a complete staged update.
    """
    staged = staged_path(target)
    sidecar = sidecar_path(target)
    remove_quietly(sidecar)  # an older sidecar must not vouch for the new file
    if staged.is_dir():  # a folder is not replaced by a rename: remove an older staging first
        remove_quietly(staged)
    try:
        os.replace(os.fspath(new), staged)
    except OSError as exc:
        remove_quietly(new)
        raise InstallError(f"cannot stage the update as {staged} ({exc})") from None
    _files.release_claim(new)
    _files.fsync_dir(staged.parent)
    with _files.NewFile(target, mode=0o644) as side:
        side.write(info.to_json())
        done = side.finish()
    try:
        os.replace(done, sidecar)
    except OSError as exc:
        remove_quietly(done)
        raise InstallError(f"cannot write {sidecar} ({exc})") from None
    _files.release_claim(done)
    _files.fsync_dir(staged.parent)
    return staged


def read_staged(target: PathLike) -> Optional[StagedInfo]:
    """The sidecar of a staged update, or None if there is none.

    A sidecar that cannot be parsed, or a sidecar without its staged file, is
    discarded (both files) with a WARNING.
    """
    sidecar = sidecar_path(target)
    try:
        raw = sidecar.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s); ignoring the staged update", sidecar, exc)
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
        info = StagedInfo(
            from_version=_str(doc["from"]),
            to_version=_str(doc["to"]),
            sha256=base64.b64decode(_str(doc["sha256"]), validate=True),
            method=_str(doc.get("method", "full")),
            bytes_fetched=int(doc.get("bytes", 0)),
            notes=str(doc.get("notes") or ""),
        )
        if len(info.sha256) != 32:
            raise ValueError("sha256 is not 32 bytes")
    except Exception as exc:  # any malformation: the file is not ours to trust
        discard_staged(target, f"its sidecar {sidecar.name} is corrupt ({exc})")
        return None
    staged = staged_path(target)
    if not staged.exists() or staged.is_dir() != os.path.isdir(target):
        discard_staged(target, "the staged binary is missing")
        return None
    return info


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def discard_staged(target: PathLike, reason: str, *, warn: bool = True) -> None:
    """Remove the staged binary and its sidecar, logging ``reason``."""
    (log.warning if warn else log.info)(
        "discarding the staged update beside %s: %s", os.fspath(target), reason
    )
    remove_quietly(sidecar_path(target))
    remove_quietly(staged_path(target))


def claim_staged(target: PathLike) -> "Optional[Path]":
    """Atomically move the staged binary to a private temporary name; None if absent.

    The claimed file stays ``flock``-ed by this process until it is swapped in
    (:func:`pyi_selfupdate._files.swap`), staged again (:func:`promote_to_staged`)
    or removed, so another launch's :func:`cleanup_leftovers` never takes it for
    the leftover of a killed install, however long this install is stalled.
    None also when another process is claiming it now.
    """
    staged = staged_path(target)
    private = _files.new_path(target)
    fcntl = _files.fcntl
    fd: Optional[int] = None
    if fcntl is not None:  # lock first: the lock follows the file through the rename
        try:
            fd = os.open(str(staged), os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InstallError(f"cannot take the staged update ({exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another process is claiming it this very moment
            os.close(fd)
            return None
    try:
        os.replace(staged, private)
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        if isinstance(exc, FileNotFoundError):
            return None
        raise InstallError(f"cannot take the staged update ({exc})") from None
    if fd is not None:
        _files.keep_claim(private, fd)
    elif private.is_dir():  # Windows: no flock; a fresh time marks the claimed folder live
        try:
            os.utime(private)
        except OSError:  # pragma: no cover
            pass
    return private


def claim_verified(target: PathLike, sha256: bytes) -> "Optional[Path]":
    """:func:`claim_staged`, kept only if its SHA-256 is ``sha256``; its sidecar is removed.

    A staged file with another hash is discarded; None then, or when nothing is staged.
    """
    private = claim_staged(target)
    if private is None:
        return None
    try:
        ok = _files.content_sha256(private) == sha256
    except (OSError, SelfUpdateError):
        ok = False
    if not ok:
        remove_quietly(private)
        discard_staged(target, "its SHA-256 does not match the manifest")
        return None
    remove_quietly(sidecar_path(target))
    return private


#: What :func:`install_claimed` did: installed; handed to a switch after this process exits.
INSTALLED, SWITCHING = "installed", "switching"


def install_claimed(target: PathLike, info: StagedInfo,
                    swap_guard: Optional[Callable[[], Optional[str]]] = None, *,
                    state_dir: Optional[PathLike] = None) -> str:
    """Claim the staged binary, check it against ``info`` and swap it in.

    Returns :data:`INSTALLED`, or ``""`` when nothing was installed (the update
    stays staged, or was discarded). The caller holds the exclusive instance
    lock. A staged file that cannot be read or does not match its sidecar is
    discarded. ``swap_guard()`` is asked right before the swap: a reason not to
    swap now keeps the update staged. A folder Windows will not rename (this
    process runs from it) stays staged; with ``state_dir`` (the caller is
    exiting) its switch is handed to :mod:`pyi_selfupdate._winswitch`, which
    completes it once no program runs from the folder: :data:`SWITCHING`.
    """
    private = claim_staged(target)
    if private is None:
        return ""
    try:
        digest = _files.content_sha256(private)
    except (OSError, SelfUpdateError) as exc:
        remove_quietly(private)
        discard_staged(target, f"it cannot be read ({exc})")
        return ""
    if digest != info.sha256:
        remove_quietly(private)
        discard_staged(target, "its SHA-256 does not match its sidecar")
        return ""
    reason = swap_guard() if swap_guard is not None else None
    if reason:
        log.info("the staged update %s of %s stays staged: %s", info.to_version,
                 os.fspath(target), reason)
        promote_to_staged(private, target, info)
        return ""
    try:
        _files.swap(private, target)
    except _files.FolderInUseError as exc:  # pragma: no cover - Windows only (tested under Wine)
        staged = promote_to_staged(private, target, info)
        if state_dir is None:
            log.info("the staged update %s of %s stays staged until the app exits: %s",
                     info.to_version, os.fspath(target), exc)
            return ""
        from . import _winswitch

        _winswitch.start(staged, target, sidecar_path(target), state_dir)
        return SWITCHING
    sidecar = sidecar_path(target)
    try:
        if sidecar.read_bytes() == info.to_json():
            sidecar.unlink()
    except OSError:
        pass
    return INSTALLED


def cleanup_leftovers(target: PathLike) -> "List[Path]":
    """Remove what interrupted updates left beside ``target``; returns what was removed.

    - ``.<name>.new`` and ``.<name>.new.<token>`` files no live process is
      writing (their writer's ``flock`` is gone: killed, crashed);
    - ``.<name>.old`` files (a Windows swap, or go-selfupdate's own);
    - a ``.<name>.staged`` without its sidecar, older than
      ``LIMITS.orphan_staged_age`` (a staging interrupted between its two renames);
    - a sidecar without its staged binary.

    Safe to call while other instances run; each removal is logged at INFO.
    """
    # Strings and os.path throughout: this runs at every launch of a frozen app.
    folder, name = _files.split(target)
    removed: "List[Path]" = []
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        log.info("cannot list %s for leftovers (%s)", folder, exc)
        return removed
    new_prefix = f".{name}.new"
    old_name = f".{name}.old"
    staged = beside(target, ".staged")
    sidecar = sidecar_file(target)
    for entry in entries:
        leftover = False
        if entry.name == new_prefix or entry.name.startswith(new_prefix + "."):
            leftover = _files.is_abandoned(entry.path)
        elif entry.name == old_name or entry.name.startswith(old_name + "."):
            leftover = True
        if leftover and remove_quietly(entry.path):
            log.info("removed %s, left by an interrupted update", entry.path)
            removed.append(_files.path(entry.path))
    has_sidecar = os.path.exists(sidecar)
    if os.path.exists(staged) and not has_sidecar:
        try:
            age = time.time() - os.stat(staged).st_mtime
        except OSError:
            age = 0.0
        if age > LIMITS.orphan_staged_age and remove_quietly(staged):
            log.info("removed %s, an incomplete staged update", staged)
            removed.append(_files.path(staged))
    elif has_sidecar and not os.path.exists(staged):
        if remove_quietly(sidecar):
            log.info("removed %s, the sidecar of a missing staged update", sidecar)
            removed.append(_files.path(sidecar))
    return removed
