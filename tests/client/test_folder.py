"""Folder apps (onedir, macOS .app) updated through the API: patch, .gz, repair, staging, kinds."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from _server import Fault
from pyi_selfupdate import Updater, VerificationError
from pyi_selfupdate import _files, _staging
from pyi_selfupdate.archive import FolderArchive
from pyi_selfupdate.protocol import Manifest, decode_manifest, encode_manifest
from pyi_selfupdate.release import release
from pyi_selfupdate.release.keys import generate_private_key, write_private_key

PLAT = "linux-amd64"


def archive_of(folder: Path) -> bytes:
    with FolderArchive(folder) as archive:
        return b"".join(archive.stream())


def onedir(root: Path, version: str) -> Path:
    """A onedir-shaped app: executable, _internal/ with a library, data, a link and an empty folder."""
    (root / "_internal" / "lib" / "empty").mkdir(parents=True)
    (root / "myapp").write_bytes(b"\x7fELF launcher " + bytes(4000))
    (root / "myapp").chmod(0o755)
    (root / "_internal" / "base_library.zip").write_bytes(bytes(range(256)) * 300)
    (root / "_internal" / "lib" / "libpython.so").write_bytes(b"libpython" * 5000)
    (root / "_internal" / "version.txt").write_text(version)
    (root / "_internal" / "libpython.so").symlink_to("lib/libpython.so")
    if version != "1.0":
        (root / "_internal" / f"new-in-{version}.dat").write_bytes(b"n" * 777)
    return root


def mac_app(root: Path, version: str) -> Path:
    """A synthetic macOS .app bundle: Contents/MacOS/<exe>, Frameworks with version links, Info.plist."""
    contents = root / "Contents"
    framework = contents / "Frameworks" / "Python.framework"
    (framework / "Versions" / "3.11").mkdir(parents=True)
    (framework / "Versions" / "3.11" / "Python").write_bytes(b"\xcf\xfa\xed\xfe" + b"py" * 3000)
    (framework / "Versions" / "Current").symlink_to("3.11")
    (framework / "Python").symlink_to("Versions/Current/Python")
    (contents / "MacOS").mkdir()
    (contents / "MacOS" / "myapp").write_bytes(b"\xcf\xfa\xed\xfe launcher " + version.encode())
    (contents / "MacOS" / "myapp").chmod(0o755)
    (contents / "Resources").mkdir()
    (contents / "Resources" / "version.txt").write_text(version)
    (contents / "Info.plist").write_text(f"<plist><key>CFBundleVersion</key><string>{version}</string></plist>")
    (contents / "_CodeSignature").mkdir()
    (contents / "_CodeSignature" / "CodeResources").write_text(f"signature of {version}")
    return root


def publish(tree: Path, builds: dict, **options) -> None:
    """Release each build in version order with the release tool, as a publisher would."""
    for version, folder in builds.items():
        release(folder, version, out=tree, platform=PLAT, options=options)


@pytest.fixture
def builds(tmp_path):
    """1.0 and 1.1 of a onedir app, built once per test in build/."""
    return {v: onedir(tmp_path / "build" / v / "myapp", v) for v in ("1.0", "1.1")}


@pytest.fixture
def tree(tmp_path, builds, serve):
    root = tmp_path / "public"
    publish(root, builds)
    return serve(root)


def install(tmp_path: Path, build: Path) -> Path:
    """Copy a build where a user installs it: <tmp>/apps/myapp (times, owners differ)."""
    dest = tmp_path / "apps" / "myapp"
    shutil.copytree(build, dest, symlinks=True)
    return dest


def updater(server, target: Path, version: str, **kwargs) -> Updater:
    return Updater(current_version=version, api_url=server.url, cmd_name="myapp", platform=PLAT,
                   target=target, kind="folder", **kwargs)


def leftovers(target: Path) -> set:
    return {p.name for p in target.parent.iterdir()} - {target.name, f".{target.name}.lock", "update"}


def test_patch_turns_the_folder_into_the_new_version(tmp_path, builds, tree):
    app = install(tmp_path, builds["1.0"])
    result = updater(tree, app, "1.0").update()
    assert result.installed and result.method == "patch"
    assert archive_of(app) == archive_of(builds["1.1"])  # every file, mode and link
    assert (app / "_internal" / "version.txt").read_text() == "1.1"
    assert os.readlink(app / "_internal" / "libpython.so") == "lib/libpython.so"
    assert stat.S_IMODE((app / "myapp").stat().st_mode) == 0o755
    assert not any(p.endswith(".gz") for p in tree.log)
    assert leftovers(app) == set()
    patch = (tree.root / "myapp" / "1.0" / "1.1" / PLAT).stat().st_size
    assert result.bytes_fetched == patch + (tree.root / "myapp" / f"{PLAT}.json").stat().st_size


def test_missing_patch_takes_the_gz(tmp_path, builds, tree):
    app = install(tmp_path, builds["1.0"])
    tree.faults[f"myapp/1.0/1.1/{PLAT}"] = Fault(status=404)
    result = updater(tree, app, "1.0").update()
    assert result.method == "full" and archive_of(app) == archive_of(builds["1.1"])
    assert leftovers(app) == set()


@pytest.mark.parametrize("damage", ["edit", "delete", "add", "chmod"])
def test_a_modified_install_fails_the_patch_hash_and_the_gz_repairs_it(tmp_path, builds, tree, damage):
    app = install(tmp_path, builds["1.0"])
    lib = app / "_internal" / "lib" / "libpython.so"
    if damage == "edit":
        lib.write_bytes(b"tampered" + lib.read_bytes()[8:])
    elif damage == "delete":
        lib.unlink()
    elif damage == "add":
        (app / "_internal" / "stray.txt").write_text("left by the user")
    else:
        lib.chmod(0o755)
    result = updater(tree, app, "1.0").update()
    assert result.method == "full"
    assert archive_of(app) == archive_of(builds["1.1"])  # byte-identical to 1.1 again


def test_stage_then_install_switches_the_whole_folder(tmp_path, builds, tree):
    app = install(tmp_path, builds["1.0"])
    staged = updater(tree, app, "1.0").stage()
    assert not staged.installed and archive_of(app) == archive_of(builds["1.0"])
    assert _staging.staged_path(app).is_dir()
    assert leftovers(app) == {".myapp.staged", ".myapp.staged.json"}
    inode_of_new = _staging.staged_path(app).stat().st_ino
    result = updater(tree, app, "1.0").install_staged()
    assert result.installed and app.stat().st_ino == inode_of_new  # the staged folder itself, switched in
    assert archive_of(app) == archive_of(builds["1.1"])
    assert leftovers(app) == set()


def test_a_corrupt_staged_folder_is_discarded(tmp_path, builds, tree):
    app = install(tmp_path, builds["1.0"])
    updater(tree, app, "1.0").stage()
    (_staging.staged_path(app) / "_internal" / "version.txt").write_text("evil")
    assert updater(tree, app, "1.0").install_staged() is None
    assert archive_of(app) == archive_of(builds["1.0"]) and leftovers(app) == set()


def test_kinds_never_mix(tmp_path, builds, serve):
    # a folder app against a single-file release of the same name
    root = tmp_path / "single"
    (root / "myapp" / "1.1").mkdir(parents=True)
    exe = b"\x7fELF onefile 1.1"
    (root / "myapp" / "1.1" / f"{PLAT}.gz").write_bytes(gzip.compress(exe))
    (root / "myapp" / f"{PLAT}.json").write_bytes(
        encode_manifest(Manifest("1.1", hashlib.sha256(exe).digest())))
    server = serve(root)
    app = install(tmp_path, builds["1.0"])
    with pytest.raises(VerificationError, match="a onefile app never installs a folder"):
        updater(server, app, "1.0").update()
    assert archive_of(app) == archive_of(builds["1.0"]) and server.log == [f"/myapp/{PLAT}.json"]
    # a onefile app against a folder release
    tree = tmp_path / "folders"
    publish(tree, builds)
    server = serve(tree)
    single = tmp_path / "bin" / "myapp"
    single.parent.mkdir()
    single.write_bytes(b"\x7fELF onefile 1.0")
    with pytest.raises(VerificationError, match="folder release"):
        Updater(current_version="1.0", api_url=server.url, cmd_name="myapp", platform=PLAT,
                target=single).update()
    assert single.read_bytes() == b"\x7fELF onefile 1.0"
    with pytest.raises(Exception, match="kind='folder'"):
        Updater(current_version="1.0", api_url=server.url, cmd_name="myapp", platform=PLAT,
                target=install(tmp_path / "x", builds["1.0"]))


def test_mac_app_bundle_keeps_its_links_and_signature_files(tmp_path, serve):
    builds = {v: mac_app(tmp_path / "build" / v / "MyApp.app", v) for v in ("1.0", "1.1")}
    root = tmp_path / "public"
    publish(root, builds)
    server = serve(root)
    app = install(tmp_path, builds["1.0"]).rename(tmp_path / "apps" / "MyApp.app")
    result = updater(server, app, "1.0").update()
    assert result.installed and result.method == "patch"
    assert archive_of(app) == archive_of(builds["1.1"])
    framework = app / "Contents" / "Frameworks" / "Python.framework"
    assert os.readlink(framework / "Versions" / "Current") == "3.11"
    assert os.readlink(framework / "Python") == "Versions/Current/Python"
    assert (app / "Contents" / "_CodeSignature" / "CodeResources").read_text() == "signature of 1.1"


def test_folder_of_an_interrupted_unpack_is_cleaned_at_the_next_launch(tmp_path, builds):
    app = install(tmp_path, builds["1.0"])
    half = _files.NewFolder(app)  # a live unpack: kept
    assert _staging.cleanup_leftovers(app) == []
    os.close(half._fd)  # its process died: the flock is gone
    half._fd = None
    (half.path / "partial.bin").write_bytes(b"x")
    assert _staging.cleanup_leftovers(app) == [half.path]
    assert leftovers(app) == set()


def test_signed_folder_release_binds_its_kind(tmp_path, builds, serve):
    key = generate_private_key()
    keyfile = tmp_path / "release.key"
    write_private_key(keyfile, key)
    root = tmp_path / "public"
    publish(root, builds, sign_keys=[str(keyfile)])
    server = serve(root)
    manifest_file = root / "myapp" / f"{PLAT}.json"
    signed = manifest_file.read_bytes()
    assert decode_manifest(signed).kind == "folder"

    app = install(tmp_path, builds["1.0"])
    stripped = decode_manifest(signed)
    manifest_file.write_bytes(encode_manifest(Manifest(stripped.version, stripped.sha256, {
        k: v for k, v in stripped.extra.items() if k != "Kind"})))
    single = tmp_path / "bin" / "myapp"
    single.parent.mkdir()
    single.write_bytes(b"onefile 1.0")
    with pytest.raises(VerificationError, match="does not match"):  # Kind removed: signature broken
        Updater(current_version="1.0", api_url=server.url, cmd_name="myapp", platform=PLAT,
                target=single, public_keys=[key.public_key_text]).update()
    manifest_file.write_bytes(signed)
    result = updater(server, app, "1.0", public_keys=[key.public_key_text]).update()
    assert result.installed and archive_of(app) == archive_of(builds["1.1"])


def test_rollback_of_a_folder_release(tmp_path, builds, serve):
    from pyi_selfupdate.release._rollback import rollback

    root = tmp_path / "public"
    publish(root, builds)
    rollback(root, "myapp", "1.0")
    server = serve(root)
    app = install(tmp_path, builds["1.1"])
    result = updater(server, app, "1.1").update()
    assert result.to_version == "1.0" and result.method == "patch"
    assert archive_of(app) == archive_of(builds["1.0"])
