"""Hook specifications of the release pipeline, for plugin authors.

``pyi-selfupdate release`` is a pluggy pipeline; every built-in step (collect,
frozen check, compress, diff, manifest, sign, publish, s3) is an ordinary plugin implementing these
hooks, and third-party plugins load from the entry-point group
``pyi_selfupdate``::

    # pyproject.toml of a plugin
    [project.entry-points.pyi_selfupdate]
    myplugin = "myplugin"

    # myplugin.py
    from pyi_selfupdate.release.hookspecs import hookimpl

    @hookimpl
    def release_manifest_fields(context, artifact, manifest):
        return {"Channel": "stable"}  # Go clients ignore unknown fields

Plugins can also be passed to :func:`pyi_selfupdate.release.release` with
``plugins=[obj, ...]`` (any object or module with ``@hookimpl`` functions).

A built-in plugin is left out with ``pyi-selfupdate release -p no:NAME`` or
``release(..., disable=["NAME"])``, as in pytest; an unknown NAME is an error
listing the built-ins. ``frozen`` and ``sign`` are checks and additions and
may always be left out (without ``sign`` the manifests are unsigned, and
nothing refuses an unsigned release over a signed tree: block it only to
sign another way). ``collect``, ``compress``, ``diff``, ``manifest`` and
``publish`` answer hooks a release needs (``release_collect``,
``release_compress``, ``release_diff``, ``release_manifest``,
``release_write_file``): blocking one is refused unless another plugin
implements its hook, so a plugin can replace a built-in.

Order of a release, and of the hooks:

1. ``release_collect`` finds the artifacts in the input path (first result wins);
   ``release_deduce_cmd_name`` names them when the input does not;
2. ``release_check_artifact`` on every artifact: any plugin may refuse one by
   raising :class:`~pyi_selfupdate.errors.ReleaseError`; nothing has been
   written yet; then ``release_prepare`` (the output folder is writable);
3. per artifact: ``release_compress`` (the ``.gz``), ``release_diff`` (patches
   against the newest ``patches_from`` earlier releases of the platform), ``release_extra_files``,
   all written with ``release_write_file`` (atomic, one file at a time);
4. per artifact: ``release_manifest`` builds the manifest, merging what
   every ``release_manifest_fields`` returns;
5. the manifests are written last, so a client never sees a version whose
   files are not all there; then ``release_finished``;
6. with ``--publish DEST`` (and ``pyi-selfupdate publish OUT DEST``),
   ``release_publish`` uploads the tree, manifests last. ``release_fetch``
   (``--from SOURCE``) runs after step 1, bringing earlier releases back.

Hooks receive a :class:`~pyi_selfupdate.release.ReleaseContext` (``path``,
``version``, ``out``, ``cmd_name``, ``platform``, ``options`` (settings, read
only), ``stash`` (plugin state, under a key of each plugin's own), ``artifacts``,
``report(msg)``, ``write_file(relpath, data)``) and, per artifact, an
:class:`~pyi_selfupdate.release.Artifact` (``path``, ``cmd_name``,
``platform``, ``version``, ``size``, ``sha256`` of the full binary, and a
free ``data`` dict).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from ..protocol import Manifest
    from ._model import Artifact, ExtraFile, PatchJob, ReleaseContext, ReleaseSummary
    from ._publish import Publication, PublishSummary

#: The project name pluggy uses for markers and the entry-point group.
PROJECT = "pyi_selfupdate"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate plugin functions with this marker.
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookspec", "hookimpl"]


@hookspec(firstresult=True)
def release_collect(context: "ReleaseContext") -> "Optional[List[Artifact]]":
    """Find the artifacts to release in ``context.path``.

    Return a list of :class:`Artifact` (``size`` and ``sha256`` may be left
    empty: the pipeline fills them), or None to let the next plugin try. The
    first non-None result wins; the built-in plugin understands one
    executable, a ``<os>-<arch>[.exe]`` directory, a directory of
    ``<os>-<arch>/`` folders and a PyInstaller ``dist/`` folder, and raises
    :class:`ReleaseError` for any other shape. A plugin supporting another
    input layout implements this with ``tryfirst=True``. An artifact whose
    cmd name is not known yet has ``cmd_name == ""``.
    """


@hookspec(firstresult=True)
def release_deduce_cmd_name(context: "ReleaseContext", artifacts: "Sequence[Artifact]") -> Optional[str]:
    """Name artifacts the input did not name (a ``<os>-<arch>`` directory).

    Called only when ``--cmd-name`` was not given and some artifact has no
    cmd name; return the cmd name (for example read from the binaries), or
    None. Without an answer the release is refused, asking for ``--cmd-name``.
    """


@hookspec
def release_check_artifact(context: "ReleaseContext", artifact: "Artifact") -> None:
    """Refuse ``artifact`` by raising :class:`ReleaseError` (message: problem and fix).

    Called for every artifact, by every plugin, before anything is written.
    The return value is ignored.
    """


@hookspec
def release_prepare(context: "ReleaseContext") -> None:
    """Called once after every check passed, before the slow work.

    The built-in publish plugin checks here that the output folder can be
    written (nothing is created yet). Raise :class:`ReleaseError` to stop.
    """


@hookspec(firstresult=True)
def release_compress(
    context: "ReleaseContext", artifact: "Artifact", data: bytes
) -> "Optional[bytes | Iterable[bytes]]":
    """Return the gzip stream of ``data`` (the full binary) for ``<version>/<plat>.gz``:
    bytes, or an iterable of chunks in order (written as they come, never held whole).

    First result wins; the built-in plugin yields one gzip member a piece at a
    time, compressed on every core (level 6, incompressible pieces stored),
    with a zero timestamp (reproducible output).
    """


@hookspec(firstresult=True)
def release_diff(
    context: "ReleaseContext", artifact: "Artifact", jobs: "Sequence[PatchJob]"
) -> "Optional[Iterable[Tuple[PatchJob, bytes]]]":
    """Compute the bsdiff patches described by ``jobs``.

    Return an iterable yielding ``(job, patch_bytes)`` as each patch is done
    (in any order; the pipeline writes and reports each as it arrives). Each
    patch must be a BSDIFF40 patch (the format go-selfupdate clients, ``bspatch``
    and ``bsdiff4.patch`` apply) turning ``gunzip(job.old_gz)`` into the new
    bytes: the built-in plugin's ``fast`` generator finds the identical runs
    first and runs ``bsdiff4`` between them, its ``bsdiff4`` generator
    (``context.options["diff"]``, ``--diff bsdiff4``) is
    ``bsdiff4.diff(old, new)``, byte-identical to the Go CLI. The old ``.gz`` comes from
    the tree, so decompress it as a stream of at most ``job.old_max_size``
    bytes that must hash to ``job.old_sha256`` when set (the built-in
    ``pyi_selfupdate.release._builtin.diff.read_gz`` does both). First result wins; the
    built-in plugin diffs in ``context.options["diff_workers"]`` threads (``--jobs``,
    default 2); its fast generator reads each old version from a temporary file
    rather than memory (``--diff bsdiff4`` loads it whole); ``job.new_content``
    carries the new bytes the pipeline already holds (shared, never copied). Jobs for patches already in the tree are not
    passed: they are reused.
    """


@hookspec
def release_extra_files(context: "ReleaseContext", artifact: "Artifact") -> "Optional[List[ExtraFile]]":
    """Return extra files to add to the output tree for ``artifact`` (or None).

    They are written after the artifact's ``.gz`` and patches, before any
    manifest. Paths are relative to the output folder and may not leave it.
    """


@hookspec(firstresult=True)
def release_manifest(context: "ReleaseContext", artifact: "Artifact") -> "Optional[Manifest]":
    """Build ``artifact``'s manifest (first result wins).

    The built-in manifest plugin builds ``Version`` and ``Sha256`` and merges
    what every :func:`release_manifest_fields` implementation returns.
    """


@hookspec
def release_manifest_fields(
    context: "ReleaseContext", artifact: "Artifact", manifest: "Manifest"
) -> Optional[Dict[str, Any]]:
    """Return extra fields for ``artifact``'s manifest (or None).

    ``manifest`` holds ``Version``, ``Sha256`` and the fields earlier plugins
    added. Every result is merged into ``Manifest.extra``, written after
    ``Version`` and ``Sha256``; Go clients ignore unknown fields. Two plugins
    giving one field different values is an error; a field named like
    ``Version``/``Sha256`` (any case) is refused, and so is, in a signed
    release, any field the signature does not cover (see SECURITY.md): such
    data goes in a file of its own (:func:`release_extra_files`).
    """


@hookspec(firstresult=True)
def release_write_file(
    context: "ReleaseContext", relpath: str, data: "bytes | Iterable[bytes]"
) -> Optional[str]:
    """Write ``data`` to ``relpath`` (relative to ``context.out``), atomically.

    ``data`` is bytes, or for a large file (the ``.gz``) an iterable of chunks
    to write in order; a plugin that reads the chunks must write the file
    (they can be read once).

    Return the path written. First result wins; the built-in publish plugin
    writes a temporary file in the same folder, fsyncs it, makes it 0644 and
    renames it into place. A plugin that uploads the tree elsewhere should
    implement :func:`release_publish` instead (``--publish DEST``): the
    pipeline reads earlier releases back from ``context.out``.
    """


@hookspec
def release_finished(context: "ReleaseContext", summary: "ReleaseSummary") -> None:
    """Called once after every manifest is written (uploads, notifications)."""


@hookspec(firstresult=True)
def release_publish(publication: "Publication") -> "Optional[PublishSummary]":
    """Upload a release tree to ``publication.destination``, or return None if its scheme is not yours.

    Called by ``pyi-selfupdate publish OUT DEST``, ``release --publish DEST``
    and :func:`pyi_selfupdate.release.publish`. ``publication.files`` are the
    tree's files (relative ``/`` paths, read with ``publication.read``) in the
    order they must become visible: every ``.gz``, patch and extra file, then
    the signed records, the manifests last. Upload them in that order, each
    complete before the next, and a client never sees a manifest whose files
    are missing. Skip a file the destination already holds with the same
    bytes; refuse (:class:`ReleaseError`, before uploading anything) one it
    holds with other bytes unless ``publication.is_manifest(relpath)``. Set
    ``publication.cache_control(relpath)`` and ``content_type(relpath)`` when
    the destination can. With ``publication.dry_run``, report what would be
    uploaded and upload nothing. Return a
    :class:`~pyi_selfupdate.release.PublishSummary`. First result wins; the
    built-in ``s3`` plugin takes ``s3://BUCKET/PREFIX``.
    """


@hookspec(firstresult=True)
def release_fetch(context: "ReleaseContext", source: str) -> Optional[bool]:
    """``release --from SOURCE``: copy into ``context.out`` what diffing the new release needs.

    Called after ``release_collect`` (``context.artifacts`` are known),
    before any check: for each artifact the manifest ``<cmd>/<plat>.json``,
    every ``<cmd>/<version>/<plat>.gz`` and signed record
    ``<cmd>/<version>/<plat>.json`` of the platform, and, when the new
    version is already there, its patches. Write each whole into
    ``context.target(relpath)`` (a temporary name, then a rename); the
    release then verifies them exactly as a local tree (an earlier ``.gz``
    must hash as its signed record says). Return True, or None if the scheme
    is not yours.
    """
