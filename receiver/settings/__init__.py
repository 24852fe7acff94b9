"""Settings: the environment and the TOML config file, read and validated once into typed objects.

Nothing else in the service reads ``os.environ``. A missing or invalid setting raises
ConfigError with one line naming it; the CLI and the WSGI entry point turn that into a
non-zero exit without a traceback. Each setting is declared once (``sections.py``). Loading
only reads: development secrets are made by ``receiver keys generate --instance`` (``make run``
does it), and a source's own options are checked by the source registry
(``receiver.sources.configure``), so settings know no source kind.
"""

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marshmallow import ValidationError
from standardwebhooks import Webhook

from ..compliance.clocks import parse_regimes, tenant_calendar
from ..errors import ConfigError
from ..receipts import decode_seed
from ..rotation import comma_list
from .sections import (
    AlertsConfig,
    BackfillConfig,
    CrmTextConfig,
    ExperienceConfig,
    RetentionConfig,
    ServiceConfig,
    SourceConfig,
    TenantConfig,
    WorkerConfig,
    load_file,
)

__all__ = ["AlertsConfig", "BackfillConfig", "CrmTextConfig", "ExperienceConfig", "RetentionConfig", "ServiceConfig", "Settings", "SourceConfig",
           "TenantConfig", "WorkerConfig", "load_settings"]

MIN_KEY_BYTES = 32  # of a key that signs: shorter ones can be guessed
# A worker's lease must outlast one CRM call's whole deadline (a CRM's ``timeout``) by this much,
# the ledger writes around the call; otherwise a second worker takes the row over mid-call.
CALL_MARGIN_SECONDS = 2.0
# Outside production, a secret the environment does not set is read from this file in instance/.
INSTANCE_SECRETS = {"SECRET_KEY": "secret_key", "RECEIPT_SIGNING_KEY": "receipt_signing_key",
                    "RECEIVER_IDENTITY_KEY": "identity_key"}


def instance_folder(root: Path | None = None) -> Path:
    """Per-deployment files (the SQLite database, development secrets): ``instance/`` of the working directory."""
    return (root or Path.cwd()) / "instance"


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    secret_keys: tuple[str, ...]
    receipt_keys: tuple[str, ...]
    identity_key: bytes  # RECEIVER_IDENTITY_KEY: keys the chain's identity hashes
    admin_token: str | None
    public_base_url: str
    tenants: dict[str, TenantConfig]
    sources: dict[str, SourceConfig]
    worker: WorkerConfig
    retention: RetentionConfig
    instance_path: Path
    log_level: str
    port: int
    web_concurrency: int
    proxy_hops: int  # [service] (ServiceConfig)
    forms_rate_limit: int  # [service] (ServiceConfig)
    config_file: str = ""  # as named (RECEIVER_CONFIG_FILE), to name it in errors
    backfill: BackfillConfig = BackfillConfig()
    alerts: AlertsConfig = AlertsConfig()  # [alerts]

    @property
    def production(self) -> bool:
        return self.env == "production"

    def invalid(self, messages: Any, path: str) -> ConfigError:
        """The ConfigError for marshmallow's messages about the config file's table at ``path``."""
        return ConfigError(f"{self.config_file}: {_first_error(messages, path)}")


def _first_error(messages: Any, path: str) -> str:
    """Flatten marshmallow's nested messages into 'a.b.c: message' (the first one)."""
    keys = []
    while isinstance(messages, dict):
        key, messages = next(iter(messages.items()))
        if key != "_schema":
            keys.append(str(key))
    path = ".".join([path, *keys] if path else keys)
    if isinstance(messages, list):
        messages = messages[0]
    return f"{path}: {messages}"


