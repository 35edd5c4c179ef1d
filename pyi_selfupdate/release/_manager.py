"""The release pipeline's plugin manager: built-ins, entry points, and plugins passed in."""

from __future__ import annotations

import importlib
import logging
from typing import Any, Iterable, TypeVar

import pluggy

from ..errors import ReleaseError
from . import hookspecs

log = logging.getLogger("pyi_selfupdate.release")

#: Entry-point group of third-party release plugins.
ENTRY_POINT_GROUP = hookspecs.PROJECT

#: Built-in plugins, as module names under ``pyi_selfupdate.release._builtin``.
#: Each is an ordinary plugin; add a module name here to add a built-in step.
DEFAULT_PLUGINS = [
    "collect",
    "frozen",
    "compress",
    "diff",
    "manifest",
    "sign",
    "publish",
]

#: The hooks a release cannot do without (first result wins), and the built-in
#: plugin that answers each.
REQUIRED_HOOKS = {
    "release_collect": "collect",
    "release_compress": "compress",
    "release_diff": "diff",
    "release_manifest": "manifest",
    "release_write_file": "publish",
}

T = TypeVar("T")


def answered(result: "T | None", hook: str, what: str) -> T:
    """``result`` of the required ``hook``; refuse the release when no plugin answered.

    ``what`` says what the answer does ("compressed the release", ...).
    """
    if result is None:
        raise ReleaseError(f"no plugin {what}; keep the built-in {REQUIRED_HOOKS[hook]} plugin registered")
    return result


def get_plugin_manager(plugins: Iterable[Any] = (), *, entry_points: bool = True) -> pluggy.PluginManager:
    """A new PluginManager with the built-ins, the entry-point plugins and ``plugins``.

    ``plugins`` are registered last, so their hooks run first (pluggy calls
    implementations in reverse registration order unless tryfirst/trylast).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        module = importlib.import_module(f"{__package__}._builtin.{name}")
        pm.register(module, name=f"pyi_selfupdate.{name}")
    if entry_points:
        loaded = pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        if loaded:
            log.debug("loaded %d release plugin(s) from entry points", loaded)
    for plugin in plugins:
        if pm.is_registered(plugin):  # a built-in or entry-point plugin passed again
            continue
        pm.register(plugin)
    pm.check_pending()
    return pm
