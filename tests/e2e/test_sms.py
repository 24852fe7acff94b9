"""A guest texting STOP, end to end: gunicorn, the worker and the CRM sandbox as real processes."""

import base64
import itertools
import json
import secrets
from datetime import datetime
from urllib.parse import urlencode

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twilio.request_validator import RequestValidator

from tests.e2e.stack import wait_until
from tests.helpers import PUBLIC_BASE_URL, TWILIO_TOKEN

_numbers = itertools.count(1000)


def new_phone() -> str:
    return f"+1555{secrets.randbelow(900) + 100}{next(_numbers):04d}"


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def ten(phone: str) -> str:
    return phone[2:]


def verify_receipt(stack, response) -> None:
    """Check the acknowledgement as a sender would: the JWK set and cryptography alone."""
    keys = requests.get(stack.web_url + "/.well-known/receipt-keys", timeout=5).json()["keys"]
    x = keys[0]["x"]
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    signed = f"{response.headers['webhook-id']}.{response.headers['webhook-timestamp']}.".encode() + response.content
    signatures = dict(part.split(",", 1) for part in response.headers["webhook-signature"].split())
    public.verify(base64.b64decode(signatures["v1a"]), signed)  # raises InvalidSignature


def signals_of(stack, phone: str) -> list:
    return stack.query("SELECT kind, keyword, review FROM signals WHERE phone = :phone ORDER BY id", phone=phone)


def test_stop_is_acknowledged_signed_and_delivered_once(stack):
    phone = new_phone()
    answer = stack.sms("STOP", phone, new_sid())
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/xml")
    assert answer.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert answer.headers["webhook-id"].startswith("rcpt_")
    verify_receipt(stack, answer)
    rows = stack.settled(phone)
    assert sorted((r.crm, r.status) for r in rows) == [("crmtext", "done"), ("experience", "done")]
    assert len(stack.opt_out_calls(ten(phone))) == 1
    assert stack.experience_records(phone)[0]["sms_ban"]


def test_an_opt_out_word_other_than_stop_bans_sms(stack):
    # Every word (and its variants) is proven in tests/unit/test_keywords.py; one goes end to end.
    phone = new_phone()
    answer = stack.sms("OPT OUT", phone, new_sid())
    assert answer.status_code == 200
    assert stack.query("SELECT state FROM consent WHERE identity = :p", p=phone) == [("sms_ban",)]
    stack.settled(phone)
    assert len(stack.opt_out_calls(ten(phone))) == 1


def test_a_message_merely_containing_stop_is_flagged_not_applied(stack):
    phone = new_phone()
    answer = stack.sms("Can we stop by the pool at 5 tomorrow?", phone, new_sid())
    assert answer.status_code == 200
    assert signals_of(stack, phone)[0].review
    assert stack.query("SELECT state FROM consent WHERE identity = :p", p=phone) == []
    assert stack.deliveries(phone) == []


@pytest.mark.parametrize("case", ["forged", "missing", "wrong-token", "tampered"])
def test_bad_signatures_are_refused_and_nothing_is_stored(stack, case):
    phone = new_phone()
    params = stack.twilio_params("STOP", phone, new_sid())
    if case == "forged":
        answer = stack.post_twilio(params, signature="bm90IGEgc2lnbmF0dXJl")
    elif case == "missing":
        answer = stack.http.post(stack.web_url + "/hooks/twilio", data=params, timeout=5)
    elif case == "wrong-token":
        answer = stack.post_twilio(params, token="someone-elses-token")
    else:
        from twilio.request_validator import RequestValidator

        from tests.helpers import PUBLIC_BASE_URL, TWILIO_TOKEN
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_BASE_URL + "/hooks/twilio", params)
        answer = stack.post_twilio({**params, "Body": "hello"}, signature=signature)
    assert answer.status_code == 401
    assert "webhook-signature" not in answer.headers
    assert "error" in answer.json()
    assert signals_of(stack, phone) == []
    assert stack.opt_out_calls(ten(phone)) == []


def test_crmtext_wrong_token_is_refused(stack):
    phone = new_phone()
    answer = stack.post_crmtext({"msgID": secrets.token_hex(6), "mobileNum": ten(phone), "message": "STOP"},
                                token="guess")
    assert answer.status_code == 401
    assert signals_of(stack, phone) == []


def test_redelivery_is_a_duplicate_and_changes_nothing(stack):
    phone, sid = new_phone(), new_sid()
    first = stack.sms("STOP", phone, sid)
    again = stack.sms("STOP", phone, sid, **{})
    retry = stack.post_twilio(stack.twilio_params("STOP", phone, sid), headers={"I-Twilio-Idempotency-Token": "x"})
    assert first.status_code == again.status_code == retry.status_code == 200
    assert len({first.headers["webhook-id"], again.headers["webhook-id"], retry.headers["webhook-id"]}) == 3
    verify_receipt(stack, again)
    assert len(signals_of(stack, phone)) == 1
    stack.settled(phone)
    assert len(stack.opt_out_calls(ten(phone))) == 1


