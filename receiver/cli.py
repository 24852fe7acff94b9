"""The ``receiver`` command line: migrations, the worker, keys, the local CRM sandbox, a demo STOP,
reconciliation with Experience, backfill from the senders' own records."""

import sys

import click

from .errors import ConfigError


def _settings(defaults: dict[str, str] | None = None):
    """The settings every command starts from: read once, each source's options checked by its kind."""
    from .settings import load_settings
    from .sources import configure

    return configure(load_settings(defaults=defaults))


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

    settings = _settings()
    upgrade(settings.database_url, settings.identity_key)
    click.echo("database is at the newest migration")


@cli.command()
def worker():
    """Deliver recorded opt-outs to the CRMs until SIGTERM."""
    from .ledger.db import make_engine
    from .logs import configure_logging
    from .worker import Worker

    settings = _settings()
    configure_logging(settings.log_level)
    # A connection per lane thread, and one for the claims: no thread waits on the pool.
    Worker(settings, make_engine(settings.database_url, pool_size=settings.worker.threads + 1)).run()


@cli.group()
def keys():
    """Secrets."""


@keys.command("generate")
@click.option("--instance", is_flag=True,
              help="keep them in instance/ as development secrets (those not there yet) instead of printing")
def keys_generate(instance):
    """Print a new RECEIPT_SIGNING_KEY and SECRET_KEY."""
    from .keys import keep_in_instance, new_keys

    if not instance:
        for name, value in new_keys().items():
            click.echo(f"{name}={value}")
        return
    made = keep_in_instance()
    for path in made:
        click.echo(f"made {path}")
    if not made:
        click.echo("the development secrets are already in instance/")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9000, show_default=True, type=int)
def sandbox(host, port):
    """Run the local fake CRMs (Experience JSON, CRM Text XML) that make run and the tests use."""
    from .dev.sandbox import serve
    from .logs import configure_logging

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
@click.option("--missed", is_flag=True,
              help="no webhook: put the text in the sandbox's Twilio message log, for `receiver backfill` to find")
def demo_sms(text, phone, source, url, missed):
    """Text TEXT from PHONE, signed as Twilio signs it, and print the signed answer."""
    from .dev.demo import seed_missed_sms, send_sms
    from .dev.run import DEMO_SECRETS

    if missed:
        seed_missed_sms(_settings(DEMO_SECRETS), text, phone, source)
    else:
        send_sms(_settings(DEMO_SECRETS), text, phone, source, url)


@demo.command("backfill")
@click.option("--source", default=None, help="only this source (default: every source with a backfill option)")
def demo_backfill(source):
    """`receiver backfill` with the settings of the service make run started (its demo settings)."""
    from .dev.run import DEMO_SECRETS

    _backfill(_settings(DEMO_SECRETS), source, None)


@demo.command("link")
@_link_options
def demo_link(tenant, email, phone, scope, campaign):
    """Print an unsubscribe link of the service make run started (its demo settings)."""
    from .dev.run import DEMO_SECRETS

    _print_link(_settings(DEMO_SECRETS), tenant, email, phone, scope, campaign)


@cli.command()
@click.option("--tenant", default=None, help="only this tenant (default: every tenant with experience)")
@click.option("--since", default=None, type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="start a new pass from this date (default: resume a stopped pass, else go on from the last one)")
def reconcile(tenant, since):
    """Record Experience's unsubscribed list as signals of source experience-sync (one line per tenant)."""
    from .backfill.reconcile import Reconciler, tenants_to_reconcile

    _read_back(_settings(), tenants_to_reconcile, Reconciler, tenant, "--tenant", since,
               "no tenant has experience settings: nothing to reconcile")


@cli.command()
@click.option("--source", default=None, help="only this source (default: every source with a backfill option)")
@click.option("--since", default=None, type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="start a new pass from this date (default: resume a stopped pass, else go on from the last one)")
def backfill(source, since):
    """Record what each source's provider kept (Twilio's messages, the ESPs' suppressions) that its webhooks
    lost; one line per source, exit 1 if any stopped on an error."""
    _backfill(_settings(), source, since)


def _backfill(settings, source, since) -> None:
    from .backfill.run import Backfiller, sources_to_backfill

    _read_back(settings, sources_to_backfill, Backfiller, source, "--source", since,
               "no source has a backfill option: nothing to read")


def _read_back(settings, names_of, reader_class, wanted, option: str, since, nothing: str) -> None:
    """One pass of a reader of a provider's own record (reconcile's or backfill's) per name, a line each;
    exit 1 if any stopped on an error."""
    from .ledger.db import make_engine
    from .logs import configure_logging

    configure_logging(settings.log_level)
    try:
        names = names_of(settings, wanted)
    except LookupError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    engine = make_engine(settings.database_url)
    reader, failed = reader_class(settings, engine), False
    try:
        for name in names:
            summary = reader.run(name, since.strftime("%Y-%m-%d") if since else None)
            click.echo(summary.line(), err=summary.error is not None)
            failed = failed or summary.error is not None
    finally:
        engine.dispose()
    if not names:
        click.echo(nothing)
    if failed:
        sys.exit(1)


@cli.command()
def status():
    """Print the delivery queue (as /readyz reports it) and the deliveries by status; exit 1 without a database."""
    from sqlalchemy.exc import SQLAlchemyError

    from .ledger.db import make_engine
    from .ledger.health import queue_health

    engine = make_engine(_settings().database_url)
    try:
        health = queue_health(engine, by_status=True)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first_line = (str(cause).strip().splitlines() or [""])[0]
        click.echo(f"receiver: database unreachable or not migrated: {type(cause).__name__}: {first_line}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    click.echo("database: ok")
    click.echo(f"queue_depth: {health.queue_depth}")
    click.echo(f"oldest_pending_age_seconds: {health.oldest_pending_age_seconds}")
    click.echo("deliveries: " + " ".join(f"{name}={count}" for name, count in health.by_status.items()))


@cli.command()
@click.option("--tenant", default=None, help="only this tenant's chain (default: every tenant)")
def verify(tenant):
    """Recompute the signals' hash chains; exit 1 naming the first row that does not match."""
    from .ledger.chain import check
    from .ledger.db import make_engine

    settings = _settings()
    if tenant is not None and tenant not in settings.tenants:
        raise click.BadParameter(f"unknown tenant {tenant!r}", param_hint="--tenant")
    engine = make_engine(settings.database_url)
    try:
        counted, problem = check(engine, settings.identity_key, tenant)
    finally:
        engine.dispose()
    if problem:
        click.echo(f"receiver verify: {problem}", err=True)
        sys.exit(1)
    click.echo(f"chain ok: {counted} signals")


@cli.command()
def prune():
    """Forget what is past its [retention] days (never an opt-out); prints what was removed."""
    from .ledger.db import make_engine
    from .ledger.retention import prune as prune_ledger

    settings = _settings()
    removed = prune_ledger(make_engine(settings.database_url), settings.retention)
    click.echo(", ".join(f"{kind.replace('_', ' ')}: {count}" for kind, count in removed.items()))


from .cli_operators import demo_operator, operator  # noqa: E402 (defined there, registered here)

cli.add_command(operator)
demo.add_command(demo_operator, "operator")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"receiver: configuration error: {exc}", err=True)
        sys.exit(2)
