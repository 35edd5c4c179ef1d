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
from typing import Any, Callable, List, Optional

from .errors import SelfUpdateError


# ------------------------------------------------------------------- release


#: Options of the release and rollback parsers that are arguments of release()
#: itself; any other option reaches the plugins as context.options[dest].
_RELEASE_ARGS = ("command", "func", "verbose", "path", "version", "out", "platform", "cmd_name", "disable")


def _notes_file(path: str) -> str:
    """The text of ``--notes FILE``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(16 * 1024 + 1)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path} ({exc.strerror}); give a text file") from None
    if len(data) > 16 * 1024:
        raise argparse.ArgumentTypeError(f"{path} is larger than 16 KiB; keep release notes short "
                                         "and link to the full change log")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path} is not UTF-8 text; save it as UTF-8") from None


def _blocked_plugin(value: str) -> str:
    """The NAME of ``-p no:NAME``."""
    if not value.startswith("no:") or value == "no:":
        raise argparse.ArgumentTypeError(
            f"{value!r} is not no:NAME; -p only blocks a built-in plugin (e.g. -p no:frozen), "
            "other plugins load from the pyi_selfupdate entry-point group"
        )
    return value[3:]


def _add_tree_options(p: argparse.ArgumentParser, *, out: str, platform: str, cmd_name: str,
                      cmd_name_required: bool = False) -> None:
    """-o, --platform, --cmd-name (with these helps), --sign-key, --expires and --serial,
    shared by release and rollback."""
    from .settings import LIMITS

    p.add_argument("-o", "--out", default="public", metavar="OUT", help=out)
    p.add_argument("--platform", metavar="OS-ARCH", help=platform)
    p.add_argument("--cmd-name", required=cmd_name_required, metavar="NAME", help=cmd_name)
    p.add_argument("--sign-key", dest="sign_keys", action="append", metavar="KEYFILE",
                   help="sign the manifests with this key from `pyi-selfupdate keygen` (repeat the "
                   "option to sign with an old and a new key during a rotation)")
    p.add_argument("--expires", dest="expires_days", type=float, metavar="DAYS",
                   help=f"signed manifests expire DAYS days from now, at most {LIMITS.expires_days_max} "
                   "(clients then refuse them, so a server cannot freeze apps on an old release); re-sign "
                   "before with `rollback`")
    p.add_argument("--serial", type=int, metavar="N",
                   help="serial of the signed release (default: one above the current manifest's, which "
                   "must verify with a --sign-key key; needed for the first signed release over an "
                   "unsigned tree, after checking it)")


def _run_release(run: Callable[..., Any], args: argparse.Namespace, *positionals: str, **kwargs: Any) -> int:
    """Call ``release`` or ``rollback`` with the options of :func:`_add_tree_options`,
    progress on stderr, and print the summary table."""

    def progress(message: str) -> None:
        print(f"pyi-selfupdate: {message}", file=sys.stderr, flush=True)

    options = {k: v for k, v in vars(args).items() if k not in _RELEASE_ARGS}
    summary = run(*positionals, out=args.out, platform=args.platform, cmd_name=args.cmd_name,
                  options=options, progress=progress, **kwargs)
    print(summary.format_table())
    return 0


def _add_release(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "release",
        help="write a release into the static update tree",
        description="Write OUT/<cmd>/<plat>.json, OUT/<cmd>/VERSION/<plat>.gz and bsdiff patches "
        "OUT/<cmd>/<old>/VERSION/<plat> from every earlier release of each platform. PATH is one "
        "executable, an app folder (a PyInstaller onedir app, a macOS .app), a folder of "
        "<os>-<arch>[.exe] files, a folder of <os>-<arch>/ folders each holding one executable or "
        "app folder, or a PyInstaller dist/ folder holding one of them. "
        "Options may come before or after PATH and VERSION.",
    )
    _add_tree_options(
        p,
        out="root of the update tree (default: public); the release goes in OUT/<cmd>/",
        platform="platform of a single executable, as Go names it (default: this machine's)",
        cmd_name="name clients ask updates for (default: the executable's name without .exe; "
        "required for a folder of <os>-<arch> files)",
    )
    p.add_argument("-p", dest="disable", action="append", default=[], type=_blocked_plugin, metavar="no:NAME",
                   help="do not load the built-in plugin NAME, as pytest's -p no:NAME (repeatable); one "
                   "whose job a release needs only when another plugin does that job")
    p.add_argument("--notes", dest="notes", type=_notes_file, metavar="FILE",
                   help="release notes (UTF-8 text, at most 16 KiB) carried in the manifest for the "
                   "app to show its user (pyi_selfupdate.installed_update()); signed with the release")
    p.add_argument("--change-kind", action="store_true",
                   help="allow releasing an app folder where a single file was released before, or "
                   "the reverse (installed apps of the old kind then stop updating: see the README)")
    p.add_argument("--diff", choices=("fast", "bsdiff4"), default="fast",
                   help="patch generator: fast (default: identical runs found first, bsdiff4 between "
                   "them; seconds for hundreds of MB) or bsdiff4 (the whole file, byte-identical to the "
                   "go-selfupdate CLI, 17x the app's size in memory); both write BSDIFF40 patches")
    p.add_argument("--jobs", dest="diff_workers", type=_jobs, default=2, metavar="N",
                   help="patches computed at once, each in a process of its own (default: 2; -v prints "
                   "the memory this takes)")
    p.add_argument("path", metavar="PATH", help="the executable or app folder, or the folder holding them")
    p.add_argument("version", metavar="VERSION", help="the version being released, e.g. 1.2")
    p.set_defaults(func=_cmd_release)


def _jobs(value: str) -> int:
    """N of ``--jobs N``."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of jobs from 1 to 64; give e.g. --jobs 2")
    return n


