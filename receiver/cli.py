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


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"receiver: configuration error: {exc}", err=True)
        sys.exit(2)
