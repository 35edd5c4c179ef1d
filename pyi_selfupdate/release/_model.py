"""The objects the release pipeline hands to its plugins, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

from ..errors import ReleaseError
from ..protocol import FILE, full_path, manifest_path, patch_path
from ._manager import answered
from ._tree import check_tree_name, record_path, refuse_links

__all__ = [
    "Artifact",
    "ExtraFile",
    "PatchJob",
    "PatchSummary",
    "ArtifactSummary",
    "ReleaseContext",
    "ReleaseSummary",
]

#: Signature of the ``progress`` callback: one human-readable line per slow step.
ProgressCallback = Callable[[str], None]


@dataclass
class Artifact:
    """One app to release for one platform: an executable, or an app folder.

    Filled by the collect step; ``size`` and ``sha256`` (raw 32 bytes) describe
    the full binary (for a folder: its canonical archive,
    :mod:`pyi_selfupdate.archive`) and are known before anything is written, so
    check and manifest plugins (a signer, for instance) can rely on them.
    ``kind`` is ``"file"`` or ``"folder"`` (a onedir app or a macOS ``.app``,
    whose ``executable`` is the launcher inside it).
    """

    path: Path
    cmd_name: str
    platform: str
    version: str
    size: int = 0
    sha256: bytes = b""
    #: Free space for plugins to pass facts between hooks for this artifact.
    data: Dict[str, Any] = field(default_factory=dict)
    kind: str = FILE
    executable: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.executable is None and self.kind == FILE:
            self.executable = Path(self.path)

    def read_content(self) -> bytes:
        """The bytes released: the file, or the folder's canonical archive."""
        return read_content(self.path)

    @property
    def manifest_relpath(self) -> str:
        """``<cmd>/<plat>.json`` relative to the output folder."""
        return manifest_path(self.cmd_name, self.platform)

    @property
    def full_relpath(self) -> str:
        """``<cmd>/<version>/<plat>.gz`` relative to the output folder."""
        return full_path(self.cmd_name, self.version, self.platform)

    @property
    def record_relpath(self) -> str:
        """``<cmd>/<version>/<plat>.json`` (signed releases): the signed manifest kept with the ``.gz``."""
        return record_path(self.cmd_name, self.version, self.platform)

    def patch_relpath(self, old_version: str) -> str:
        """``<cmd>/<old>/<version>/<plat>`` relative to the output folder."""
        return patch_path(self.cmd_name, old_version, self.version, self.platform)


@dataclass(frozen=True)
class PatchJob:
    """One patch to compute: from the release ``old_version`` (its ``.gz`` at
    ``old_gz``) to the artifact's bytes at ``new_path``. The old ``.gz`` is
    read as a stream of at most ``old_max_size`` bytes (0: no bound) that
    must hash to ``old_sha256`` when a verified manifest gives it."""

    old_version: str
    old_gz: Path
    new_path: Path
    new_sha256: bytes
    relpath: str
    #: The most bytes the old ``.gz`` may decompress to (its signed size when known).
    old_max_size: int = 0
    #: The SHA-256 a verified manifest gives the old release (None: no verified record).
    old_sha256: Optional[bytes] = None
    #: The new release's bytes (the file's, or the folder's canonical archive) when the pipeline
    #: already holds them, shared by every job of the artifact; None: read ``new_path``.
    new_content: Optional[bytes] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ExtraFile:
    """A file a plugin adds to the output tree: ``relpath`` is relative to the
    output folder, uses ``/`` and may not leave it."""

    relpath: str
    data: bytes


@dataclass(frozen=True)
class PatchSummary:
    """One patch ``old_version -> version`` of an artifact."""

    old_version: str
    size: int
    reused: bool
    #: Patch size divided by the size of the new version's ``.gz``.
    ratio: float


@dataclass
class ArtifactSummary:
    """What the release wrote (or found already written) for one artifact."""

    cmd_name: str
    platform: str
    version: str
    size: int
    gz_size: int = 0
    gz_reused: bool = False
    patches: List[PatchSummary] = field(default_factory=list)
    extra_files: List[str] = field(default_factory=list)
    manifest_extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def patches_written(self) -> List[PatchSummary]:
        return [p for p in self.patches if not p.reused]

    @property
    def patches_reused(self) -> List[PatchSummary]:
        return [p for p in self.patches if p.reused]


def read_content(path: "Path | str") -> bytes:
    """The bytes released for ``path``: a file's, or a folder's canonical archive."""
    import os

    from ..archive import ArchiveError, FolderArchive

    try:
        if os.path.isdir(path):
            import io

            buf = io.BytesIO()  # getvalue() hands over its buffer: no second copy of a large app
            with FolderArchive(path) as archive:
                for chunk in archive.stream():
                    buf.write(chunk)
            return buf.getvalue()
        with open(path, "rb") as fh:
            return fh.read()
    except ArchiveError as exc:
        raise ReleaseError(f"{exc}; the app folder cannot be released as it is") from None
    except OSError as exc:
        raise ReleaseError(f"cannot read {path} ({exc.strerror}); check the path and its permissions") from None


