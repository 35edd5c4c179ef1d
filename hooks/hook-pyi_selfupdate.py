"""PyInstaller hook for ``pyi_selfupdate``: collect the client, embed the update configuration.

It runs only for apps whose import graph contains ``pyi_selfupdate`` (the app
imports it, or is built with ``--hidden-import pyi_selfupdate``); other apps
built in the same environment are untouched.

* ``hiddenimports``: the client modules the runtime bootstrap needs (it is
  imported from a runtime hook, whose imports' own hooks do not run), plus
  ``requests`` and ``bsdiff4``.
* ``excludedimports``: the release side, the CLI and the build tools never ship
  in the app; PyNaCl ships only when ``public_keys`` are set (signed updates).
* ``hook(hook_api)``: merges the configuration (environment > spec file
  ``hooksconfig={"pyi_selfupdate": {...}}`` > ``[tool.pyi-selfupdate]`` in
  ``./pyproject.toml`` > defaults; see ``pyi_selfupdate.settings``), validates it
  (a mistake stops the build with the fix) and embeds it as
  ``pyi_selfupdate/_embedded_config.json`` (what ``release`` checks) and the
  same data as ``pyi_selfupdate/_embedded_config.marshal`` (what the app reads at
  launch, without importing ``json``); warns loudly when PYTHONHASHSEED is
  not fixed (the build is not reproducible) and when no ``public_keys`` are set.

``hook-bsdiff4.py`` beside this file keeps bsdiff4's self-test (and the
unittest/asyncio/multiprocessing it drags in) out of every app.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import time

from PyInstaller.utils.hooks import logger

#: Top-level modules of the package that must never ship in the app.
_BUILD_ONLY = {"__main__", "_cli", "_buildconfig", "spec", "release", "_hooks", "_templates"}

#: The client modules the bootstrap needs (more are picked up from the package folder).
_CLIENT = [
    "protocol", "errors", "settings", "updater", "fetch", "_patch", "_files", "_staging",
    "_instances", "_schedule", "_restart", "_bootstrap", "signing",
]


def _client_modules() -> list:
    spec = importlib.util.find_spec("pyi_selfupdate")  # does not import the package
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = set()
    for folder in folders:
        for entry in os.listdir(folder):
            name, ext = os.path.splitext(entry)
            if ext == ".py" and name != "__init__" and name not in _BUILD_ONLY:
                found.add(name)
    wanted = [m for m in _CLIENT if m in found] + sorted(found - set(_CLIENT))
    return ["pyi_selfupdate"] + [f"pyi_selfupdate.{m}" for m in wanted]


hiddenimports = _client_modules() + ["requests", "bsdiff4"]

excludedimports = [
    "pyi_selfupdate.release",
    "pyi_selfupdate._cli",
    "pyi_selfupdate._buildconfig",
    "pyi_selfupdate.spec",
    "pyi_selfupdate.__main__",
    "pyi_selfupdate._hooks",
    "pyi_selfupdate._templates",
    "pluggy",
    "PyInstaller",
    # PyNaCl (~1.4 MB) only verifies signed updates: hook() adds it back for builds
    # that set public_keys. An app that imports nacl itself still gets it.
    "nacl",
]

#: How far in the future the generated settings file is dated (ten years).
_FUTURE_SECONDS = 10 * 365 * 24 * 3600

_REPRO_WARNING = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
pyi-selfupdate: PYTHONHASHSEED is {state}: THIS BUILD IS NOT REPRODUCIBLE.
pyi-selfupdate: PyInstaller reorders base_library.zip at every such build, so
pyi-selfupdate: the update patches between two releases will be ~80x larger
pyi-selfupdate: (hundreds of KB instead of a few hundred bytes).
{fix}
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""

_FIX_SCRIPT = """\
pyi-selfupdate: Build with `pyi-selfupdate build app.py`, or set PYTHONHASHSEED=0
pyi-selfupdate: in the environment of pyinstaller."""

# A spec file cannot fix the seed of the process already running it: it can only
# run PyInstaller again with the seed fixed.
_FIX_SPEC = """\
pyi-selfupdate: Build it with `pyi-selfupdate build {spec}` or `PYTHONHASHSEED=0
pyi-selfupdate: pyinstaller {spec}`; or make plain `pyinstaller {spec}` reproducible
pyi-selfupdate: by putting these lines at the top of {spec} (Python >= 3.10):
import os, subprocess, sys
if os.environ.get("PYTHONHASHSEED", "") in ("", "random"):  # reproducible build
    sys.exit(subprocess.call([sys.executable, *sys.orig_argv[1:]],
                             env=dict(os.environ, PYTHONHASHSEED="0")))"""


def _repro_warning(seed) -> str:
    """The warning for an unseeded build; a spec file's user is told what to put in the spec."""
    import sys

    # PyInstaller replaces sys.argv while it builds; the command as typed is sys.orig_argv.
    specs = [os.path.basename(a) for a in getattr(sys, "orig_argv", [])[1:] if a.endswith(".spec")]
    fix = _FIX_SPEC.format(spec=specs[0]) if specs else _FIX_SCRIPT
    return _REPRO_WARNING.format(state="unset" if not seed else repr(seed), fix=fix)


