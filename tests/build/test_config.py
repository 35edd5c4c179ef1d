"""Build-time configuration: precedence of the sources, env parsing, validation, embedding."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pyi_selfupdate import _buildconfig as bc
from pyi_selfupdate.settings import DEFAULTS, load_embedded
from pyi_selfupdate.errors import ConfigError, InvalidNameError

API = "https://updates.example.com/api/"
KEY = "ed25519:" + base64.b64encode(bytes(range(32))).decode()


def write_pyproject(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_defaults_fill_every_key(tmp_path):
    config = bc.build_config({"api_url": API, "current_version": "1.0"}, cwd=tmp_path, environ={})
    assert set(config) == set(DEFAULTS)
    assert config["mode"] == "background"
    assert config["check_time"] == 24
    assert config["cmd_name"] is None
    assert config["public_keys"] == []


def test_precedence_env_over_spec_over_pyproject_over_defaults(tmp_path):
    write_pyproject(tmp_path, f"""
[project]
name = "app"
version = "0.9"

[tool.pyi-selfupdate]
api_url = "{API}"
check_time = 5
randomize_time = 2
cmd_name = "from-pyproject"
""")
    spec = {"check_time": 6, "cmd_name": "from-spec"}
    env = {"PYI_SELFUPDATE_CHECK_TIME": "7"}
    config = bc.build_config(spec, cwd=tmp_path, environ=env)
    assert config["check_time"] == 7            # env wins
    assert config["cmd_name"] == "from-spec"    # spec beats pyproject
    assert config["randomize_time"] == 2        # pyproject beats default
    assert config["current_version"] == "0.9"  # [project] version
    assert config["exit_wait"] == 10            # default
    assert config["api_url"] == API


def test_tool_table_version_beats_project_version(tmp_path):
    write_pyproject(tmp_path, f"""
