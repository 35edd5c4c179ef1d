"""Release side: write a version into the static update tree go-selfupdate clients read.

``release(path, version)`` (and ``pyi-selfupdate release PATH VERSION``) writes,
for each platform found in ``path``::

    OUT/<cmd>/<plat>.json                 the manifest (written last)
    OUT/<cmd>/<version>/<plat>.gz         the full binary, gzipped
    OUT/<cmd>/<old>/<version>/<plat>      a bsdiff patch from each of the newest earlier releases (--patches-from)

The work is a pluggy pipeline (see :mod:`pyi_selfupdate.release.hookspecs`):
every step is a plugin, third-party plugins load from the entry-point group
``pyi_selfupdate`` or are passed with ``plugins=``.

Guarantees: the input is checked completely before anything is written; every
file is written to a temporary name, fsynced and renamed; the manifests come
last, so a client never sees a version whose files are not all there; running
the same release again reuses what is there (patches are not recomputed) and
completes an interrupted run; releasing an existing version with different
bytes is refused.
"""

from ._manager import DEFAULT_PLUGINS, ENTRY_POINT_GROUP, get_plugin_manager
from ._model import (
    Artifact,
    ArtifactSummary,
    ExtraFile,
    PatchJob,
    PatchSummary,
    ReleaseContext,
    ReleaseSummary,
)
from ._pipeline import release
from ._publish import Publication, PublishSummary, publish
from .hookspecs import hookimpl

__all__ = [
    "release",
    "publish",
    "Publication",
    "PublishSummary",
    "ReleaseSummary",
    "ArtifactSummary",
    "PatchSummary",
    "ReleaseContext",
    "Artifact",
    "ExtraFile",
    "PatchJob",
    "hookimpl",
    "get_plugin_manager",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
]
