"""Standard Webhooks partners (booking engines, guest apps) (not built yet: every request is refused)."""

from ..errors import BadSignature
from .base import JSON, HttpRequest, Source


class StandardWebhooksSource(Source):
    kind = "standard-webhooks"
    content_types = (JSON,)

    def verify(self, request: HttpRequest) -> None:
        raise BadSignature("standard-webhooks sources are not supported yet")
