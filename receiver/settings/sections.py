"""The config file's tables as frozen dataclasses: each setting declared once, its schema made from it.

A setting is a dataclass field carrying its default and its marshmallow field (type, range);
``@section`` generates the table's schema from those fields, and loading builds the dataclass.
"""

import dataclasses
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load, validate


def setting(default: Any = MISSING, kind: type[fields.Field] = fields.String, **options) -> Any:
    """A dataclass field declaring its marshmallow field (type, range) beside its default: the setting, once."""
    required = default is MISSING
    declared = kind(required=required, **({} if required else {"load_default": default}), **options)
    return field(default=default, metadata={"field": declared})


class _Section(Schema):
    """Loads one TOML table into its frozen dataclass; unknown keys are refused unless a field takes the rest."""

    section: ClassVar[type]
    rest: ClassVar[str | None] = None

    def __init__(self, name: str | None = None, **kwargs):
        super().__init__(unknown=INCLUDE if self.rest else None, **kwargs)
        self.name = name  # the table's key, for named tables ([tenants.<name>])

    @post_load
    def _build(self, data: dict, **kwargs):
        declared = {k: v for k, v in data.items() if k in self.declared_fields}
        if self.rest:
            declared[self.rest] = {k: v for k, v in data.items() if k not in self.declared_fields}
        return self.section(**declared) if self.name is None else self.section(name=self.name, **declared)


def section(cls=None, *, rest: str | None = None):
    """Make ``cls`` a frozen dataclass whose ``Schema`` is generated from its fields' declared settings."""
    def make(cls):
        cls = dataclass(frozen=True)(cls)
        declared = {f.name: f.metadata["field"] for f in dataclasses.fields(cls) if "field" in f.metadata}
        cls.Schema = type(f"{cls.__name__}Schema", (_Section,), {**declared, "section": cls, "rest": rest})
        return cls
    return make(cls) if cls is not None else make


class _Tuple(fields.List):
    def _deserialize(self, value, attr, data, **kwargs) -> tuple:
        return tuple(super()._deserialize(value, attr, data, **kwargs))


class _Named(fields.Field):
    """A table of named sections (``[tenants.<name>]``): each loaded by its section's schema, named by its key."""

    def __init__(self, section: type, **kwargs):
        super().__init__(load_default=dict, **kwargs)
        self.section = section

    def _deserialize(self, value, attr, data, **kwargs) -> dict:
        if not isinstance(value, dict):
            raise ValidationError("must be a table")
        loaded, errors = {}, {}
        for name, item in value.items():
            try:
                loaded[name] = self.section.Schema(name=name).load(item)
            except ValidationError as exc:
                errors[name] = exc.messages
        if errors:
            raise ValidationError(errors)
        return loaded


@section
class ExperienceConfig:
    base_url: str = setting(kind=fields.Url, require_tld=False)
    partner_token: str = setting(validate=validate.Length(min=1))
    hotel_token: str = setting(validate=validate.Length(min=1))
    opt_out_path: str = setting("/api/xp-unsubscribe/opt-out", validate=validate.Regexp(r"^/"))
    retrieve_path: str = setting("/api/xp-unsubscribe/retrieve-opt-out", validate=validate.Regexp(r"^/"))
    batch_size: int = setting(250, fields.Integer, validate=validate.Range(1, 250))
    # "email-only": SMS states only for phones with a known email
    sms_records: str = setting("phone", validate=validate.OneOf(["phone", "email-only"]))
    timeout: float = setting(10.0, fields.Float, validate=validate.Range(0.1, 120))
    # lanes (issue 16): batches of this hotel sent at once, and started per second at most (none: no cap)
    concurrency: int = setting(4, fields.Integer, validate=validate.Range(1, 64))
    max_per_second: float | None = setting(None, fields.Float, allow_none=True, validate=validate.Range(0.01, 10000))


@section
class CrmTextConfig:
    base_url: str = setting(kind=fields.Url, require_tld=False)
    user: str = setting(validate=validate.Length(min=1))
    password: str = setting(validate=validate.Length(min=1))
    keyword: str = setting(validate=validate.Length(min=1))
    timeout: float = setting(6.0, fields.Float, validate=validate.Range(0.1, 60))
    # lanes (issue 16): deliveries of this store called at once, and started per second at most (none: no cap)
    concurrency: int = setting(4, fields.Integer, validate=validate.Range(1, 64))
    max_per_second: float | None = setting(None, fields.Float, allow_none=True, validate=validate.Range(0.01, 10000))