def test_crmtext_duplicate_repeats_the_first_answer(stack):
    phone, msg_id = new_phone(), secrets.token_hex(6)
    fields = {"msgID": msg_id, "mobileNum": ten(phone), "message": "QUIT", "optInStatus": "Opt-out"}
    first, again = stack.post_crmtext(fields), stack.post_crmtext(fields)
    assert first.json()["status"] == "accepted"
    assert again.json()["status"] == "duplicate"
    assert again.json()["event_ids"] == first.json()["event_ids"] == [msg_id]
    assert again.json()["original_receipt_id"] == first.json()["receipt_id"]
    assert again.json()["changes"] == []


def test_stop_twice_delivers_once(stack):
    phone = new_phone()
    stack.sms("STOP", phone, new_sid())
    stack.sms("stop", phone, new_sid())
    assert len(signals_of(stack, phone)) == 2
    rows = stack.settled(phone)
    assert len(rows) == 2
    assert len(stack.opt_out_calls(ten(phone))) == 1


def test_stop_start_stop_delivers_again(stack):
    phone = new_phone()
    stack.sms("STOP", phone, new_sid())
    stack.settled(phone)
    stack.sms("START", phone, new_sid())
    assert stack.query("SELECT state FROM consent WHERE identity = :p", p=phone) == []
    stack.sms("STOP", phone, new_sid())
    rows = stack.settled(phone)
    assert [r.crm for r in rows].count("crmtext") == 2
    # CRM Text answers the second OptOutCustomer "already opted out": done, not retried forever.
    assert all(r.status == "done" for r in rows)


def test_crmtext_callback_of_an_opt_out_it_applied_never_calls_optoutcustomer(stack):
    phone = new_phone()
    answer = stack.post_crmtext({"msgID": secrets.token_hex(6), "mobileNum": ten(phone), "message": "STOP",
                                 "optInStatus": "Opt-out", "keyword": "GRAND"})
    assert answer.status_code == 200
    assert answer.json()["changes"] == [{"phone": phone, "states": ["sms_ban"]}]
    verify_receipt(stack, answer)
    rows = stack.settled(phone)
    assert sorted((r.crm, r.status) for r in rows) == [("crmtext", "skipped"), ("experience", "done")]
    assert stack.opt_out_calls(ten(phone)) == []
    assert stack.experience_records(phone)


@pytest.mark.parametrize("text", ["UNSUBSCRIBE", "please stop texting me"])
def test_crmtext_callback_of_an_opt_out_it_does_not_handle_calls_optoutcustomer_once(stack, text):
    # Issue 10.10: CRM Text acts on STOP and QUIT only (crm-apis.md, OptOutCustomer); its callback
    # (crm-apis.md's field table) still says Opt-in, so without our call the store keeps texting.
    phone = new_phone()
    answer = stack.post_crmtext({"msgID": secrets.token_hex(6), "mobileNum": ten(phone), "message": text,
                                 "optInStatus": "Opt-in", "keyword": "GRAND", "custID": "112233"})
    assert answer.status_code == 200
    assert answer.json()["changes"] == [{"phone": phone, "states": ["sms_ban"]}]
    rows = stack.settled(phone)
    assert sorted((r.crm, r.status) for r in rows) == [("crmtext", "done"), ("experience", "done")]
    assert len(stack.opt_out_calls(ten(phone))) == 1


def test_non_us_number_is_recorded_and_skipped_for_crmtext(stack):
    phone = "+447700900" + f"{secrets.randbelow(1000):03d}"
    answer = stack.sms("STOP", phone, new_sid())
    assert answer.status_code == 200
    rows = stack.settled(phone)
    crmtext = [r for r in rows if r.crm == "crmtext"][0]
    assert crmtext.status == "skipped" and "US" in crmtext.reason
    assert [r.status for r in rows if r.crm == "experience"] == ["done"]


def test_unknown_source_is_404(stack):
    answer = stack.http.post(stack.web_url + "/hooks/nobody", data={"Body": "STOP"}, timeout=5)
    assert answer.status_code == 404
    assert "error" in answer.json()


def test_oversized_body_is_413_and_nothing_stored(stack):
    phone = new_phone()
    params = stack.twilio_params("STOP", phone, new_sid(), Padding="x" * 300_000)
    answer = stack.post_twilio(params)
    assert answer.status_code == 413
    assert signals_of(stack, phone) == []


