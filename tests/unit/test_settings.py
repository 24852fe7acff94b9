"""Settings: environment and TOML read once; every bad setting is one ConfigError naming it."""

import base64
import dataclasses
import os
import subprocess
import sys

import pytest

from receiver.errors import ConfigError
from receiver.keys import keep_in_instance
from receiver.settings import (
    CrmTextConfig,
    ExperienceConfig,
    RetentionConfig,
    ServiceConfig,
    WorkerConfig,
    load_settings,
)
from receiver.sources import configure
from tests.helpers import CRMTEXT_TOKEN, PUBLIC_BASE_URL, base_env, config_toml, make_settings

SQLITE = "sqlite:///unused.db"


def load(tmp_path, toml=None, **env):
    return make_settings(tmp_path, SQLITE, toml=toml, **env)


def refused(tmp_path, toml=None, **env) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml=toml, **env)
    return str(caught.value)


def test_helper_config_loads_into_typed_objects(tmp_path):
    settings = load(tmp_path)

    assert settings.public_base_url == PUBLIC_BASE_URL
    assert set(settings.tenants) == {"grand", "smsonly"}
    assert settings.tenants["smsonly"].experience is None
    assert settings.tenants["grand"].crmtext.keyword == "GRAND"
    assert settings.sources["twilio"].kind == "twilio"
    assert settings.sources["crmtext"].options["token"] == [CRMTEXT_TOKEN]  # one secret or a list: a list
    assert settings.worker.lease_seconds == 13


def test_env_indirection_reads_the_named_variable(tmp_path):
    settings = load(tmp_path, XP_PARTNER_TOKEN="from-the-environment", TWILIO_AUTH_TOKEN="tok")

    assert settings.tenants["grand"].experience.partner_token == "from-the-environment"
    assert settings.sources["twilio"].options["auth_token"] == ["tok"]


def test_env_indirection_inside_a_list(tmp_path):
    toml = config_toml().replace('auth_token = "env:TWILIO_AUTH_TOKEN"',
                                 'auth_token = ["env:TWILIO_AUTH_TOKEN", "env:OLD_TOKEN"]')

    settings = load(tmp_path, toml=toml, OLD_TOKEN="old")

    assert settings.sources["twilio"].options["auth_token"] == ["test-auth-token", "old"]


def test_missing_env_variable_names_the_path_and_the_variable(tmp_path):
    config = tmp_path / "receiver.toml"
    config.write_text(config_toml())
    env = base_env(SQLITE, config)
    del env["XP_PARTNER_TOKEN"]

    with pytest.raises(ConfigError) as caught:
        load_settings(env, root=tmp_path)

    assert "tenants.grand.experience.partner_token" in str(caught.value)
    assert "XP_PARTNER_TOKEN" in str(caught.value)


def test_empty_env_variable_counts_as_missing(tmp_path):
    message = refused(tmp_path, CRMTEXT_PASSWORD="")

    assert "tenants.grand.crmtext.password" in message
    assert "CRMTEXT_PASSWORD" in message


@pytest.mark.parametrize("url", ["postgres://u:p@db.example:5432/app", "postgresql://u:p@db.example:5432/app"])
def test_postgres_urls_use_psycopg(tmp_path, url):
    settings = load(tmp_path, DATABASE_URL=url)

    assert settings.database_url == "postgresql+psycopg://u:p@db.example:5432/app"


def test_unsupported_database_url_is_refused(tmp_path):
    assert "DATABASE_URL" in refused(tmp_path, DATABASE_URL="mysql://u@h/db")


def test_default_database_is_sqlite_in_instance(tmp_path):
    config = tmp_path / "receiver.toml"
    config.write_text(config_toml())
    env = base_env(SQLITE, config)
    del env["DATABASE_URL"]

    settings = load_settings(env, root=tmp_path)

    assert settings.database_url == f"sqlite:///{tmp_path / 'instance' / 'receiver.db'}"


@pytest.mark.parametrize("missing", ["DATABASE_URL", "SECRET_KEY", "RECEIPT_SIGNING_KEY", "RECEIVER_IDENTITY_KEY"])
def test_production_requires_each_secret(tmp_path, missing):
    config = tmp_path / "receiver.toml"
    config.write_text(config_toml())
    env = {**base_env("postgres://u@h/db", config), "RECEIVER_ENV": "production"}
    del env[missing]

    with pytest.raises(ConfigError) as caught:
        load_settings(env, root=tmp_path)

    assert missing in str(caught.value)
    assert not (tmp_path / "instance").exists()  # production never generates secrets


