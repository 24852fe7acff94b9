"""CRM Text source: the ?token= secret, field names in any case, optInStatus, Pacific timestamps."""

import dataclasses
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import parse_qsl, urlencode

import pytest
from werkzeug.datastructures import Headers, MultiDict

from receiver.errors import BadRequest, BadSignature, UnsupportedMediaType
from receiver.signals import HELP, OPT_IN, OPT_OUT, OTHER
from receiver.sources import base
from receiver.sources.base import HttpRequest
from receiver.sources.crmtext import (
    OPTOUTCUSTOMER_OWED,
    OPTOUTCUSTOMER_STATUS,
    OPTOUTCUSTOMER_TEXT,
    CrmTextSource,
)
from receiver.states import CRMTEXT, SMS_BAN
from tests.helpers import CRMTEXT_TOKEN, make_settings

# inbound-formats.md, Appendix A, casing as documented.
APPENDIX_A_BODY = (
    b"custID=112233&message=STOP&keyword=GRAND&mobileNum=5551234567&optInStatus=Opt-out"
    b"&timeStamp=2026-11-22+07%3A15%3A02&subacct=12345&custName=Joe+Smith&msgID=123456789"
    b"&subacct_name=Grand+Hotel"
)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")


def crmtext(settings, **options) -> CrmTextSource:
    config = settings.sources["crmtext"]
    return CrmTextSource(dataclasses.replace(config, options={**config.options, **options}), settings)


def http(body: bytes | dict, query: str = f"token={CRMTEXT_TOKEN}", *,
         mimetype: str = "application/x-www-form-urlencoded") -> HttpRequest:
    if isinstance(body, dict):
        body = urlencode(body).encode()
    return HttpRequest(method="POST", path="/hooks/crmtext", query_string=query, headers=Headers(),
                       body=body, mimetype=mimetype, args=MultiDict(parse_qsl(query)))


def message(**fields) -> dict:
    return {"custID": "1", "message": "STOP", "keyword": "GRAND", "mobileNum": "5551234567",
            "optInStatus": "Opt-in", "timeStamp": "2026-11-22 07:15:02", "msgID": "m-1", **fields}


def test_appendix_a_payload(settings):
    inbound = crmtext(settings).handle(http(APPENDIX_A_BODY))

    assert inbound.request_key == "123456789"
    [signal] = inbound.signals
    assert (signal.event_id, signal.kind, signal.phone) == ("123456789", OPT_OUT, "+15551234567")
    assert signal.add == {SMS_BAN}
    assert signal.reported_by == CRMTEXT
    assert signal.occurred_at == datetime(2026, 11, 22, 15, 15, 2, tzinfo=UTC)  # PST is UTC-8
    assert signal.detail == {"custid": "112233", "subacct": "12345", "keyword": "GRAND",
                             "optoutcustomer": OPTOUTCUSTOMER_STATUS}


@pytest.mark.parametrize("query", ["", "token=", "token=wrong", f"token={CRMTEXT_TOKEN}x",
                                   f"Token={CRMTEXT_TOKEN}", f"token={CRMTEXT_TOKEN[:-1]}"])
def test_wrong_or_missing_token_is_401(settings, query):
    with pytest.raises(BadSignature) as caught:
        crmtext(settings).handle(http(APPENDIX_A_BODY, query))

    assert caught.value.status == 401


def test_token_is_compared_in_constant_time(settings):
    with mock.patch.object(base.hmac, "compare_digest", wraps=base.hmac.compare_digest) as compare:
        with pytest.raises(BadSignature):
            crmtext(settings).handle(http(APPENDIX_A_BODY, "token=wrong"))
        crmtext(settings).handle(http(APPENDIX_A_BODY))

    assert compare.call_count == 2
    assert compare.call_args.args == (CRMTEXT_TOKEN.encode(), CRMTEXT_TOKEN.encode())


def test_token_rotation(settings):
    source = crmtext(settings, token=["new-token", CRMTEXT_TOKEN])

    assert source.handle(http(APPENDIX_A_BODY, "token=new-token")).request_key == "123456789"
    assert source.handle(http(APPENDIX_A_BODY)).request_key == "123456789"
    with pytest.raises(BadSignature):
        source.handle(http(APPENDIX_A_BODY, "token=old-token"))


def test_token_is_checked_before_the_body_is_parsed(settings):
    with pytest.raises(BadSignature):
        crmtext(settings).handle(http({"nothing": "useful"}, "token=wrong"))


def test_field_names_are_case_insensitive(settings):
    body = {"MSGID": "m-9", "MobileNum": "5551234567", "MESSAGE": "stop", "timestamp": "2026-07-01 12:00:00",
            "optinStatus": "Opt-in"}

    [signal] = crmtext(settings).handle(http(body)).signals

    assert signal.event_id == "m-9"
    assert signal.kind == OPT_OUT
    assert signal.occurred_at == datetime(2026, 7, 1, 19, 0, tzinfo=UTC)  # PDT is UTC-7


@pytest.mark.parametrize("name", ["optInStatus", "optinStatus", "optinstatus", "OPTINSTATUS"])
@pytest.mark.parametrize("value", ["Opt-out", "opt-out", "OPT-OUT"])
def test_opt_in_status_opt_out_counts_as_an_opt_out(settings, name, value):
    body = message(message="Thanks, see you soon")
    del body["optInStatus"]
    body[name] = value

    [signal] = crmtext(settings).handle(http(body)).signals

    assert (signal.kind, signal.keyword, signal.review) == (OPT_OUT, "optInStatus=Opt-out", False)
    assert signal.add == {SMS_BAN}
    assert signal.reported_by == CRMTEXT


