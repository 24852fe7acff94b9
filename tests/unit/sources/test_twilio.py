"""Twilio source: X-Twilio-Signature checked as Twilio's SDK computes it, keywords and OptOutType."""

import dataclasses
from urllib.parse import parse_qsl, urlencode

import pytest
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import Headers, MultiDict

from receiver.errors import BadRequest, BadSignature, UnsupportedMediaType
from receiver.settings import SourceConfig
from receiver.signals import HELP, OPT_IN, OPT_OUT, OTHER
from receiver.sources.base import HttpRequest
from receiver.sources.twilio import TwilioOptions, TwilioSource
from receiver.states import SMS_BAN, SMS_OPT_IN_REMOVES
from tests.helpers import PUBLIC_BASE_URL, TWILIO_TOKEN, make_settings, twilio_signature, twilio_sms

PATH = "/hooks/twilio"
SID = "SM0123456789abcdef0123456789abcdef"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"

# inbound-formats.md, Appendix A: the exact body Twilio posts and its signature.
APPENDIX_A_BODY = (
    b"ToCountry=US&ToState=NY&SmsMessageSid=SM0123456789abcdef0123456789abcdef&NumMedia=0&ToCity=&FromZip="
    b"&SmsSid=SM0123456789abcdef0123456789abcdef&FromState=NY&SmsStatus=received&FromCity=&Body=Stop"
    b"&FromCountry=US&To=%2B15559876543&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&ToZip="
    b"&NumSegments=1&ReferralNumMedia=0&MessageSid=SM0123456789abcdef0123456789abcdef&OptOutType=STOP"
    b"&AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15551234567&ApiVersion=2010-04-01"
)
APPENDIX_A_SIGNATURE = "/0jdmQW1JOyuGJHwgNH6Y6b1spA="

# Appendix B: the SDK's own vector, signed over the URL without and with the default port.
APPENDIX_B_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
                     "From": "+14158675309", "To": "+18005551212"}


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")


def twilio(settings, **options) -> TwilioSource:
    config = settings.sources["twilio"]
    return TwilioSource(dataclasses.replace(config, options={**config.options, **options}), settings)


def http(body: bytes, signature: str | None = None, *, path: str = PATH, query: str = "",
         mimetype: str = "application/x-www-form-urlencoded", method: str = "POST") -> HttpRequest:
    headers = Headers({"X-Twilio-Signature": signature} if signature is not None else {})
    return HttpRequest(method=method, path=path, query_string=query, headers=headers, body=body,
                       mimetype=mimetype, args=MultiDict(parse_qsl(query)))


def signed(params: dict, *, token: str = TWILIO_TOKEN, query: str = "") -> HttpRequest:
    return http(urlencode(params).encode(), twilio_signature(PATH, params, token=token, query=query), query=query)


def test_appendix_a_vector_is_what_the_sdk_computes():
    params = dict(parse_qsl(APPENDIX_A_BODY.decode(), keep_blank_values=True))

    signature = RequestValidator("test-auth-token").compute_signature(
        "https://optout.example.com/hooks/twilio", params)

    assert signature == APPENDIX_A_SIGNATURE


def test_appendix_a_request_is_an_opt_out(settings):
    assert (TWILIO_TOKEN, PUBLIC_BASE_URL) == ("test-auth-token", "https://optout.example.com")

    inbound = twilio(settings).handle(http(APPENDIX_A_BODY, APPENDIX_A_SIGNATURE))

    assert inbound.request_key == SID
    [signal] = inbound.signals
    assert signal.event_id == SID
    assert signal.kind == OPT_OUT
    assert signal.phone == "+15551234567"
    assert signal.add == {SMS_BAN}
    assert signal.remove == frozenset()
    assert signal.reported_by is None
    assert signal.detail["opt_out_type"] == "STOP"
    assert signal.detail["messaging_service_sid"] == "MG0123456789abcdef0123456789abcdef"


def test_appendix_a_with_the_right_account_sid(settings):
    source = twilio(settings, account_sid=ACCOUNT)

    assert source.handle(http(APPENDIX_A_BODY, APPENDIX_A_SIGNATURE)).request_key == SID


def test_account_sid_mismatch_is_a_bad_signature(settings):
    source = twilio(settings, account_sid="AC" + "f" * 32)

    with pytest.raises(BadSignature, match="AccountSid"):
        source.handle(http(APPENDIX_A_BODY, APPENDIX_A_SIGNATURE))


