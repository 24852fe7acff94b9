"""Each source kind's ``backfill = {…}`` option, checked by the kind's own options schema, and the reader it
builds; Experience's reader, built from the tenant's ``experience`` settings."""

from marshmallow import Schema, fields, validate

from ..identities import normalize_phone, valid_or_none
from ..settings import ExperienceConfig, SourceConfig, WorkerConfig
from . import experience, mailgun, postmark, sendgrid, twilio
from .pages import ListClient, RetryPolicy

_BASE_URL = fields.Url(require_tld=False, schemes={"http", "https"})
_TEXT = validate.Length(1, 500)


class _Backfill(Schema):
    """Unknown keys are refused (marshmallow's default), so a misspelt credential fails at start."""

    base_url = _BASE_URL


class _Number(fields.String):
    def _deserialize(self, value, attr, data, **kwargs) -> str:
        number = valid_or_none(normalize_phone, super()._deserialize(value, attr, data, **kwargs))
        if number is None:
            raise self.make_error("invalid")
        return number

    default_error_messages = {"invalid": "not a phone number (E.164, e.g. +15550001111)"}


class TwilioBackfill(_Backfill):
    account_sid = fields.String(required=True, validate=validate.Regexp(r"^AC[0-9a-fA-F]{32}$"))
    to = fields.List(_Number(), required=True, validate=validate.Length(min=1))


class SendGridBackfill(_Backfill):
    api_key = fields.String(required=True, validate=_TEXT)


class MailgunBackfill(_Backfill):
    api_key = fields.String(required=True, validate=_TEXT)
    domain = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9.-]{1,253}$"))


class PostmarkBackfill(_Backfill):
    server_token = fields.String(required=True, validate=_TEXT)
    stream = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$"))


def option(schema: type[Schema]) -> fields.Nested:
    """The ``backfill`` field a source kind's options schema declares (absent: no backfill)."""
    return fields.Nested(schema, load_default=None, allow_none=True)


def retry_policy(worker: WorkerConfig) -> RetryPolicy:
    """Reads are retried on the deliveries' schedule."""
    return RetryPolicy(worker.max_attempts, worker.backoff_base_seconds, worker.backoff_max_seconds)


def reader(config: SourceConfig, worker: WorkerConfig, **client_options):
    """The provider list reader of a source with a ``backfill`` option (its options already checked)."""
    options, kind = config.options["backfill"], config.kind
    retry = retry_policy(worker)

    def client(module, **auth) -> ListClient:
        return ListClient(module.PROVIDER, options.get("base_url") or module.BASE_URL, retry=retry,
                          **auth, **client_options)

    if kind == "twilio":
        token = config.options["auth_token"][0]  # the current token while rotating
        return twilio.TwilioBackfill(client(twilio, auth=(options["account_sid"], token)),
                                     options["account_sid"], options["to"])
    if kind == "sendgrid":
        return sendgrid.SendGridBackfill(client(sendgrid, headers=sendgrid.bearer(options["api_key"])))
    if kind == "mailgun":
        return mailgun.MailgunBackfill(client(mailgun, auth=("api", options["api_key"])), options["domain"])
    if kind == "postmark":
        return postmark.PostmarkBackfill(client(postmark, headers=postmark.server_token(options["server_token"])),
                                         options["stream"])
    raise LookupError(f"source kind {kind!r} has no backfill")


def experience_reader(config: ExperienceConfig, worker: WorkerConfig, **client_options) -> experience.ExperienceBackfill:
    """The reader of one hotel's Experience list, within the ``timeout`` its deliveries have."""
    client = ListClient(experience.PROVIDER, config.base_url, headers=experience.bearer(config), deadline=config.timeout,
                        retry=retry_policy(worker), **client_options)
    return experience.ExperienceBackfill(client, config.retrieve_path)
