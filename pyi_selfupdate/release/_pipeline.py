"""The release engine: runs the plugins' hooks in order (see :mod:`.hookspecs`).

:func:`release` checks the input completely before writing anything, writes
every file through ``release_write_file`` and the manifests last.
"""

from __future__ import annotations

import dataclasses

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Tuple

from .. import signing
from ..errors import ReleaseError, SelfUpdateError
from ..protocol import DEV_VERSION, Manifest, encode_manifest, full_path
from ..settings import LIMITS
from ._manager import answered, get_plugin_manager
from ._model import (
    Artifact,
    ArtifactSummary,
    ExtraFile,
    PatchJob,
    PatchSummary,
    ProgressCallback,
    ReleaseContext,
    ReleaseSummary,
    human_size,
    read_checked,
)
from ._tree import check_tree_name, read_gz, read_tree_manifest, refuse_links

__all__ = ["release", "check_name", "compare_versions", "newest_first", "patches_from"]

log = logging.getLogger("pyi_selfupdate.release")

_CHUNK = 1 << 20


def check_name(value: str, what: str) -> str:
    """A cmd name or version the tree can hold and every client fetch (:func:`._tree.check_tree_name`).

    A version may not end in ``.gz`` or ``.json`` either: its patch folders
    would take the names of an earlier version's files.
    """
    check_tree_name(value, what)
    if what == "version" and value.lower().endswith((".gz", ".json")):
        raise ReleaseError(
            f"the version {value!r} ends like a file of the tree ({value.rsplit('.', 1)[1]}); "
            "drop the suffix"
        )
    return value


def _hash_content(path: Path) -> Tuple[int, bytes]:
    """Size and SHA-256 of what is released for ``path``: a file, or a folder's canonical archive."""
    from ..archive import ArchiveError, FolderArchive

    h = hashlib.sha256()
    size = 0
    try:
        if path.is_dir():
            with FolderArchive(path) as archive:
                chunks: Iterable[bytes] = archive.stream()
                for chunk in chunks:
                    h.update(chunk)
                    size += len(chunk)
            return size, h.digest()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
                size += len(chunk)
    except ArchiveError as exc:
        raise ReleaseError(f"{exc}; the app folder cannot be released as it is") from None
    except OSError as exc:
        raise ReleaseError(f"cannot read {path} ({exc.strerror}); check the path and its permissions") from None
    return size, h.digest()


def _hash_gz(path: Path, size: int) -> Optional[bytes]:
    """SHA-256 of the ``.gz`` at ``path`` if it decompresses to at most ``size`` bytes, else None."""
    try:
        return read_gz(path, max_size=size)[1]
    except ReleaseError:
        return None


def _collect(context: ReleaseContext) -> List[Artifact]:
    pm = context.pm
    artifacts = pm.hook.release_collect(context=context)
    if not artifacts:
        raise ReleaseError(f"no executable was found in {context.path}; give the executable to release")
    artifacts = list(artifacts)
    if any(not a.cmd_name for a in artifacts):
        deduced = pm.hook.release_deduce_cmd_name(context=context, artifacts=artifacts)
        if not deduced:
            raise ReleaseError(
                f"{context.path} is a folder of <os>-<arch> files, which do not say the app's "
                "name; give it with --cmd-name NAME (the name clients ask updates for)"
            )
        for a in artifacts:
            a.cmd_name = a.cmd_name or deduced
    seen = {}
    for a in artifacts:
        a.version = a.version or context.version
        for value, what in ((a.cmd_name, "cmd name"), (a.version, "version"), (a.platform, "platform")):
            check_name(value, what)
        key = (a.cmd_name, a.platform)
        if key in seen:
            raise ReleaseError(
                f"{seen[key]} and {a.path} are both {a.cmd_name} for {a.platform}; release one of them"
            )
        seen[key] = a.path
        a.size, a.sha256 = _hash_content(Path(a.path))
        if a.size == 0:
            raise ReleaseError(f"{a.path} is empty; build the app again and release the new file")
    return artifacts