@pytest.mark.parametrize("url, expected", [
    ("https://mycompany.com/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
])
def test_appendix_b_vectors_match_the_sdk(url, expected):
    assert RequestValidator("12345").compute_signature(url, APPENDIX_B_PARAMS) == expected


@pytest.mark.parametrize("base_url", ["https://mycompany.com", "https://mycompany.com:443"])
@pytest.mark.parametrize("given", ["RSOYDt4T1cUTdK1PDd93/VVr8B8=", "kvajT1Ptam85bY51eRf/AJRuM3w="])
def test_appendix_b_signature_with_or_without_port_is_accepted(settings, base_url, given):
    settings = dataclasses.replace(settings, public_base_url=base_url)
    source = TwilioSource(SourceConfig("twilio", "twilio", "grand", TwilioOptions().load({"auth_token": "12345"})), settings)
    request = http(urlencode(APPENDIX_B_PARAMS).encode(), given, path="/myapp.php", query="foo=1&bar=2")

    source.verify(request)  # no exception: the signature holds
    with pytest.raises(BadRequest, match="MessageSid"):  # a voice call, not an SMS: past the signature
        source.handle(request)


def test_sms_signed_over_the_url_with_port_443(settings):
    params = twilio_sms()
    signature = twilio_signature(PATH, params, base_url="https://optout.example.com:443")

    inbound = twilio(settings).handle(http(urlencode(params).encode(), signature))

    assert inbound.signals[0].kind == OPT_OUT


def test_query_string_is_part_of_the_signed_url(settings):
    params = twilio_sms()
    request = signed(params, query="tenant=grand&x=%2F1")

    assert twilio(settings).handle(request).request_key == params["MessageSid"]


def test_signature_without_the_query_string_is_refused(settings):
    params = twilio_sms()
    signature = twilio_signature(PATH, params)

    with pytest.raises(BadSignature):
        twilio(settings).handle(http(urlencode(params).encode(), signature, query="x=1"))


def test_missing_signature(settings):
    with pytest.raises(BadSignature, match="missing"):
        twilio(settings).handle(http(urlencode(twilio_sms()).encode()))


@pytest.mark.parametrize("signature", ["", "forged", "/0jdmQW1JOyuGJHwgNH6Y6b1spB=", APPENDIX_A_SIGNATURE.lower()])
def test_forged_signature(settings, signature):
    with pytest.raises(BadSignature):
        twilio(settings).handle(http(APPENDIX_A_BODY, signature))


def test_signature_with_another_token(settings):
    with pytest.raises(BadSignature):
        twilio(settings).handle(signed(twilio_sms(), token="someone-else"))


@pytest.mark.parametrize("tampered", [
    APPENDIX_A_BODY.replace(b"Body=Stop", b"Body=Hello"),
    APPENDIX_A_BODY.replace(b"%2B15551234567", b"%2B15557654321"),
    APPENDIX_A_BODY + b"&Extra=1",
    APPENDIX_A_BODY.replace(b"&ToCity=", b""),  # an empty parameter is signed too
])
def test_body_tampered_after_signing(settings, tampered):
    with pytest.raises(BadSignature):
        twilio(settings).handle(http(tampered, APPENDIX_A_SIGNATURE))


def test_signed_for_another_path(settings):
    params = twilio_sms()
    signature = twilio_signature("/hooks/other", params)

    with pytest.raises(BadSignature):
        twilio(settings).handle(http(urlencode(params).encode(), signature))


def test_token_rotation_accepts_every_listed_token(settings):
    source = twilio(settings, auth_token=["new-token", TWILIO_TOKEN])

    for token in ("new-token", TWILIO_TOKEN):
        assert source.handle(signed(twilio_sms(), token=token)).signals[0].kind == OPT_OUT
    with pytest.raises(BadSignature):
        source.handle(signed(twilio_sms(), token="retired-token"))


def test_unknown_fields_are_signed_and_accepted(settings):
    params = twilio_sms(FromCity="", AddOns='{"status":"successful"}', NewFieldTwilioAdded="x")

    assert twilio(settings).handle(signed(params)).signals[0].kind == OPT_OUT


@pytest.mark.parametrize("body, opt_out_type, kind, keyword", [
    ("Arrêtez", "STOP", OPT_OUT, "stop"),
    ("STOP", "HELP", HELP, "help"),
    ("Hello there", "START", OPT_IN, "start"),
    ("stop", "stop", OPT_OUT, "stop"),
])
def test_opt_out_type_overrides_the_keyword_match(settings, body, opt_out_type, kind, keyword):
    params = twilio_sms(body=body, OptOutType=opt_out_type)

    [signal] = twilio(settings).handle(signed(params)).signals

    assert (signal.kind, signal.keyword, signal.review) == (kind, keyword, False)
    assert signal.add == ({SMS_BAN} if kind == OPT_OUT else frozenset())
    assert signal.remove == (SMS_OPT_IN_REMOVES if kind == OPT_IN else frozenset())


@pytest.mark.parametrize("opt_out_type", ["STOP", "START", "HELP"])
def test_opt_out_type_means_twilio_has_replied(settings, opt_out_type):
    inbound = twilio(settings).handle(signed(twilio_sms(body=opt_out_type, OptOutType=opt_out_type)))

    assert inbound.sender_replied is True


@pytest.mark.parametrize("params", [twilio_sms(body="HELP"), twilio_sms(body="HELP", OptOutType="")])
def test_without_opt_out_type_twilio_has_not_replied(settings, params):
    assert twilio(settings).handle(signed(params)).sender_replied is False


@pytest.mark.parametrize("body, kind", [
    ("STOP", OPT_OUT), ("Stop please", OPT_OUT), ("ARRÊT", OPT_OUT), ("unsubscribe", OPT_OUT),
    ("START", OPT_IN), ("unstop", OPT_IN), ("HELP", HELP), ("info", HELP),
    ("Arrêtez", OTHER), ("What time is check-out?", OTHER), ("", OTHER),
])
def test_keyword_match_without_opt_out_type(settings, body, kind):
    [signal] = twilio(settings).handle(signed(twilio_sms(body=body))).signals

    assert signal.kind == kind


def test_extra_opt_out_words_from_config(settings):
    source = twilio(settings, extra_opt_out=["basta"])

    assert source.handle(signed(twilio_sms(body="Basta!"))).signals[0].kind == OPT_OUT


def test_review_flag_for_a_near_miss(settings):
    [signal] = twilio(settings).handle(signed(twilio_sms(body="can you stop by the pool at 5"))).signals

    assert (signal.kind, signal.review) == (OTHER, True)


def test_missing_message_sid_is_a_bad_request_naming_it(settings):
    params = twilio_sms()
    del params["MessageSid"], params["SmsMessageSid"]

    with pytest.raises(BadRequest) as caught:
        twilio(settings).handle(signed(params))

    assert caught.value.field == "MessageSid"
    assert caught.value.status == 400


def test_sms_message_sid_is_the_fallback(settings):
    params = twilio_sms(sid="SM" + "a" * 32)
    del params["MessageSid"]

    assert twilio(settings).handle(signed(params)).request_key == "SM" + "a" * 32


@pytest.mark.parametrize("sid", ["SM\x01" + "0" * 31, "S" * 256])
def test_bad_sms_message_sid_names_the_field_it_came_from(settings, sid):
    """Older integrations post only SmsMessageSid (Twilio's deprecated name): the error names it."""
    params = twilio_sms(sid=sid)
    del params["MessageSid"]

    with pytest.raises(BadRequest) as caught:
        twilio(settings).handle(signed(params))

    assert caught.value.field == "SmsMessageSid"
    assert caught.value.message.startswith("SmsMessageSid: ")


def test_bad_from_is_a_bad_request_naming_it(settings):
    with pytest.raises(BadRequest) as caught:
        twilio(settings).handle(signed(twilio_sms(phone="not a number")))

    assert caught.value.field == "From"


def test_local_us_from_is_stored_in_e164(settings):
    assert twilio(settings).handle(signed(twilio_sms(phone="5551234567"))).signals[0].phone == "+15551234567"


@pytest.mark.parametrize("mimetype", ["application/json", "text/plain", "multipart/form-data", ""])
def test_non_form_content_type_is_415(settings, mimetype):
    with pytest.raises(UnsupportedMediaType) as caught:
        twilio(settings).handle(http(APPENDIX_A_BODY, APPENDIX_A_SIGNATURE, mimetype=mimetype))

    assert caught.value.status == 415


def test_only_post_is_accepted(settings):
    with pytest.raises(BadSignature):
        twilio(settings).handle(http(APPENDIX_A_BODY, APPENDIX_A_SIGNATURE, method="GET"))


def test_help_text_comes_from_config(settings):
    assert twilio(settings).help_text() == "Grand Hotel: reply STOP to opt out."
    assert twilio(settings, help_text="Reply STOP").help_text() == "Reply STOP"
