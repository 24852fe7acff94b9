"""Unsubscribe-link tokens: which guest (tenant, email, optional phone), what (scope), which campaign.

A token is itsdangerous' URL-safe serializer over a short JSON list, HMAC-SHA256 with the
``SECRET_KEY`` list: the first key signs, every key verifies, so rotating keys keeps old
links working. Tokens do not expire (CAN-SPAM wants a link to keep working; old emails stay
in inboxes for years). Anything that does not verify, or names a tenant the config does not
know, is "no such link": the caller answers 404 and records nothing.

The CSRF field of the page's form is bound to the token (an HMAC of it under the same keys),
so the form needs no cookie and a forged post would need the guest's own link anyway.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from .errors import BadRequest, NotFound
from .identities import normalize_contact, normalize_email, normalize_phone, valid_or_none
from .schemas import join

MARKETING, ALL = "marketing", "all"
SCOPES = (MARKETING, ALL)
_SALT = "receiver.unsubscribe-link"


@dataclass(frozen=True)
class Link:
    tenant: str
    email: str
    phone: str | None = None
    scope: str = MARKETING
    campaign: str | None = None


class LinkSigner:
    def __init__(self, secret_keys: tuple[str, ...], tenants, public_base_url: str):
        # itsdangerous signs with the last key of the list; the contract says the first signs.
        self._serializer = URLSafeSerializer(
            list(reversed(secret_keys)), salt=_SALT, signer_kwargs={"digest_method": hashlib.sha256})
        self._keys = [key.encode() for key in secret_keys]
        self._tenants = tenants
        self._base = public_base_url.rstrip("/")

    def token(self, link: Link) -> str:
        fields = [link.tenant, link.email, link.phone or "", "a" if link.scope == ALL else "", link.campaign or ""]
        while not fields[-1]:  # trailing blanks cost URL length for nothing
            fields.pop()
        return self._serializer.dumps(fields)

    def url(self, link: Link) -> str:
        return f"{self._base}/u/{self.token(link)}"

    def load(self, token: str) -> Link:
        """The link a token names; NotFound when it is tampered, unknown-keyed, re-spelled or for no known tenant."""
        if not _canonical(token):
            raise NotFound("no such unsubscribe link")
        try:
            fields = self._serializer.loads(token)
        except BadData:
            raise NotFound("no such unsubscribe link") from None
        if not (isinstance(fields, list) and 2 <= len(fields) <= 5 and all(isinstance(f, str) for f in fields)):
            raise NotFound("no such unsubscribe link")
        tenant, email, phone, scope, campaign = (fields + ["", "", ""])[:5]
        if tenant not in self._tenants:
            raise NotFound("no such unsubscribe link")
        # The token's contents go through today's rules: a token signed before them (``Guest@example.com``
        # before identities became case-insensitive, a phone as typed) is read as it would be signed now;
        # an address no rule accepts (a NUL: PostgreSQL's 503, retried forever) names no one; a phone
        # that is unusable is dropped, so that the email's opt-out still applies.
        email = valid_or_none(normalize_email, email)
        if email is None:
            raise NotFound("no such unsubscribe link")
        return Link(tenant=tenant, email=email, phone=valid_or_none(normalize_phone, phone),
                    scope=ALL if scope == "a" else MARKETING, campaign=campaign or None)

    def csrf(self, token: str, key: bytes | None = None) -> str:
        return hmac.new(key or self._keys[0], b"csrf:" + token.encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_ok(self, token: str, given: str | None) -> bool:
        if not given:
            return False
        found = False
        for key in self._keys:  # a page rendered before a rotation still posts
            found |= hmac.compare_digest(self.csrf(token, key).encode(), given.encode())
        return found


def rate_key(link: Link) -> str:
    """What a link's posts are counted by: the link itself, whichever key signed its token."""
    return json.dumps([link.tenant, link.email, link.phone, link.scope, link.campaign])


def _canonical(token: str) -> bool:
    """Whether the token is spelled exactly as it was signed.

    Base64 decoding skips characters outside its alphabet and ignores a last character's spare bits,
    so ``<token>!!``, ``<token>~~`` or ``<token>é`` would name the same link: each spelling must not
    become a page, a rate-limit bucket or a row of its own.
    """
    payload, dot, signature = token.rpartition(".")
    if not dot or not token.isascii():
        return False
    parts = (payload.removeprefix("."), signature)  # a leading dot marks a compressed payload
    try:
        return all(part and base64_encode(base64_decode(part)).decode() == part for part in parts)
    except BadData:
        return False


def make_link(tenant: str, email: str, phone: str | None = None, scope: str = MARKETING,
              campaign: str | None = None, *, path: str = "") -> Link:
    """A link with its email and phone normalized; BadRequest names the field (under ``path``)."""
    email, phone = normalize_contact(email, phone, path=path)
    if email is None:
        raise BadRequest(f"{join(path, 'email')}: missing", field=join(path, "email"))
    return Link(tenant=tenant, email=email, phone=phone, scope=scope, campaign=campaign or None)
