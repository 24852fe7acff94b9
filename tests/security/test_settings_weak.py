"""Weak settings stop start-up with one line naming them: empty key parts, short keys, empty credentials."""

import base64
import secrets
import subprocess

import pytest

from receiver.errors import ConfigError
from tests.e2e.stack import BIN, ROOT, Stack
from tests.helpers import config_toml, make_settings

SQLITE = "sqlite:///unused.db"
POSTMARK_TOML = """
[sources.postmark]
kind = "postmark"
tenant = "grand"
basic_auth = "env:POSTMARK_WEBHOOK_AUTH"
"""


@pytest.mark.parametrize("key, problem", [
    (",", "empty key"),
    ("a" * 40 + ",", "empty key"),
    (",," + "a" * 40, "empty key"),
    ("a", "shorter than 32 bytes"),
    ("a" * 31, "shorter than 32 bytes"),
    ("a" * 40 + ",short", "key #2 is shorter than 32 bytes"),
])
def test_weak_secret_keys_are_refused(tmp_path, key, problem):
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, SQLITE, SECRET_KEY=key)

    assert str(caught.value).startswith("SECRET_KEY: ") and problem in str(caught.value)


def test_generated_and_helper_keys_are_long_enough(tmp_path):
    # What `receiver keys generate`, the development default and app.json's generator produce.
    for key in (secrets.token_urlsafe(32), secrets.token_hex(32)):
        assert make_settings(tmp_path, SQLITE, SECRET_KEY=key).secret_keys == (key,)
    assert len(make_settings(tmp_path, SQLITE).secret_keys[0]) >= 32


@pytest.mark.parametrize("credentials", [":", "user:", ":password", ["user:password", ":"]])
def test_postmark_credentials_with_an_empty_part_are_refused(tmp_path, credentials):
    toml = POSTMARK_TOML
    if isinstance(credentials, list):
        toml = toml.replace('"env:POSTMARK_WEBHOOK_AUTH"', str(credentials).replace("'", '"'))

    with pytest.raises(ConfigError, match=r"sources\.postmark\.basic_auth: .*neither empty"):
        make_settings(tmp_path, SQLITE, config_toml(extra=toml),
                      POSTMARK_WEBHOOK_AUTH=credentials if isinstance(credentials, str) else "u:p")


def test_postmark_credentials_with_both_parts_load(tmp_path):
    settings = make_settings(tmp_path, SQLITE, config_toml(extra=POSTMARK_TOML), POSTMARK_WEBHOOK_AUTH="hooks:pw")

    assert settings.sources["postmark"].options["basic_auth"] == ["hooks:pw"]
    assert base64.b64encode(b":").decode() == "Og=="  # the header the old ":" setting let in


def test_the_web_process_exits_with_one_line_on_a_weak_key(tmp_path):
    stack = Stack(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")

    done = subprocess.run([str(BIN / "gunicorn"), "wsgi:app"], cwd=ROOT, env={**stack.env, "SECRET_KEY": ","},
                          capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SECRET_KEY: an empty key" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("token", ["a", "admin-token", "x" * 31])
def test_a_short_admin_token_stops_production(tmp_path, token):
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, "postgresql://u@h/db", RECEIVER_ENV="production", RECEIVER_ADMIN_TOKEN=token)

    assert str(caught.value).startswith("RECEIVER_ADMIN_TOKEN: shorter than 32 bytes")


def test_a_long_admin_token_loads_in_production_and_any_outside_it(tmp_path):
    token = secrets.token_urlsafe(32)
    production = make_settings(tmp_path, "postgresql://u@h/db", RECEIVER_ENV="production", RECEIVER_ADMIN_TOKEN=token)
    assert production.admin_token == token
    assert make_settings(tmp_path, SQLITE, RECEIVER_ADMIN_TOKEN="admin-token").admin_token == "admin-token"
