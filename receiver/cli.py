"""The ``receiver`` command line: migrations, the worker, keys, the local CRM sandbox, a demo STOP."""

import secrets
import sys

import click

from .errors import ConfigError


def _settings():
    from .settings import load_settings

    return load_settings()


@click.group()
def cli():
    """Opt-out receiver."""


@cli.group()
def db():
    """Database migrations."""


@db.command("upgrade")
def db_upgrade():
    """Apply every migration (idempotent; the Procfile's release step)."""
    from .ledger.db import upgrade

    upgrade(_settings().database_url)
    click.echo("database is at the newest migration")


@cli.command()
def worker():
    """Deliver recorded opt-outs to the CRMs until SIGTERM."""
    from .ledger.db import make_engine
    from .logs import configure_logging
    from .worker import Worker

    settings = _settings()
    configure_logging(settings.log_level)
    Worker(settings, make_engine(settings.database_url)).run()


@cli.group()
def keys():
    """Secrets."""


@keys.command("generate")
def keys_generate():
    """Print a new RECEIPT_SIGNING_KEY and SECRET_KEY."""
    from .receipts import generate_signing_key

    click.echo(f"RECEIPT_SIGNING_KEY={generate_signing_key()}")
    click.echo(f"SECRET_KEY={secrets.token_urlsafe(32)}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9000, show_default=True, type=int)
def sandbox(host, port):
    """Run the local fake CRMs (Experience JSON, CRM Text XML) that make run and the tests use."""
    from .logs import configure_logging
    from .sandbox import serve

    configure_logging("INFO")
    serve(host=host, port=port)


def _link_options(command):
    for option in reversed([
        click.option("--tenant", required=True, help="a tenant of the config file"),
        click.option("--email", required=True),
        click.option("--phone", default=None, help="links this phone to the email (E.164 or US national)"),
        click.option("--scope", type=click.Choice(["marketing", "all"]), default="marketing", show_default=True),
        click.option("--campaign", default=None),
    ]):
        command = option(command)
    return command


def _print_link(settings, tenant, email, phone, scope, campaign) -> None:
    from .errors import BadRequest
    from .links import LinkSigner, make_link

    if tenant not in settings.tenants:
        raise click.BadParameter(f"unknown tenant {tenant!r}; known: {', '.join(sorted(settings.tenants))}",
                                 param_hint="--tenant")
    try:
        made = make_link(tenant, email, phone, scope, campaign)
    except BadRequest as exc:
        raise click.BadParameter(exc.message.split(": ", 1)[-1], param_hint=f"--{exc.field}") from None
    click.echo(LinkSigner(settings.secret_keys, settings.tenants, settings.public_base_url).url(made))


@cli.command()
@_link_options
def link(tenant, email, phone, scope, campaign):
    """Print an unsubscribe link (what POST /v1/links answers as "url")."""
    _print_link(_settings(), tenant, email, phone, scope, campaign)


@cli.group()
def demo():
    """Send a signed example request to a running service."""


@demo.command("sms")
@click.argument("text")
@click.argument("phone")
@click.option("--source", default="twilio", show_default=True, help="a source of kind twilio")
@click.option("--url", default=None, help="where the service listens (default: service.public_base_url)")
def demo_sms(text, phone, source, url):
    """Text TEXT from PHONE, signed as Twilio signs it, and print the signed answer."""
    from .demo import send_sms
    from .devrun import DEMO_SECRETS
    from .settings import load_settings

    send_sms(load_settings(defaults=DEMO_SECRETS), text, phone, source, url)


@demo.command("link")
@_link_options
def demo_link(tenant, email, phone, scope, campaign):
    """Print an unsubscribe link of the service make run started (its demo settings)."""
    from .devrun import DEMO_SECRETS
    from .settings import load_settings

    _print_link(load_settings(defaults=DEMO_SECRETS), tenant, email, phone, scope, campaign)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"receiver: configuration error: {exc}", err=True)
        sys.exit(2)
