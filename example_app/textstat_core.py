"""Counting: the part of textstat that does the work."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

__version__ = "1.0"

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


@dataclass
class Source:
    name: str
    text: str


@dataclass
class Counts:
    name: str
    lines: int
    words: int
    chars: int


def read_source(path: str) -> Source:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return Source(path, fh.read())


def words(text: str) -> list:
    """The words of ``text``, lower-cased (letters and inner apostrophes)."""
    return [w.lower() for w in _WORD.findall(text)]


def count(src: Source) -> Counts:
    return Counts(src.name, src.text.count("\n"), len(words(src.text)), len(src.text))


def count_file(path: str) -> Counts:
    """``count(read_source(path))``; a top-level function, so worker processes can run it."""
    return count(read_source(path))


def word_frequencies(texts: Iterable[str]) -> Counter:
    freq: Counter = Counter()
    for text in texts:
        freq.update(words(text))
    return freq