def test_production_with_everything_set_loads(tmp_path):
    settings = load(tmp_path, RECEIVER_ENV="production", DATABASE_URL="postgres://u@h/db")

    assert settings.production


def test_unknown_receiver_env_is_refused(tmp_path):
    assert "RECEIVER_ENV" in refused(tmp_path, RECEIVER_ENV="staging")


def test_bad_toml_names_the_file(tmp_path):
    message = refused(tmp_path, toml="[service\npublic_base_url = ")

    assert "receiver.toml" in message
    assert "not valid TOML" in message


def test_missing_config_file_is_named(tmp_path):
    env = base_env(SQLITE, tmp_path / "nowhere.toml")

    with pytest.raises(ConfigError, match="RECEIVER_CONFIG_FILE"):
        load_settings(env, root=tmp_path)


def test_unknown_source_kind(tmp_path):
    toml = config_toml(extra='[sources.fax]\nkind = "fax"\ntenant = "grand"\n')

    message = refused(tmp_path, toml=toml)

    assert "sources.fax.kind" in message
    assert "'fax'" in message


def test_source_naming_an_unknown_tenant(tmp_path):
    toml = config_toml(extra='[sources.other]\nkind = "crmtext"\ntenant = "nowhere"\ntoken = "t"\n')

    message = refused(tmp_path, toml=toml)

    assert "sources.other.tenant" in message
    assert "'nowhere'" in message


def test_unknown_key_in_a_tenant_names_its_path(tmp_path):
    toml = config_toml().replace("[tenants.smsonly]", "[tenants.smsonly]\ncolour = \"blue\"")

    message = refused(tmp_path, toml=toml)

    assert "tenants.smsonly.colour" in message


def test_unknown_key_in_a_tenant_crm_names_its_path(tmp_path):
    toml = config_toml().replace('keyword = "SMALL"', 'keyword = "SMALL", shortcode = 12345')

    assert "tenants.smsonly.crmtext.shortcode" in refused(tmp_path, toml=toml)


def test_unknown_source_option_names_its_path(tmp_path):
    toml = config_toml().replace('kind = "crmtext"', 'kind = "crmtext"\ntokn = "typo"')

    assert "sources.crmtext.tokn" in refused(tmp_path, toml=toml)


def test_source_missing_its_secret(tmp_path):
    toml = config_toml().replace(f'token = "{CRMTEXT_TOKEN}"', "")

    assert "sources.crmtext.token" in refused(tmp_path, toml=toml)


@pytest.mark.parametrize("token", ["12345", "[]", '[""]', '["ok", 7]'])
def test_source_secret_of_the_wrong_type(tmp_path, token):
    toml = config_toml().replace('auth_token = "env:TWILIO_AUTH_TOKEN"', f"auth_token = {token}")

    assert "sources.twilio.auth_token" in refused(tmp_path, toml=toml)


def test_worker_option_out_of_range(tmp_path):
    toml = config_toml().replace("lease_seconds = 13", "lease_seconds = 1")

    assert "worker.lease_seconds" in refused(tmp_path, toml=toml)


@pytest.mark.parametrize("lease, crm, timeout", [(13, "crmtext", 11), (6, "experience", 4)])
def test_a_lease_not_over_a_call_s_deadline_plus_margin_is_refused(tmp_path, lease, crm, timeout):
    # Issue 10.14: a lease that ran out mid-call let a second worker take the row and text the guest again.
    toml = config_toml().replace("lease_seconds = 13", f"lease_seconds = {lease}")
    old = 'hotel_token = "grand-hotel", timeout = 2.0' if crm == "experience" else 'keyword = "GRAND", timeout = 2.0'
    toml = toml.replace(old, old.replace("2.0", str(timeout)))
    message = refused(tmp_path, toml=toml)
    assert message.endswith(f"worker.lease_seconds ({lease}) must exceed tenants.grand.{crm}.timeout ({timeout}) + 2 s")
    assert "\n" not in message


def test_a_lease_over_every_call_s_deadline_plus_margin_loads(tmp_path):
    toml = config_toml().replace("lease_seconds = 13", "lease_seconds = 5")  # every test timeout is 2 s
    assert load(tmp_path, toml=toml).worker.lease_seconds == 5


