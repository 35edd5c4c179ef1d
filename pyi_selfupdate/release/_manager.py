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
    "s3",
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


def get_plugin_manager(
    plugins: Iterable[Any] = (), *, entry_points: bool = True, disable: Iterable[str] = ()
) -> pluggy.PluginManager:
    """A new PluginManager with the built-ins, the entry-point plugins and ``plugins``.

    ``plugins`` are registered last, so their hooks run first (pluggy calls
    implementations in reverse registration order unless tryfirst/trylast).
    ``disable`` names built-in plugins to leave out (``-p no:NAME``); one whose
    hook is required (:data:`REQUIRED_HOOKS`) may only be left out when another
    plugin implements that hook.
    """
    disable = list(disable)
    for name in disable:
        if name not in DEFAULT_PLUGINS:
            raise ReleaseError(
                f"there is no built-in release plugin {name!r} to block; "
                f"the built-in plugins are {', '.join(DEFAULT_PLUGINS)}"
            )
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        if name in disable:
            pm.set_blocked(f"pyi_selfupdate.{name}")
            continue
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
    for hook, owner in REQUIRED_HOOKS.items():
        if owner in disable and not getattr(pm.hook, hook).get_hookimpls():
            raise ReleaseError(
                f"the built-in {owner} plugin cannot be blocked: a release needs its {hook} "
                f"hook and no other plugin implements it; keep {owner}, or add a plugin that does"
            )
    return pm
