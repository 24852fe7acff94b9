"""The registry of source kinds: adding a kind is one module and one line here."""

from marshmallow import ValidationError

from .base import Source
from .crmtext import CrmTextSource
from .mailgun import MailgunSource
from .postmark import PostmarkSource
from .sendgrid import SendGridSource
from .standard_webhooks import StandardWebhooksSource
from .twilio import TwilioSource

KINDS: dict[str, type[Source]] = {
    TwilioSource.kind: TwilioSource,
    CrmTextSource.kind: CrmTextSource,
    StandardWebhooksSource.kind: StandardWebhooksSource,
    SendGridSource.kind: SendGridSource,
    MailgunSource.kind: MailgunSource,
    PostmarkSource.kind: PostmarkSource,
}


def validate_source_options(kind: str, options: dict) -> dict:
    """A kind's options, checked by its own schema (raises marshmallow.ValidationError)."""
    if kind not in KINDS:
        raise ValidationError({"kind": [f"unknown kind {kind!r}; known: {', '.join(sorted(KINDS))}"]})
    return KINDS[kind].options_schema().load(options)
