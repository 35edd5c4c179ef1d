"""Every input shape ``release`` accepts, and every one it refuses with nothing written."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pyi_selfupdate.errors import ReleaseError
from pyi_selfupdate.protocol import current_platform, decode_manifest
from pyi_selfupdate.release import hookimpl, release


def _exe(path: Path, body: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF fake executable " + path.name.encode() + body + bytes(range(256)) * 4)
    path.chmod(0o755)
    return path


def _tree(out: Path) -> dict:
    if not out.exists():
        return {}
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _released(out: Path, cmd: str, version: str, plat: str, source: Path) -> None:
    m = decode_manifest((out / cmd / f"{plat}.json").read_bytes())
    assert m.version == version
    assert gzip.decompress((out / cmd / version / f"{plat}.gz").read_bytes()) == source.read_bytes()


# ------------------------------------------------------------------ accepted shapes


def test_one_executable_takes_its_name_and_this_machines_platform(tmp_path):
    exe = _exe(tmp_path / "bin" / "mytool")
    out = tmp_path / "public"
    summary = release(exe, "1.0", out=out)
    plat = current_platform()
    assert [(a.cmd_name, a.platform, a.version) for a in summary.artifacts] == [("mytool", plat, "1.0")]
    _released(out, "mytool", "1.0", plat, exe)


def test_one_exe_file_drops_exe_from_the_name(tmp_path):
    exe = _exe(tmp_path / "tool.exe")
    out = tmp_path / "public"
    release(exe, "2.1", out=out, platform="windows-amd64")
    _released(out, "tool", "2.1", "windows-amd64", exe)


def test_cmd_name_option_overrides_the_file_name(tmp_path):
    exe = _exe(tmp_path / "build-output")
    out = tmp_path / "public"
    release(exe, "1.0", out=out, platform="linux-arm64", cmd_name="app")
    _released(out, "app", "1.0", "linux-arm64", exe)


def test_go_style_folder_of_platform_files(tmp_path):
    src = tmp_path / "cross"
    files = {p: _exe(src / n) for p, n in [("linux-amd64", "linux-amd64"), ("darwin-arm64", "darwin-arm64"),
                                           ("windows-amd64", "windows-amd64.exe")]}
    out = tmp_path / "public"
    summary = release(src, "3.0", out=out, cmd_name="app")
    assert sorted(a.platform for a in summary.artifacts) == sorted(files)
    for plat, path in files.items():
        _released(out, "app", "3.0", plat, path)
    assert not list(out.rglob("*.exe*"))  # the platform name never keeps .exe


def test_folder_of_platform_folders_from_a_build_matrix(tmp_path):
    src = tmp_path / "artifacts"
    lin = _exe(src / "linux-amd64" / "app")
    win = _exe(src / "windows-amd64" / "app.exe")
    (src / "linux-amd64" / ".DS_Store").write_bytes(b"hidden entries are ignored")
    out = tmp_path / "public"
    summary = release(src, "1.0", out=out)
    assert {(a.cmd_name, a.platform) for a in summary.artifacts} == {("app", "linux-amd64"), ("app", "windows-amd64")}
    _released(out, "app", "1.0", "linux-amd64", lin)
    _released(out, "app", "1.0", "windows-amd64", win)


def test_pyinstaller_dist_folder_with_one_onefile_executable(tmp_path):
    exe = _exe(tmp_path / "dist" / "textstat")
    out = tmp_path / "public"
    release(tmp_path / "dist", "0.9", out=out, platform="linux-amd64")
    _released(out, "textstat", "0.9", "linux-amd64", exe)


# ------------------------------------------------------------------------ refusals


def _refused(tmp_path: Path, path: Path, version: str, match: str, **kw) -> str:
    out = tmp_path / "public"
    before = _tree(out)
    existed = out.exists()
    with pytest.raises(ReleaseError, match=match) as info:
        release(path, version, out=out, **kw)
    assert _tree(out) == before, "a refused release wrote files"
    assert out.exists() == existed, "a refused release created the output folder"
    return str(info.value)


def _onedir(app: Path, body: bytes = b"") -> Path:
    _exe(app / app.name, body)
    _exe(app / "_internal" / "libpython3.11.so.1.0")
    (app / "_internal" / "base_library.zip").write_bytes(b"PK" + body)
    return app


def _folder_released(out: Path, cmd: str, version: str, plat: str, source: Path) -> None:
    from pyi_selfupdate.archive import FolderArchive

    m = decode_manifest((out / cmd / f"{plat}.json").read_bytes())
    assert (m.version, m.kind) == (version, "folder")
    with FolderArchive(source) as archive:
        assert gzip.decompress((out / cmd / version / f"{plat}.gz").read_bytes()) == b"".join(archive.stream())


@pytest.mark.parametrize("given", ["dist", "app"])
def test_onedir_build_is_released_as_a_folder(tmp_path, given):
    app = _onedir(tmp_path / "dist" / "app")
    out = tmp_path / "public"
    summary = release(tmp_path / "dist" if given == "dist" else app, "1.0", out=out)
    plat = current_platform()
    assert [(a.cmd_name, a.platform) for a in summary.artifacts] == [("app", plat)]
    _folder_released(out, "app", "1.0", plat, app)


def test_old_style_onedir_of_an_exe_and_its_libraries_is_a_folder(tmp_path):
    app = tmp_path / "app"
    _exe(app / "app")
    for lib in ("libpython3.so", "_ssl.so", "base_library.zip"):
        _exe(app / lib)
    release(app, "1.0", out=tmp_path / "public")
    _folder_released(tmp_path / "public", "app", "1.0", current_platform(), app)


def test_matrix_of_onedir_apps_and_a_mac_bundle(tmp_path):
    src = tmp_path / "artifacts"
    lin = _onedir(src / "linux-amd64" / "app")
    bundle = src / "darwin-arm64" / "app.app"
    (bundle / "Contents" / "MacOS").mkdir(parents=True)
    (bundle / "Contents" / "MacOS" / "app").write_bytes(b"\xcf\xfa\xed\xfe mach-o")
    (bundle / "Contents" / "Frameworks" / "lib").mkdir(parents=True)
    (bundle / "Contents" / "Frameworks" / "Current").symlink_to("lib")
    _onedir(src / "darwin-arm64" / "app")  # --windowed writes both: the .app is released
    out = tmp_path / "public"
    summary = release(src, "1.0", out=out)
    assert {(a.cmd_name, a.platform) for a in summary.artifacts} == {("app", "linux-amd64"), ("app", "darwin-arm64")}
    _folder_released(out, "app", "1.0", "linux-amd64", lin)
    _folder_released(out, "app", "1.0", "darwin-arm64", bundle)


def test_mac_bundle_alone_needs_a_darwin_platform(tmp_path):
    bundle = tmp_path / "My.app"
    (bundle / "Contents" / "MacOS").mkdir(parents=True)
    (bundle / "Contents" / "MacOS" / "my").write_bytes(b"\xcf\xfa\xed\xfe")
    _refused(tmp_path, bundle, "1.0", "--platform")
    release(bundle, "1.0", out=tmp_path / "public", platform="darwin-arm64")
    _folder_released(tmp_path / "public", "my", "1.0", "darwin-arm64", bundle)


def test_a_link_leaving_the_app_folder_is_refused(tmp_path):
    app = _onedir(tmp_path / "dist" / "app")
    (app / "_internal" / "secret").symlink_to("/etc/passwd")
    _refused(tmp_path, app, "1.0", "outside the app folder")


def test_the_kind_of_a_released_app_never_changes_silently(tmp_path):
    out = tmp_path / "public"
    single = _exe(tmp_path / "onefile" / "app")
    release(single, "1.0", out=out)
    app = _onedir(tmp_path / "dist" / "app", b"1.1")
    msg = _refused(tmp_path, app, "1.1", "released as a file")
    assert "--change-kind" in msg
    release(app, "1.1", out=out, options={"change_kind": True})
    _folder_released(out, "app", "1.1", current_platform(), app)
    _refused(tmp_path, _exe(tmp_path / "onefile2" / "app", b"1.2"), "1.2", "released as a folder")


def test_folder_patches_rebuild_the_new_archive(tmp_path):
    import bsdiff4

    out = tmp_path / "public"
    release(_onedir(tmp_path / "v1" / "app", b"one"), "1.0", out=out)
    new = _onedir(tmp_path / "v2" / "app", b"two")
    summary = release(new, "1.1", out=out)
    plat = current_platform()
    old = gzip.decompress((out / "app" / "1.0" / f"{plat}.gz").read_bytes())
    patched = bsdiff4.patch(old, (out / "app" / "1.0" / "1.1" / plat).read_bytes())
    assert patched == gzip.decompress((out / "app" / "1.1" / f"{plat}.gz").read_bytes())
    assert summary.artifacts[0].patches[0].old_version == "1.0"


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "dist").mkdir()
    msg = _refused(tmp_path, tmp_path / "dist", "1.0", "is empty")
    assert "build" in msg


def test_two_apps_at_once_are_refused(tmp_path):
    _exe(tmp_path / "dist" / "one")
    _exe(tmp_path / "dist" / "two")
    _refused(tmp_path, tmp_path / "dist", "1.0", "two apps at once")


def test_matrix_folders_with_different_app_names_are_refused(tmp_path):
    _exe(tmp_path / "m" / "linux-amd64" / "one")
    _exe(tmp_path / "m" / "darwin-arm64" / "two")
    _refused(tmp_path, tmp_path / "m", "1.0", "two apps at once")
    # ... unless the cmd name is given: then the files are one app under two names
    out = tmp_path / "public"
    release(tmp_path / "m", "1.0", out=out, cmd_name="app")
    assert (out / "app" / "linux-amd64.json").is_file()


def test_stray_subfolder_in_a_go_style_folder_is_refused(tmp_path):
    _exe(tmp_path / "cross" / "linux-amd64")
    (tmp_path / "cross" / "notes").mkdir()
    _refused(tmp_path, tmp_path / "cross", "1.0", "'notes'", cmd_name="app")


def test_stray_file_in_a_go_style_folder_is_refused(tmp_path):
    _exe(tmp_path / "cross" / "linux-amd64")
    _exe(tmp_path / "cross" / "README")
    _refused(tmp_path, tmp_path / "cross", "1.0", "'README'", cmd_name="app")


def test_stray_subfolder_in_a_platform_folder_is_refused(tmp_path):
    _exe(tmp_path / "m" / "linux-amd64" / "app")
    (tmp_path / "m" / "linux-amd64" / "debug").mkdir()
    _refused(tmp_path, tmp_path / "m", "1.0", "'debug'")


def test_platform_folder_with_two_files_is_refused(tmp_path):
    _exe(tmp_path / "m" / "linux-amd64" / "app")
    _exe(tmp_path / "m" / "linux-amd64" / "app.sig")
    _refused(tmp_path, tmp_path / "m", "1.0", "exactly one")


def test_stray_folder_in_a_dist_folder_is_refused(tmp_path):
    _exe(tmp_path / "dist" / "app")
    (tmp_path / "dist" / "junk").mkdir()
    _refused(tmp_path, tmp_path / "dist", "1.0", "'junk'")


def test_missing_path_is_refused(tmp_path):
    _refused(tmp_path, tmp_path / "nope", "1.0", "does not exist")


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "app").write_bytes(b"")
    _refused(tmp_path, tmp_path / "app", "1.0", "is empty")


@pytest.mark.parametrize("version", ["", "..", "1.0/../../x", "a\\b", "1.0\n"])
def test_unsafe_versions_are_refused(tmp_path, version):
    exe = _exe(tmp_path / "app")
    _refused(tmp_path, exe, version, "version")


@pytest.mark.parametrize("cmd", ["a/b", "..", "x\x00"])
def test_unsafe_cmd_names_are_refused(tmp_path, cmd):
    exe = _exe(tmp_path / "app")
    _refused(tmp_path, exe, "1.0", "cmd name", cmd_name=cmd)


@pytest.mark.parametrize("plat,hint", [
    ("linux_amd64", "linux-amd64"),
    ("windows-amd64.exe", "windows-amd64"),
    ("linux-x86_64", "GOOS"),
    ("plan10-amd64", "GOOS"),
    ("linux", "GOOS"),
])
def test_bad_platforms_are_refused(tmp_path, plat, hint):
    exe = _exe(tmp_path / "app")
    msg = _refused(tmp_path, exe, "1.0", "unknown platform", platform=plat)
    assert hint in msg


def test_go_style_folder_needs_a_cmd_name(tmp_path):
    _exe(tmp_path / "cross" / "linux-amd64")
    _refused(tmp_path, tmp_path / "cross", "1.0", "--cmd-name")


def test_platform_option_with_a_platform_folder_is_refused(tmp_path):
    _exe(tmp_path / "cross" / "linux-amd64")
    _refused(tmp_path, tmp_path / "cross", "1.0", "drop --platform", cmd_name="app", platform="linux-amd64")


def test_output_that_is_a_file_is_refused(tmp_path):
    exe = _exe(tmp_path / "app")
    (tmp_path / "public").write_bytes(b"not a folder")
    with pytest.raises(ReleaseError, match="choose another -o folder"):
        release(exe, "1.0", out=tmp_path / "public" / "sub")
    assert (tmp_path / "public").read_bytes() == b"not a folder"


def test_a_changed_build_under_a_released_version_is_refused(tmp_path):
    exe = _exe(tmp_path / "app")
    out = tmp_path / "public"
    release(exe, "1.0", out=out, platform="linux-amd64")
    _exe(tmp_path / "app", body=b"rebuilt")
    msg = _refused(tmp_path, exe, "1.0", "already released", platform="linux-amd64")
    assert "new version" in msg


def test_a_refused_second_platform_writes_nothing_for_the_first(tmp_path):
    src = tmp_path / "cross"
    _exe(src / "darwin-arm64")
    _exe(src / "linux-amd64")

    class RefuseLinux:
        @hookimpl
        def release_check_artifact(self, context, artifact):
            if artifact.platform == "linux-amd64":
                raise ReleaseError("linux builds are not signed off; get the QA sign-off first")

    _refused(tmp_path, src, "1.0", "QA sign-off", cmd_name="app", plugins=[RefuseLinux()])


def test_an_exe_without_a_platform_is_refused_off_windows(tmp_path):
    exe = _exe(tmp_path / "tool.exe")
    if current_platform().startswith("windows-"):
        release(exe, "1.0", out=tmp_path / "public")
        assert (tmp_path / "public" / "tool" / f"{current_platform()}.json").is_file()
    else:
        msg = _refused(tmp_path, exe, "1.0", "named like a Windows executable")
        assert "--platform windows-amd64" in msg


def test_a_binary_format_that_does_not_match_its_platform_is_warned_about(tmp_path, caplog):
    src = tmp_path / "cross"
    _exe(src / "windows-amd64.exe")  # starts with \x7fELF: a Linux binary named for Windows
    (src / "linux-amd64").write_bytes(b"\x7fELF" + b"\0" * 100)
    (src / "darwin-arm64").write_bytes(b"\xcf\xfa\xed\xfe" + b"\0" * 100)
    with caplog.at_level("WARNING", logger="pyi_selfupdate.release"):
        release(src, "1.0", out=tmp_path / "public", cmd_name="app")
    warned = [r.getMessage() for r in caplog.records if "looks like" in r.getMessage()]
    assert len(warned) == 1
    assert "ELF" in warned[0] and "windows-amd64" in warned[0]