def test_opt_out_keyword_is_reported_by_crmtext(settings):
    [signal] = crmtext(settings).handle(http(message(message="QUIT", optInStatus="Opt-in"))).signals

    assert (signal.kind, signal.keyword, signal.reported_by) == (OPT_OUT, "quit", CRMTEXT)


@pytest.mark.parametrize("text", ["STOP", "stop", "Quit", " QUIT "])
def test_stop_or_quit_is_handled_by_crmtext_even_before_its_status_says_so(settings, text):
    [signal] = crmtext(settings).handle(http(message(message=text, optInStatus="Opt-in"))).signals

    assert (signal.kind, signal.reported_by) == (OPT_OUT, CRMTEXT)


@pytest.mark.parametrize("text", ["UNSUBSCRIBE", "please stop texting me", "Stop please", "STOP!", "cancel",
                                  "OPT OUT", "Arrêt"])
def test_opt_out_crmtext_does_not_handle_is_not_reported_by_it(settings, text):
    # CRM Text acts on STOP and QUIT only (crm-apis.md, OptOutCustomer): with the guest still opted
    # in there, the opt-out must go to CRM Text through OptOutCustomer like a Twilio one.
    [signal] = crmtext(settings).handle(http(message(message=text, optInStatus="Opt-in"))).signals

    assert (signal.kind, signal.add) == (OPT_OUT, {SMS_BAN})
    assert signal.reported_by is None


def test_any_text_with_status_opted_out_is_reported_by_crmtext(settings):
    [signal] = crmtext(settings).handle(http(message(message="please stop texting me", optInStatus="Opt-out"))).signals

    assert (signal.kind, signal.reported_by) == (OPT_OUT, CRMTEXT)


@pytest.mark.parametrize("text, kind", [("HELP", HELP), ("START", OPT_IN), ("what time is breakfast", OTHER)])
def test_other_intents_are_not_reported_by_crmtext(settings, text, kind):
    [signal] = crmtext(settings).handle(http(message(message=text))).signals

    assert signal.kind == kind
    assert signal.reported_by is None
    assert signal.add == frozenset()
    assert "optoutcustomer" not in signal.detail  # no opt-out, nothing to send or skip


@pytest.mark.parametrize("text, status, why", [
    ("STOP", "Opt-out", OPTOUTCUSTOMER_STATUS),  # both: the status is what CRM Text itself reports
    ("please stop texting me", "Opt-out", OPTOUTCUSTOMER_STATUS),
    (" quit ", "Opt-in", OPTOUTCUSTOMER_TEXT),
    ("UNSUBSCRIBE", "Opt-in", OPTOUTCUSTOMER_OWED),
    ("please stop texting me", "", OPTOUTCUSTOMER_OWED),
])
def test_detail_says_why_optoutcustomer_is_skipped_or_not(settings, text, status, why):
    """For the audit trail: which part of the CRM Text callback rule decided."""
    [signal] = crmtext(settings).handle(http(message(message=text, optInStatus=status))).signals

    assert signal.kind == OPT_OUT
    assert signal.detail["optoutcustomer"] == why
    assert (signal.reported_by == CRMTEXT) == why.startswith("skipped")


def test_extra_opt_out_words_from_config(settings):
    [signal] = crmtext(settings, extra_opt_out=["para"]).handle(http(message(message="PARA"))).signals

    assert signal.kind == OPT_OUT


@pytest.mark.parametrize("stamp, utc", [
    ("2026-11-22 07:15:02", datetime(2026, 11, 22, 15, 15, 2, tzinfo=UTC)),
    ("2026-06-30 23:30:00", datetime(2026, 7, 1, 6, 30, tzinfo=UTC)),
    ("2026-1-5 7:05:09", datetime(2026, 1, 5, 15, 5, 9, tzinfo=UTC)),
])
def test_pacific_timestamp_is_converted_to_utc(settings, stamp, utc):
    [signal] = crmtext(settings).handle(http(message(timeStamp=stamp))).signals

    assert signal.occurred_at == utc


@pytest.mark.parametrize("stamp", ["", "yesterday", "2026-11-22T07:15:02Z"])
def test_unreadable_timestamp_is_left_out(settings, stamp):
    [signal] = crmtext(settings).handle(http(message(timeStamp=stamp))).signals

    assert signal.occurred_at is None


@pytest.mark.parametrize("missing", ["msgID", "mobileNum"])
def test_missing_required_field_is_400_naming_it(settings, missing):
    body = message()
    del body[missing]

    with pytest.raises(BadRequest) as caught:
        crmtext(settings).handle(http(body))

    assert caught.value.field == missing
    assert caught.value.status == 400


def test_empty_msg_id_is_400(settings):
    with pytest.raises(BadRequest, match="msgID"):
        crmtext(settings).handle(http(message(msgID="")))


def test_bad_mobile_number_is_400(settings):
    with pytest.raises(BadRequest) as caught:
        crmtext(settings).handle(http(message(mobileNum="12")))

    assert caught.value.field == "mobileNum"


def test_json_is_415(settings):
    with pytest.raises(UnsupportedMediaType):
        crmtext(settings).handle(http(b'{"msgID": "1"}', mimetype="application/json"))
