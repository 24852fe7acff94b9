"""Twilio Messaging inbound webhooks: X-Twilio-Signature, keyword or Advanced Opt-Out → SMS signals.

The signed URL is rebuilt from ``service.public_base_url`` + path + raw query string, never from
the Host or X-Forwarded-* headers (the service sits behind the host's proxy). As Twilio's own SDK
does, the signature is accepted over the URL with and without the default port.
"""

import base64
import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit

from marshmallow import fields, validate

from ..backfill.options import TwilioBackfill
from ..backfill.options import option as backfill_option
from ..errors import BadRequest, BadSignature
from ..identities import normalize_phone
from ..schemas import identifier
from ..signals import HELP, OPT_IN, OPT_OUT, Inbound
from .base import HttpRequest, OptionsSchema, Secrets, Source, secret_matches
from .sms import classify, sms_signal

# Advanced Opt-Out's OptOutType decides over our own keyword match.
OPT_OUT_TYPES = {"STOP": OPT_OUT, "START": OPT_IN, "HELP": HELP}


class TwilioOptions(OptionsSchema):
    auth_token = Secrets(required=True)  # a string, or a list while rotating tokens
    account_sid = fields.String(validate=validate.Regexp(r"^AC[0-9a-fA-F]{32}$"))
    help_text = fields.String(validate=validate.Length(1, 1600))
    extra_opt_out = fields.List(fields.String())
    backfill = backfill_option(TwilioBackfill)  # Twilio's Messages list, read by `receiver backfill`


def signature(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's scheme: HMAC-SHA1 over the URL + every name+value, sorted; base64."""
    data = url + "".join(name + value for name, value in sorted(set(params)))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def url_variants(url: str) -> list[str]:
    """The URL as given, and with the default port added or an explicit one removed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        other = host
    else:
        other = f"{host}:{443 if parts.scheme == 'https' else 80}"
    return [url, urlunsplit(parts._replace(netloc=other))]


class TwilioSource(Source):
    kind = "twilio"
    options_schema = TwilioOptions
    answer = "twiml"

    def verify(self, request: HttpRequest) -> None:
        given = request.headers.get("X-Twilio-Signature")
        if not given:
            raise BadSignature("X-Twilio-Signature: missing")
        url = self.settings.public_base_url + request.path
        if request.query_string:
            url += "?" + request.query_string
        params = list(request.form.items(multi=True))
        expected = [signature(token, candidate, params)
                    for token in self.options["auth_token"] for candidate in url_variants(url)]
        if not secret_matches(given, expected):
            raise BadSignature("X-Twilio-Signature: does not match")
        account = self.options.get("account_sid")
        if account and request.form.get("AccountSid") != account:
            raise BadSignature("AccountSid: not this source's account")

    def parse(self, request: HttpRequest) -> Inbound:
        form = request.form
        field = "MessageSid" if form.get("MessageSid") else "SmsMessageSid"  # errors name the field read
        sid = form.get(field)
        if not sid:
            raise BadRequest("MessageSid: missing", field="MessageSid")
        identifier(sid, field)
        phone = normalize_phone(form.get("From", "").removeprefix("whatsapp:"), field="From")
        text = form.get("Body", "")
        intent, keyword, review = classify(text, self.options.get("extra_opt_out", ()))
        opt_out_type = form.get("OptOutType", "").upper()
        if opt_out_type in OPT_OUT_TYPES:
            intent, keyword, review = OPT_OUT_TYPES[opt_out_type], opt_out_type.lower(), False
        detail = {"opt_out_type": opt_out_type or None,
                  "idempotency_token": request.headers.get("I-Twilio-Idempotency-Token"),
                  "messaging_service_sid": form.get("MessagingServiceSid")}
        signal = sms_signal(sid, phone, intent, keyword=keyword, review=review, text=text,
                            detail={k: v for k, v in detail.items() if v})
        # With OptOutType present (STOP, START or HELP alike) Twilio has answered the guest itself.
        return Inbound(request_key=sid, signals=[signal], sender_replied=bool(opt_out_type))

    def help_text(self) -> str | None:
        return self.options.get("help_text")
