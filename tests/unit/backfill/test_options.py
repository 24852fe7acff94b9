"""Settings of issue 13: each source kind's ``backfill = {…}`` option and ``[backfill] every_minutes``."""

import pytest

from receiver.backfill.mailgun import MailgunBackfill
from receiver.backfill.postmark import PostmarkBackfill
from receiver.backfill.readers import reader
from receiver.backfill.sendgrid import SendGridBackfill
from receiver.backfill.twilio import TwilioBackfill
from receiver.errors import ConfigError
from tests.helpers import config_toml, make_settings

SQLITE = "sqlite://"
SID = "AC" + "a" * 32
SOURCES = """
[sources.sg]
kind = "sendgrid"
tenant = "grand"
public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
backfill = { api_key = "env:SG_KEY" }

[sources.mg]
kind = "mailgun"
tenant = "grand"
signing_key = "k"
backfill = { api_key = "mg-key", domain = "mg.example.com", base_url = "http://127.0.0.1:9" }

[sources.pm]
kind = "postmark"
tenant = "grand"
basic_auth = "u:p"
backfill = { server_token = "pm-token", stream = "broadcast" }
"""


def twilio_backfill(value: str) -> str:
    return config_toml(extra=SOURCES).replace('help_text = "Grand', f"backfill = {value}\nhelp_text = \"Grand")


def test_each_kind_s_backfill_option_is_checked_and_builds_its_reader(tmp_path):
    toml = twilio_backfill(f'{{ account_sid = "{SID}", to = ["(555) 000-1111"] }}')
    settings = make_settings(tmp_path, SQLITE, toml, SG_KEY="SG.from-env")

    options = {name: source.options.get("backfill") for name, source in settings.sources.items()}
    assert options["twilio"] == {"account_sid": SID, "to": ["+15550001111"]}
    assert options["sg"] == {"api_key": "SG.from-env"}  # env: works as for every string
    assert options["crmtext"] is None
    readers = {name: reader(settings.sources[name], settings.worker) for name in ("twilio", "sg", "mg", "pm")}
    assert isinstance(readers["twilio"], TwilioBackfill) and readers["twilio"].numbers == ["+15550001111"]
    assert readers["twilio"].client.base_url == "https://api.twilio.com"
    assert isinstance(readers["sg"], SendGridBackfill)
    assert isinstance(readers["mg"], MailgunBackfill) and readers["mg"].client.base_url == "http://127.0.0.1:9"
    assert isinstance(readers["pm"], PostmarkBackfill) and readers["pm"].stream == "broadcast"
    assert readers["twilio"].client.retry.max_attempts == settings.worker.max_attempts
    assert settings.backfill.every_minutes == 15


@pytest.mark.parametrize("value, path", [
    ('{ to = ["+15550001111"] }', "sources.twilio.backfill.account_sid"),
    (f'{{ account_sid = "{SID}", to = ["not a number"] }}', "sources.twilio.backfill.to"),
    (f'{{ account_sid = "{SID}", to = [] }}', "sources.twilio.backfill.to"),
    (f'{{ account_sid = "{SID}", to = ["+15550001111"], token = "x" }}', "sources.twilio.backfill.token"),
])
def test_a_bad_backfill_option_names_its_path(tmp_path, value, path):
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        make_settings(tmp_path, SQLITE, twilio_backfill(value), SG_KEY="k")


def test_a_missing_env_credential_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"sources\.sg\.backfill\.api_key: environment variable SG_KEY"):
        make_settings(tmp_path, SQLITE, config_toml(extra=SOURCES))


@pytest.mark.parametrize("minutes, ok", [(0, True), (60, True), (-1, False), (100000, False)])
def test_every_minutes_range(tmp_path, minutes, ok):
    toml = config_toml(extra=f"[backfill]\nevery_minutes = {minutes}\n")
    if ok:
        assert make_settings(tmp_path, SQLITE, toml).backfill.every_minutes == minutes
    else:
        with pytest.raises(ConfigError, match=r"backfill\.every_minutes"):
            make_settings(tmp_path, SQLITE, toml)