def _refuse_changed_versions(context: ReleaseContext) -> None:
    """An existing ``<version>/<plat>.gz`` must hold the same bytes (idempotent re-run)."""
    for a in context.artifacts:
        existing = context.target(a.full_relpath)
        if not existing.exists():
            continue
        digest = _hash_gz(existing, a.size)
        if digest != a.sha256:
            what = "an unreadable file or other bytes" if digest is None else "different bytes"
            raise ReleaseError(
                f"{a.cmd_name} {a.version} is already released for {a.platform} with {what} "
                f"({existing}); released versions are never replaced, since clients may hold "
                "them: release the new build under a new version"
            )
        a.data["gz_exists"] = True


def _refuse_kind_change(context: ReleaseContext) -> None:
    """A cmd/platform released as a single file stays one, and a folder stays a folder,
    unless the option ``change_kind`` is set (``--change-kind``)."""
    if context.options.get("change_kind"):
        return
    for a in context.artifacts:
        current = context.target(a.manifest_relpath)
        try:
            manifest = read_tree_manifest(context.out, a.manifest_relpath)
            kind = manifest.kind if manifest is not None else a.kind
        except SelfUpdateError:
            continue  # an unreadable one is reported where it is used
        if kind != a.kind:
            raise ReleaseError(
                f"{a.cmd_name} for {a.platform} was released as a {kind} ({current}) and this "
                f"release is a {a.kind}: installed apps never switch kinds, so they would stop "
                "updating. Release the same kind of build, or pass --change-kind after reading "
                "the README's section on changing an app's kind"
            )


def compare_versions(a: str, b: str) -> Optional[int]:
    """-1, 0 or 1 as version ``a`` is older than, equal to or newer than ``b``; None when
    they have no order.

    PEP 440 (``packaging``, which PyInstaller installs) when both versions are
    PEP 440; without ``packaging``, versions made of dot-separated numbers
    (``1.10`` after ``1.9``). Other versions (a commit hash, ``nightly-3``) have
    no order: releasing them is never refused as a downgrade.
    """
    keys: List[Any] = []
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging comes with PyInstaller
        for v in (a, b):
            parts = v.split(".")
            if not all(p.isdigit() for p in parts):
                return None
            nums = [int(p) for p in parts]
            while len(nums) > 1 and nums[-1] == 0:
                nums.pop()
            keys.append(tuple(nums))
    else:
        try:
            keys = [Version(a), Version(b)]
        except InvalidVersion:
            return None
    return (keys[0] > keys[1]) - (keys[0] < keys[1])


def newest_first(releases: Iterable[Tuple[str, Path]]) -> List[Tuple[str, Path]]:
    """``(version, .gz)`` pairs, newest first: by version (:func:`compare_versions`) when
    every version has an order, else by the time each ``.gz`` was written."""
    items = sorted(releases)
    try:
        from functools import cmp_to_key

        def cmp(x: Tuple[str, Path], y: Tuple[str, Path]) -> int:
            order = compare_versions(x[0], y[0])
            if order is None:
                raise ValueError(x[0], y[0])
            return order

        return sorted(items, key=cmp_to_key(cmp), reverse=True)
    except ValueError:
        def written(item: Tuple[str, Path]) -> float:
            try:
                return item[1].lstat().st_mtime
            except OSError:
                return 0.0

        return sorted(items, key=written, reverse=True)


def patches_from(options: Mapping[str, Any]) -> Optional[int]:
    """How many earlier releases a release patches from: the option ``patches_from``
    (``--patches-from``; None: ``LIMITS.patches_from``; a negative number: every one)."""
    value = options.get("patches_from")
    if value is None:
        return LIMITS.patches_from
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReleaseError(f"--patches-from must be a number of releases or 'all', not {value!r}")
    return None if value < 0 else value


def _refuse_older_version(context: ReleaseContext) -> None:
    """The version released must not be older than the current one of the cmd/platform
    (installed apps would take it as an update and downgrade), unless the option
    ``allow_older`` is set (``--allow-older``)."""
    if context.options.get("allow_older"):
        return
    for a in context.artifacts:
        current = _manifest_version(context, a.manifest_relpath)
        if current is None or current == a.version:
            continue
        order = compare_versions(a.version, current)
        if order is None:
            log.info("%s and %s are not PEP 440 versions: their order is not checked", a.version, current)
        elif order < 0:
            raise ReleaseError(
                f"{a.cmd_name} {a.version} is older than {current}, the current release for {a.platform} "
                f"({context.target(a.manifest_relpath)}; versions compare as PEP 440): every installed "
                f"{current} would take it as an update and downgrade. Release it under a version above "
                f"{current}; to go back to an earlier release use `pyi-selfupdate rollback`; pass "
                "--allow-older only to publish this build over a newer one on purpose"
            )


