"""Hostile bytes against the real client: manifests read two ways, nesting, odd values, patches.

Same setting as ``test_hostile_server.py``: the real release pipeline writes a
signed tree of myapp 1.0 and 2.0, a real HTTP server on 127.0.0.1 serves it
with the attacker's change, and the real ``Updater`` checks it. Every failure
must be a ``SelfUpdateError`` naming the problem, with the installed file
unchanged and nothing left beside it.
"""

from __future__ import annotations

import base64
import bz2
import functools
import hashlib
import json
import random
import subprocess
import sys
import time
import unicodedata
from types import SimpleNamespace

import pytest

from _server import Fault
from test_hostile_server import CMD, MANIFEST, PATCH12, PLAT, Tree, _payload, assert_refused
from test_hostile_server import server, tree, updater  # noqa: F401 (the fixtures: a tree, its server, an Updater)

from pyi_selfupdate import Updater
from pyi_selfupdate.errors import ManifestError, SelfUpdateError
from pyi_selfupdate.protocol import decode_manifest, go_key
from pyi_selfupdate.release import release
from pyi_selfupdate.release.keys import generate_private_key, write_private_key

SHA_A = base64.b64encode(b"\1" * 32).decode()
SHA_B = base64.b64encode(b"\2" * 32).decode()


@pytest.fixture(autouse=True)
def _log(caplog):
    caplog.set_level("INFO", logger="pyi_selfupdate")


def _signed_with(tree: Tree, before: str = "", after: str = "") -> bytes:
    """The signed 2.0 manifest with raw JSON members added before and after its own."""
    body = tree.manifests["2.0"].decode().strip()
    assert body.startswith("{") and body.endswith("}")
    inner = body[1:-1].strip()
    members = [m for m in (before, inner, after) if m]
    return ("{" + ",\n".join(members) + "}").encode()


# ------------------------------------------------------- one manifest, two readings


def _go_reading(data: bytes) -> dict:
    """What Go's encoding/json puts in go-selfupdate's struct {Version string; Sha256 []byte}:
    each key is matched to a field by simple case folding, the last matching key wins."""
    def fold(key: str) -> str:  # enough for ASCII field names (see the test below)
        return "".join({"\u017f": "s", "\u212a": "k"}.get(c, c.lower() if c.isascii() else c) for c in key)

    fields = {}
    for key, value in json.loads(data, object_pairs_hook=list):
        for name in ("Version", "Sha256"):
            if fold(key) == fold(name):
                fields[name] = value
    return fields


def test_a_manifest_go_reads_as_another_release_is_refused(tree, updater, server, caplog):
    """Validly signed 2.0 for this client; a Go client reads another version and hash.

    ``"version"`` then ``"Version"`` again (Python's dict kept the second ``Version``
    at the first one's place, so the loop ended on ``"version"``), and ``ſha256``
    (U+017F folds to ``s`` in Go, not under ``str.lower``)."""
    evil = base64.b64encode(hashlib.sha256(b"evil").digest()).decode()
    data = _signed_with(tree, before='"Version": "6.6.6"',
                        after=f'"version": "2.0", "Version": "6.6.6", "\\u017fha256": "{evil}"')
    assert _go_reading(data) == {"Version": "6.6.6", "Sha256": evil}
    server.faults[MANIFEST] = Fault(body=data)
    tree.install("1.0")
    with pytest.raises(ManifestError, match="a Go client matches keys case-insensitively"):
        updater().update()
    assert_refused(caplog, tree, "1.0", "gives one key 'Version' twice", "refusing it")
    assert server.log == ["/" + MANIFEST]


@pytest.mark.parametrize("members", [
    '"Version": "A", "version": "B", "Version": "C"',  # Python read B, Go reads C
    '"Version": "A", "VERSION": "B"',
    '"Version": "A", "Version": "B"',
    '"Version": "A", "\\u017fha256": "SHA", "Sha256": "SHA"',  # long s
    '"Version": "A", "Sha256": "SHA", "\\u212aind": "folder", "Kind": "folder"',  # Kelvin sign
    '"Version": "A", "Sha256": "SHA", "Signatures": [{"Sig": "x", "sig": "y"}]',
], ids=["interleaved", "upper", "exact-twice", "long-s", "kelvin", "nested"])
def test_keys_that_fold_together_are_refused(members):
    data = ("{" + members.replace("SHA", SHA_A) + "}").encode()
    if '"Sha256"' not in members and "ha256" not in members:
        data = data[:-1] + f', "Sha256": "{SHA_A}"}}'.encode()
    with pytest.raises(ManifestError, match="gives one key"):
        decode_manifest(data)