def _embedded_path() -> str:
    from PyInstaller.config import CONF

    from pyi_selfupdate._buildconfig import WORKPATH_FILE

    return os.path.join(CONF.get("workpath") or os.getcwd(), WORKPATH_FILE)


def _collect_nacl(hook_api) -> None:
    """Collect PyNaCl, which verifies signed updates, for a build that sets public_keys."""
    try:
        import nacl.signing  # noqa: F401
    except ImportError:
        raise SystemExit(
            "pyi-selfupdate: build stopped: public_keys are set but PyNaCl, which verifies signed "
            "updates, is not installed; install it with `pip install pynacl` and build again"
        ) from None
    # Added from the app's top level, where this hook's excludedimports do not apply;
    # PyInstaller then runs nacl's own hook in its next post-graph round. nacl._sodium
    # is a cffi extension: its import of _cffi_backend is invisible to PyInstaller.
    hook_api.module_graph.add_hiddenimports(["nacl.signing", "nacl.exceptions", "_cffi_backend"])


def _write_generated(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    # PyInstaller reuses a cached analysis (and would skip this hook, keeping old
    # settings) unless an input is newer than its last build. The settings come
    # from the environment and pyproject.toml, which it does not watch: dating
    # this generated file in the future makes every build run the hook again.
    # The archive stores no timestamps, so builds stay byte-identical.
    future = time.time() + _FUTURE_SECONDS
    os.utime(tmp, (future, future))
    os.replace(tmp, path)


def hook(hook_api) -> None:
    """Merge, validate and embed the update configuration; warn about unreproducible builds."""
    from pyi_selfupdate._buildconfig import HOOKSCONFIG_NAME, build_config, dumps
    from pyi_selfupdate.settings import EMBEDDED_DIR, EMBEDDED_MARSHAL_NAME, EMBEDDED_NAME, MARSHAL_VERSION
    from pyi_selfupdate.errors import SelfUpdateError

    seed = os.environ.get("PYTHONHASHSEED")
    if seed is None or seed.strip() in ("", "random"):
        for line in _repro_warning(seed).splitlines():
            logger.warning(line)

    spec_config = (getattr(hook_api.analysis, "hooksconfig", None) or {}).get(HOOKSCONFIG_NAME)
    try:
        config = build_config(spec_config)
    except SelfUpdateError as exc:
        raise SystemExit(f"pyi-selfupdate: build stopped: {exc}") from None
    # Fixed now, so that renaming or moving the executable never changes what it asks for.
    if config["cmd_name"] is None:
        from PyInstaller.config import CONF

        config["cmd_name"] = CONF.get("specnm") or None
    if config["platform"] is None:
        from pyi_selfupdate.protocol import current_platform

        config["platform"] = current_platform()

    if not config["public_keys"]:
        logger.warning(
            "pyi-selfupdate: no public_keys configured: updates are verified by hash only, "
            "not authenticated; anyone who controls the update server can replace the app"
        )

    if config["public_keys"]:
        _collect_nacl(hook_api)

    data = dumps(config)
    path = _embedded_path()
    # The same data, decoded from the JSON so that both files say exactly the same.
    marshal_path = os.path.splitext(path)[0] + ".marshal"
    _write_generated(path, data)
    _write_generated(marshal_path, marshal.dumps(json.loads(data), MARSHAL_VERSION))
    # TOC form (dest, src, typecode): the bundle holds pyi_selfupdate/_embedded_config.json, ...
    hook_api.add_datas([
        (EMBEDDED_DIR + "/" + EMBEDDED_NAME, path, "DATA"),
        (EMBEDDED_DIR + "/" + EMBEDDED_MARSHAL_NAME, marshal_path, "DATA"),
    ])
    logger.info(
        "pyi-selfupdate: embedded update configuration (%d bytes): %s %s for %s, api_url %s, mode %s",
        len(data), config["cmd_name"], config["current_version"], config["platform"], config["api_url"],
        config["mode"],
    )
