"""Rendering of textstat's results (imported only by the commands that print a report)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence


def render_counts(counts: Sequence) -> str:
    rows = [(str(c.lines), str(c.words), str(c.chars), c.name) for c in counts]
    if len(counts) > 1:
        rows.append((str(sum(c.lines for c in counts)), str(sum(c.words for c in counts)),
                     str(sum(c.chars for c in counts)), "total"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(
        f"{r[0]:>{widths[0]}} {r[1]:>{widths[1]}} {r[2]:>{widths[2]}} {r[3]}\n" for r in rows
    )


def render_top(freq: Counter, n: int) -> str:
    common = freq.most_common(n)
    if not common:
        return "(no words)\n"
    width = max(len(w) for w, _ in common)
    return "".join(f"{w:<{width}} {k}\n" for w, k in common)
