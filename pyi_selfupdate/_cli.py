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
from typing import Any, Callable, List, NoReturn, Optional

from .errors import SelfUpdateError


# ------------------------------------------------------------------- release


#: Options of the release and rollback parsers that are arguments of release()
#: itself; any other option reaches the plugins as context.options[dest].
_RELEASE_ARGS = ("command", "func", "verbose", "quiet", "path", "version", "out", "platform", "cmd_name", "disable")


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


def _patches_from(value: str) -> int:
    """N of ``--patches-from N``: a count >= 0, or ``all``."""
    if value.strip().lower() == "all":
        return -1
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of releases (0, 1, 2, ...) or 'all'")
    return n


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
        if not args.quiet:
            print(f"pyi-selfupdate: {message}", file=sys.stderr, flush=True)

    options = {k: v for k, v in vars(args).items() if k not in _RELEASE_ARGS}
    summary = run(*positionals, out=args.out, platform=args.platform, cmd_name=args.cmd_name,
                  options=options, progress=progress, **kwargs)
    print(summary.format_table())
    published = getattr(summary, "published", None)
    if published is not None:
        _print_published(published)
    return 0


def _print_published(summary: Any) -> None:
    if summary.dry_run:
        for n, relpath in enumerate(summary.uploaded, 1):
            print(f"would upload {n}/{len(summary.uploaded)} {relpath}")
    print(summary.format())


def _add_publish_options(p: argparse.ArgumentParser) -> None:
    """--endpoint-url and --dry-run, shared by release --publish and publish."""
    p.add_argument("--endpoint-url", metavar="URL",
                   help="the S3-compatible service to use instead of AWS (MinIO, R2, Wasabi, ...); "
                   "credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be uploaded, in order, and upload nothing")


def _add_release(sub: "argparse._SubParsersAction") -> None:
    from .settings import LIMITS

    p = sub.add_parser(
        "release",
        help="write a release into the static update tree",
        description="Write OUT/<cmd>/<plat>.json, OUT/<cmd>/VERSION/<plat>.gz and bsdiff patches "
        "OUT/<cmd>/<old>/VERSION/<plat> from the last --patches-from earlier releases of each platform. PATH is one "
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
    p.add_argument("--publish", metavar="DEST",
                   help="then upload the tree to DEST (s3://BUCKET/PREFIX, or a plugin's scheme): new "
                   "files first, manifests last, unchanged files skipped")
    p.add_argument("--from", dest="from", metavar="SOURCE",
                   help="first bring the earlier releases the diff needs back from SOURCE "
                   "(s3://BUCKET/PREFIX) into OUT, verified like the local tree")
    _add_publish_options(p)
    p.add_argument("--change-kind", action="store_true",
                   help="allow releasing an app folder where a single file was released before, or "
                   "the reverse (installed apps of the old kind then stop updating: see the README)")
    p.add_argument("--allow-older", action="store_true",
                   help="publish a version older than the current one (installed newer apps then "
                   "downgrade); to go back to an earlier release use `pyi-selfupdate rollback`")
    p.add_argument("--allow-no-updater", action="store_true",
                   help="release a PyInstaller app built without pyi-selfupdate (whoever installs it "
                   "never updates again): only for a deliberate last release")
    p.add_argument("--allow-untrusted-key", action="store_true",
                   help="sign with keys the app does not embed (installed copies refuse the release)")
    p.add_argument("--patches-from", dest="patches_from", type=_patches_from, default=None, metavar="N",
                   help=f"write patches only from the last N earlier releases of each platform (default: "
                   f"{LIMITS.patches_from}; 0: none, 'all': every one); older installs take the full .gz")
    p.add_argument("--diff", choices=("fast", "bsdiff4"), default="fast",
                   help="patch generator: fast (default: identical runs found first, bsdiff4 between "
                   "them; seconds for hundreds of MB) or bsdiff4 (the whole file, byte-identical to the "
                   "go-selfupdate CLI, 17x the app's size in memory); both write BSDIFF40 patches")
    p.add_argument("--jobs", dest="diff_workers", type=_jobs, default=2, metavar="N",
                   help="patches computed at once, by threads beside the compression (default: 2; "
                   "-v prints the memory this takes)")
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
    p = sub.add_parser(
        "hooks-dir",
        help="print the folder to pass to pyinstaller --additional-hooks-dir",
        description="From a source checkout (not installed): its hooks/ folder, which PyInstaller "
        "needs. Installed, PyInstaller finds the hooks by itself (the pyinstaller40 entry point): "
        "the folder printed then only adds the check that PyInstaller can import pyi_selfupdate, "
        "and registers nothing twice.",
    )
    p.set_defaults(func=_cmd_hooks_dir)


def _entry_point_hooks() -> bool:
    """True when the pyinstaller40 entry point naming this package's hooks is registered."""
    try:
        from importlib.metadata import entry_points

        found = entry_points()
        group = found.select(group="pyinstaller40") if hasattr(found, "select") else found.get("pyinstaller40", ())
        return any(e.name == "hook-dirs" and e.value.startswith("pyi_selfupdate._hooks") for e in group)
    except Exception:  # a broken metadata folder: act as if not installed
        return False


def _cmd_hooks_dir(args: argparse.Namespace) -> int:
    import os

    try:
        from ._hooks import get_hook_dirs

        folder = get_hook_dirs()[0]
        if _entry_point_hooks():
            folder = os.path.join(folder, "installed")
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
        "Reads OUT/<cmd>/VERSION/<plat>.gz, writes patches from the newest other versions to it and a "
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


# --------------------------------------------------------- doctor, serve, ls


def _add_doctor(sub: "argparse._SubParsersAction") -> None:
    from ._doctor import STATUS

    table = "; ".join(f"{code} {text.split(':')[0]}" for code, text in STATUS.items())
    p = sub.add_parser(
        "doctor",
        help="say why an installed app will or will not update (read only)",
        description="Read the update settings embedded in APP (a onefile executable, a onedir folder "
        "or its executable, a macOS .app), its state beside it (schedule, back-off, serial, "
        "downloads, staged update, log), ask its server what it would take, and end with one "
        "verdict line. Nothing is written. Exit status: " + table + "; 2 bad arguments.",
    )
    p.add_argument("app", metavar="APP", help="the installed app: its executable, onedir folder or .app")
    p.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                   help="the most the questions to the server take in all (default: 20)")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ._doctor import diagnose

    diagnosis = diagnose(args.app, deadline=args.timeout)
    print(diagnosis.format())
    return diagnosis.status


