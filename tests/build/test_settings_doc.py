"""The README's settings and limits tables are the code's (pyi_selfupdate.settings), row for row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyi_selfupdate.settings import DEFAULTS, LIMIT_ROWS, LIMITS, SETTINGS, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_has_its_row_in_the_readme():
    for s in SETTINGS:
        default = "required" if s.required else f"`{json.dumps(s.default)}`"
        row = f"| `{s.name}` | {default} | {s.unit} | {s.doc} |"
        assert row in README, f"README.md lacks (or misstates) the row: {row}"


def test_every_limit_has_its_row_in_the_readme():
    for name, value, unit, doc in LIMIT_ROWS:
        assert getattr(LIMITS, name) == value
        row = f"| `{name}` | `{value!r}` | {unit} | {doc} |"
        assert row in README, f"README.md lacks (or misstates) the row: {row}"


def test_settings_object_and_table_agree():
    assert list(Settings.__slots__) == [s.name for s in SETTINGS]
    plain = Settings()
    for s in SETTINGS:
        assert getattr(plain, s.name) == s.default == DEFAULTS[s.name]
    with pytest.raises(AttributeError, match="read-only"):
        plain.mode = "manual"
    assert Settings(mode="manual") != plain and Settings(mode="manual") == Settings(mode="manual")