def _earlier_versions(context: ReleaseContext, artifact: Artifact) -> List[Tuple[str, Path]]:
    """``(version, .gz)`` of every earlier release of the artifact's platform; no link followed."""
    refuse_links(context.out, [artifact.cmd_name])
    folder = Path(context.out) / artifact.cmd_name
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name == artifact.version or not (entry.is_dir() or entry.is_symlink()):
            continue
        try:
            check_name(entry.name, "version")
        except ReleaseError as exc:
            log.warning("%s is not diffed from: %s", entry, exc)
            continue
        gz = context.target(full_path(artifact.cmd_name, entry.name, artifact.platform))
        if gz.is_file():
            found.append((entry.name, gz))
    return found


def _old_release_bounds(artifact: Artifact, old_version: str) -> Tuple[int, Optional[bytes]]:
    """``(max size, expected SHA-256 or None)`` of an earlier release: its signed ones when a
    verified manifest gives them, else the new release's size + ``LIMITS.release_base_slack``."""
    signed: Mapping[str, Manifest] = artifact.data.get("signed_releases") or {}
    manifest = signed.get(old_version)
    if manifest is not None:
        return manifest.extra["Size"], manifest.sha256
    return min(LIMITS.binary_bytes, artifact.size + LIMITS.release_base_slack), None


