"""``receiver demo sms``: sends a Twilio-signed SMS to a running service, as a newcomer's first try."""

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
