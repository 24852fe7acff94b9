"""ListClient against a real local server: retries, refusals, caps and redirects.

Error bodies are the providers' documented ones: Twilio's 401 (error 20003, twilio.com/docs/api/errors/20003),
SendGrid's ``{"errors": [{"field": null, "message": …}]}``, Postmark's ``{"ErrorCode": 10, "Message": …}``.
"""

import gzip
import json
import time

import pytest
from werkzeug.wrappers import Response

from receiver.backfill.pages import (
    BackfillError,
    BadPage,
    CredentialsRefused,
    ListClient,
    PageTooLarge,
    Position,
    Unavailable,
)

from .conftest import json_answer

TWILIO_401 = {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003",
              "status": 401}
POSTMARK_401 = {"ErrorCode": 10, "Message": "No Account or Server API tokens were supplied in the HTTP headers."}


@pytest.mark.parametrize("status,body", [(401, TWILIO_401), (403, POSTMARK_401)])
def test_refused_credentials_name_the_provider_and_are_not_retried(provider, make_client, sleeps, status, body):
    provider.handler = lambda request: json_answer(body, status=status)
    with pytest.raises(CredentialsRefused) as caught:
        make_client("twilio").get_json("/list")
    assert str(caught.value) == f"twilio: credentials refused (HTTP {status})"
    assert caught.value.provider == "twilio"
    assert len(provider.requests) == 1 and sleeps == []


def test_429_waits_for_retry_after_then_succeeds(provider, make_client, sleeps):
    answers = iter([json_answer({"errors": [{"field": None, "message": "too many requests"}]}, status=429,
                                headers={"Retry-After": "7"}),
                    json_answer([{"created": 1443651141, "email": "user1@example.com"}])])
    provider.handler = lambda request: next(answers)
    assert make_client("sendgrid").get_json("/v3/suppression/unsubscribes") == [
        {"created": 1443651141, "email": "user1@example.com"}]
    assert len(provider.requests) == 2
    assert sleeps and sleeps[0] >= 7  # never before Retry-After, whatever the back-off says


def test_5xx_retried_until_attempts_run_out(provider, make_client, sleeps):
    provider.handler = lambda request: Response("upstream down", status=503)
    with pytest.raises(Unavailable, match=r"mailgun: HTTP 503, gave up after 3 attempts"):
        make_client("mailgun").get_json("/v3/d/unsubscribes")
    assert len(provider.requests) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("body", ["<html>Bad gateway</html>", "{\"items\": [", ""])
def test_garbage_page_is_a_clear_error(provider, make_client, body):
    provider.handler = lambda request: Response(body, status=200, content_type="text/html")
    with pytest.raises(BadPage, match=r"^postmark: unexpected answer: not JSON"):
        make_client("postmark").get_json("/dump")
    assert len(provider.requests) == 1  # garbage is not retried: the source stops there


def test_answer_over_the_byte_cap_is_refused(provider, make_client):
    provider.handler = lambda request: json_answer({"Suppressions": ["x" * 5000]})
    with pytest.raises(PageTooLarge, match="exceeds 1000"):
        make_client("postmark", max_bytes=1000).get_json("/dump")


def test_streamed_answer_over_the_cap_is_refused_without_content_length(provider, make_client):
    def chunks():
        for _ in range(100):
            yield b" " * 1000
    provider.handler = lambda request: Response(chunks(), status=200, content_type="application/json")
    with pytest.raises(PageTooLarge, match="exceeds 20000 bytes"):
        make_client("postmark", max_bytes=20_000).get_json("/dump")


@pytest.mark.parametrize("declared", [False, True])
def test_answer_trickling_past_the_deadline_is_retried_then_given_up(provider, make_client, declared):
    def slow():
        for _ in range(20):
            time.sleep(0.05)
            yield b" "
    headers = {"Content-Length": "20"} if declared else {}  # a fixed length, or chunked
    provider.handler = lambda request: Response(slow(), status=200, content_type="application/json",
                                                headers=headers)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="no complete answer .* within the deadline"):
        make_client("twilio", deadline=0.2).get_json("/slow")
    assert time.monotonic() - started < 3
    assert len(provider.requests) == 3


def test_redirects_are_never_followed(provider, make_client):
    def handler(request):
        if request.path == "/elsewhere":
            return json_answer([])
        return Response("", status=302, headers={"Location": f"{provider.url}/elsewhere"})
    provider.handler = handler
    with pytest.raises(BadPage, match="HTTP 302 redirect not followed"):
        make_client("sendgrid").get_json("/v3/suppression/unsubscribes")
    assert [r["path"] for r in provider.requests] == ["/v3/suppression/unsubscribes"]


def test_a_link_to_another_host_is_refused_before_any_request(provider, make_client):
    with pytest.raises(BadPage, match="another host"):
        make_client("mailgun").get_json("https://evil.example/v3/d/unsubscribes?page=next")
    assert provider.requests == []


def test_a_link_on_the_provider_host_is_read_from_our_base_url(provider, make_client):
    provider.handler = lambda request: json_answer({"ok": request.args["page"]})
    client = make_client("mailgun")
    assert client.get_json(provider.url.replace("http://", "https://") + "/v3/d/complaints?page=next") == {
        "ok": "next"}


def test_a_position_reads_back_as_written():
    assert Position.parse(str(Position("+15550001111", "/2010-04-01/x.json?Page=1"))) == Position(
        "+15550001111", "/2010-04-01/x.json?Page=1")
    assert Position.parse(str(Position("spam_reports"))) == Position("spam_reports", "")
    assert Position.parse("") is None


def test_a_request_that_cannot_be_built_is_not_retried(sleeps):
    client = ListClient("twilio", "ftp://api.example.test", sleep=sleeps.append)
    with pytest.raises(BackfillError, match="^twilio: invalid request to ftp://api.example.test/list"):
        client.get_json("/list")
    assert sleeps == []


def test_a_compressed_answer_is_decoded_and_capped_on_its_decoded_size(provider, make_client):
    body = gzip.compress(json.dumps({"Suppressions": [" " * 50_000]}).encode())
    provider.handler = lambda request: Response(body, status=200, content_type="application/json",
                                                headers={"Content-Encoding": "gzip"})
    assert make_client("postmark").get_json("/dump") == {"Suppressions": [" " * 50_000]}
    with pytest.raises(PageTooLarge):  # a small compressed answer that inflates past the cap
        make_client("postmark", max_bytes=10_000).get_json("/dump")