def test_the_default_lease_outlasts_the_default_crm_timeouts(tmp_path):
    toml = config_toml().replace("lease_seconds = 13", "").replace(", timeout = 2.0", "")
    assert load(tmp_path, toml=toml).worker.lease_seconds == 30


def test_public_base_url_with_a_path_is_refused(tmp_path):
    toml = config_toml().replace(PUBLIC_BASE_URL, PUBLIC_BASE_URL + "/receiver")

    assert "public_base_url" in refused(tmp_path, toml=toml)


@pytest.mark.parametrize("port", ["abc", "0", "-1", "80.5"])
def test_invalid_port(tmp_path, port):
    message = refused(tmp_path, PORT=port)

    assert message.startswith("PORT")
    assert repr(port) in message


def test_invalid_log_level(tmp_path):
    assert refused(tmp_path, LOG_LEVEL="LOUD").startswith("LOG_LEVEL")


def test_log_level_in_any_case(tmp_path):
    assert load(tmp_path, LOG_LEVEL="debug").log_level == "DEBUG"


def test_port_and_concurrency(tmp_path):
    settings = load(tmp_path, PORT="5000", WEB_CONCURRENCY="4")

    assert (settings.port, settings.web_concurrency) == (5000, 4)


def _without_secrets(tmp_path) -> dict[str, str]:
    config = tmp_path / "receiver.toml"
    config.write_text(config_toml())
    env = {**base_env(SQLITE, config), "RECEIVER_ENV": "development"}
    del env["SECRET_KEY"], env["RECEIPT_SIGNING_KEY"], env["RECEIVER_IDENTITY_KEY"]
    return env


def test_development_secrets_are_generated_once_and_kept(tmp_path):
    env = _without_secrets(tmp_path)
    made = keep_in_instance(tmp_path / "instance")  # what make run and `receiver keys generate --instance` do

    first = load_settings(env, root=tmp_path)
    assert keep_in_instance(tmp_path / "instance") == []  # never replaced once made
    second = load_settings(env, root=tmp_path)

    assert sorted(p.name for p in made) == ["identity_key", "receipt_signing_key", "secret_key"]
    assert first.identity_key == second.identity_key
    assert (tmp_path / "instance" / "identity_key").read_text().strip().encode() == first.identity_key
    assert first.secret_keys == second.secret_keys
    assert first.receipt_keys == second.receipt_keys
    assert len(base64.b64decode(first.receipt_keys[0])) == 32
    assert (tmp_path / "instance" / "secret_key").read_text().strip() == first.secret_keys[0]
    assert (tmp_path / "instance" / "receipt_signing_key").read_text().strip() == first.receipt_keys[0]
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0


def test_loading_writes_nothing_and_names_what_to_run_without_development_secrets(tmp_path):
    # Issue 12.3: loading wrote development secrets as a side effect (twice per gunicorn start).
    env = _without_secrets(tmp_path)

    with pytest.raises(ConfigError) as caught:
        load_settings(env, root=tmp_path)

    assert str(caught.value).startswith("SECRET_KEY: not set")
    assert "receiver keys generate --instance" in str(caught.value) and "make run" in str(caught.value)
    assert not (tmp_path / "instance").exists()


def test_loading_settings_imports_no_source_kind(tmp_path):
    # Issue 12.3: loading imported every source adapter (the package's one import cycle); the
    # registry checks options now. A fresh interpreter shows what loading pulls in.
    code = ("import sys; from receiver.settings import load_settings; load_settings(); "
            "print(sorted(m for m in sys.modules if m.startswith('receiver.sources')))")
    env = {"PATH": os.environ.get("PATH", ""), **base_env(SQLITE, tmp_path / "receiver.toml")}
    (tmp_path / "receiver.toml").write_text(config_toml())
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_source_options_are_checked_by_the_registry_not_by_loading(tmp_path):
    toml = config_toml().replace('kind = "crmtext"', 'kind = "crmtext"\ntokn = "typo"')
    (tmp_path / "receiver.toml").write_text(toml)
    settings = load_settings(base_env(SQLITE, tmp_path / "receiver.toml"), root=tmp_path)

    assert settings.sources["crmtext"].options["tokn"] == "typo"  # as written
    with pytest.raises(ConfigError, match=r"receiver\.toml: sources\.crmtext\.tokn: "):
        configure(settings)


