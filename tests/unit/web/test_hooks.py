"""POST /hooks/<source> through the Flask client: signed receipts, TwiML and JSON answers, refusals."""

import dataclasses
import json
import re
from urllib.parse import parse_qsl, urlencode

import pytest
from sqlalchemy import func, select

from receiver import create_app
from receiver.ledger.models import Consent, Delivery, RequestRecord, SignalRow
from tests.helpers import CRMTEXT_TOKEN, twilio_signature, twilio_sms, verify_receipt

TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
APPENDIX_A_BODY = (
    b"ToCountry=US&ToState=NY&SmsMessageSid=SM0123456789abcdef0123456789abcdef&NumMedia=0&ToCity=&FromZip="
    b"&SmsSid=SM0123456789abcdef0123456789abcdef&FromState=NY&SmsStatus=received&FromCity=&Body=Stop"
    b"&FromCountry=US&To=%2B15559876543&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&ToZip="
    b"&NumSegments=1&ReferralNumMedia=0&MessageSid=SM0123456789abcdef0123456789abcdef&OptOutType=STOP"
    b"&AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15551234567&ApiVersion=2010-04-01"
)
CRMTEXT_BODY = (
    b"custID=112233&message=STOP&keyword=GRAND&mobileNum=5551234567&optInStatus=Opt-out"
    b"&timeStamp=2026-11-22+07%3A15%3A02&subacct=12345&custName=Joe+Smith&msgID=123456789"
    b"&subacct_name=Grand+Hotel"
)
RECEIPT_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def post_twilio(client, params: dict, **headers):
    headers.setdefault("X-Twilio-Signature", twilio_signature("/hooks/twilio", params))
    return client.post("/hooks/twilio", data=params, headers=headers)


def post_crmtext(client, body: bytes = CRMTEXT_BODY, token: str = CRMTEXT_TOKEN):
    return client.post(f"/hooks/crmtext?token={token}", data=body,
                       content_type="application/x-www-form-urlencoded")




def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def nothing_stored(engine) -> bool:
    return all(count(engine, model) == 0 for model in (RequestRecord, SignalRow, Consent, Delivery))


def test_twilio_stop_answers_signed_empty_twiml(client, engine):
    response = post_twilio(client, twilio_sms(body="STOP"))

    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert response.get_data() == TWIML_EMPTY
    assert response.headers["webhook-id"].startswith("rcpt_")
    assert re.fullmatch(r"\d{10}", response.headers["webhook-timestamp"])
    verify_receipt(client, response)
    with engine.connect() as conn:
        receipt = conn.execute(select(RequestRecord)).one()
    assert (receipt.id, receipt.status) == (response.headers["webhook-id"], "accepted")
    assert count(engine, Delivery) == 2


def test_appendix_a_request_as_twilio_sends_it(client, engine):
    response = client.post("/hooks/twilio", data=APPENDIX_A_BODY, content_type="application/x-www-form-urlencoded",
                           headers={"X-Twilio-Signature": "/0jdmQW1JOyuGJHwgNH6Y6b1spA="})

    assert response.status_code == 200
    assert response.content_type.startswith("text/xml")
    assert response.get_data() == TWIML_EMPTY
    verify_receipt(client, response)
    assert count(engine, Consent) == 1


def test_receipt_signature_does_not_verify_a_changed_body(client):
    response = post_twilio(client, twilio_sms())
    response.set_data(response.get_data().replace(b"Response", b"Respons"))

    with pytest.raises(AssertionError):
        verify_receipt(client, response)


def test_help_answers_the_configured_help_text(client, engine):
    response = post_twilio(client, twilio_sms(body="HELP"))

    assert response.status_code == 200
    assert response.get_data() == (b'<?xml version="1.0" encoding="UTF-8"?><Response>'
                                   b"<Message>Grand Hotel: reply STOP to opt out.</Message></Response>")
    verify_receipt(client, response)
    assert count(engine, SignalRow) == 1
    assert count(engine, Delivery) == 0


