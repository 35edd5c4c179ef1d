"""Built-in release plugin: sign each manifest with the publisher's Ed25519 key(s).

Options (``context.options``, filled by ``pyi-selfupdate release``):

``sign_keys``
    key files written by ``pyi-selfupdate keygen`` (or
    :class:`~pyi_selfupdate.release.keys.PrivateKey` objects); several sign with
    each key, for a rotation. Without any, manifests are left unsigned.
``expires_days``
    the manifest expires that many days from now (clients refuse it after).
``serial``
    the release serial; by default the current manifest's ``Serial`` + 1
    (1 for the first signed release). A given serial must be higher.

Nothing is written when a key cannot be read or a serial would go backwards.
A release without a key over a tree whose manifest is signed is refused too:
every app that verifies would refuse it and stop updating.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from typing import Any, Dict, List, Optional

from ... import signing
from ...errors import ConfigError, ManifestError, ReleaseError
from ...protocol import Manifest, decode_manifest
from ..keys import PrivateKey, load_private_key, sign_fields
from .._model import Artifact, ReleaseContext
from ..hookspecs import hookimpl

log = logging.getLogger("pyi_selfupdate.release")


def _keys(context: ReleaseContext) -> List[PrivateKey]:
    cached = context.stash.get(__name__)
    if cached is not None:
        return cached
    keys: List[PrivateKey] = []
    for item in context.options.get("sign_keys") or ():
        if isinstance(item, PrivateKey):
            keys.append(item)
            continue
        try:
            keys.append(load_private_key(os.fspath(item)))
        except ConfigError as exc:
            raise ReleaseError(f"cannot sign the release: {exc}") from None
    context.stash[__name__] = keys
    return keys


def _current_manifest(context: ReleaseContext, artifact: Artifact) -> Optional[Manifest]:
    path = context.target(artifact.manifest_relpath)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # no release yet (or no tree: publish says so)
        return None
    except OSError as exc:
        raise ReleaseError(f"cannot read the current manifest {path} ({exc.strerror}); fix its permissions") from None
    try:
        return decode_manifest(data, source=str(path))
    except ManifestError as exc:
        raise ReleaseError(f"the current manifest is unreadable: {exc}") from None


def _previous_serial(manifest: Optional[Manifest], path: str) -> int:
    if manifest is None or "Serial" not in manifest.extra:
        return 0
    serial = manifest.extra["Serial"]
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        raise ReleaseError(
            f"the current manifest {path} has a malformed Serial {serial!r}; pass --serial N "
            "with N higher than any serial ever published"
        )
    return serial


@hookimpl
def release_check_artifact(context: ReleaseContext, artifact: Artifact) -> None:
    """Load the keys and choose the serial before anything is written."""
    keys = _keys(context)
    current = _current_manifest(context, artifact)
    path = str(context.target(artifact.manifest_relpath))
    if not keys:
        if current is not None and signing.is_signed(current):
            raise ReleaseError(
                f"{path} is signed, and apps that verify signatures would refuse an unsigned "
                "release and stop updating; pass --sign-key KEYFILE"
            )
        return
    previous = _previous_serial(current, path)
    wanted = context.options.get("serial")
    if wanted is None:
        serial = previous + 1
    else:
        if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0:
            raise ReleaseError(f"--serial must be a non-negative integer, not {wanted!r}")
        if wanted <= previous:
            raise ReleaseError(
                f"--serial {wanted} is not higher than serial {previous} of {path}; clients that "
                f"saw it would refuse this release as a rollback: use --serial {previous + 1} or omit it"
            )
        serial = wanted
    artifact.data["sign_serial"] = serial


@hookimpl
def release_manifest_fields(context: ReleaseContext, artifact: Artifact, manifest: Manifest) -> Optional[Dict[str, Any]]:
    """``CmdName, Platform, Size, Serial, [Expires,] Signatures`` when keys were given."""
    keys = _keys(context)
    if not keys:
        return None
    expires = None
    days = context.options.get("expires_days")
    if days is not None:
        if isinstance(days, bool) or not isinstance(days, (int, float)) or days <= 0:
            raise ReleaseError(f"--expires must be a positive number of days, not {days!r}")
        expires = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=days)
    fields = sign_fields(
        keys,
        cmd_name=artifact.cmd_name,
        platform=artifact.platform,
        version=artifact.version,
        sha256=artifact.sha256,
        size=artifact.size,
        serial=artifact.data["sign_serial"],
        expires=expires,
        kind=artifact.kind,
        notes=context.options.get("notes") or None,
    )
    context.report(
        f"signed {artifact.cmd_name} {artifact.version} {artifact.platform}: serial {fields['Serial']}"
        + (f", expires {fields['Expires']}" if "Expires" in fields else "")
        + f", key(s) {', '.join(s['KeyId'] for s in fields['Signatures'])}"
    )
    return fields
