"""``receiver operator add|token|disable|list`` against the test database."""

import os
import pwd
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from receiver.access.credentials import Passwords, token_hash
from receiver.access.roles import Role
from receiver.cli import cli
from receiver.cli_operators import cli_actor
from receiver.ledger.models import Operator, OperatorToken
from receiver.ledger.operators import add_operator, principal_for_token
from tests.helpers import base_env

# What the audit trail names a command-line change by: the OS account that ran it.
CLI = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


@pytest.fixture
def run(settings, database_url, tmp_path):
    env = base_env(database_url, tmp_path / "receiver.toml")  # the settings fixture wrote the config there

    def invoke(*args, stdin=None):
        return CliRunner().invoke(cli, ["operator", *args], env=env, input=stdin)

    return invoke


def test_add_token_list_disable(run, engine):
    added = run("add", "Desk@Grand.example", "--role", "agent", "--tenant", "grand", "--password-stdin",
                stdin="correct horse battery staple\n")
    assert added.exit_code == 0, added.output
    with engine.connect() as conn:
        row = conn.execute(select(Operator.__table__)).one()
    assert (row.email, row.role, row.tenants) == ("desk@grand.example", "agent", ["grand"])
    assert row.password_hash.startswith("$argon2id$") and "staple" not in row.password_hash
    assert Passwords().verify(row.password_hash, "correct horse battery staple")

    token = run("token", "desk@grand.example")
    assert token.exit_code == 0
    printed = token.output.strip()
    with engine.connect() as conn:
        assert conn.execute(select(OperatorToken.token_hash)).scalars().all() == [token_hash(printed)]
    assert principal_for_token(engine, printed).name == "desk@grand.example"

    listed = run("list")
    assert listed.output == f"desk@grand.example role=agent tenants=grand tokens=1 added_by={CLI} last_token_by={CLI}\n"
    assert printed not in listed.output

    assert run("disable", "desk@grand.example").exit_code == 0
    assert principal_for_token(engine, printed) is None
    assert f"disabled_by={CLI}" in run("list").output.split(" disabled=")[1]
    assert run("token", "desk@grand.example").exit_code == 1


def test_each_command_records_the_os_account_that_ran_it(run, engine):
    """Adding, issuing a token and disabling each keep who did it (issue 14: every operator write is in the
    audit trail); a second disable keeps the first time and actor."""
    assert run("add", "boss@x.example", "--role", "admin").exit_code == 0
    assert run("token", "boss@x.example").exit_code == 0
    assert run("disable", "boss@x.example").exit_code == 0
    with engine.connect() as conn:
        row = conn.execute(select(Operator.created_by, Operator.disabled_at, Operator.disabled_by)).one()
        assert conn.execute(select(OperatorToken.issued_by)).scalars().all() == [CLI]
    assert (row.created_by, row.disabled_by) == (CLI, CLI) and CLI != "cli:"
    assert run("disable", "boss@x.example").exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(select(Operator.disabled_at, Operator.disabled_by)).one() == (row.disabled_at, CLI)


def test_an_account_without_a_name_is_recorded_as_cli(monkeypatch):
    def nameless(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", nameless)
    assert cli_actor() == "cli"


def test_list_quotes_an_actor_with_a_space_and_leaves_out_one_never_recorded(run, engine):
    add_operator(engine, "boss@x.example", Role.ADMIN, None, None, by="bootstrap admin")
    with engine.begin() as conn:  # as a row written before migration 0015 reads: nobody recorded
        conn.execute(insert(Operator).values(email="old@x.example", role="admin", created_at=datetime.now(UTC)))
    assert run("list").output == ("boss@x.example role=admin tenants=* tokens=0 added_by='bootstrap admin'\n"
                                  "old@x.example role=admin tenants=* tokens=0\n")


@pytest.mark.parametrize("args, stdin, message", [
    (("admin@x.example", "--role", "admin", "--tenant", "grand"), None, "an admin is for every tenant"),
    (("desk@x.example", "--role", "agent"), None, "needs one"),
    (("desk@x.example", "--role", "agent", "--tenant", "nowhere"), None, "unknown tenant 'nowhere'"),
    (("desk@x.example", "--role", "chief", "--tenant", "grand"), None, "chief"),
    (("not-an-email", "--role", "admin"), None, "EMAIL"),
    (("desk@x.example", "--role", "viewer", "--tenant", "grand", "--password-stdin"), "short\n", "15 to 1024"),
])
def test_add_refuses_bad_input(run, engine, args, stdin, message):
    result = run("add", *args, stdin=stdin)
    assert result.exit_code == 2 and message in result.output, result.output
    with engine.connect() as conn:
        assert conn.execute(select(Operator.id)).first() is None


def test_an_email_is_added_once(run):
    assert run("add", "boss@x.example", "--role", "admin").exit_code == 0
    again = run("add", "BOSS@x.example", "--role", "admin")
    assert again.exit_code == 1 and "already exists" in again.output
    assert run("disable", "nobody@x.example").exit_code == 1


def test_the_quick_starts_first_operator_with_make_runs_settings(database_url, settings, engine, monkeypatch):
    """After `make run`, `receiver demo operator add` reads make run's example config and demo secrets (the
    plain command, with neither in the environment, knows no tenant "grand")."""
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # where make run starts: receiver.example.toml
    env = {"DATABASE_URL": database_url, "RECEIVER_CONFIG_FILE": None, "XP_PARTNER_TOKEN": None,
           "CRMTEXT_PASSWORD": None, "TWILIO_AUTH_TOKEN": None, "RECEIVER_ENV": "test",
           **{key: value for key, value in base_env(database_url, Path("unused")).items() if key.endswith("KEY")}}
    args = ["add", "desk@grand.example", "--role", "agent", "--tenant", "grand", "--password-stdin"]
    plain = CliRunner().invoke(cli, ["operator", *args], env=env, input="correct horse battery staple\n")
    assert plain.exit_code == 2 and "unknown tenant 'grand'" in plain.output

    demo = CliRunner().invoke(cli, ["demo", "operator", *args], env=env, input="correct horse battery staple\n")
    assert demo.exit_code == 0, demo.output
    assert CliRunner().invoke(cli, ["demo", "operator", "list"], env=env).output == (
        f"desk@grand.example role=agent tenants=grand tokens=0 added_by={CLI}\n")
    with engine.connect() as conn:
        assert conn.execute(select(Operator.email)).scalars().all() == ["desk@grand.example"]
