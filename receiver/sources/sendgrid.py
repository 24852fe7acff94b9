"""SendGrid's signed Event Webhook (not built yet: every request is refused)."""

from ..errors import BadSignature
from .base import JSON, HttpRequest, Source


class SendGridSource(Source):
    kind = "sendgrid"
    content_types = (JSON,)

    def verify(self, request: HttpRequest) -> None:
        raise BadSignature("sendgrid sources are not supported yet")