def read_checked(path: "Path | str", sha256: bytes) -> bytes:
    """:func:`read_content`, refused unless it still hashes to ``sha256`` (what collect measured)."""
    import hashlib

    data = read_content(path)
    if hashlib.sha256(data).digest() != sha256:
        raise ReleaseError(
            f"{path} changed while it was being released; wait for the build to "
            "finish and run the same release again"
        )
    return data


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def percent(ratio: float) -> str:
    """``ratio`` as a percentage with at least two significant digits (``0.013%``, never ``0.0%``)."""
    import math

    pct = ratio * 100
    if pct <= 0:
        return "0%"
    decimals = max(1, min(6, 1 - math.floor(math.log10(pct))))
    return f"{pct:.{decimals}f}%"


@dataclass
class ReleaseSummary:
    """The result of :func:`pyi_selfupdate.release.release`.

    ``artifacts`` holds one :class:`ArtifactSummary` per platform released;
    :meth:`format_table` renders it for people.
    """

    out: Path
    version: str
    artifacts: List[ArtifactSummary] = field(default_factory=list)
    manifests: List[str] = field(default_factory=list)
    #: What ``--publish`` uploaded (a :class:`~pyi_selfupdate.release.PublishSummary`), or None.
    published: Any = None

    @property
    def files_written(self) -> int:
        """How many files this run wrote (reused ones not counted)."""
        n = len(self.manifests)
        for a in self.artifacts:
            n += (0 if a.gz_reused else 1) + len(a.patches_written) + len(a.extra_files)
        return n

    def format_table(self) -> str:
        """A plain-text table: one line per full binary and per patch. ``ratio`` is the
        ``.gz``'s size over the binary's, and a patch's over the new ``.gz``'s; ``file``
        says whether this run wrote the file or found it already released."""
        rows = [("cmd", "platform", "from", "to", "size", "gz / patch", "ratio", "file")]
        for a in self.artifacts:
            rows.append(
                (a.cmd_name, a.platform, "(full)", a.version, human_size(a.size), human_size(a.gz_size),
                 percent(a.gz_size / a.size) if a.size else "-", "reused" if a.gz_reused else "written")
            )
            for p in a.patches:
                rows.append(
                    (a.cmd_name, a.platform, p.old_version, a.version, "", human_size(p.size),
                     percent(p.ratio), "reused" if p.reused else "written")
                )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
        n_patches = sum(len(a.patches) for a in self.artifacts)
        lines.append(
            f"released {self.version} for {len(self.artifacts)} platform(s), "
            f"{n_patches} patch(es), into {self.out}"
        )
        return "\n".join(lines)


@dataclass
class ReleaseContext:
    """The state of one release, handed to every hook.

    ``options`` carries settings for plugins (the CLI fills it from its
    options, e.g. ``sign_keys``), ``stash`` their state; ``artifacts`` is set
    by the collect step.
    Plugins may call :meth:`write_file` to add a file to the output tree
    (atomically, through the ``release_write_file`` hook).
    """

    path: Path
    version: str
    out: Path
    cmd_name: Optional[str] = None
    platform: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    progress: Optional[ProgressCallback] = None
    artifacts: List[Artifact] = field(default_factory=list)
    #: The ``pluggy.PluginManager`` running this release (its ``hook`` attribute).
    pm: Any = None
    #: State plugins keep for this release, each under a key of its own (its
    #: module name, say); ``options`` stay the caller's settings, never written.
    stash: Dict[str, Any] = field(default_factory=dict)

    def report(self, message: str) -> None:
        """Send one progress line to the caller (no-op without a callback)."""
        if self.progress is not None:
            self.progress(message)

    def target(self, relpath: str) -> Path:
        """The path of ``relpath`` in the output folder.

        Refuses escapes: a segment that is not a safe file name on every OS
        (``..``, ``C:x``, ...), and a symbolic link anywhere below the output
        folder (never followed, for reading or writing).
        """
        parts = relpath.split("/")
        if not relpath or relpath.startswith("/") or "\\" in relpath:
            raise ReleaseError(
                f"output file {relpath!r} is not a relative '/'-separated path; "
                "plugins must give paths relative to the output folder"
            )
        for part in parts:
            try:
                check_tree_name(part, "output path segment")
            except ReleaseError as exc:
                raise ReleaseError(f"output file {relpath!r} is refused: {exc}") from None
        refuse_links(self.out, parts)
        return self.out.joinpath(*parts)

    def write_file(self, relpath: str, data: "bytes | Iterable[bytes]") -> Path:
        """Write ``data`` (bytes, or chunks in order) to ``relpath`` in the output folder through
        the pipeline."""
        self.target(relpath)
        result = self.pm.hook.release_write_file(context=self, relpath=relpath, data=data)
        return Path(answered(result, "release_write_file", f"wrote {relpath!r}"))
