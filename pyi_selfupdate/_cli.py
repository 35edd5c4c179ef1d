"""The ``pyi-selfupdate`` command line (also ``python -m pyi_selfupdate``).

Each subcommand has an ``_add_<name>(subparsers)`` that declares its arguments
and a ``_cmd_<name>(args) -> int`` that runs it. The CLI speaks to people: it
prints progress and summaries and turns every SelfUpdateError into one clear
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from .errors import SelfUpdateError


# ------------------------------------------------------------------- release


def _add_release(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("release", help="write a release into the static update tree")
    p.set_defaults(func=_cmd_release)


def _cmd_release(args: argparse.Namespace) -> int:
    raise NotImplementedError


# ------------------------------------------------------------------ hooks-dir


def _add_hooks_dir(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("hooks-dir", help="print the folder to pass to pyinstaller --additional-hooks-dir")
    p.set_defaults(func=_cmd_hooks_dir)


def _cmd_hooks_dir(args: argparse.Namespace) -> int:
    from ._hooks import get_hook_dirs

    print(get_hook_dirs()[0])
    return 0


# --------------------------------------------------------------------- main

_SUBCOMMANDS = [_add_release, _add_hooks_dir]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyi-selfupdate",
        description="Self-update for PyInstaller apps, wire-compatible with go-selfupdate.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="pyi-selfupdate: %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except SelfUpdateError as exc:
        print(f"pyi-selfupdate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyi-selfupdate: interrupted; the release tree is unchanged or complete", file=sys.stderr)
        return 130
