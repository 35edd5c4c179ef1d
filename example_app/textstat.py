"""textstat: line, word and character counts and word frequencies of text files.

The example app of pyi-selfupdate. Build it from this folder::

    PYTHONHASHSEED=0 pyinstaller --onefile textstat.py

The frozen app updates itself: it checks in the background, downloads and
verifies the new version, and the next launch continues as the new version.
``textstat self-update`` checks and installs at once.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from typing import List, Optional, Sequence

import pyi_selfupdate

import textstat_core

from pyi_selfupdate import updater_from_config


def _read(paths: Sequence[str]) -> List[textstat_core.Source]:
    if not paths or list(paths) == ["-"]:
        return [textstat_core.Source("-", sys.stdin.read())]
    return [textstat_core.read_source(p) for p in paths]


def _cmd_count(args: argparse.Namespace) -> int:
    if args.workers > 1:
        # "spawn" on every OS: the workers start from the executable itself,
        # as on Windows and macOS.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.workers) as pool:
            counts = pool.map(textstat_core.count_file, args.files)
    else:
        counts = [textstat_core.count(src) for src in _read(args.files)]
    import textstat_report  # only the reporting commands need it

    sys.stdout.write(textstat_report.render_counts(counts))
    return 0


def _cmd_top(args: argparse.Namespace) -> int:
    sources = _read(args.files)
    freq = textstat_core.word_frequencies(src.text for src in sources)
    import textstat_report  # only the reporting commands need it

    sys.stdout.write(textstat_report.render_top(freq, args.n))
    return 0


def _cmd_self_update(args: argparse.Namespace) -> int:
    try:
        updater = updater_from_config()
        result = updater.update()
    except pyi_selfupdate.SelfUpdateError as exc:
        print(f"textstat: update failed: {exc}", file=sys.stderr)
        return 1
    if result is None:
        print(f"textstat {textstat_core.__version__} is up to date")
        return 0
    if not result.installed:
        print(f"textstat {result.to_version} downloaded; it is installed when no other "
              f"textstat runs (at the next launch)")
        return 0
    print(f"textstat updated {result.from_version} -> {result.to_version} "
          f"({result.method}, {result.bytes_fetched} bytes)", flush=True)
    # The executable was replaced: import nothing more from it, restart at once.
    pyi_selfupdate.restart(["--version"])
    return 0  # not reached


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="textstat", description="Count lines, words and characters; list frequent words."
    )
    parser.add_argument("--version", action="version", version=f"textstat {textstat_core.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("count", help="lines, words and characters per file (like wc)")
    p.add_argument("files", nargs="*", help="text files ('-' or none: standard input)")
    p.add_argument("--workers", type=int, default=1, help="count files in N processes")
    p.set_defaults(func=_cmd_count)

    p = sub.add_parser("top", help="the most frequent words")
    p.add_argument("files", nargs="*", help="text files ('-' or none: standard input)")
    p.add_argument("-n", type=int, default=10, help="how many words (default 10)")
    p.set_defaults(func=_cmd_top)

    p = sub.add_parser("self-update", help="check for a new version and install it now")
    p.set_defaults(func=_cmd_self_update)

    args = parser.parse_args(argv)
    news = pyi_selfupdate.installed_update()  # None, except at the first start of a new version
    if news is not None:
        note = f": {news.notes}" if news.notes else ""
        print(f"textstat: updated from {news.from_version} to {news.to_version}{note}", file=sys.stderr)
    try:
        return args.func(args)
    except OSError as exc:
        print(f"textstat: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
