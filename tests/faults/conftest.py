"""Fixtures of the fault-injection suite; its figures are printed at the end of the run.

Bounded by default (what ``make test`` runs in CI); the long form is
``FAULT_TRIALS=200 make test PYTEST_ARGS=tests/faults`` or
``python benchmarks/faults.py`` (which also writes benchmarks/results/faults.md).
``FAULT_SEED`` replays a run: every test prints the seed it used.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import _faultkit as kit  # noqa: E402


@pytest.fixture(scope="session")
def script_pair():
    """The two released versions of the small real executable: ``{"old": ..., "new": ...}``."""
    return {"old": kit.script_version(kit.OLD), "new": kit.script_version(kit.NEW)}


@pytest.fixture(scope="session")
def script_tree(tmp_path_factory, script_pair):
    """A release tree for them, written by hand (bsdiff4, gzip, protocol.encode_manifest)."""
    root = tmp_path_factory.mktemp("script-tree")
    files = kit.publish(root, kit.CMD, kit.PLAT, [(kit.OLD, script_pair["old"]), (kit.NEW, script_pair["new"])])
    return root, files


@pytest.fixture(scope="session")
def textstat(frozen, tmp_path_factory, app_port):
    """example_app (textstat) built at 1.0 and 1.1, released by hand, for a fixed port.

    The apps embed ``http://127.0.0.1:<port>/`` and check at every launch
    (``check_time`` 0); tests serve a tree with ``ReleaseServer(root, port=port)``.
    Returns ``kit.FrozenPair`` (exes, bytes, the tree, the port).
    """
    prebuilt = os.environ.get("FAULT_PREBUILT")
    if prebuilt:  # development: reuse apps built by an earlier run (a JSON with old, new, port)
        return kit.prebuilt_textstat_pair(Path(prebuilt), tmp_path_factory.mktemp("textstat-tree"))
    return kit.build_textstat_pair(frozen, tmp_path_factory.mktemp("textstat-tree"), port=app_port)


def pytest_terminal_summary(terminalreporter) -> None:
    if not kit.TALLIES:
        return
    terminalreporter.section("fault-injection figures")
    for tally in kit.TALLIES:
        terminalreporter.write_line(tally.summary())
    kit.write_report()