@pytest.mark.parametrize("padding, status", [(300_000, 413), (1000, 200)])
def test_chunked_bodies_are_capped_like_sized_ones(stack, padding, status):
    """gunicorn de-chunks the body and passes no Content-Length: the cap must still hold, not cut the body."""
    phone = new_phone()
    params = stack.twilio_params("STOP", phone, new_sid(), Padding="x" * padding)
    body = urlencode(params).encode()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_BASE_URL + "/hooks/twilio", params)
    chunks = (body[n:n + 65536] for n in range(0, len(body), 65536))  # a generator: requests sends it chunked

    answer = stack.http.post(stack.web_url + "/hooks/twilio", data=chunks, timeout=15, headers={
        "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})

    assert answer.status_code == status
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert len(signals_of(stack, phone)) == (1 if status == 200 else 0)
    if status == 200:
        stack.settled(phone)  # its deliveries done, so a later test's CRM faults are not spent on them


def test_get_changes_nothing(stack):
    answer = stack.http.get(stack.web_url + "/hooks/twilio", params={"Body": "STOP", "From": new_phone()}, timeout=5)
    assert answer.status_code == 405


def test_hostile_xml_from_crmtext_is_retried_not_fatal(stack):
    # Every hostile or broken answer (malformed, truncated, external_entity too) is an unknown outcome
    # in tests/unit/crm/test_crmtext.py, which the worker's unit tests check; one goes end to end.
    stack.fault("crmtext", "billion_laughs", count=2)
    phone = new_phone()
    stack.sms("STOP", phone, new_sid())
    rows = stack.settled(phone)
    crmtext = [r for r in rows if r.crm == "crmtext"][0]
    assert crmtext.status == "done"
    assert crmtext.attempts >= 3
    assert stack.processes["worker"].poll() is None  # the worker survived
    # the faulted answers came after the opt-out happened; the retries asked first, never re-texting
    assert len(stack.opt_out_calls(ten(phone))) >= 1
    assert len([c for c in stack.opt_out_calls(ten(phone)) if not c.get("fault")]) <= 1


def test_experience_500_for_a_while_then_recovers(stack):
    stack.fault("experience", "500", count=3)
    phone = new_phone()
    stack.sms("STOP", phone, new_sid())
    rows = stack.settled(phone)
    experience = [r for r in rows if r.crm == "experience"][0]
    assert experience.status == "done" and experience.attempts == 4
    assert len(stack.experience_records(phone)) == 1


def test_rate_limited_with_retry_after_is_honoured(stack):
    stack.fault("crmtext", "429", count=1, retry_after=1)
    phone = new_phone()
    stack.sms("STOP", phone, new_sid())
    rows = stack.settled(phone)
    assert [r.status for r in rows if r.crm == "crmtext"] == ["done"]
    attempts = stack.query("SELECT a.started_at, a.outcome FROM attempts a JOIN deliveries d ON d.id = a.delivery_id "
                           "WHERE d.identity = :p AND d.crm = 'crmtext' ORDER BY a.id", p=phone)
    assert [a.outcome for a in attempts] == ["retry", "ok"]
    first, second = (datetime.fromisoformat(str(a.started_at)) for a in attempts)
    assert (second - first).total_seconds() >= 0.9


def request_outcomes(stack, request_ids: list[str]) -> list[str]:
    """The outcome web's JSON request line names for each request id, once every line is written."""
    def outcomes():
        lines = [json.loads(line) for line in (stack.tmp / "web.log").read_text().splitlines()
                 if line.startswith("{")]
        found = {line["request_id"]: line.get("outcome") for line in lines if line.get("event") == "request"}
        return [found[i] for i in request_ids] if all(i in found for i in request_ids) else None

    return wait_until(outcomes, timeout=10, message="the request lines")


def test_identical_requests_at_the_same_instant_one_accepted_one_duplicate(stack):
    import threading

    results = []
    for n in range(5):
        phone, sid = new_phone(), new_sid()
        params = stack.twilio_params("STOP", phone, sid)
        barrier = threading.Barrier(2)
        request_ids = [f"same-instant-{sid}-{n}-{twin}" for twin in range(2)]

        def send(request_id, params=params, barrier=barrier):
            session = requests.Session()
            barrier.wait()
            from twilio.request_validator import RequestValidator

            from tests.helpers import PUBLIC_BASE_URL, TWILIO_TOKEN
            signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_BASE_URL + "/hooks/twilio", params)
            results.append(session.post(stack.web_url + "/hooks/twilio", data=params, timeout=15, headers={
                "X-Twilio-Signature": signature, "X-Request-ID": request_id}).status_code)

        threads = [threading.Thread(target=send, args=(request_id,)) for request_id in request_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(signals_of(stack, phone)) == 1
        assert len(stack.query("SELECT id FROM receipts WHERE request_key = :sid", sid=sid)) == 1
        # TwiML carries no status: the request lines say which twin was recorded and which was its duplicate.
        assert sorted(request_outcomes(stack, request_ids)) == ["accepted", "duplicate"]
    assert results == [200] * 10


def test_logs_hold_no_full_phone_number(stack):
    import re

    phone = new_phone()
    stack.sms("STOP", phone, new_sid())
    stack.settled(phone)
    logs = stack.logs()
    assert "+1555***" in logs  # the worker logged its deliveries, masked
    assert not re.search(r"\+1555\d{7}", logs)
    assert ten(phone) not in logs