def test_help_text_is_escaped(settings):
    config = settings.sources["twilio"]
    config = dataclasses.replace(config, options={**config.options, "help_text": "Rates & info: <see site>"})
    app = create_app(dataclasses.replace(settings, sources={**settings.sources, "twilio": config}))
    try:
        response = post_twilio(app.test_client(), twilio_sms(body="help"))
    finally:
        app.extensions["receiver"].engine.dispose()

    assert b"<Message>Rates &amp; info: &lt;see site&gt;</Message>" in response.get_data()


@pytest.mark.parametrize("body, opt_out_type", [("HELP", "HELP"), ("info", "HELP"), ("STOP", "STOP"),
                                                ("START", "START"), ("aide", "HELP")])
def test_advanced_opt_out_has_answered_so_no_message(client, engine, body, opt_out_type):
    # Twilio's inbound fields with Advanced Opt-Out's OptOutType (inbound-formats.md §1): Twilio has
    # already texted its own reply, so a <Message> here would be a second one.
    params = twilio_sms(body=body, OptOutType=opt_out_type, MessagingServiceSid="MG" + "0" * 32)

    response = post_twilio(client, params)

    assert (response.status_code, response.get_data()) == (200, TWIML_EMPTY)
    verify_receipt(client, response)
    assert count(engine, SignalRow) == 1


@pytest.mark.parametrize("text", ["Help", "INFO"])
def test_appendix_a_request_as_an_advanced_opt_out_help_gets_no_second_reply(client, engine, text):
    # Appendix A's request, field for field (inbound-formats.md), as Advanced Opt-Out posts a HELP:
    # OptOutType=HELP, Twilio has texted its help reply. Signed by Twilio's own SDK over the new body.
    params = dict(parse_qsl(APPENDIX_A_BODY.decode(), keep_blank_values=True))
    params.update(Body=text, OptOutType="HELP")

    response = post_twilio(client, params)

    assert (response.status_code, response.get_data()) == (200, TWIML_EMPTY)
    with engine.connect() as conn:
        assert conn.execute(select(SignalRow.kind, SignalRow.keyword)).all() == [("help", "help")]


@pytest.mark.parametrize("body", ["START", "hello"])
def test_other_texts_answer_empty_twiml(client, body):
    response = post_twilio(client, twilio_sms(body=body))

    assert (response.status_code, response.get_data()) == (200, TWIML_EMPTY)


@pytest.mark.parametrize("text, crmtext_delivery", [("STOP", "skipped"), ("UNSUBSCRIBE", "pending"),
                                                    ("please stop texting me", "pending")])
def test_crmtext_callback_owes_optoutcustomer_unless_crmtext_applied_it(client, engine, text, crmtext_delivery):
    # CRM Text's callback fields (crm-apis.md; inbound-formats.md Appendix A), the guest still opted in.
    body = CRMTEXT_BODY.replace(b"message=STOP", urlencode({"message": text}).encode()).replace(
        b"optInStatus=Opt-out", b"optInStatus=Opt-in")

    assert post_crmtext(client, body).get_json()["changes"] == [{"phone": "+15551234567", "states": ["sms_ban"]}]

    with engine.connect() as conn:
        deliveries = dict(conn.execute(select(Delivery.crm, Delivery.status)).all())
    assert deliveries == {"experience": "pending", "crmtext": crmtext_delivery}


def test_crmtext_answers_a_json_receipt(client, engine):
    response = post_crmtext(client)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["receipt_id", "status", "received_at", "source", "event_ids", "changes"]
    assert body["receipt_id"] == response.headers["webhook-id"]
    assert body["status"] == "accepted"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["received_at"])
    assert body["source"] == "crmtext"
    assert body["event_ids"] == ["123456789"]
    assert body["changes"] == [{"phone": "+15551234567", "states": ["sms_ban"]}]
    verify_receipt(client, response)
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(Delivery.crm, Delivery.status)).all())
    assert statuses == {"experience": "pending", "crmtext": "skipped"}


