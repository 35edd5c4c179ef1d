"""Prune: remove the files of old releases from a release tree.

For each cmd name and platform with a manifest, the current release and the
``keep - 1`` newest releases before it stay (newest as
:func:`._pipeline.newest_first` orders them); every other release loses its
``.gz``, its signed record and each patch from or to it. An app at a removed
version then finds no patch to the current release and takes its ``.gz``.

Everything is read and checked before the first file is removed (an
unreadable manifest or a link in the tree stops the prune with nothing
removed), and files go in an order that keeps the tree serving at every
moment: patches from a removed release first (its apps fall back to the
``.gz``), then patches to it (no manifest names them), its record, and its
``.gz`` last. A prune cut short is finished by running it again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple

from ..errors import ReleaseError
from ..protocol import full_path, manifest_path, patch_path
from ._pipeline import newest_first
from ._tree import check_tree_name, read_tree_manifest, record_path

__all__ = ["PruneResult", "prune"]


@dataclass
class PruneResult:
    """What :func:`prune` removed (or, in a dry run, would remove)."""

    #: ``(relpath, bytes)`` of each file, in the order removed.
    removed: List[Tuple[str, int]] = field(default_factory=list)
    #: ``(cmd, platform, version)`` of each release removed.
    versions: List[Tuple[str, str, str]] = field(default_factory=list)
    #: ``(cmd, platform, version)`` of each release kept (the current one first).
    kept: List[Tuple[str, str, str]] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(size for _, size in self.removed)


def _names(folder: Path) -> List[str]:
    """The entries of ``folder``, refusing links (never followed in the tree)."""
    names = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_symlink():
            raise ReleaseError(
                f"{entry.path} is a symbolic link; prune never follows links in the tree: "
                "replace it with the files themselves, or remove it"
            )
        names.append(entry.name)
    return names


def _valid(name: str, what: str) -> bool:
    try:
        check_tree_name(name, what)
    except ReleaseError:
        return False
    return True


def _plan(root: Path, keep: int, result: PruneResult) -> List[str]:
    """The relpaths to remove, in removal order; fills ``result.versions`` and ``result.kept``."""
    first: List[str] = []  # patches from a removed release
    then: List[str] = []  # patches to one, records, then the .gz files
    last: List[str] = []
    for cmd in _names(root):
        folder = root / cmd
        if not folder.is_dir() or not _valid(cmd, "cmd name"):
            continue
        entries = _names(folder)
        versions = [v for v in entries if (folder / v).is_dir() and _valid(v, "version")]
        plats = [n[:-5] for n in entries if n.endswith(".json") and (folder / n).is_file()]
        for plat in plats:
            manifest = read_tree_manifest(root, manifest_path(cmd, plat))
            if manifest is None:  # pragma: no cover - listed above
                continue
            current = manifest.version
            released = [(v, root / full_path(cmd, v, plat)) for v in versions
                        if v != current and (root / full_path(cmd, v, plat)).is_file()]
            ordered = [v for v, _ in newest_first(released)]
            kept, removed = ordered[:keep - 1], ordered[keep - 1:]
            result.kept += [(cmd, plat, v) for v in [current] + kept]
            result.versions += [(cmd, plat, v) for v in sorted(removed)]
            needed = {full_path(cmd, current, plat), record_path(cmd, current, plat)}
            needed |= {patch_path(cmd, k, current, plat) for k in kept}
            gone: Set[str] = set(removed)
            for old in versions:
                sub = folder / old
                for new in _names(sub):
                    if not (sub / new).is_dir() or not (old in gone or new in gone):
                        continue
                    _names(sub / new)  # a link below is refused too
                    rel = patch_path(cmd, old, new, plat)
                    if (root / rel).is_file():
                        (first if old in gone else then).append(rel)
            for old in sorted(gone):
                then += [r for r in (record_path(cmd, old, plat),) if (root / r).is_file()]
                last.append(full_path(cmd, old, plat))
            planned = first + then + last
            if needed & set(planned):  # pragma: no cover - removed versions differ from the current one
                raise ReleaseError(f"prune would remove {sorted(needed & set(planned))}, which a manifest needs")
    seen: Dict[str, None] = {}
    for rel in first + then + last:
        seen.setdefault(rel, None)
    return list(seen)


def prune(out: "str | os.PathLike[str]", *, keep: int, dry_run: bool = False,
          report: Optional[Callable[[str, int], None]] = None) -> PruneResult:
    """Remove every release but the ``keep`` newest (the current one included) of each
    cmd and platform of the tree at ``out``; ``report(relpath, bytes)`` is called as each
    file goes (or would go, with ``dry_run``).

    Raises :class:`~pyi_selfupdate.errors.ReleaseError`, with nothing removed, for a
    missing tree, ``keep`` below 1, an unreadable manifest or a link in the tree.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ReleaseError(f"keep must be a number of releases >= 1 (the current one counts), not {keep!r}")
    root = Path(os.fspath(out))
    if root.is_symlink() or not root.is_dir():
        raise ReleaseError(f"{root} is not a release tree folder; give the OUT folder `release` writes")
    result = PruneResult()
    plan = _plan(root, keep, result)
    for rel in plan:
        path = root.joinpath(*rel.split("/"))
        size = path.lstat().st_size
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ReleaseError(
                    f"cannot remove {path} ({exc.strerror}); the tree still serves every release kept: "
                    "fix the permissions and run the same prune again to finish"
                ) from None
            _remove_empty_parents(root, path.parent)
        result.removed.append((rel, size))
        if report is not None:
            report(rel, size)
    return result


def _remove_empty_parents(root: Path, folder: Path) -> None:
    """Remove ``folder`` and its parents below ``<root>/<cmd>`` while they are empty."""
    while folder.parent != root and folder != root:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): stop here
            return
        folder = folder.parent
