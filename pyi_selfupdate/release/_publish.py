"""Publishing a release tree to where users download it (``pyi-selfupdate publish``, ``release --publish``).

:func:`publish` lists the local tree, puts its files in the one safe order
(:func:`publish_order`: every binary and patch first, then the per-version
signed records, the manifests last) and hands them to the first
``release_publish`` hook that takes the destination (the built-in ``s3``
plugin takes ``s3://``). :func:`fetch` brings back from a destination what the
diff of a new release needs (``release --from``), through ``release_fetch``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

from ..errors import ReleaseError
from ._model import ProgressCallback, ReleaseContext, human_size
from ._tree import check_tree_name, open_in_tree, refuse_links

__all__ = ["Publication", "PublishSummary", "publish", "publish_order", "is_manifest", "cache_control",
           "content_type", "split_url", "fetch"]

log = logging.getLogger("pyi_selfupdate.release")

#: Cache-Control of files that never change once published (a version's ``.gz``, a patch).
IMMUTABLE = "public, max-age=31536000, immutable"
#: Cache-Control of files that change (manifests, records, plugins' extra files).
REVALIDATE = "no-cache"


def is_manifest(relpath: str) -> bool:
    """``<cmd>/<plat>.json`` or a signed record ``<cmd>/<version>/<plat>.json``: files meant to change."""
    return relpath.endswith(".json") and relpath.count("/") in (1, 2)


def publish_order(relpaths: Iterable[str]) -> List[str]:
    """Every other file first, then the records ``<cmd>/<version>/<plat>.json``, the manifests
    ``<cmd>/<plat>.json`` last: a client never sees a manifest whose files are missing."""

    def rank(relpath: str) -> int:
        if not is_manifest(relpath):
            return 0
        return 1 if relpath.count("/") == 2 else 2

    return sorted(relpaths, key=lambda r: (rank(r), r))


def cache_control(relpath: str) -> str:
    """``no-cache`` for manifests and other files that may change, a year and ``immutable`` for
    a version's ``.gz`` (``<cmd>/<version>/<plat>.gz``) and a patch (``<cmd>/<old>/<new>/<plat>``)."""
    depth = relpath.count("/")
    if (depth == 2 and relpath.endswith(".gz")) or (depth == 3 and not relpath.endswith(".json")):
        return IMMUTABLE
    return REVALIDATE


def content_type(relpath: str) -> str:
    """``application/json``, ``application/gzip`` (never a Content-Encoding: clients want the bytes
    as stored), else ``application/octet-stream``."""
    if relpath.endswith(".json"):
        return "application/json"
    if relpath.endswith(".gz"):
        return "application/gzip"
    return "application/octet-stream"


def split_url(url: str, scheme: str) -> "tuple[str, str]":
    """``scheme://bucket/prefix`` -> ``(bucket, prefix)``, the prefix without slashes at either end."""
    head = f"{scheme}://"
    if not url.startswith(head) or not url[len(head):].split("/", 1)[0]:
        raise ReleaseError(f"{url!r} is not {head}BUCKET[/PREFIX]; give e.g. {head}my-bucket/updates")
    rest = url[len(head):]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


@dataclass
class Publication:
    """One publish: the files of the local tree ``out``, in upload order, to ``destination``.

    Handed to the ``release_publish`` hook. ``files`` are relative ``/``
    paths in the order they must become visible (:func:`publish_order`);
    ``options`` holds the caller's settings (``endpoint_url``, ...);
    ``dry_run``: list what would be uploaded, upload nothing.
    """

    out: Path
    destination: str
    files: List[str]
    options: Dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    progress: Optional[ProgressCallback] = None

    def report(self, message: str) -> None:
        """One progress line to the caller (no-op without a callback)."""
        if self.progress is not None:
            self.progress(message)

    def read(self, relpath: str) -> bytes:
        """The bytes of ``relpath`` in the local tree (no symbolic link followed)."""
        try:
            with open_in_tree(self.out, relpath) as fh:
                return fh.read()
        except OSError as exc:
            raise ReleaseError(f"cannot read {self.out / relpath} ({exc.strerror}); "
                               "check the tree, then publish again") from None

    @staticmethod
    def is_manifest(relpath: str) -> bool:
        """True for the files a publish may replace (manifests and records); any other file,
        once published with other bytes, is refused."""
        return is_manifest(relpath)

    @staticmethod
    def cache_control(relpath: str) -> str:
        return cache_control(relpath)

    @staticmethod
    def content_type(relpath: str) -> str:
        return content_type(relpath)


@dataclass
class PublishSummary:
    """What a publisher did: ``uploaded`` (in order), ``unchanged`` (skipped), bytes sent."""

    destination: str
    uploaded: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    dry_run: bool = False

    def format(self) -> str:
        verb = "would upload" if self.dry_run else "uploaded"
        return (f"{verb} {len(self.uploaded)} file(s) ({human_size(self.bytes_uploaded)}), "
                f"{len(self.unchanged)} unchanged, to {self.destination}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_files(out: Path) -> List[str]:
    """Every file of the tree, relative; hidden names (temporary files) left out; links refused."""
    if not out.is_dir():
        raise ReleaseError(f"{out} is not a folder; give the release tree (the -o folder of `release`)")
    found: List[str] = []
    for root, dirs, files in os.walk(out):
        rel_root = Path(root).relative_to(out)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            parts = [*rel_root.parts, name]
            for part in parts:
                check_tree_name(part, "file name")
            refuse_links(out, parts)
            found.append("/".join(parts))
        for d in dirs:
            refuse_links(out, [*rel_root.parts, d])
    return found


def publish(
    out: "str | os.PathLike[str]",
    destination: str,
    *,
    plugins: Iterable[Any] = (),
    options: Optional[Mapping[str, Any]] = None,
    progress: Optional[ProgressCallback] = None,
    dry_run: bool = False,
    pm: Any = None,
) -> PublishSummary:
    """Upload the release tree at ``out`` to ``destination`` (``s3://bucket/prefix``, or any
    scheme a plugin's ``release_publish`` takes), new files first and manifests last.

    Unchanged files are skipped; a file published with other bytes (a manifest
    aside) is refused before anything is uploaded. Re-running an interrupted
    publish completes it. ``dry_run`` lists what would be uploaded, in order.
    """
    from ._manager import get_plugin_manager

    if pm is None:
        pm = get_plugin_manager(plugins)
    root = Path(os.fspath(out))
    files = publish_order(_tree_files(root))
    if not files:
        raise ReleaseError(f"{root} holds no release; run `pyi-selfupdate release` first")
    publication = Publication(out=root, destination=destination, files=files, options=dict(options or {}),
                              dry_run=dry_run, progress=progress)
    summary = pm.hook.release_publish(publication=publication)
    if summary is None:
        scheme = destination.split("://", 1)[0] if "://" in destination else destination
        raise ReleaseError(
            f"no publisher takes {destination!r} (scheme {scheme!r}); the built-in one publishes "
            "to s3://BUCKET/PREFIX, other destinations need a plugin implementing release_publish"
        )
    return summary


def fetch(context: ReleaseContext, source: str) -> None:
    """``release --from SOURCE``: bring into ``context.out`` the manifests and earlier releases the
    diff needs; the release then verifies them as any local tree (signed records, hashes)."""
    if not context.pm.hook.release_fetch(context=context, source=source):
        raise ReleaseError(
            f"no plugin fetches from {source!r}; the built-in one reads s3://BUCKET/PREFIX, "
            "other sources need a plugin implementing release_fetch"
        )
