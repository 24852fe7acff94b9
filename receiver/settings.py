"""Settings: the environment and the TOML config file, read and validated once into typed objects.

Nothing else in the service reads ``os.environ``. A missing or invalid setting raises
ConfigError with one line naming it; the CLI and the WSGI entry point turn that into a
non-zero exit without a traceback.
"""

import base64
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate

from .errors import ConfigError
from .rotation import comma_list

DEFAULT_DATABASE_URL = "sqlite:///instance/receiver.db"
MIN_KEY_BYTES = 32  # of a key that signs: shorter ones can be guessed
# A worker's lease must outlast one CRM call's whole deadline (a CRM's ``timeout``) by this much,
# the ledger writes around the call; otherwise a second worker takes the row over mid-call.
CALL_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class ExperienceConfig:
    base_url: str
    partner_token: str
    hotel_token: str
    opt_out_path: str = "/api/xp-unsubscribe/opt-out"
    retrieve_path: str = "/api/xp-unsubscribe/retrieve-opt-out"
    batch_size: int = 250
    sms_records: str = "phone"  # or "email-only": SMS states only for phones with a known email
    timeout: float = 10.0


@dataclass(frozen=True)
class CrmTextConfig:
    base_url: str
    user: str
    password: str
    keyword: str
    timeout: float = 6.0


@dataclass(frozen=True)
class TenantConfig:
    name: str
    experience: ExperienceConfig | None = None
    crmtext: CrmTextConfig | None = None
    display_name: str | None = None  # shown on the unsubscribe page; the tenant's key by default
    forms_origins: tuple[str, ...] = ()  # site origins allowed to post /forms/unsubscribe from a browser (CORS)
    forms_return_url: str | None = None  # a 303 to it after a /forms/unsubscribe post is stored

    @property
    def title(self) -> str:
        return self.display_name or self.name


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    tenant: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerConfig:
    lease_seconds: int = 30
    poll_seconds: float = 1.0
    claim_size: int = 250
    max_attempts: int = 10
    max_age_hours: float = 72.0
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 3600.0


@dataclass(frozen=True)
class RetentionConfig:
    """How long ``receiver prune`` keeps what is not evidence of an opt-out (days)."""

    attempts_days: float = 90.0  # CRM attempts of finished deliveries
    ignored_signals_days: float = 90.0  # HELP / other texts and ignored ESP events (never opt-outs)


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    secret_keys: tuple[str, ...]
    receipt_keys: tuple[str, ...]
    admin_token: str | None
    public_base_url: str
    tenants: dict[str, TenantConfig]
    sources: dict[str, SourceConfig]
    worker: WorkerConfig
    instance_path: Path
    log_level: str = "INFO"
    port: int = 8000
    web_concurrency: int = 3
    proxy_hops: int = 0  # proxies in front that append X-Forwarded-For (1 on Heroku's router)
    forms_rate_limit: int = 10  # posts a minute: to /forms/unsubscribe per client address, to /u/<token> per link
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    @property
    def production(self) -> bool:
        return self.env == "production"


class _ExperienceSchema(Schema):
    class Meta:
        unknown = RAISE

    base_url = fields.Url(required=True, require_tld=False)
    partner_token = fields.String(required=True, validate=validate.Length(min=1))
    hotel_token = fields.String(required=True, validate=validate.Length(min=1))
    opt_out_path = fields.String(validate=validate.Regexp(r"^/"))
    retrieve_path = fields.String(validate=validate.Regexp(r"^/"))
    batch_size = fields.Integer(validate=validate.Range(1, 250))
    sms_records = fields.String(validate=validate.OneOf(["phone", "email-only"]))
    timeout = fields.Float(validate=validate.Range(0.1, 120))


