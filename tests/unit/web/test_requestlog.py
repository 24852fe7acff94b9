"""One masked JSON line per request, the request id echoed, and the JSON formatter behind both."""

import io
import json
import logging
import time

import pytest

from receiver.logs import JsonFormatter, MaskingFilter
from tests.helpers import twilio_signature, twilio_sms

PHONE, EMAIL = "+15551234567", "guest@example.com"


def request_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "receiver.requests"]


def stop(client, sid: str = "SM" + "0" * 32, query: str = "", **headers):
    params = twilio_sms(sid=sid, phone=PHONE)
    signature = twilio_signature("/hooks/twilio", params, query=query)
    return client.post("/hooks/twilio" + ("?" + query if query else ""), data=params,
                       headers={"X-Twilio-Signature": signature, **headers})


def test_a_hook_request_is_one_json_line(client, receiver_log):
    started = time.perf_counter()
    response = stop(client, **{"X-Request-ID": "3f1c7a9e-4b2d-4e8f-9a6b-1c2d3e4f5a6b"})
    elapsed_ms = (time.perf_counter() - started) * 1000

    [line] = request_lines(receiver_log())
    assert response.headers["X-Request-ID"] == "3f1c7a9e-4b2d-4e8f-9a6b-1c2d3e4f5a6b"
    assert line["request_id"] == "3f1c7a9e-4b2d-4e8f-9a6b-1c2d3e4f5a6b"
    assert (line["level"], line["event"], line["method"], line["path"]) == ("INFO", "request", "POST", "/hooks/twilio")
    assert (line["source"], line["status"], line["outcome"]) == ("twilio", 200, "accepted")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["duration_ms"] <= elapsed_ms + 0.1  # milliseconds (rounded to 0.1) of this request, not seconds
    assert set(line) >= {"time", "level", "logger", "event", "request_id", "method", "path", "status", "duration_ms"}


def test_duplicate_and_refused_requests_say_so(client, receiver_log):
    stop(client)
    stop(client)
    client.post("/hooks/twilio", data=twilio_sms(), headers={"X-Twilio-Signature": "bm9wZQ=="})

    lines = request_lines(receiver_log())
    assert [(line["status"], line["outcome"]) for line in lines[:2]] == [(200, "accepted"), (200, "duplicate")]
    assert lines[2]["status"] == 401 and "signature" in lines[2]["outcome"].lower()
    assert len({line["request_id"] for line in lines}) == 3


@pytest.mark.parametrize("given", [None, "", "x" * 300, "two words", "<script>"])
def test_a_missing_or_unusable_request_id_is_replaced(client, receiver_log, given):
    headers = {} if given is None else {"X-Request-ID": given}

    response = client.get("/healthz", headers=headers)

    [line] = request_lines(receiver_log())
    assert response.headers["X-Request-ID"] == line["request_id"]
    assert line["request_id"] != given and len(line["request_id"]) == 32
    assert "source" not in line and "outcome" not in line


def test_query_strings_and_link_tokens_stay_out_of_the_log(client, receiver_log, app):
    from receiver.services import services

    with app.app_context():
        url = services().links.url(_link())
    token = url.rsplit("/u/", 1)[1]

    client.get(f"/u/{token}?lang=fr")
    client.post("/hooks/crmtext?token=callback-token", data={"msgID": "m1", "mobileNum": PHONE[2:], "message": "STOP"})

    text = receiver_log()
    lines = request_lines(text)
    assert lines[0]["path"] == f"/u/{token[:6]}…" and lines[0]["status"] == 200
    assert lines[1]["path"] == "/hooks/crmtext" and lines[1]["source"] == "crmtext"
    assert token not in text and "callback-token" not in text and "lang=fr" not in text


def test_no_full_email_or_phone_in_any_line(client, receiver_log):
    client.post("/forms/unsubscribe", data={"tenant": "grand", "email": EMAIL, "phone": PHONE})
    client.get(f"/hooks/{EMAIL}")
    client.post(f"/hooks/{PHONE}", data={"From": PHONE})

    text = receiver_log()
    assert len(request_lines(text)) == 3
    assert EMAIL not in text and PHONE not in text and PHONE[2:] not in text
    # A path before an address may be part of it (a local part may hold "/"): masked with it.
    assert '"path": "/***@example.com"' in text and "+1555***4567" in text


def test_bodies_are_not_logged(client, receiver_log):
    stop(client)

    assert "MessageSid" not in receiver_log() and "Body" not in receiver_log()


def _link():
    from receiver.links import make_link

    return make_link("grand", EMAIL, PHONE, "marketing", None)


# -- the formatter ------------------------------------------------------------------------------


@pytest.fixture
def json_logger():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("tests.jsonlog")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_structured_records_are_json_and_masked_at_every_level(json_logger):
    logger, stream = json_logger
    fields = {"who": EMAIL, "nested": {"phones": [PHONE, "5551234567"]}, "number": 5551234567, "small": 42,
              "none": None, "ratio": 0.5, "flag": True}

    logger.debug("event for %s", EMAIL, extra={"fields": fields})
    logger.error("failed", extra={"fields": {"id": 7}}, exc_info=ValueError(f"bad {PHONE}"))

    first, second = (json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{"))
    assert first["event"] == "event for g***@example.com" and first["level"] == "DEBUG"
    assert first["who"] == "g***@example.com"
    assert first["nested"] == {"phones": ["+1555***4567", "555***4567"]}
    assert (first["number"], first["small"], first["none"], first["ratio"], first["flag"]) == (
        "555***4567", 42, None, 0.5, True)
    assert second["id"] == 7 and "ValueError: bad +1555***4567" in second["exception"]
    assert EMAIL not in stream.getvalue() and "5551234567" not in stream.getvalue()
    assert fields["who"] == EMAIL  # the caller's dict is left alone


def test_plain_records_keep_the_plain_format(json_logger):
    logger, stream = json_logger

    logger.info("worker %s started", "host:1")

    assert stream.getvalue().rstrip().endswith("INFO tests.jsonlog worker host:1 started")