[project]
version = "0.9"
[tool.pyi-selfupdate]
api_url = "{API}"
current_version = "2.0"
""")
    assert bc.build_config(None, cwd=tmp_path, environ={})["current_version"] == "2.0"


@pytest.mark.parametrize(
    "key,text,expected",
    [
        ("force_check", "yes", True),
        ("force_check", "0", False),
        ("enabled", "False", False),
        ("enabled", "on", True),
        ("check_time", "12", 12),
        ("check_time", "0.5", 0.5),
        ("exit_wait", "3", 3),
        ("public_keys", "abc, def,,ghi", ["abc", "def", "ghi"]),
        ("allow_http", "null", None),
        ("allow_http", "1", True),
        ("bin_url", "none", None),
        ("mode", "manual", "manual"),
    ],
)
def test_env_values_parsed_by_type(key, text, expected):
    assert bc.parse_env_value(key, text) == expected


def test_env_bad_values_name_the_variable():
    with pytest.raises(ConfigError, match="PYI_SELFUPDATE_FORCE_CHECK='maybe' is not a boolean"):
        bc.parse_env_value("force_check", "maybe")
    with pytest.raises(ConfigError, match="PYI_SELFUPDATE_CHECK_TIME='soon' is not a number"):
        bc.parse_env_value("check_time", "soon")


def test_env_empty_is_unset_and_unknown_names_ignored(tmp_path, caplog):
    env = {
        "PYI_SELFUPDATE_API_URL": API,
        "PYI_SELFUPDATE_CURRENT_VERSION": "3",
        "PYI_SELFUPDATE_MODE": "",
        "PYI_SELFUPDATE_CHEK_TIME": "1",
        "PYI_SELFUPDATE_DISABLE": "1",  # read by the running app, not by the build
        "OTHER": "x",
    }
    config = bc.build_config(None, cwd=tmp_path, environ=env)
    assert config["mode"] == "background"
    assert config["check_time"] == 24
    assert config["enabled"] is True
    assert "did you mean PYI_SELFUPDATE_CHECK_TIME" in caplog.text
    assert "DISABLE" not in caplog.text


def test_missing_api_url_says_what_and_where(tmp_path):
    with pytest.raises(ConfigError) as info:
        bc.build_config({"current_version": "1.0"}, cwd=tmp_path, environ={})
    msg = str(info.value)
    assert "api_url is missing" in msg
    assert 'hooksconfig={"pyi_selfupdate": {"api_url"' in msg
    assert "[tool.pyi-selfupdate] api_url" in msg
    assert "PYI_SELFUPDATE_API_URL=" in msg


def test_missing_version_mentions_project_version(tmp_path):
    with pytest.raises(ConfigError, match=r"current_version is missing \(or declare \[project\] version"):
        bc.build_config({"api_url": API}, cwd=tmp_path, environ={})


def test_unknown_key_names_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="unknown self-update setting 'api-url'.*did you mean 'api_url'"):
        bc.build_config({"api-url": API, "current_version": "1"}, cwd=tmp_path, environ={})
    write_pyproject(tmp_path, '[tool.pyi-selfupdate]\ncheck_tme = 3\n')
    with pytest.raises(ConfigError, match=r"'check_tme' in \[tool.pyi-selfupdate\].*'check_time'"):
        bc.build_config({"api_url": API, "current_version": "1"}, cwd=tmp_path, environ={})


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"api_url": "https://x.example/api"}, "does not end in '/'.*'https://x.example/api/'"),
        ({"diff_url": "ftp://x.example/"}, "not an http:// or https:// URL"),
        ({"mode": "eager"}, "use one of background, immediate, manual"),
        ({"check_time": -1}, "not a number >= 0"),
        ({"check_time": True}, "not a number >= 0"),
        ({"force_check": "yes"}, "not a boolean"),
        ({"public_keys": [1]}, "not a list of strings"),
        ({"current_version": 1.2}, "quote it"),
        ({"dir": "update"}, "ending in '/'"),
    ],
)
def test_validation_refuses_with_the_fix(tmp_path, override, pattern):
    spec = {"api_url": API, "current_version": "1.0", **override}
    with pytest.raises(ConfigError, match=pattern):
        bc.build_config(spec, cwd=tmp_path, environ={})


def test_validation_message_names_the_source(tmp_path):
    env = {"PYI_SELFUPDATE_MODE": "eager"}
    with pytest.raises(ConfigError, match="from PYI_SELFUPDATE_MODE"):
        bc.build_config({"api_url": API, "current_version": "1"}, cwd=tmp_path, environ=env)


def test_names_are_checked_with_the_protocol_rules(tmp_path):
    with pytest.raises(InvalidNameError):
        bc.build_config({"api_url": API, "current_version": "../1"}, cwd=tmp_path, environ={})
    with pytest.raises(InvalidNameError):
        bc.build_config({"api_url": API, "current_version": "1", "cmd_name": "a/b"}, cwd=tmp_path, environ={})


def test_public_keys_are_checked_at_build_time(tmp_path):
    config = bc.build_config({"api_url": API, "current_version": "1", "public_keys": KEY}, cwd=tmp_path, environ={})
    assert config["public_keys"] == [KEY]
    with pytest.raises(ConfigError, match="does not start with 'ed25519:'.*keygen"):
        bc.build_config({"api_url": API, "current_version": "1", "public_keys": ["k"]}, cwd=tmp_path, environ={})


def test_dev_version_is_allowed(tmp_path):
    assert bc.build_config({"api_url": API, "current_version": "dev"}, cwd=tmp_path, environ={})["current_version"] == "dev"


def test_embedded_bytes_are_deterministic_and_read_back(tmp_path):
    config = bc.build_config({"api_url": API, "current_version": "1.0", "public_keys": [KEY]}, cwd=tmp_path, environ={})
    data = bc.dumps(config)
    assert data == bc.dumps(dict(reversed(list(config.items()))))
    assert list(json.loads(data)) == sorted(config)
    (tmp_path / "pyi_selfupdate").mkdir()
    (tmp_path / "pyi_selfupdate" / "_embedded_config.json").write_bytes(data)
    assert load_embedded(str(tmp_path)) == config


def test_load_embedded_none_when_not_frozen_or_absent(tmp_path):
    assert load_embedded() is None  # tests do not run frozen
    assert load_embedded(str(tmp_path)) is None


def test_load_embedded_fills_defaults_and_refuses_corrupt(tmp_path):
    (tmp_path / "pyi_selfupdate").mkdir()
    target = tmp_path / "pyi_selfupdate" / "_embedded_config.json"
    target.write_text('{"api_url": "%s", "current_version": "1"}' % API)
    assert load_embedded(str(tmp_path))["exit_wait"] == 10
    target.write_text("{not json")
    with pytest.raises(ConfigError, match="corrupt.*rebuild"):
        load_embedded(str(tmp_path))


def test_plain_http_to_another_host_without_keys_fails_the_build(tmp_path):
    """The app would refuse that URL at every check: the build says so, with the fixes."""
    spec = {"api_url": "http://updates.example.com/", "current_version": "1.0"}
    with pytest.raises(ConfigError, match=r"api_url 'http://updates.example.com/' uses plain HTTP "
                                          r"without signed updates.*https://.*public_keys.*"
                                          r"allow_http.*set in the spec file"):
        bc.build_config(spec, cwd=tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"diff_url 'http://cdn.example.com/' uses plain HTTP.*set in PYI_SELFUPDATE_DIFF_URL"):
        bc.build_config({"api_url": API, "current_version": "1.0"}, cwd=tmp_path,
                        environ={"PYI_SELFUPDATE_DIFF_URL": "http://cdn.example.com/"})


def test_plain_http_accepted_when_loopback_signed_or_allowed(tmp_path):
    from pyi_selfupdate.release.keys import generate_private_key

    key = generate_private_key().public_key_text
    for extra in ({"api_url": "http://127.0.0.1:8765/"},
                  {"api_url": "http://updates.example.com/", "public_keys": [key]},
                  {"api_url": "http://updates.example.com/", "allow_http": True}):
        config = bc.build_config({"current_version": "1.0", **extra}, cwd=tmp_path, environ={})
        assert config["api_url"] == extra["api_url"]
