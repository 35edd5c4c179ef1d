"""Helpers for PyInstaller spec files (build time only; never shipped in an app).

``pyi-selfupdate init`` writes a spec that calls :func:`check_settings` before its
``Analysis``: a REQUIRED setting left unfilled stops the build at once, with the
fix, instead of after the whole analysis.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

__all__ = ["check_settings"]


def check_settings(hooksconfig: Optional[Mapping[str, Any]] = None) -> None:
    """Validate the update settings a build will embed, or stop the build (SystemExit) with the fix.

    ``hooksconfig`` is the spec's ``Analysis(hooksconfig=...)``; its
    ``"pyi_selfupdate"`` entry is merged with the environment and
    ``./pyproject.toml`` exactly as the build's hook merges them.
    """
    from ._buildconfig import HOOKSCONFIG_NAME, build_config
    from .errors import SelfUpdateError

    try:
        build_config((hooksconfig or {}).get(HOOKSCONFIG_NAME))
    except SelfUpdateError as exc:
        raise SystemExit(f"pyi-selfupdate: build stopped: {exc}") from None
