"""Postmark webhooks (not built yet: every request is refused)."""

from ..errors import BadSignature
from .base import JSON, HttpRequest, Source


class PostmarkSource(Source):
    kind = "postmark"
    content_types = (JSON,)

    def verify(self, request: HttpRequest) -> None:
        raise BadSignature("postmark sources are not supported yet")
