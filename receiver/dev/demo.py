"""``receiver demo sms``: sends a Twilio-signed SMS to a running service, as a newcomer's first try; with
``--missed``, puts it in the sandbox's Twilio message log instead, as a text whose webhook was lost."""

import secrets
from urllib.parse import urlencode

import click
import requests

from ..identities import normalize_phone
from ..settings import Settings
from ..sources.twilio import signature


def send_sms(settings: Settings, text: str, phone: str, source: str, url: str | None) -> None:
    config = settings.sources.get(source)
    if config is None or config.kind != "twilio":
        raise click.UsageError(f"--source {source}: no source of kind twilio with that name in the config")
    token = config.options["auth_token"][0]  # the current one, while rotating
    path = f"/hooks/{source}"
    params = {
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": config.options.get("account_sid", "AC" + "0" * 32),
        "From": normalize_phone(phone),
        "To": "+15550000000",
        "Body": text,
        "NumMedia": "0",
    }
    signed_url = settings.public_base_url + path
    headers = {"X-Twilio-Signature": signature(token, signed_url, list(params.items())),
               "Content-Type": "application/x-www-form-urlencoded"}
    answer = requests.post((url or settings.public_base_url).rstrip("/") + path, data=urlencode(params),
                           headers=headers, timeout=15)
    click.echo(f"HTTP {answer.status_code}")
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        if name in answer.headers:
            click.echo(f"{name}: {answer.headers[name]}")
    click.echo(answer.text)


def sandbox_twilio_account(base: str, account_sid: str, auth_token: str, timeout: float = 15) -> None:
    """The sandbox's fake Twilio account answers to the source's own credentials, as Twilio's does."""
    credentials = {"twilio": {"account_sid": account_sid, "auth_token": auth_token}}
    requests.post(f"{base}/_sandbox/providers/credentials", json=credentials, timeout=timeout).raise_for_status()


def seed_missed_sms(settings: Settings, text: str, phone: str, source: str) -> None:
    """Add an inbound text to the Twilio message log the source's backfill reads (the sandbox's fake)."""
    config = settings.sources.get(source)
    if config is None or config.kind != "twilio" or not config.options.get("backfill"):
        raise click.UsageError(f"--source {source}: no source of kind twilio with a backfill option in the config")
    backfill = config.options["backfill"]
    base = (backfill.get("base_url") or "").rstrip("/")
    if not base:
        raise click.UsageError(f"sources.{source}.backfill.base_url: --missed seeds the sandbox, which it must name")
    sandbox_twilio_account(base, backfill["account_sid"], config.options["auth_token"][0])
    message = {"from": normalize_phone(phone), "to": backfill["to"][0], "body": text, "direction": "inbound"}
    answer = requests.post(f"{base}/_sandbox/providers/twilio/messages", json=message, timeout=15)
    answer.raise_for_status()
    click.echo(f"added to the sandbox's Twilio message log (no webhook sent): {text!r} to {backfill['to'][0]}")
    click.echo("`receiver demo backfill` (or the worker's schedule) records it")