def _resolve_env(value: Any, environ: dict[str, str], path: str) -> Any:
    """Replace every ``"env:NAME"`` string with the environment variable NAME."""
    if isinstance(value, dict):
        return {k: _resolve_env(v, environ, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if not environ.get(name):
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return environ[name]
    return value


def _check_lease(worker: WorkerConfig, tenants: dict[str, TenantConfig], config_path: str) -> None:
    for tenant in tenants.values():
        for crm in ("experience", "crmtext"):
            config = getattr(tenant, crm)
            if config is not None and worker.lease_seconds <= config.timeout + CALL_MARGIN_SECONDS:
                raise ConfigError(
                    f"{config_path}: worker.lease_seconds ({worker.lease_seconds}) must exceed "
                    f"tenants.{tenant.name}.{crm}.timeout ({config.timeout:g}) + {CALL_MARGIN_SECONDS:g} s")


def _admin_token(environ: dict[str, str], production: bool) -> str | None:
    """RECEIVER_ADMIN_TOKEN opens every tenant: in production, as long as a key that signs."""
    token = environ.get("RECEIVER_ADMIN_TOKEN") or None
    if production and token is not None and len(token.encode()) < MIN_KEY_BYTES:
        raise ConfigError(f"RECEIVER_ADMIN_TOKEN: shorter than {MIN_KEY_BYTES} bytes (a guessable bearer for every "
                          "tenant); generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


def _secret(environ: dict[str, str], name: str, instance: Path, production: bool) -> str:
    """A secret from the environment; outside production, else the development one kept in instance/."""
    if environ.get(name):
        return environ[name]
    if production:
        raise ConfigError(f"{name}: required when RECEIVER_ENV=production")
    path = instance / INSTANCE_SECRETS[name]
    if not path.exists():
        raise ConfigError(f"{name}: not set and no development key in {path}: run `receiver keys generate "
                          "--instance` (make run does) or set the variable")
    return path.read_text().strip()


def _database_url(raw: str | None, instance: Path) -> str:
    url = raw or f"sqlite:///{instance / 'receiver.db'}"
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not url.startswith(("sqlite:", "postgresql+")):
        raise ConfigError("DATABASE_URL: only sqlite:// and postgres:// URLs are supported")
    return url


def _check_compliance(tenants: dict[str, TenantConfig], config_path: str) -> None:
    """Each tenant's regimes, calendar and time zone exist (compliance.clocks says which do)."""
    for tenant in tenants.values():
        try:
            parse_regimes(tenant.regimes)
            tenant_calendar(tenant.calendar, tenant.timezone)
        except ValueError as exc:
            raise ConfigError(f"{config_path}: tenants.{tenant.name}.{exc}") from None


def _check_alerts(alerts: AlertsConfig, config_path: str) -> None:
    if alerts.url is None:
        return
    if not alerts.secret:
        raise ConfigError(f"{config_path}: alerts.secret: required with alerts.url (a whsec_… secret)")
    try:
        Webhook(alerts.secret)
    except Exception:  # the library raises binascii.Error, its own error or RuntimeError
        raise ConfigError(f"{config_path}: alerts.secret: not a Standard Webhooks secret (whsec_ and base64)") from None


def _identity_key(raw: str) -> bytes:
    key = raw.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"RECEIVER_IDENTITY_KEY: shorter than {MIN_KEY_BYTES} bytes "
                          "(`receiver keys generate` prints a good one)")
    return key


def _key_list(name: str, raw: str) -> tuple[str, ...]:
    try:
        return comma_list(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _secret_keys(raw: str) -> tuple[str, ...]:
    """SECRET_KEY's comma-separated keys (rotation): none empty, each long enough not to be guessed."""
    keys = _key_list("SECRET_KEY", raw)
    for position, key in enumerate(keys, 1):
        if len(key.encode()) < MIN_KEY_BYTES:
            raise ConfigError(f"SECRET_KEY: key #{position} is shorter than {MIN_KEY_BYTES} bytes "
                              "(`receiver keys generate` prints a good one)")
    return keys


def _receipt_keys(raw: str) -> tuple[str, ...]:
    keys = _key_list("RECEIPT_SIGNING_KEY", raw)
    for position, key in enumerate(keys, 1):
        try:
            decode_seed(key, position)
        except ValueError as exc:
            raise ConfigError(f"RECEIPT_SIGNING_KEY: {exc}") from None
    return keys


def _positive_int(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}: must be a positive whole number, not {raw!r}")
    return int(raw)


def _log_level(environ: dict[str, str]) -> str:
    level = environ.get("LOG_LEVEL", "INFO").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL: must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}")
    return level


def _read_file(config_path: str, root: Path) -> dict[str, Any]:
    if not config_path:
        return {}
    path = Path(config_path) if Path(config_path).is_absolute() else root / config_path
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"RECEIVER_CONFIG_FILE: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"RECEIVER_CONFIG_FILE: {path} is not valid TOML ({exc})") from None


def load_settings(environ: dict[str, str] | None = None, *, root: Path | None = None,
                  defaults: dict[str, str] | None = None) -> Settings:
    """Read the environment and the config file once; raise ConfigError naming the bad setting.

    ``defaults`` are used for variables the environment does not set (``make run``'s demo values).
    Reads only: nothing is written. A source's options are as written until
    ``receiver.sources.configure`` checks them.
    """
    environ = {**(defaults or {}), **(os.environ if environ is None else environ)}
    root = root or Path.cwd()
    instance = instance_folder(root)
    env = environ.get("RECEIVER_ENV", "development")
    if env not in ("development", "production", "test"):
        raise ConfigError("RECEIVER_ENV: must be development, production or test")
    production = env == "production"
    if production and not environ.get("DATABASE_URL"):
        raise ConfigError("DATABASE_URL: required when RECEIVER_ENV=production")
    secret_raw = _secret(environ, "SECRET_KEY", instance, production)
    receipt_raw = _secret(environ, "RECEIPT_SIGNING_KEY", instance, production)
    # Required in production: every ledger from migration 0010 on holds the chain it keys.
    identity_raw = _secret(environ, "RECEIVER_IDENTITY_KEY", instance, production)

    config_path = environ.get("RECEIVER_CONFIG_FILE") or ("receiver.toml" if (root / "receiver.toml").exists() else "")
    try:
        data = load_file(_resolve_env(_read_file(config_path, root), environ, ""))
    except ValidationError as exc:
        raise ConfigError(f"{config_path}: {_first_error(exc.messages, '')}") from None
    tenants, worker, service = data["tenants"], data["worker"], data["service"]
    _check_lease(worker, tenants, config_path)
    _check_compliance(tenants, config_path)
    _check_alerts(data["alerts"], config_path)
    for name, source in data["sources"].items():
        if source.tenant not in tenants:
            raise ConfigError(f"{config_path}: sources.{name}.tenant: unknown tenant {source.tenant!r}")
    port = _positive_int(environ, "PORT", 8000)
    return Settings(
        env=env,
        database_url=_database_url(environ.get("DATABASE_URL"), instance),
        secret_keys=_secret_keys(secret_raw),
        receipt_keys=_receipt_keys(receipt_raw),
        identity_key=_identity_key(identity_raw),
        admin_token=_admin_token(environ, production),
        public_base_url=(service.public_base_url or f"http://localhost:{port}").rstrip("/"),
        tenants=tenants,
        sources=data["sources"],
        worker=worker,
        retention=data["retention"],
        instance_path=instance,
        log_level=_log_level(environ),
        port=port,
        web_concurrency=_positive_int(environ, "WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1),
        proxy_hops=service.proxy_hops,
        forms_rate_limit=service.forms_rate_limit,
        config_file=config_path,
        backfill=data["backfill"],
        alerts=data["alerts"],
    )