def _cmd_release(args: argparse.Namespace) -> int:
    from .release import release

    return _run_release(release, args, args.path, args.version, disable=args.disable)


# ----------------------------------------------------------------------- init


def _add_init(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "init",
        help="write a PyInstaller spec file wired for self-update next to the app's script",
        description="Render a onefile spec file for SCRIPT with the update settings filled in "
        "(hooksconfig={'pyi_selfupdate': {...}}). An existing spec file is never overwritten.",
    )
    p.add_argument("--api-url", help="base URL of the update manifests, ending in '/'")
    p.add_argument("--version", dest="app_version", metavar="VERSION",
                   help="current version of the app (default: [project] version of pyproject.toml)")
    p.add_argument("--name", help="name of the executable and of the app in the update URLs "
                   "(default: the script's name)")
    p.add_argument("script", help="the app's main script, e.g. app.py")
    p.set_defaults(func=_cmd_init)


def _cmd_init(args: argparse.Namespace) -> int:
    from ._buildconfig import render_spec
    from .errors import ConfigError

    spec_path, text = render_spec(args.script, name=args.name, api_url=args.api_url, version=args.app_version)
    try:
        with open(spec_path, "x", encoding="utf-8") as fh:
            fh.write(text)
    except FileExistsError:
        raise ConfigError(
            f"{spec_path} already exists and is left as it is; remove it first, "
            f"or add hooksconfig={{'pyi_selfupdate': {{...}}}} to its Analysis yourself"
        ) from None
    print(f"wrote {spec_path}")
    if "# \"api_url\"" in text or "# \"current_version\"" in text:
        print("  edit it: the lines marked REQUIRED must be set before the first build")
    print(f"build it with: pyi-selfupdate build {spec_path}")
    return 0


# ---------------------------------------------------------------------- build

_BUILD_USAGE = """\
usage: pyi-selfupdate build [PyInstaller options...] SCRIPT.py | SPEC.spec

Run PyInstaller (this interpreter's, `python -m PyInstaller`) the reproducible
way: PYTHONHASHSEED=0 unless a fixed seed is already set, --onefile unless
--onedir/--onefile is given or a .spec file is built. Every argument goes to
PyInstaller as it is (see `python -m PyInstaller --help`). Every build embeds
the current update settings (environment, spec file, pyproject.toml).
"""