class _CrmTextSchema(Schema):
    class Meta:
        unknown = RAISE

    base_url = fields.Url(required=True, require_tld=False)
    user = fields.String(required=True, validate=validate.Length(min=1))
    password = fields.String(required=True, validate=validate.Length(min=1))
    keyword = fields.String(required=True, validate=validate.Length(min=1))
    timeout = fields.Float(validate=validate.Range(0.1, 60))


class _TenantSchema(Schema):
    class Meta:
        unknown = RAISE

    experience = fields.Nested(_ExperienceSchema)
    crmtext = fields.Nested(_CrmTextSchema)
    display_name = fields.String(validate=validate.Length(1, 200))
    forms_origins = fields.List(fields.String(validate=validate.Regexp(
        r"^https?://[^/\s]+$", error="must be an origin such as https://www.example.com (no path)")))
    forms_return_url = fields.Url(require_tld=False)


class _SourceSchema(Schema):
    class Meta:
        unknown = INCLUDE  # kind-specific options, validated by the source kind's own schema

    kind = fields.String(required=True)
    tenant = fields.String(required=True)


class _WorkerSchema(Schema):
    class Meta:
        unknown = RAISE

    lease_seconds = fields.Integer(validate=validate.Range(5, 3600))
    poll_seconds = fields.Float(validate=validate.Range(0.01, 60))
    claim_size = fields.Integer(validate=validate.Range(1, 1000))
    max_attempts = fields.Integer(validate=validate.Range(1, 1000))
    max_age_hours = fields.Float(validate=validate.Range(0.001, 24 * 365))
    backoff_base_seconds = fields.Float(validate=validate.Range(0.01, 3600))
    backoff_max_seconds = fields.Float(validate=validate.Range(0.01, 86400))


class _RetentionSchema(Schema):
    class Meta:
        unknown = RAISE

    attempts_days = fields.Float(validate=validate.Range(1, 36500))
    ignored_signals_days = fields.Float(validate=validate.Range(1, 36500))


class _ServiceSchema(Schema):
    class Meta:
        unknown = RAISE

    public_base_url = fields.Url(required=True, require_tld=False)
    proxy_hops = fields.Integer(validate=validate.Range(0, 5))
    forms_rate_limit = fields.Integer(validate=validate.Range(1, 100000))


class _FileSchema(Schema):
    class Meta:
        unknown = RAISE

    service = fields.Nested(_ServiceSchema)
    worker = fields.Nested(_WorkerSchema)
    retention = fields.Nested(_RetentionSchema)
    tenants = fields.Dict(keys=fields.String(), values=fields.Nested(_TenantSchema))
    sources = fields.Dict(keys=fields.String(), values=fields.Nested(_SourceSchema))


_DICT_FIELDS = ("tenants", "sources")  # marshmallow files a Dict entry's errors under "value"


def _first_error(messages: Any, path: str) -> str:
    """Flatten marshmallow's nested messages into 'a.b.c: message' (the first one)."""
    keys = []
    while isinstance(messages, dict):
        key, messages = next(iter(messages.items()))
        if key != "_schema":
            keys.append(str(key))
    if not path and len(keys) > 2 and keys[0] in _DICT_FIELDS and keys[2] == "value":
        del keys[2]  # tenants.grand.value.x is the setting tenants.grand.x
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


def _instance_secret(instance: Path, name: str, make) -> str:
    """A development secret kept in instance/ so restarts keep it."""
    path = instance / name
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _database_url(raw: str | None, instance: Path) -> str:
    url = raw or f"sqlite:///{instance / 'receiver.db'}"
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not url.startswith(("sqlite:", "postgresql+")):
        raise ConfigError("DATABASE_URL: only sqlite:// and postgres:// URLs are supported")
    return url


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
    from .receipts import decode_seed

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


