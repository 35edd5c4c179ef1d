"""SECURITY.md names the test behind each claim: every name it gives must exist."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECURITY = HERE.parents[1] / "SECURITY.md"


def test_every_test_named_in_security_md_exists():
    text = SECURITY.read_text(encoding="utf-8")
    defined = {}
    for path in HERE.parent.rglob("test_*.py"):  # tests/signing, and the e2e tier for frozen apps
        defined.setdefault(path.name, set()).update(re.findall(r"^def (test_\w+)", path.read_text(), re.M))
    named = re.findall(r"(?:(test_\w+\.py)::|::)(test_\w+)", text)
    assert len(named) >= 25
    current = None
    missing = []
    # "file.py::name" sets the file for the following "::name" entries on the same line
    for line in text.splitlines():
        for file, name in re.findall(r"(?:(test_\w+\.py)::|::)(test_\w+)", line):
            current = file or current
            if name not in defined.get(current, set()):
                missing.append(f"{current}::{name}")
    assert missing == []
    for name in re.findall(r"`(test_\w+)(?:\[[^\]]*\])?`", text):
        assert any(name in names for names in defined.values()), name