def test_crmtext_duplicate_has_its_own_receipt(client, engine):
    first = post_crmtext(client).get_json()

    response = post_crmtext(client)

    again = response.get_json()
    assert response.status_code == 200
    assert again["status"] == "duplicate"
    assert again["original_receipt_id"] == first["receipt_id"]
    assert again["receipt_id"] != first["receipt_id"]
    assert again["receipt_id"] == response.headers["webhook-id"]
    assert again["event_ids"] == first["event_ids"]
    assert again["changes"] == []
    verify_receipt(client, response)
    assert count(engine, RequestRecord) == 1
    assert count(engine, Delivery) == 2


def test_twilio_duplicate_has_its_own_receipt(client, engine):
    params = twilio_sms(sid="SM" + "7" * 32)
    first = post_twilio(client, params)

    again = post_twilio(client, params)

    assert again.status_code == 200
    assert again.get_data() == TWIML_EMPTY
    assert again.headers["webhook-id"] != first.headers["webhook-id"]
    verify_receipt(client, again)
    assert count(engine, SignalRow) == 1


def test_crmtext_help_is_ignored(client):
    body = CRMTEXT_BODY.replace(b"message=STOP", b"message=HELP").replace(b"Opt-out", b"Opt-in")

    answer = post_crmtext(client, body).get_json()

    assert (answer["status"], answer["changes"]) == ("ignored", [])


def test_unknown_source_is_404_json(client, engine):
    response = client.post("/hooks/nobody", data={"a": "b"})

    assert response.status_code == 404
    assert response.is_json
    assert "nobody" in response.get_json()["error"]
    assert "webhook-signature" not in response.headers
    assert nothing_stored(engine)


def test_body_over_256_kib_is_413_and_stores_nothing(client, engine):
    params = twilio_sms(body="STOP", Padding="x" * 300_000)

    response = post_twilio(client, params)

    assert response.status_code == 413
    assert "error" in response.get_json()
    assert "webhook-signature" not in response.headers
    assert nothing_stored(engine)


def test_get_is_405_and_stores_nothing(client, engine):
    response = client.get("/hooks/twilio?" + urlencode(twilio_sms()))

    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert "error" in response.get_json()
    assert nothing_stored(engine)


@pytest.mark.parametrize("signature", [None, "", "forged="])
def test_bad_twilio_signature_is_401_without_receipt(client, engine, signature):
    headers = {} if signature is None else {"X-Twilio-Signature": signature}

    response = client.post("/hooks/twilio", data=twilio_sms(), headers=headers)

    assert response.status_code == 401
    assert "error" in response.get_json()
    for header in RECEIPT_HEADERS:
        assert header not in response.headers
    assert nothing_stored(engine)


@pytest.mark.parametrize("token", ["", "wrong"])
def test_bad_crmtext_token_is_401_without_receipt(client, engine, token):
    response = post_crmtext(client, token=token)

    assert response.status_code == 401
    assert "error" in response.get_json()
    assert "webhook-signature" not in response.headers
    assert nothing_stored(engine)


def test_missing_message_sid_is_400_naming_the_field(client, engine):
    params = twilio_sms()
    del params["MessageSid"], params["SmsMessageSid"]

    response = post_twilio(client, params)

    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "MessageSid"
    assert "MessageSid" in body["error"]
    assert "webhook-signature" not in response.headers
    assert nothing_stored(engine)


def test_missing_msg_id_is_400(client, engine):
    response = post_crmtext(client, CRMTEXT_BODY.replace(b"&msgID=123456789", b""))

    assert response.status_code == 400
    assert response.get_json()["field"] == "msgID"
    assert nothing_stored(engine)


def test_json_to_twilio_is_415(client, engine):
    body = json.dumps(twilio_sms())

    response = client.post("/hooks/twilio", data=body, content_type="application/json",
                           headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", {})})

    assert response.status_code == 415
    assert "error" in response.get_json()
    assert nothing_stored(engine)