def _add_serve(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "serve",
        help="serve a release tree on 127.0.0.1 for local testing, with a real host's cache headers",
        description="Serve OUT over HTTP on 127.0.0.1 (never another interface) with the headers a "
        "real host should send: manifests Cache-Control: no-cache, versioned .gz and patches "
        "immutable, ETag, Range (resumed downloads). Ctrl-C stops it.",
    )
    p.add_argument("out", nargs="?", default="public", metavar="OUT",
                   help="root of the release tree (default: public)")
    p.add_argument("--port", type=int, default=8000, metavar="N", help="port (default: 8000; 0: any free one)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from .errors import ConfigError
    from .release._serve import make_server

    if not os.path.isdir(args.out):
        raise ConfigError(f"{args.out} is not a folder; give the release tree (the -o folder of "
                          "`pyi-selfupdate release`)")
    try:
        server = make_server(args.out, args.port, log=lambda m: print(m, file=sys.stderr, flush=True))
    except OSError as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc}); "
                          "choose another --port") from None
    port = server.server_address[1]
    print(f"serving {os.path.abspath(args.out)} at http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
    print(f"  build apps with api_url = \"http://127.0.0.1:{port}/\"", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _add_ls(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "ls",
        help="show a release tree at a glance: versions, sizes, patches, signatures",
        description="For each cmd name and platform of OUT: the current version, every release and "
        "patch with its size, and the signature (serial, expiry, key ids); with --public-key the "
        "signatures are verified as an app with that key would.",
    )
    p.add_argument("out", nargs="?", default="public", metavar="OUT",
                   help="root of the release tree (default: public)")
    p.add_argument("--public-key", dest="public_keys", action="append", default=[], metavar="KEY",
                   help="verify the manifests with this public key (ed25519:..., repeatable)")
    p.set_defaults(func=_cmd_ls)


def _cmd_ls(args: argparse.Namespace) -> int:
    from .release._ls import format_listing, list_tree

    listings = list_tree(args.out, args.public_keys)
    print(format_listing(listings))
    return 2 if any(it.problems or it.verified.startswith("REFUSED") for it in listings) else 0


# ---------------------------------------------------------------------- prune


def _add_prune(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "prune",
        help="remove the files of old releases from a release tree",
        description="For each cmd and platform, keep the current release and the N-1 releases "
        "before it (the newest N) and remove the other releases' .gz, records and every patch "
        "from or to them; apps at a removed version then take the current .gz. Never removes a "
        "file the current manifests need; everything is checked before anything is removed.",
    )
    p.add_argument("out", metavar="OUT", help="root of the update tree")
    p.add_argument("--keep", type=_keep_count, required=True, metavar="N",
                   help="releases to keep per cmd and platform, the current one included (at least 1)")
    p.add_argument("-n", "--dry-run", action="store_true", help="print what would be removed, remove nothing")
    p.set_defaults(func=_cmd_prune)


def _keep_count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of releases >= 1 (the current one counts)")
    return n


def _cmd_prune(args: argparse.Namespace) -> int:
    from .release._model import human_size
    from .release._prune import prune

    verb = "would remove" if args.dry_run else "removed"

    def report(relpath: str, size: int) -> None:
        if not args.quiet:
            print(f"{verb} {relpath} ({human_size(size)})", flush=True)

    result = prune(args.out, keep=args.keep, dry_run=args.dry_run, report=report)
    print(f"{verb} {len(result.removed)} file(s) of {len(result.versions)} release(s) "
          f"(kept {len(result.kept)}), "
          f"{human_size(result.bytes_freed)} freed" + (" (dry run: nothing removed)" if args.dry_run else ""))
    return 0


# -------------------------------------------------------------------- publish


def _add_publish(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "publish",
        help="upload a release tree to S3 (or a plugin's destination), manifests last",
        description="Upload the files of OUT to DEST (s3://BUCKET/PREFIX through boto3: "
        "pip install 'pyi-selfupdate[s3]'): every .gz and patch first, then the signed records, the "
        "manifests last, so clients never see a manifest whose files are missing. Unchanged files "
        "are skipped; a released file the destination holds with other bytes is refused before "
        "anything is uploaded. Re-running an interrupted publish completes it.",
    )
    _add_publish_options(p)
    p.add_argument("out", metavar="OUT", help="the release tree (the -o folder of `release`)")
    p.add_argument("destination", metavar="DEST", help="where to upload it, e.g. s3://my-bucket/updates")
    p.set_defaults(func=_cmd_publish)


def _cmd_publish(args: argparse.Namespace) -> int:
    from .release import publish

    def progress(message: str) -> None:
        print(f"pyi-selfupdate: {message}", file=sys.stderr, flush=True)

    summary = publish(args.out, args.destination, options={"endpoint_url": args.endpoint_url},
                      progress=progress, dry_run=args.dry_run)
    _print_published(summary)
    return 0


# --------------------------------------------------------------------- main

_SUBCOMMANDS = [_add_release, _add_publish, _add_hooks_dir, _add_init, _add_build, _add_keygen, _add_rollback, _add_prune,
                _add_doctor, _add_serve, _add_ls]


#: The arguments being parsed, for the suggestions of :class:`_Parser`.
_ARGV: List[str] = []


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors suggest the option or command meant (difflib)."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        import re

        m = re.search(r"invalid choice: '([^']*)'", message)
        if m:
            message += _suggest(m.group(1), [c for a in self._actions for c in (a.choices or ())
                                             if isinstance(a, argparse._SubParsersAction)])
        elif "unrecognized arguments" not in message:  # e.g. "required: --keep" after "--keeep"
            message += _option_hints(_ARGV, [o for a in self._actions for o in a.option_strings])
        super().error(message)


def _suggest(word: str, candidates: List[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _option_hints(tokens: List[str], options: List[str]) -> str:
    """``"; --keeep: did you mean --keep?"`` for each token that is no option (nor an abbreviation of one)."""
    hints = []
    for token in tokens:
        if token == "--":
            break
        flag = token.split("=", 1)[0]
        if not flag.startswith("-") or len(flag) < 2 or flag[1:2].isdigit():
            continue
        if flag in options or (flag.startswith("--") and any(o.startswith(flag) for o in options)):
            continue
        hint = _suggest(flag, [o for o in options if o.startswith("--")] if flag.startswith("--") else options)
        if hint:
            hints.append(f"{flag}: {hint.strip()[1:-1]}")
    return "; " + "; ".join(hints) if hints else ""


def _verbosity(p: argparse.ArgumentParser, top: bool) -> None:
    """-v/--verbose and -q/--quiet, on the main parser and (not overriding it) on each subcommand."""
    default = False if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="show debug logging")
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="show errors only (no progress, no warnings)")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="pyi-selfupdate",
        description="Self-update for PyInstaller apps, wire-compatible with go-selfupdate.",
    )
    parser.add_argument("--version", action="version", version=f"pyi-selfupdate {__version__}")
    _verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _SUBCOMMANDS:
        add(sub)
    for name, p in sub.choices.items():
        if name != "build":  # build hands every argument after it to PyInstaller
            _verbosity(p, top=False)
    return parser


def _unknown_options(parser: argparse.ArgumentParser, args: argparse.Namespace, extras: List[str]) -> str:
    """The error for arguments no parser took, suggesting the option meant."""
    options = [o for a in parser._actions for o in a.option_strings]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and args.command in action.choices:
            options += [o for a in action.choices[args.command]._actions for o in a.option_strings]
    return f"unrecognized arguments: {' '.join(extras)}" + _option_hints(extras, options)


def main(argv: Optional[List[str]] = None) -> int:
    _ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args, extras = parser.parse_known_args(argv)
    if extras and args.command != "build":
        parser.error(_unknown_options(parser, args, extras))
    elif extras:
        args.pyinstaller_args = list(args.pyinstaller_args) + extras
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="pyi-selfupdate: %(levelname)s: %(message)s")
    args.quiet = args.quiet and not args.verbose
    try:
        return int(args.func(args) or 0)
    except SelfUpdateError as exc:
        print(f"pyi-selfupdate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyi-selfupdate: interrupted; the release tree is unchanged or complete", file=sys.stderr)
        return 130
