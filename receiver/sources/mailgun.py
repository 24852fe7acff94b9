"""Mailgun webhooks (not built yet: every request is refused)."""

from ..errors import BadSignature
from .base import JSON, HttpRequest, Source


class MailgunSource(Source):
    kind = "mailgun"
    content_types = (JSON,)

    def verify(self, request: HttpRequest) -> None:
        raise BadSignature("mailgun sources are not supported yet")
