"""``receiver operator add|token|disable|list``: the people and systems that use /v1."""

import os
import shlex
import sys

import click


def _settings():
    """The settings; under ``receiver demo operator``, make run's demo values fill in what the environment lacks."""
    from .cli import _settings as settings

    context = click.get_current_context(silent=True)
    return settings(context.find_object(dict) if context else None)


@click.group()
def operator():
    """People and systems that use /v1: add, token, disable, list."""


def cli_actor() -> str:
    """Who a ``receiver operator`` command acts as in the audit trail: ``cli:`` and the OS account that
    runs it (the effective user, not a variable the shell could set), or ``cli`` when it has no name."""
    try:
        import pwd

        return f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"[:320]
    except (ImportError, KeyError, AttributeError):  # no password database entry (a container's bare uid)
        return "cli"


def _operator_email(email: str) -> str:
    from .errors import BadRequest
    from .identities import normalize_email

    try:
        return normalize_email(email)
    except BadRequest as exc:
        raise click.BadParameter(exc.message.split(": ", 1)[-1], param_hint="EMAIL") from None


@operator.command("add")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["viewer", "agent", "admin"]))
@click.option("--tenant", "tenants", multiple=True, help="a tenant this operator may see (repeat); none: admin only")
@click.option("--password-stdin", is_flag=True, help="read a password (for the console) from the first line of stdin")
def operator_add(email, role, tenants, password_stdin):
    """Create an operator (then: receiver operator token EMAIL)."""
    from .access.credentials import Passwords, check_new_password
    from .access.roles import Role
    from .errors import ReceiverError
    from .ledger.operators import add_operator

    settings = _settings()
    email = _operator_email(email)
    unknown = sorted(set(tenants) - set(settings.tenants))
    if unknown:
        raise click.BadParameter(f"unknown tenant {unknown[0]!r}; known: {', '.join(sorted(settings.tenants))}",
                                 param_hint="--tenant")
    if (role == "admin") == bool(tenants):
        raise click.BadParameter("an admin is for every tenant (no --tenant); a viewer or agent needs one",
                                 param_hint="--tenant")
    password_hash = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            check_new_password(password)
        except ReceiverError as exc:
            raise click.BadParameter(exc.message, param_hint="--password-stdin") from None
        password_hash = Passwords().hash(password)
    engine = _engine(settings)
    try:
        add_operator(engine, email, Role(role), list(tenants) or None, password_hash, by=cli_actor())
    except ReceiverError as exc:
        click.echo(f"receiver: {exc.message}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    click.echo(f"operator {email} added ({role}{': ' + ', '.join(sorted(set(tenants))) if tenants else ''})")


@operator.command("token")
@click.argument("email")
def operator_token(email):
    """Print a new API token for EMAIL, once: only its hash is kept."""
    from .errors import ReceiverError
    from .ledger.operators import issue_token

    engine = _engine(_settings())
    try:
        click.echo(issue_token(engine, _operator_email(email), by=cli_actor()))
    except ReceiverError as exc:
        click.echo(f"receiver: {exc.message}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()


@operator.command("disable")
@click.argument("email")
def operator_disable(email):
    """Disable EMAIL: its tokens stop working at once."""
    from .ledger.operators import disable_operator

    engine = _engine(_settings())
    try:
        found = disable_operator(engine, _operator_email(email), by=cli_actor())
    finally:
        engine.dispose()
    if not found:
        click.echo(f"receiver: no operator {email}", err=True)
        sys.exit(1)
    click.echo(f"operator {email} disabled")


@operator.command("list")
def operator_list():
    """One line per operator: email, role, tenants, tokens, who added it, who issued its newest token,
    disabled when and by whom (never a hash). A ``*_by`` is left out where nobody recorded it (before 0015)."""
    from .ledger.operators import list_operators
    from .web.answers import iso

    engine = _engine(_settings())
    try:
        for info in list_operators(engine):
            tenants = ",".join(info.tenants) if info.tenants else "*"
            line = [info.email, f"role={info.role}", f"tenants={tenants}", f"tokens={info.tokens}",
                    _by("added_by", info.created_by), _by("last_token_by", info.last_token_by)]
            if info.disabled_at:
                line += [f"disabled={iso(info.disabled_at)}", _by("disabled_by", info.disabled_by)]
            click.echo(" ".join(part for part in line if part))
    finally:
        engine.dispose()


def _by(key: str, who: str | None) -> str:
    """``key=who``, quoted where it holds a space ("bootstrap admin"); nothing when not recorded."""
    return f"{key}={shlex.quote(who)}" if who else ""


def _engine(settings):
    from .ledger.db import make_engine

    return make_engine(settings.database_url)


@click.group("operator")
@click.pass_context
def demo_operator(ctx):
    """`receiver operator` on the service make run started (its demo settings): the console's first operator."""
    from .dev.run import DEMO_SECRETS

    ctx.obj = dict(DEMO_SECRETS)


for _name, _command in operator.commands.items():
    demo_operator.add_command(_command, _name)
