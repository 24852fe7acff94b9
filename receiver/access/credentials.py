"""Operators' secrets: Argon2id password hashes, and API tokens shown once and stored as SHA-256."""

import hashlib
import hmac
import secrets
import unicodedata

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import BadRequest

# NIST SP 800-63B-4 §3.1.1.2: at least 15 characters for a password that is the only factor,
# and accept at least 64. The upper bound only keeps a pasted novel from reaching the hasher.
MIN_PASSWORD = 15
MAX_PASSWORD = 1024

TOKEN_PREFIX = "rcv_"  # tells a leaked token apart in logs, tickets and secret scanners
TOKEN_BYTES = 32


def check_new_password(password: str) -> None:
    """Refuse a password an operator may not choose (400 naming ``password``)."""
    length = len(_normalized(password))
    if not MIN_PASSWORD <= length <= MAX_PASSWORD:
        raise BadRequest(f"password: must be {MIN_PASSWORD} to {MAX_PASSWORD} characters", field="password")


class Passwords:
    """Hash and verify passwords with Argon2id, memory-hard so a stolen table is slow to guess.

    The default is RFC 9106's low-memory profile (Argon2id, t=3, 64 MiB, p=4), above OWASP's
    floor (19 MiB, t=2, p=1); tests pass a cheaper hasher.
    """

    def __init__(self, hasher: PasswordHasher | None = None):
        self.hasher = hasher or PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
        # Made now, not at the first unknown email, so that this one is not slower either.
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(_normalized(password))

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``stored`` None (unknown email, no password) is always False.

        An unknown email still runs one full verification, against a dummy hash of the same
        parameters, so that the time of an answer does not tell which emails are operators.
        """
        try:
            matched = self.hasher.verify(stored or self._dummy, _normalized(password))
        except (VerificationError, InvalidHashError):
            return False
        return matched and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made with other parameters: hash the password anew at sign-in."""
        return self.hasher.check_needs_rehash(stored)


def _normalized(password: str) -> str:
    # The same password typed on two systems may compose accents differently (NIST asks for NFKC/NFKD).
    return unicodedata.normalize("NFKC", password)


def new_token() -> tuple[str, str]:
    """A new API token and the hash to store: the token is shown once and never kept.

    A token is 256 random bits, so no one can guess it from its hash however fast the hash is:
    a plain SHA-256 is right here, where a password needs Argon2 because people choose weak ones.
    It also lets each request find its operator by one indexed look-up of the hash.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(given: str, stored_hash: str) -> bool:
    """Whether ``given`` is the token whose hash is ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(token_hash(given).encode(), stored_hash.encode())
