"""Shared test helpers: settings for a temporary root, databases on SQLite or PostgreSQL."""

import base64
import os
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import standardwebhooks.webhooks
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import create_engine, text

from receiver import clock
from receiver.ledger.db import make_engine
from receiver.ledger.migrate import upgrade
from receiver.ledger.models import Base
from receiver.settings import load_settings
from receiver.sources import configure

TWILIO_TOKEN = "test-auth-token"
CRMTEXT_TOKEN = "callback-token"
PUBLIC_BASE_URL = "https://optout.example.com"


def config_toml(sandbox_url: str = "http://127.0.0.1:9", extra: str = "", service: str = "") -> str:
    """The test config; ``extra`` is appended (``SANDBOX_URL`` in it becomes the sandbox's URL),
    ``service`` adds keys to ``[service]``."""
    extra = extra.replace("SANDBOX_URL", sandbox_url)
    return f"""
[service]
public_base_url = "{PUBLIC_BASE_URL}"
{service}

[tenants.grand]
display_name = "Grand Hotel"
experience = {{ base_url = "{sandbox_url}/experience", partner_token = "env:XP_PARTNER_TOKEN", hotel_token = "grand-hotel", timeout = 2.0 }}
crmtext = {{ base_url = "{sandbox_url}/crmtext/smapi/rest", user = "grand", password = "env:CRMTEXT_PASSWORD", keyword = "GRAND", timeout = 2.0 }}

[tenants.smsonly]
crmtext = {{ base_url = "{sandbox_url}/crmtext/smapi/rest", user = "small", password = "pw", keyword = "SMALL", timeout = 2.0 }}

[sources.twilio]
kind = "twilio"
tenant = "grand"
auth_token = "env:TWILIO_AUTH_TOKEN"
help_text = "Grand Hotel: reply STOP to opt out."

[sources.crmtext]
kind = "crmtext"
tenant = "grand"
token = "{CRMTEXT_TOKEN}"

[worker]
lease_seconds = 13  # above the default CRM timeouts (Experience 10 s) + 2 s, as settings require
poll_seconds = 0.1
backoff_base_seconds = 0.2
backoff_max_seconds = 1.0
max_attempts = 4
{extra}
"""


def base_env(database_url: str, config_path: Path) -> dict[str, str]:
    return {
        "RECEIVER_ENV": "test",
        "DATABASE_URL": database_url,
        "RECEIVER_CONFIG_FILE": str(config_path),
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "XP_PARTNER_TOKEN": "partner",
        "CRMTEXT_PASSWORD": "secret",
        "SECRET_KEY": "test-secret-key-of-at-least-32-bytes",
        "RECEIPT_SIGNING_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "RECEIVER_IDENTITY_KEY": "test-identity-key-of-at-least-32-bytes",
    }


def make_settings(root: Path, database_url: str, toml: str | None = None, **env):
    """Settings as a process starts from them: loaded, each source's options checked by its kind."""
    config = root / "receiver.toml"
    config.write_text(toml if toml is not None else config_toml())
    return configure(load_settings({**base_env(database_url, config), **env}, root=root))


def pin_clock(monkeypatch, at: float | Callable[[], float]) -> None:
    """Pin the service's clock (receiver.clock) at ``at`` seconds, or at what ``at()`` answers on each read.

    The standardwebhooks library checks its ±5-minute window with its own ``datetime.now()``, so it
    is pinned too: the one way the suite sets the time.
    """
    read = at if callable(at) else (lambda: at)

    class Pinned(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(read(), tz)

    monkeypatch.setattr(clock, "now_ns", lambda: round(read() * 1e9))
    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", Pinned)


def test_database_base() -> str | None:
    """The PostgreSQL URL the suite runs against (DATABASE_URL), or None for SQLite."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql")) else None


def fresh_database(tmp: Path) -> str:
    """A new, migrated, empty database: a SQLite file, or a new database on the PostgreSQL server."""
    base = test_database_base()
    if base is None:
        url = f"sqlite:///{tmp / ('ledger-' + secrets.token_hex(4) + '.db')}"
    else:
        parts = urlsplit(base.replace("postgres://", "postgresql://", 1))
        name = f"{parts.path.lstrip('/')}_{secrets.token_hex(4)}"
        admin = create_engine(urlunsplit(parts._replace(scheme="postgresql+psycopg")), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = urlunsplit(parts._replace(scheme="postgresql+psycopg", path="/" + name))
    upgrade(url)
    return url


def drop_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    parts = urlsplit(url)
    admin = create_engine(
        urlunsplit(parts._replace(path="/" + parts.path.lstrip("/").rsplit("_", 1)[0])),
        isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)'))
    admin.dispose()


def empty_tables(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


def twilio_signature(path: str, params: dict, *, token: str = TWILIO_TOKEN, query: str = "",
                     base_url: str = PUBLIC_BASE_URL) -> str:
    """X-Twilio-Signature as Twilio computes it, by Twilio's own SDK (never by our code)."""
    from twilio.request_validator import RequestValidator

    url = base_url + path + ("?" + query if query else "")
    return RequestValidator(token).compute_signature(url, params)


def twilio_sms(sid: str = "SM" + "0" * 32, body: str = "STOP", phone: str = "+15551234567", **extra) -> dict:
    """The form fields of one inbound SMS as Twilio posts them."""
    return {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC" + "1" * 32, "From": phone,
            "To": "+15559876543", "Body": body, "NumMedia": "0", "ToCity": "", **extra}


def verify_receipt(client, response) -> None:
    """What anyone holding the published keys does, with cryptography alone."""
    content = (f"{response.headers['webhook-id']}.{response.headers['webhook-timestamp']}.".encode()
               + response.get_data())
    signatures = [base64.b64decode(entry[4:]) for entry in response.headers["webhook-signature"].split(" ")
                  if entry.startswith("v1a,")]
    assert signatures
    for jwk in client.get("/.well-known/receipt-keys").get_json()["keys"]:
        x = jwk["x"]
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
        for signature in signatures:
            try:
                public.verify(signature, content)
                return
            except InvalidSignature:
                continue
    raise AssertionError("no published key verifies the receipt")