def _add_build(sub: "argparse._SubParsersAction") -> None:
    # No option of our own: everything is passed through to PyInstaller.
    p = sub.add_parser(
        "build",
        help="run PyInstaller reproducibly (PYTHONHASHSEED=0, --onefile); args go to PyInstaller",
        prefix_chars="\x01",
        add_help=False,
        usage=argparse.SUPPRESS,
    )
    p.add_argument("pyinstaller_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_build)


def _cmd_build(args: argparse.Namespace) -> int:
    import os
    import subprocess

    argv = list(args.pyinstaller_args)
    if not argv or argv[0] in ("-h", "--help"):
        print(_BUILD_USAGE, end="")
        return 0 if argv else 2
    env = dict(os.environ)
    seed = env.get("PYTHONHASHSEED", "").strip()
    if seed in ("", "random"):
        env["PYTHONHASHSEED"] = "0"
    is_spec = any(a.endswith(".spec") for a in argv)
    mode_given = any(a in ("-F", "--onefile", "-D", "--onedir") for a in argv)
    extra = [] if is_spec or mode_given else ["--onefile"]
    cmd = [sys.executable, "-m", "PyInstaller", *extra, *argv]
    print(f"pyi-selfupdate: PYTHONHASHSEED={env['PYTHONHASHSEED']} {' '.join(cmd[1:])}", file=sys.stderr)
    return subprocess.call(cmd, env=env)


# ------------------------------------------------------------------ hooks-dir


def _add_hooks_dir(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("hooks-dir", help="print the folder to pass to pyinstaller --additional-hooks-dir")
    p.set_defaults(func=_cmd_hooks_dir)


def _cmd_hooks_dir(args: argparse.Namespace) -> int:
    try:
        from ._hooks import get_hook_dirs

        folder = get_hook_dirs()[0]
    except ImportError:  # run from a source checkout: the hooks are its top-level hooks/ folder
        from pathlib import Path

        folder = str(Path(__file__).resolve().parent.parent / "hooks")
    print(folder)
    return 0


# --------------------------------------------------------------------- keygen


def _add_keygen(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "keygen",
        help="create an Ed25519 signing key for releases and print its public key",
        description="Write a new Ed25519 private key to KEYFILE (mode 0600; an existing file is "
        "never overwritten) and print the public key as the last line, in the form that goes "
        "into the build configuration: public_keys = [\"ed25519:...\"] under "
        "[tool.pyi-selfupdate] in pyproject.toml (or hooksconfig in a spec file). "
        "Sign releases with `pyi-selfupdate release --sign-key KEYFILE`.",
    )
    p.add_argument("keyfile", metavar="KEYFILE", help="where to write the private key (must not exist)")
    p.set_defaults(func=_cmd_keygen)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from .release.keys import generate_private_key, write_private_key

    key = generate_private_key()
    write_private_key(args.keyfile, key)
    print(f"wrote the private key {args.keyfile} (mode 0600, key id {key.key_id})")
    print("  keep it secret and backed up: whoever holds it can make your apps install anything,")
    print("  and losing it means shipping a new build before releases can be signed again.")
    print("paste the public key into the build configuration, e.g. in pyproject.toml:")
    print("  [tool.pyi-selfupdate]")
    print(f"  public_keys = [\"{key.public_key_text}\"]")
    print("public key:")
    print(key.public_key_text)
    return 0


# ------------------------------------------------------------------- rollback


def _add_rollback(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "rollback",
        help="publish an already released version again as the newest one (signed, higher serial)",
        description="Versions are opaque strings: going back is releasing the old binary again. "
        "Reads OUT/<cmd>/VERSION/<plat>.gz, writes patches from every other version to it and a "
        "manifest with a higher Serial, signed with --sign-key. Apps that verify signatures accept "
        "it, while a replayed old manifest stays refused. Rolling back to the current version "
        "re-signs it (e.g. to renew --expires).",
    )
    _add_tree_options(
        p,
        out="root of the update tree (default: public)",
        platform="only this platform (default: every platform released for VERSION)",
        cmd_name="the app's name in the tree",
        cmd_name_required=True,
    )
    p.add_argument("version", metavar="VERSION", help="the released version to publish again")
    p.set_defaults(func=_cmd_rollback)


def _cmd_rollback(args: argparse.Namespace) -> int:
    from .release._rollback import rollback

    return _run_release(rollback, args, version=args.version)


# --------------------------------------------------------------------- main

_SUBCOMMANDS = [_add_release, _add_hooks_dir, _add_init, _add_build, _add_keygen, _add_rollback]


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
