"""Built-in release plugin: each platform's manifest, ``<cmd>/<plat>.json``."""

from __future__ import annotations

from typing import Any, Dict

from ...errors import ManifestError, ReleaseError
from ...protocol import FOLDER, KIND_KEY, NOTES_KEY, Manifest
from ...signing import SIGNED_KEYS
from .._model import Artifact, ReleaseContext
from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def release_manifest(context: ReleaseContext, artifact: Artifact) -> Manifest:
    """``Version`` and ``Sha256``, ``Kind`` for a folder, then the fields the plugins add, in registration order.

    A signed manifest (one with ``Signatures``) may hold only the fields its
    signature covers: another plugin field is refused.
    """
    base = Manifest(version=artifact.version, sha256=artifact.sha256)
    results = context.pm.hook.release_manifest_fields(context=context, artifact=artifact, manifest=base)
    # A folder release says so (Go clients ignore the field); a single file stays as Go writes it.
    extra: Dict[str, Any] = {KIND_KEY: FOLDER} if artifact.kind == FOLDER else {}
    if context.options.get("notes"):  # release --notes FILE
        extra[NOTES_KEY] = context.options["notes"]
    # pluggy returns results newest plugin first: merge oldest first.
    for fields in reversed(results):
        if not isinstance(fields, dict):
            raise ReleaseError(
                f"a plugin returned {type(fields).__name__} from release_manifest_fields; "
                "it must return a dict of extra manifest fields (or None)"
            )
        for key, value in fields.items():
            if key in extra and extra[key] != value:
                raise ReleaseError(
                    f"two plugins set the manifest field {key!r} to different values "
                    f"({extra[key]!r} and {value!r}); remove one of them"
                )
            extra[key] = value
    if "Signatures" in extra:
        unsigned = [k for k in extra if k not in SIGNED_KEYS and k not in (KIND_KEY, NOTES_KEY)]
        if unsigned:
            raise ReleaseError(
                f"a plugin added the manifest field(s) {', '.join(map(repr, unsigned))}, which the "
                "signature does not cover: in a signed release whoever serves the tree could change "
                "them unnoticed. Signed manifests carry only signed fields: publish that data in a "
                "file of its own (release_extra_files) that its reader checks, or release unsigned"
            )
    try:
        return Manifest(version=base.version, sha256=base.sha256, extra=extra)
    except ManifestError as exc:
        raise ReleaseError(f"a plugin's manifest field is refused: {exc}") from None