class _Chunks:
    """A file's content as chunks for ``release_write_file``: read once, counted, and checked to be
    read whole (a plugin that reads them must write the file)."""

    def __init__(self, chunks: Iterable[bytes], relpath: str) -> None:
        self._chunks = chunks
        self.relpath = relpath
        self.size = 0
        self.started = self.finished = False

    def __iter__(self) -> "Iterator[bytes]":
        if self.started:
            raise ReleaseError(
                f"a release_write_file plugin read the chunks of {self.relpath} and passed them on; "
                "they can be read once: a plugin that reads them must write the file"
            )
        self.started = True
        for chunk in self._chunks:
            self.size += len(chunk)
            yield chunk
        self.finished = True

    def check_read(self) -> None:
        if not self.finished:
            raise ReleaseError(
                f"the release_write_file plugin that wrote {self.relpath} did not read all of it; "
                "a plugin that answers the hook must write every chunk"
            )

    def close(self) -> None:
        """Stop the producer (its compression threads) if it was not read to the end."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def _release_artifact(context: ReleaseContext, artifact: Artifact) -> ArtifactSummary:
    pm = context.pm
    summary = ArtifactSummary(
        cmd_name=artifact.cmd_name, platform=artifact.platform, version=artifact.version, size=artifact.size
    )
    label = f"{artifact.cmd_name} {artifact.version} {artifact.platform}"
    gz_target = context.target(artifact.full_relpath)
    gz_existed = bool(artifact.data.get("gz_exists"))

    jobs: List[PatchJob] = []
    earlier = newest_first(_earlier_versions(context, artifact))
    keep = patches_from(context.options)
    if keep is not None and len(earlier) > keep:
        skipped = [v for v, _ in earlier[keep:]]
        context.report(f"no patch from {len(skipped)} older release(s) of {artifact.platform} "
                       f"(--patches-from {keep}): {', '.join(sorted(skipped))} take the .gz")
        earlier = earlier[:keep]
    for old_version, old_gz in sorted(earlier):
        relpath = artifact.patch_relpath(old_version)
        target = context.target(relpath)
        if target.is_file():
            if gz_existed:
                size = target.stat().st_size
                summary.patches.append(PatchSummary(old_version, size, True, 0.0))
                context.report(f"reusing patch {old_version} -> {artifact.version} {artifact.platform}")
                continue
            log.warning("%s predates this release of %s: computing it again", target, artifact.version)
        max_size, old_sha256 = _old_release_bounds(artifact, old_version)
        jobs.append(PatchJob(old_version, old_gz, Path(artifact.path), artifact.sha256, relpath,
                             old_max_size=max_size, old_sha256=old_sha256))

    # the new release's bytes, read once: compressed here and shared by every diff
    data = read_checked(artifact.path, artifact.sha256) if jobs or not gz_existed else None
    jobs = [dataclasses.replace(job, new_content=data) for job in jobs]
    results = None
    if jobs:  # the diffs start now, and work while this thread compresses
        context.report(
            f"diffing {label} against {len(jobs)} earlier version(s): "
            + ", ".join(j.old_version for j in jobs)
        )
        started = time.monotonic()
        results = answered(pm.hook.release_diff(context=context, artifact=artifact, jobs=jobs),
                           "release_diff", "computed the patches")
    try:
        if gz_existed:
            summary.gz_reused = True
            summary.gz_size = gz_target.stat().st_size
            context.report(f"reusing {artifact.full_relpath} (same bytes already released)")
        else:
            context.report(f"compressing {label} ({human_size(artifact.size)})")
            gz = answered(pm.hook.release_compress(context=context, artifact=artifact, data=data),
                          "release_compress", "compressed the release")
            if isinstance(gz, (bytes, bytearray, memoryview)):
                context.write_file(artifact.full_relpath, gz)
                summary.gz_size = len(gz)
            else:  # written as it is compressed, never held whole
                chunks = _Chunks(gz, artifact.full_relpath)
                try:
                    context.write_file(artifact.full_relpath, chunks)
                    chunks.check_read()
                finally:
                    chunks.close()
                summary.gz_size = chunks.size
            del gz
            context.report(f"wrote {artifact.full_relpath} ({human_size(summary.gz_size)})")
    except BaseException:
        close = getattr(results, "close", None)
        if close is not None:  # stop the diff workers
            close()
        raise
    summary.patches = [PatchSummary(p.old_version, p.size, True, p.size / max(summary.gz_size, 1))
                       for p in summary.patches]

    if results is not None:
        done = 0
        try:
            for job, patch in results:
                context.write_file(job.relpath, patch)
                done += 1
                ratio = len(patch) / max(summary.gz_size, 1)
                summary.patches.append(PatchSummary(job.old_version, len(patch), False, ratio))
                context.report(
                    f"diffed {job.old_version} -> {artifact.version} {artifact.platform}: "
                    f"{human_size(len(patch))} ({done}/{len(jobs)}, {time.monotonic() - started:.1f} s)"
                )
        finally:
            close = getattr(results, "close", None)
            if close is not None:  # stop the worker pool now, not at garbage collection
                close()
        if done != len(jobs):
            raise ReleaseError(
                f"the diff plugin returned {done} of {len(jobs)} patches; run the same release again"
            )
    summary.patches.sort(key=lambda p: p.old_version)

    for files in pm.hook.release_extra_files(context=context, artifact=artifact):
        for extra in files or ():
            if not isinstance(extra, ExtraFile):
                raise ReleaseError(
                    f"a plugin returned {type(extra).__name__} from release_extra_files; "
                    "return a list of pyi_selfupdate.release.ExtraFile"
                )
            context.write_file(extra.relpath, extra.data)
            summary.extra_files.append(extra.relpath)
    return summary


def _manifest_version(context: ReleaseContext, relpath: str) -> Optional[str]:
    try:
        manifest = read_tree_manifest(context.out, relpath)
    except SelfUpdateError:
        return None
    return None if manifest is None else manifest.version


def release(
    path: "str | os.PathLike[str]",
    version: str,
    out: "str | os.PathLike[str]" = "public",
    *,
    platform: Optional[str] = None,
    cmd_name: Optional[str] = None,
    plugins: Iterable[Any] = (),
    progress: Optional[ProgressCallback] = None,
    options: Optional[Mapping[str, Any]] = None,
    disable: Iterable[str] = (),
) -> ReleaseSummary:
    """Release ``version`` of the executable(s) at ``path`` into the tree at ``out``.

    ``path`` is one executable, a folder of ``<os>-<arch>[.exe]`` files, a folder
    of ``<os>-<arch>/`` folders each holding one executable, or a PyInstaller
    ``dist/`` folder holding one onefile executable. ``platform`` (``<os>-<arch>``,
    default: this machine's) applies to a single executable; ``cmd_name``
    defaults to the executable's name without ``.exe`` and is required for a
    folder of ``<os>-<arch>`` files. ``plugins`` are extra pluggy plugins
    (objects or modules with :data:`hookimpl` functions) added to the built-ins
    and to the ``pyi_selfupdate`` entry points; ``options`` is handed to them
    as ``context.options`` (e.g. ``sign_keys``, ``diff_workers``; ``patches_from``: patch from
    the newest N earlier releases, default ``LIMITS.patches_from``, negative: all;
    ``allow_older``, ``allow_no_updater``, ``allow_untrusted_key``: the overrides of the
    refusals of an older version, an updater-less PyInstaller app and a key the app
    does not trust). ``disable``
    names built-in plugins to leave out, like ``-p no:NAME`` (for example
    ``["frozen"]``); a required one only when a plugin passed in replaces it.
    ``progress`` receives one line per slow step.

    Raises :class:`~pyi_selfupdate.errors.ReleaseError` (with nothing written)
    for a wrong input, a name that could escape the tree, a version already
    released with other bytes, or an output folder that cannot be written.
    Running the same release again is harmless and completes an interrupted one.
    """
    check_name(version, "version")
    if (options or {}).get("dry_run") and not (options or {}).get("publish"):
        raise ReleaseError("--dry-run applies to --publish DEST (the local tree is always written); "
                           "add --publish DEST, or drop --dry-run")
    if version == DEV_VERSION:
        log.warning(
            "releasing version %r: apps built as %r never update, and every other client will "
            "install this build; release a real version number unless that is the intent",
            DEV_VERSION, DEV_VERSION,
        )
    if cmd_name is not None:
        check_name(cmd_name, "cmd name")
    if platform is not None:
        from ._builtin.collect import check_platform

        check_platform(platform)
    pm = get_plugin_manager(plugins, disable=disable)
    context = ReleaseContext(
        path=Path(os.fspath(path)),
        version=version,
        out=Path(os.fspath(out)),
        cmd_name=cmd_name,
        platform=platform,
        options=dict(options or {}),
        progress=progress,
        pm=pm,
    )
    patches_from(context.options)  # a bad option is refused before the slow work
    context.artifacts = _collect(context)
    if context.options.get("from"):  # release --from: earlier releases come back from where they are published
        from ._publish import fetch

        fetch(context, context.options["from"])
    for artifact in context.artifacts:
        pm.hook.release_check_artifact(context=context, artifact=artifact)
    _refuse_changed_versions(context)
    _refuse_kind_change(context)
    _refuse_older_version(context)
    for artifact in context.artifacts:  # a link in the tree is refused before anything is written
        _earlier_versions(context, artifact)
    pm.hook.release_prepare(context=context)

    summary = ReleaseSummary(out=context.out, version=version)
    manifests: List[Tuple[str, bytes]] = []
    for artifact in context.artifacts:
        art_summary = _release_artifact(context, artifact)
        manifest = answered(pm.hook.release_manifest(context=context, artifact=artifact),
                            "release_manifest", "built the manifest")
        art_summary.manifest_extra = dict(manifest.extra)
        data = encode_manifest(manifest)
        if signing.is_signed(manifest):  # the signed record of this version's hash, kept with its .gz
            context.write_file(artifact.record_relpath, data)
        manifests.append((artifact.manifest_relpath, data))
        summary.artifacts.append(art_summary)
    # Every file the manifests point at is in place: publish the manifests.
    for relpath, data in manifests:
        previous = _manifest_version(context, relpath)
        context.write_file(relpath, data)
        summary.manifests.append(relpath)
        moved = f"{previous} -> {version}" if previous and previous != version else version
        context.report(f"published {relpath}: {moved}")
    if context.options.get("publish"):  # release --publish DEST: the tree, manifests last
        from ._publish import publish

        summary.published = publish(context.out, context.options["publish"], options=context.options,
                                     progress=progress, dry_run=bool(context.options.get("dry_run")), pm=pm)
    pm.hook.release_finished(context=context, summary=summary)
    return summary
