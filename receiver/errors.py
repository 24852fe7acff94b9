"""The one exception hierarchy of the service; the web layer maps it to HTTP statuses in one place."""


class ReceiverError(Exception):
    """A refusal the sender should see: ``status`` is the HTTP status, the message is safe to show."""

    status = 500

    def __init__(self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}


class BadRequest(ReceiverError):
    status = 400


class BadSignature(ReceiverError):
    """Missing, forged or stale signature or credential."""

    status = 401


class Forbidden(ReceiverError):
    """Signed in, but this role may not do this."""

    status = 403


class NotFound(ReceiverError):
    status = 404


class Conflict(ReceiverError):
    status = 409


class PayloadTooLarge(ReceiverError):
    status = 413


class UnsupportedMediaType(ReceiverError):
    status = 415


class TooManyRequests(ReceiverError):
    status = 429

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class Unavailable(ReceiverError):
    """The opt-out could not be stored (database down, not migrated): the sender must retry."""

    status = 503


class ConfigError(Exception):
    """A missing or invalid setting; start-up stops with this one line."""