@section
class TenantConfig:
    name: str  # the key under [tenants]
    experience: ExperienceConfig | None = setting(None, fields.Nested, nested=ExperienceConfig.Schema)
    crmtext: CrmTextConfig | None = setting(None, fields.Nested, nested=CrmTextConfig.Schema)
    # shown on the unsubscribe page; the tenant's key by default
    display_name: str | None = setting(None, validate=validate.Length(1, 200))
    # site origins allowed to post /forms/unsubscribe from a browser (CORS)
    forms_origins: tuple[str, ...] = setting((), _Tuple, cls_or_instance=fields.String(validate=validate.Regexp(
        r"^https?://[^/\s]+$", error="must be an origin such as https://www.example.com (no path)")))
    # a 303 to it after a /forms/unsubscribe post is stored
    forms_return_url: str | None = setting(None, fields.Url, require_tld=False)
    # Compliance clocks (issue 15): which regimes' deadlines apply, business days of which calendar
    # in which zone (UTC when none); names checked at load (settings.compliance).
    regimes: tuple[str, ...] = setting(("tcpa", "can-spam", "gmail-yahoo"), _Tuple, cls_or_instance=fields.String())
    calendar: str = setting("US", validate=validate.Length(1, 40))
    timezone: str | None = setting(None, validate=validate.Length(1, 64))

    @property
    def title(self) -> str:
        return self.display_name or self.name


@section(rest="options")
class SourceConfig:
    name: str
    kind: str = setting()
    tenant: str = setting()
    # as written: the source kind's own schema checks them (receiver.sources.configure)
    options: dict[str, Any] = field(default_factory=dict)


@section
class WorkerConfig:
    lease_seconds: int = setting(30, fields.Integer, validate=validate.Range(5, 3600))
    poll_seconds: float = setting(1.0, fields.Float, validate=validate.Range(0.01, 60))
    claim_size: int = setting(250, fields.Integer, validate=validate.Range(1, 1000))
    max_attempts: int = setting(10, fields.Integer, validate=validate.Range(1, 1000))
    max_age_hours: float = setting(72.0, fields.Float, validate=validate.Range(0.001, 24 * 365))
    backoff_base_seconds: float = setting(2.0, fields.Float, validate=validate.Range(0.01, 3600))
    backoff_max_seconds: float = setting(3600.0, fields.Float, validate=validate.Range(0.01, 86400))
    # lanes (issue 16): calls in flight at once in one worker process, over all lanes; each holds a
    # database connection while it writes, so the engine's pool is sized to match
    threads: int = setting(16, fields.Integer, validate=validate.Range(1, 256))


@section
class RetentionConfig:
    """How long ``receiver prune`` keeps what is not evidence of an opt-out (days)."""

    attempts_days: float = setting(90.0, fields.Float, validate=validate.Range(1, 36500))  # CRM attempts of finished deliveries
    # HELP / other texts and ignored ESP events (never opt-outs)
    ignored_signals_days: float = setting(90.0, fields.Float, validate=validate.Range(1, 36500))


@section
class BackfillConfig:
    """``[backfill]``: how often the worker runs every configured source's backfill (0: never)."""

    every_minutes: int = setting(15, fields.Integer, validate=validate.Range(0, 24 * 60))


def _no_path(url: str) -> None:
    if urlsplit(url).path not in ("", "/"):
        raise ValidationError("must not have a path")


@section
class ServiceConfig:
    # links are built on it, Twilio's signature is checked against it; http://localhost:$PORT by default
    public_base_url: str | None = setting(None, fields.Url, require_tld=False, validate=_no_path)
    proxy_hops: int = setting(0, fields.Integer, validate=validate.Range(0, 5))  # proxies that append X-Forwarded-For (1 on Heroku's router)
    # posts a minute: to /forms/unsubscribe per client address, to /u/<token> per link
    forms_rate_limit: int = setting(10, fields.Integer, validate=validate.Range(1, 100000))


@section
class AlertsConfig:
    """Operational webhooks (issue 15): Standard Webhooks-signed POSTs through the outbox; logged only without a url."""

    url: str | None = setting(None, fields.Url, require_tld=False)
    secret: str | None = setting(None, validate=validate.Length(min=1))  # whsec_…
    timeout: float = setting(5.0, fields.Float, validate=validate.Range(0.1, 60))


_FileSchema = Schema.from_dict({
    "service": fields.Nested(ServiceConfig.Schema, load_default=ServiceConfig()),
    "worker": fields.Nested(WorkerConfig.Schema, load_default=WorkerConfig()),
    "retention": fields.Nested(RetentionConfig.Schema, load_default=RetentionConfig()),
    "backfill": fields.Nested(BackfillConfig.Schema, load_default=BackfillConfig()),
    "alerts": fields.Nested(AlertsConfig.Schema, load_default=AlertsConfig()),
    "tenants": _Named(TenantConfig),
    "sources": _Named(SourceConfig),
}, name="FileSchema")


def load_file(raw: dict) -> dict:
    """The config file's tables, loaded (raises marshmallow.ValidationError)."""
    return _FileSchema().load(raw)