@pytest.mark.parametrize("section, setting, default", [
    (WorkerConfig, "lease_seconds", 30), (ExperienceConfig, "batch_size", 250), (CrmTextConfig, "timeout", 6.0),
    (RetentionConfig, "attempts_days", 90.0), (ServiceConfig, "forms_rate_limit", 10),
])
def test_each_setting_s_default_is_declared_once_and_loading_uses_it(section, setting, default):
    # Issue 12.3: defaults sat in dataclasses and ranges in separate schemas; the schema is made from the field now.
    declared = section.Schema().fields[setting]
    assert declared.load_default == default == {f.name: f.default for f in dataclasses.fields(section)}[setting]


def test_secret_key_rotation_list(tmp_path):
    new, old = "n" * 32, "o" * 43
    settings = load(tmp_path, SECRET_KEY=f"{new}, {old} ")

    assert settings.secret_keys == (new, old)


@pytest.mark.parametrize("key", [
    "not base64!",
    base64.b64encode(b"short").decode(),
    base64.b64encode(bytes(33)).decode(),
])
def test_bad_receipt_signing_key(tmp_path, key):
    message = refused(tmp_path, RECEIPT_SIGNING_KEY=key)

    assert message.startswith("RECEIPT_SIGNING_KEY")
    assert key not in message  # a secret is never echoed


def test_receipt_signing_key_rotation(tmp_path):
    new, old = base64.b64encode(bytes(range(32))).decode(), base64.b64encode(bytes(32)).decode()

    settings = load(tmp_path, RECEIPT_SIGNING_KEY=f"{new},{old}")

    assert settings.receipt_keys == (new, old)


def test_keys_generate_instance_makes_the_development_secrets_loading_then_reads(tmp_path, monkeypatch):
    # `receiver keys generate --instance` (what make run runs first) is the explicit step; without it
    # loading names it (test above).
    from click.testing import CliRunner

    from receiver.cli import cli

    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(cli, ["keys", "generate", "--instance"])
    again = CliRunner().invoke(cli, ["keys", "generate", "--instance"])

    assert made.exit_code == 0 and made.output.count("made ") == 3
    assert again.exit_code == 0 and "already" in again.output
    settings = load_settings(_without_secrets(tmp_path), root=tmp_path)
    assert (tmp_path / "instance" / "secret_key").read_text().strip() == settings.secret_keys[0]


def test_tenant_compliance_defaults(tmp_path):
    grand = load(tmp_path).tenants["grand"]

    assert grand.regimes == ("tcpa", "can-spam", "gmail-yahoo")
    assert (grand.calendar, grand.timezone) == ("US", None)


@pytest.mark.parametrize(("line", "named"), [
    ('regimes = ["tcpa", "gdpr"]', "tenants.grand.regimes: unknown regime 'gdpr'"),
    ('calendar = "XX"', "tenants.grand.calendar: unknown country 'XX'"),
    ('calendar = "CA-ZZ"', "tenants.grand.calendar: CA has no subdivision 'ZZ'"),
    ('timezone = "Mars/Olympus"', "tenants.grand.timezone: unknown time zone 'Mars/Olympus'"),
])
def test_unknown_regime_calendar_or_timezone_stops_start_up_naming_it(tmp_path, line, named):
    toml = config_toml().replace('display_name = "Grand Hotel"', f'display_name = "Grand Hotel"\n{line}')

    message = refused(tmp_path, toml=toml)

    assert named in message and "\n" not in message


def test_identity_key_too_short_is_refused(tmp_path):
    assert refused(tmp_path, RECEIVER_IDENTITY_KEY="short").startswith("RECEIVER_IDENTITY_KEY: shorter than 32")


@pytest.mark.parametrize("own", ["email-link", "web-form", "experience-sync"])
def test_a_source_named_like_an_own_channel_is_refused(tmp_path, own):
    # Review F8: its signals would be recorded as the receiver's own channel's.
    toml = config_toml().replace("[sources.twilio]", f'[sources."{own}"]')
    (tmp_path / "receiver.toml").write_text(toml)
    settings = load_settings(base_env(SQLITE, tmp_path / "receiver.toml"), root=tmp_path)

    with pytest.raises(ConfigError, match=rf"receiver\.toml: sources\.{own}: is the name of one of the receiver's own"):
        configure(settings)
