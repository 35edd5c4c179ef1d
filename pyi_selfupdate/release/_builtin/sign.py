"""Built-in release plugin: sign each manifest with the publisher's Ed25519 key(s).

Options (``context.options``, filled by ``pyi-selfupdate release``):

``sign_keys``
    key files written by ``pyi-selfupdate keygen`` (or
    :class:`~pyi_selfupdate.release.keys.PrivateKey` objects); several sign with
    each key, for a rotation. Without any, manifests are left unsigned.
``expires_days``
    the manifest expires that many days from now (clients refuse it after):
    finite, positive, at most ``LIMITS.expires_days_max``.
``serial``
    the release serial; by default the current manifest's ``Serial`` + 1
    (1 for the first signed release). A given serial must be higher.

Nothing the tree says is trusted unless a given key signed it: the current
manifest's serial counts only when its signature verifies with the public key
of one of ``sign_keys`` (expiry aside); an unsigned manifest, one signed by
another key, or a missing one while earlier versions are released, is
refused unless ``--serial`` is given. Each signed release also keeps its
signed manifest as ``<cmd>/<version>/<plat>.json``: the verified record of
the hash an earlier ``.gz`` must have before it is diffed from or re-signed
(``artifact.data["signed_releases"]``, version -> verified manifest); the
next serial also exceeds every verified record's (a release killed before
its manifest was published already signed its serial).

A frozen app that embeds public keys must trust one of ``sign_keys``
(otherwise every installed copy would refuse the release and never update
again), unless the option ``allow_untrusted_key`` is set; an app that embeds
none is only warned about (it installs the release without checking the
signature).

Nothing is written when a key cannot be read, an option is out of range, or
a serial would go backwards. A release without a key over a tree whose
manifest is signed is refused too: every app that verifies would refuse it
and stop updating.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ... import signing
from ...errors import ConfigError, ReleaseError, SignatureError
from ...protocol import Manifest
from ...settings import LIMITS
from ..keys import PrivateKey, load_private_key, sign_fields
from .._model import Artifact, ReleaseContext
from .._tree import read_tree_manifest, record_path
from ..hookspecs import hookimpl

log = logging.getLogger("pyi_selfupdate.release")

#: Verification of what the tree holds ignores ``Expires``: an expired
#: manifest still records, validly, the serial and hash its key signed.
_LONG_AGO = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def load_keys(items: Any) -> List[PrivateKey]:
    """The keys of the option ``sign_keys``: key files or :class:`PrivateKey` objects."""
    keys: List[PrivateKey] = []
    for item in items or ():
        if isinstance(item, PrivateKey):
            keys.append(item)
            continue
        try:
            keys.append(load_private_key(os.fspath(item)))
        except ConfigError as exc:
            raise ReleaseError(f"cannot sign the release: {exc}") from None
    return keys


def _keys(context: ReleaseContext) -> List[PrivateKey]:
    cached = context.stash.get(__name__)
    if cached is None:
        cached = context.stash[__name__] = load_keys(context.options.get("sign_keys"))
    return cached


def verify_with_keys(manifest: Manifest, keys: List[PrivateKey], *, cmd_name: str, platform: str,
                     source: str) -> signing.SignedInfo:
    """:func:`~pyi_selfupdate.signing.verify_manifest` with the public keys of ``keys``, expiry aside.

    Raises :class:`~pyi_selfupdate.errors.SignatureError` when none of them
    signed ``manifest`` for ``cmd_name`` on ``platform``.
    """
    return signing.verify_manifest(manifest, cmd_name=cmd_name, platform=platform,
                                   public_keys=[k.public_key for k in keys], now=_LONG_AGO, source=source)


def signed_record(out: Path, keys: List[PrivateKey], cmd_name: str, version: str,
                  plat: str) -> Optional[Tuple[Manifest, signing.SignedInfo]]:
    """The verified record of ``version`` (signed by one of ``keys``, for that version), or None."""
    relpath = record_path(cmd_name, version, plat)
    try:
        record = read_tree_manifest(out, relpath)
        if record is None:
            return None
        info = verify_with_keys(record, keys, cmd_name=cmd_name, platform=plat, source=relpath)
    except signing.UntrustedKeyError as exc:  # signed before a key rotation: expected, not an alarm
        log.debug("ignoring %s: %s", relpath, exc)
        return None
    except (ReleaseError, SignatureError) as exc:
        log.warning("ignoring %s: %s", relpath, exc)
        return None
    if record.version != version:
        log.warning("ignoring %s: it is signed for version %r, not %r", relpath, record.version, version)
        return None
    return record, info


def _expires(context: ReleaseContext) -> Optional[_dt.datetime]:
    """``--expires DAYS`` as a time, checked: finite, positive, at most ``LIMITS.expires_days_max``."""
    days = context.options.get("expires_days")
    if days is None:
        return None
    limit = LIMITS.expires_days_max
    if (isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days)
            or not 0 < days <= limit):
        raise ReleaseError(
            f"--expires must be a number of days above 0 and at most {limit}, not {days!r}; "
            "apps refuse a manifest once it expires, so re-sign before with `pyi-selfupdate rollback`"
        )
    key = f"{__name__}.expires"
    if key not in context.stash:  # one expiry for every platform of the release
        context.stash[key] = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=days)
    return context.stash[key]


def _check_serial_option(wanted: Any) -> Optional[int]:
    if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0):
        raise ReleaseError(f"--serial must be a non-negative integer, not {wanted!r}")
    return wanted


def _released(context: ReleaseContext, artifact: Artifact) -> List[str]:
    """The versions with a ``.gz`` for the artifact's platform in the tree (this one included)."""
    folder = Path(context.out) / artifact.cmd_name
    try:
        return sorted(p.name for p in folder.iterdir() if (p / f"{artifact.platform}.gz").is_file())
    except OSError:
        return []