def load_settings(environ: dict[str, str] | None = None, *, root: Path | None = None,
                  defaults: dict[str, str] | None = None) -> Settings:
    """Read the environment and the config file once; raise ConfigError naming the bad setting.

    ``defaults`` are used for variables the environment does not set (``make run``'s demo values).
    """
    from .sources import validate_source_options  # the source kinds own their option schemas

    environ = {**(defaults or {}), **(os.environ if environ is None else environ)}
    root = root or Path.cwd()
    instance = root / "instance"
    env = environ.get("RECEIVER_ENV", "development")
    if env not in ("development", "production", "test"):
        raise ConfigError("RECEIVER_ENV: must be development, production or test")
    production = env == "production"
    for name in ("DATABASE_URL", "SECRET_KEY", "RECEIPT_SIGNING_KEY"):
        if production and not environ.get(name):
            raise ConfigError(f"{name}: required when RECEIVER_ENV=production")

    config_path = environ.get("RECEIVER_CONFIG_FILE") or ("receiver.toml" if (root / "receiver.toml").exists() else "")
    raw: dict[str, Any] = {}
    if config_path:
        path = Path(config_path) if Path(config_path).is_absolute() else root / config_path
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"RECEIVER_CONFIG_FILE: {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"RECEIVER_CONFIG_FILE: {path} is not valid TOML ({exc})") from None
    try:
        data = _FileSchema().load(_resolve_env(raw, environ, ""))
    except ValidationError as exc:
        raise ConfigError(f"{config_path}: {_first_error(exc.messages, '')}") from None

    tenants = {
        name: TenantConfig(
            name=name,
            experience=ExperienceConfig(**t["experience"]) if "experience" in t else None,
            crmtext=CrmTextConfig(**t["crmtext"]) if "crmtext" in t else None,
            display_name=t.get("display_name"),
            forms_origins=tuple(o.rstrip("/") for o in t.get("forms_origins", ())),
            forms_return_url=t.get("forms_return_url"),
        )
        for name, t in data.get("tenants", {}).items()
    }
    worker = WorkerConfig(**data.get("worker", {}))
    _check_lease(worker, tenants, config_path)
    sources = {}
    for name, s in data.get("sources", {}).items():
        options = {k: v for k, v in s.items() if k not in ("kind", "tenant")}
        if s["tenant"] not in tenants:
            raise ConfigError(f"{config_path}: sources.{name}.tenant: unknown tenant {s['tenant']!r}")
        try:
            options = validate_source_options(s["kind"], options)
        except ValidationError as exc:
            raise ConfigError(f"{config_path}: {_first_error(exc.messages, f'sources.{name}')}") from None
        sources[name] = SourceConfig(name=name, kind=s["kind"], tenant=s["tenant"], options=options)

    secret_raw = environ.get("SECRET_KEY") or _instance_secret(instance, "secret_key", lambda: secrets.token_urlsafe(32))
    receipt_raw = environ.get("RECEIPT_SIGNING_KEY") or _instance_secret(
        instance, "receipt_signing_key", lambda: base64.b64encode(secrets.token_bytes(32)).decode()
    )
    service = data.get("service", {})
    public_base_url = service.get("public_base_url") or f"http://localhost:{environ.get('PORT', '8000')}"
    if urlsplit(public_base_url).path not in ("", "/"):
        raise ConfigError("service.public_base_url: must not have a path")
    return Settings(
        env=env,
        database_url=_database_url(environ.get("DATABASE_URL"), instance),
        secret_keys=_secret_keys(secret_raw),
        receipt_keys=_receipt_keys(receipt_raw),
        admin_token=environ.get("RECEIVER_ADMIN_TOKEN") or None,
        public_base_url=public_base_url.rstrip("/"),
        tenants=tenants,
        sources=sources,
        worker=worker,
        retention=RetentionConfig(**data.get("retention", {})),
        proxy_hops=service.get("proxy_hops", 0),
        forms_rate_limit=service.get("forms_rate_limit", 10),
        instance_path=instance,
        log_level=_log_level(environ),
        port=_positive_int(environ, "PORT", 8000),
        web_concurrency=_positive_int(environ, "WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1),
    )