def test_a_single_key_is_read_as_go_reads_it():
    """Without a collision, both clients read the same: any case, and Go's folding of ſ."""
    m = decode_manifest(f'{{"VERSION": "2.0", "\\u017fha256": "{SHA_B}", "Kind": "folder"}}'.encode())
    assert (m.version, m.sha256, m.kind) == ("2.0", b"\2" * 32, "folder")
    assert list(m.extra) == ["Kind"]


def test_only_long_s_and_the_kelvin_sign_fold_onto_ascii():
    """Why go_key needs no table of its own: of all of Unicode, only U+017F and U+212A
    fold onto an ASCII letter or digit under simple case folding (Go's unicode.SimpleFold
    orbits "Ssſ" and "KkK"); İ and ı fold to nothing else in Go either."""
    onto_ascii = {}
    for code in range(0x80, sys.maxunicode + 1):
        ch = chr(code)
        if unicodedata.category(ch) == "Cs":
            continue
        folded = go_key(ch)
        if folded.isascii():
            onto_ascii[ch] = folded
    assert onto_ascii == {"\u017f": "s", "\u212a": "k"}
    assert go_key("\u0130") == "\u0130" and go_key("\u0131") == "\u0131"
    assert go_key("\u1e9e") == go_key("\u00df") == "\u00df"  # simple folding, not casefold's "ss"


# ------------------------------------------------ every failure a SelfUpdateError


HOSTILE = {
    "deep nesting": lambda t: _signed_with(t, after='"X": ' + "[" * 20000 + "]" * 20000),
    "lone surrogate version": lambda t: f'{{"Version": "\\ud800", "Sha256": "{SHA_A}"}}'.encode(),
    "lone surrogate elsewhere": lambda t: _signed_with(t, after='"Notes2": "\\udfff"'),
    "NaN": lambda t: _signed_with(t, after='"X": NaN'),
    "Infinity size": lambda t: _signed_with(t).replace(b'"Size": ', b'"Size": Infinity, "S": '),
    "huge integer": lambda t: _signed_with(t, after='"X": ' + "9" * 5000),
    "serial over 2**63": lambda t: _signed_with(t).replace(b'"Serial": 2', b'"Serial": 92233720368547758070'),
    "size as a float": lambda t: _signed_with(t).replace(b'"Size": ', b'"Size": 1.5, "S": '),
    "version an object": lambda t: f'{{"Version": {{"a": 1}}, "Sha256": "{SHA_A}"}}'.encode(),
    "version null": lambda t: f'{{"Version": null, "Sha256": "{SHA_A}"}}'.encode(),
    "sha256 a number": lambda t: b'{"Version": "2.0", "Sha256": 7}',
    "top-level list": lambda t: b'[{"Version": "2.0"}]',
    "not UTF-8": lambda t: b'{"Version": "\xff\xfe"}',
    "signatures an object": lambda t: _signed_with(t).replace(b'"Signatures": [', b'"Signatures": {"a": [').replace(b"]\n}", b"]}\n}"),
    "signatures deeply nested": lambda t: _signed_with(t).replace(b'"Signatures": [', b'"Signatures": [' + b"[" * 900 + b"]" * 900 + b", "),
    "expires a number": lambda t: _signed_with(t, after='"Expires": 12'),
    "kind a list": lambda t: _signed_with(t, after='"Kind": ["folder"]'),
    "notes an object": lambda t: _signed_with(t, after='"Notes": {"a": "b"}'),
    "notes nested deeply": lambda t: _signed_with(t, after='"Notes": ' + "[" * 950 + "]" * 950),
    "version with a NUL": lambda t: f'{{"Version": "2\\u0000", "Sha256": "{SHA_A}"}}'.encode(),
}