def _check_app_trusts(context: ReleaseContext, artifact: Artifact, keys: List[PrivateKey]) -> None:
    """Refuse signing keys that the frozen app being released does not embed."""
    if "embedded_config" in artifact.data:
        config = artifact.data["embedded_config"]
    else:  # the frozen plugin is blocked: read it here
        from .frozen import read_embedded_config

        config = read_embedded_config(artifact.path)
    if not config:
        return
    embedded = []
    for text in config.get("public_keys") or ():
        try:
            embedded.append(signing.parse_public_key(text))
        except ConfigError:
            continue
    ids = ", ".join(k.key_id for k in keys)
    if not embedded:
        log.warning(
            "%s embeds no public_keys: it installs updates without checking their signature, so "
            "signing with key %s protects only apps built with it; add public_keys = [\"%s\"] to the "
            "build configuration to authenticate its updates", artifact.path, ids, keys[0].public_key_text)
        return
    if any(k.public_key in embedded for k in keys):
        return
    if context.options.get("allow_untrusted_key"):
        log.warning("%s trusts none of the signing keys (%s): installed copies will refuse this release",
                    artifact.path, ids)
        return
    trusted = ", ".join(signing.key_id(k) for k in embedded)
    raise ReleaseError(
        f"{artifact.path} trusts the key(s) {trusted} but the release is signed with {ids}: every "
        "installed copy would refuse this release, and releases after it. Sign with a key the app "
        "embeds (add --sign-key for it; several keys sign together during a rotation), or rebuild "
        f"the app with public_keys = [\"{keys[0].public_key_text}\"]; pass --allow-untrusted-key "
        "only if these apps are meant to stop updating"
    )


@hookimpl
def release_check_artifact(context: ReleaseContext, artifact: Artifact) -> None:
    """Load the keys, check the options, verify the tree and choose the serial, before anything is written."""
    keys = _keys(context)
    relpath = artifact.manifest_relpath
    path = str(context.target(relpath))
    current = read_tree_manifest(Path(context.out), relpath)
    wanted = _check_serial_option(context.options.get("serial"))
    if not keys:
        given = [flag for flag, key in (("--expires", "expires_days"), ("--serial", "serial"))
                 if context.options.get(key) is not None]
        if given:
            raise ReleaseError(
                f"{' and '.join(given)} only apply to a signed release, and no --sign-key was given; "
                "pass --sign-key KEYFILE, or drop " + " and ".join(given)
            )
        if current is not None and signing.is_signed(current):
            raise ReleaseError(
                f"{path} is signed, and apps that verify signatures would refuse an unsigned "
                "release and stop updating; pass --sign-key KEYFILE"
            )
        return
    _expires(context)
    _check_app_trusts(context, artifact, keys)
    previous, previous_source = 0, path
    # Verified records: the hashes of earlier releases, and serials the next one must exceed
    # (a record outlives a release killed before its manifest was published).
    trusted: Dict[str, Manifest] = {}
    for version in _released(context, artifact):
        found = signed_record(Path(context.out), keys, artifact.cmd_name, version, artifact.platform)
        if found is not None:
            trusted[version] = found[0]
            if found[1].serial > previous:
                previous, previous_source = found[1].serial, record_path(artifact.cmd_name, version,
                                                                          artifact.platform)
    if current is not None:
        try:
            info = verify_with_keys(current, keys, cmd_name=artifact.cmd_name, platform=artifact.platform,
                                    source=path)
        except SignatureError as exc:
            if wanted is None:
                raise ReleaseError(
                    f"the serial of the current manifest cannot be trusted: {exc}. "
                    f"If {path} is yours (the first signed release over an unsigned tree, or a release "
                    "after the key that signed it was retired), give the serial explicitly with "
                    "--serial N, N higher than any serial ever published; otherwise restore it from "
                    "a backup (an attacker may have stripped or replaced it to restart the serials)"
                ) from None
            log.warning("%s is not signed by the given key(s): trusting --serial %d instead", path, wanted)
        else:
            if info.serial >= previous:
                previous, previous_source = info.serial, path
            trusted[current.version] = current
    elif wanted is None:
        earlier = [v for v in _released(context, artifact) if v != artifact.version]
        if earlier:
            raise ReleaseError(
                f"{path} is missing, though {artifact.cmd_name} {', '.join(earlier)} "
                f"{'is' if len(earlier) == 1 else 'are'} released for {artifact.platform}: the serial "
                "cannot be known; restore the manifest from a backup, or give the serial with "
                "--serial N, N higher than any serial ever published"
            )
    if wanted is None:
        serial = previous + 1
    elif wanted <= previous:
        raise ReleaseError(
            f"--serial {wanted} is not higher than serial {previous} of {previous_source}; clients that "
            f"saw it would refuse this release as a rollback: use --serial {previous + 1} or omit it"
        )
    else:
        serial = wanted
    artifact.data["sign_serial"] = serial
    artifact.data["signed_releases"] = trusted


@hookimpl
def release_manifest_fields(context: ReleaseContext, artifact: Artifact, manifest: Manifest) -> Optional[Dict[str, Any]]:
    """``CmdName, Platform, Size, Serial, [Expires,] Signatures`` when keys were given."""
    keys = _keys(context)
    if not keys:
        return None
    expires = _expires(context)
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
