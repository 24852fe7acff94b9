"""The registry of source kinds: adding a kind is one module and one line here.

Configured sources are the senders' webhooks (``KINDS``). The receiver's own channels
(``OWN``) need no configuration: every tenant has each of them, under the channel's name.
"""

from dataclasses import replace

from marshmallow import ValidationError

from ..settings import Settings, SourceConfig
from . import email_link, erasure, experience_sync, review, staff, web_form
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
OWN = frozenset({email_link.NAME, web_form.NAME, experience_sync.NAME, staff.NAME, review.NAME, erasure.NAME})


def validate_source_options(kind: str, options: dict) -> dict:
    """A kind's options, checked by its own schema (raises marshmallow.ValidationError)."""
    if kind not in KINDS:
        raise ValidationError({"kind": [f"unknown kind {kind!r}; known: {', '.join(sorted(KINDS))}"]})
    return KINDS[kind].options_schema().load(options)


def own_source(name: str, tenant: str) -> SourceConfig:
    """The config of one of the receiver's own channels for ``tenant``: the channel is its name and kind."""
    if name not in OWN:
        raise KeyError(f"{name!r} is not one of the receiver's own channels")
    return SourceConfig(name=name, kind=name, tenant=tenant)


def configure(settings: Settings) -> Settings:
    """``settings`` with each source's options checked and completed by its kind's own schema.

    Settings keep options as written (loading them imports no source kind); each process applies
    this once at start, so a bad option stops it with one line naming the option.
    """
    checked = {}
    for name, config in settings.sources.items():
        if name in OWN:  # its signals would read as the receiver's own channel's
            raise settings.invalid(["is the name of one of the receiver's own channels; choose another"],
                                   f"sources.{name}")
        try:
            options = validate_source_options(config.kind, dict(config.options))
        except ValidationError as exc:
            raise settings.invalid(exc.messages, f"sources.{name}") from None
        checked[name] = replace(config, options=options)
    return replace(settings, sources=checked)
