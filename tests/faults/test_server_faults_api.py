"""Every server fault, against the ``Updater`` API: a clear error or a fallback, never damage.

For each fault kind, three places it can strike:

- the manifest: ``update()`` raises a SelfUpdateError, the target is untouched
  (bytes and mode), nothing is left beside it; the next healthy check updates;
- the patch: ``update()`` falls back to the full ``.gz`` (reason logged at
  WARNING) and ends with the new version;
- the patch missing and the ``.gz`` faulty: a SelfUpdateError, untouched, and
  the next healthy check updates.

The client gets a requester with 0.75 s timeouts (``RequestsRequester``'s own
knobs) so that a stalled socket fails in seconds rather than the default 30.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import _faultkit as kit
from _server import Fault

TIMEOUT = 0.75


def kinds(size: int, url_path: str):
    """Each fault kind for a body of ``size`` bytes served at ``url_path``."""
    return kit.server_faults(size, url_path, stall=TIMEOUT * 4)


KINDS = list(kinds(100, "/x"))
WHERE = ["manifest", "patch", "full"]

_TALLY = None


def _tally() -> kit.Tally:
    global _TALLY
    if _TALLY is None:
        _TALLY = kit.record(kit.Tally(
            "server faults vs Updater.update() (each kind x manifest / patch / .gz)", 0,
            "make test PYTEST_ARGS=tests/faults/test_server_faults_api.py",
        ))
    return _TALLY


def _updater(target: Path, url: str):
    from pyi_selfupdate import Updater
    from pyi_selfupdate.fetch import RequestsRequester

    return Updater(
        current_version=kit.OLD, api_url=url, cmd_name=kit.CMD, platform=kit.PLAT,
        target=target, force_check=True,
        requester=RequestsRequester(connect_timeout=TIMEOUT, read_timeout=TIMEOUT),
    )


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("kind", KINDS)
def test_server_fault(kind, where, tmp_path, serve, script_pair, script_tree, caplog):
    from pyi_selfupdate import SelfUpdateError

    root, files = script_tree
    server = serve(root)
    inst = tmp_path / "inst"
    inst.mkdir()
    target = kit.copy_exe(script_pair["old"], inst / kit.CMD, 0o750)
    tally = _tally()
    tally.trials += 1

    faulted = files[where]
    key = kit.rel_url_path(faulted, root)
    server.faults[key] = kinds(faulted.stat().st_size, "/" + key)[kind]
    if where == "full":
        server.faults[kit.rel_url_path(files["patch"], root)] = Fault(status=404)

    caplog.set_level(logging.DEBUG, logger="pyi_selfupdate")
    if where == "patch":
        result = _updater(target, server.url).update()
        assert result is not None and result.method == "full", result
        assert result.to_version == kit.NEW
        assert kit.judge(target, script_pair).state == "new"
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings, "the fallback to the full download must be logged at WARNING"
        assert kit.leftovers(inst, kit.CMD) == []
        tally.outcomes["fell back to .gz, updated"] += 1
        return

    with pytest.raises(SelfUpdateError) as info:
        _updater(target, server.url).update()
    message = str(info.value)
    assert len(message) > 20, message
    assert target.read_bytes() == script_pair["old"], "the target changed after a failed update"
    assert oct(target.stat().st_mode & 0o777) == oct(0o750)
    assert kit.judge(target, script_pair).state == "old"
    assert kit.leftovers(inst, kit.CMD) == [], "stray files after a failed update"
    tally.outcomes[f"{type(info.value).__name__}, untouched"] += 1

    server.faults.clear()
    result = _updater(target, server.url).update()
    assert result is not None and result.to_version == kit.NEW
    assert kit.judge(target, script_pair).state == "new"
    assert kit.leftovers(inst, kit.CMD) == []
    tally.recovery_tried += 1
    tally.recovered += 1