@pytest.mark.parametrize("signed", [True, False], ids=["keys", "no keys"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_every_hostile_manifest_is_a_self_update_error(name, signed, tree, updater, server, caplog):
    server.faults[MANIFEST] = Fault(body=HOSTILE[name](tree))
    server.faults[PATCH12] = Fault(status=404)
    tree.install("1.0")
    try:
        result = updater(**({} if signed else {"public_keys": None})).update()
    except SelfUpdateError as exc:
        assert str(exc) and "unexpectedly" not in str(exc)  # its own message, not the net under them
        assert tree.target.read_bytes() == _payload("1.0")
    except BaseException as exc:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"{name}: update() raised {type(exc).__name__}, not a SelfUpdateError: {exc}")
    else:  # a few still carry the valid signed 2.0 (or, without keys, a go-selfupdate manifest of 2.0)
        assert result is None or (result.to_version == "2.0" and tree.target.read_bytes() == _payload("2.0"))
    stray = {p.name for p in tree.app_dir.iterdir()} - {CMD, f".{CMD}.lock", "update"}
    assert stray == set()


# ----------------------------------------------------------------- patch memory


def _offt(x: int) -> bytes:
    return (abs(x) | (1 << 63 if x < 0 else 0)).to_bytes(8, "little")


def _bz2_of(piece: bytes, times: int) -> bytes:
    """bzip2 of ``piece * times``, compressed piece by piece (the test process stays small)."""
    comp = bz2.BZ2Compressor(9)
    block = piece * max(1, (1 << 20) // len(piece))
    per = len(block) // len(piece)
    out = [comp.compress(block) for _ in range(times // per)]
    out.append(comp.compress(piece * (times % per)))
    return b"".join(out) + comp.flush()


@functools.lru_cache(maxsize=None)
def _hostile_patch(new_size: int) -> bytes:
    """397 bytes of BSDIFF40 claiming a ``new_size`` result, whose control block holds the most
    (no-op) entries that size allows: 24 * (new_size + 1) bytes, 400 MB for 16 MiB."""
    ctrl = _bz2_of(bytes(24), new_size + 1)
    diff, extra = _bz2_of(b"\0", new_size), bz2.compress(b"")
    return b"BSDIFF40" + _offt(len(ctrl)) + _offt(len(diff)) + _offt(new_size) + ctrl + diff + extra


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A signed release tree of a 16 MiB myapp 2.0 (no patch), and an installed 1.0's bytes."""
    root = tmp_path_factory.mktemp("big")
    rng = random.Random(5)
    key = generate_private_key()
    write_private_key(root / "release.key", key)
    build = root / "builds" / CMD
    build.parent.mkdir()
    build.write_bytes(rng.randbytes(16 << 20))
    release(build, "2.0", root / "public", platform=PLAT, cmd_name=CMD,
            options={"sign_keys": [str(root / "release.key")]})
    return SimpleNamespace(public=root / "public", key=key, new=build.read_bytes(),
                           old=rng.randbytes(16 << 20))


def test_a_tiny_patch_claiming_16_mib_is_applied_in_bounded_memory(big, serve, tmp_path):
    """The signed 16 MiB release, and a patch of a few hundred bytes: the client (its own process)
    refuses the patch, fetches the full binary, and peaks far below the 546 MiB this once took."""
    server = serve(big.public)
    patch = _hostile_patch(len(big.new))
    assert len(patch) < 500
    server.faults[PATCH12] = Fault(body=patch)
    target = tmp_path / CMD
    target.write_bytes(big.old)
    code = f"""
import json, logging, time
from pyi_selfupdate import Updater
logging.basicConfig(level=logging.INFO)

def peak_mib():  # this process's own high-water mark (ru_maxrss would count the forked parent)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) // 1024

start = time.monotonic()
result = Updater(current_version="1.0", api_url={server.url!r}, cmd_name={CMD!r}, platform={PLAT!r},
                 target={str(target)!r}, public_keys=[{big.key.public_key_text!r}]).update()
print(json.dumps({{"method": result.method, "bytes": result.bytes_fetched,
                  "seconds": round(time.monotonic() - start, 1), "peak_mib": peak_mib()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.splitlines()[-1])
    print(len(patch), "patch bytes", figures)  # the figures SECURITY.md gives
    assert "falling back to the full binary" in out.stderr
    assert figures["method"] == "full" and target.read_bytes() == big.new
    assert figures["peak_mib"] < 96, figures  # a small multiple of the 16 MiB output, not 546 MiB


def test_a_patch_slow_to_apply_ends_at_the_overall_deadline(big, serve, tmp_path, caplog):
    """16 million control entries take seconds of CPU: the deadline stops them too."""
    server = serve(big.public)
    server.faults[PATCH12] = Fault(body=_hostile_patch(len(big.new)))
    target = tmp_path / CMD
    target.write_bytes(big.old)
    updater = Updater(current_version="1.0", api_url=server.url, cmd_name=CMD, platform=PLAT,
                      target=target, public_keys=[big.key.public_key_text], deadline=1)
    start = time.monotonic()
    with pytest.raises(SelfUpdateError, match="overall deadline of 1 s"):
        updater.update()
    assert time.monotonic() - start < 1 + 2
    assert "applying patch" in caplog.text and target.read_bytes() == big.old
    assert {p.name for p in tmp_path.iterdir()} == {CMD, "update"}


def test_any_other_exception_of_a_check_becomes_a_self_update_error_naming_it(tree, updater, caplog):
    """The net under every specific refusal: here a custom requester whose stream gives text."""
    import io

    class TextRequester:
        def fetch(self, url):
            return io.StringIO('{"Version": "2.0"}')

    tree.install("1.0")
    with pytest.raises(SelfUpdateError, match="failed unexpectedly .TypeError.*report") as info:
        updater(requester=TextRequester()).update()
    assert isinstance(info.value.__cause__, TypeError)
    assert tree.target.read_bytes() == _payload("1.0")
    assert "failed unexpectedly (TypeError" in caplog.text
