import base64
import socket
import threading
import time

import pytest
import requests

from receiver.crm.crmtext import DONE_ANSWERS, MAX_ANSWER_BYTES, CrmTextClient, CrmTextResult
from receiver.crm.errors import OutcomeUnknown, Permanent, Retryable
from receiver.settings import CrmTextConfig
from tests.fake_crm import CannedSession

NUMBER = "5551234567"


def client_for(url: str, *, user: str = "u", timeout: float = 2.0) -> CrmTextClient:
    config = CrmTextConfig(base_url=url, user=user, password="p:w", keyword="GRAND", timeout=timeout)
    return CrmTextClient(config)


@pytest.fixture
def client(sandbox):
    return client_for(f"{sandbox.url}/crmtext/smapi/rest")


def test_auth_header_is_basic_of_user_password_keyword(client, sandbox):
    client.opt_out(NUMBER)
    [call] = sandbox.calls("crmtext")
    assert call["authorization"] == "Basic " + base64.b64encode(b"u:p:w:GRAND").decode()
    assert call["keyword"] == "GRAND"


def test_opt_out_posts_ten_digits_form_encoded(client):
    sent = []
    client.session.hooks["response"].append(lambda resp, **kw: sent.append(resp.request))
    client.opt_out(NUMBER)
    [req] = sent
    assert req.method == "POST" and "?" not in req.url
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.body == f"method=optoutcustomer&phone_number={NUMBER}"


def test_opt_out_ok_then_already_done(client, sandbox):
    assert client.opt_out(NUMBER) == CrmTextResult(already_done=False, status="200", message="ok")
    again = client.opt_out(NUMBER)
    assert again.already_done and again.status == "400" and "already" in again.message
    assert [c["method"] for c in sandbox.calls("crmtext")] == ["optoutcustomer"] * 2


def test_customer_status_after_opt_out_and_unknown(client):
    assert client.customer_status(NUMBER) is None
    client.opt_out(NUMBER)
    assert client.customer_status(NUMBER) == 5
    assert client.customer_status("5550000000") is None


def test_xml_status_wins_over_http_200(sandbox):
    # No user in the credential: the sandbox answers HTTP 200 carrying XML status 401.
    with pytest.raises(Retryable) as err:
        client_for(f"{sandbox.url}/crmtext/smapi/rest", user="").opt_out(NUMBER)
    assert err.value.status == 401 and not isinstance(err.value, OutcomeUnknown)


def test_refuses_anything_but_ten_digits(client, sandbox):
    for bad in ("+15551234567", "555123456", "555123456７", "5551234567\n"):
        with pytest.raises(ValueError):
            client.opt_out(bad)
    assert sandbox.calls("crmtext") == []


def test_an_unnamed_4xx_is_retried_never_permanent_nor_done(client, sandbox):
    sandbox.fault("crmtext", "400")
    with pytest.raises(Retryable) as err:
        client.opt_out(NUMBER)
    assert err.value.status == 400 and "sandbox fault" in err.value.detail
    assert not isinstance(err.value, OutcomeUnknown | Permanent)


def test_5xx_is_an_unknown_outcome(client, sandbox):
    # Issue 11.3: the error page of what sits in front of the CRM can hide a call that applied.
    sandbox.fault("crmtext", "500")
    with pytest.raises(OutcomeUnknown) as err:
        client.opt_out(NUMBER)
    assert err.value.status == 500


def test_429_carries_retry_after(client, sandbox):
    sandbox.fault("crmtext", "429", retry_after=7)
    with pytest.raises(Retryable) as err:
        client.opt_out(NUMBER)
    assert err.value.status == 429 and err.value.retry_after == 7.0


@pytest.mark.parametrize("mode", ["malformed", "billion_laughs", "external_entity", "truncated"])
def test_unusable_xml_after_http_200_is_outcome_unknown(client, sandbox, mode):
    sandbox.fault("crmtext", mode)
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown) as err:
        client.opt_out(NUMBER)
    assert time.monotonic() - started < 1
    assert err.value.detail and len(err.value.detail) <= 500
    assert [c.get("fault") for c in sandbox.calls("crmtext")] == [mode]


def test_slow_answer_is_outcome_unknown_and_did_happen(sandbox):
    client = client_for(f"{sandbox.url}/crmtext/smapi/rest", timeout=0.2)
    sandbox.fault("crmtext", "slow", delay=0.6)
    with pytest.raises(OutcomeUnknown):
        client.opt_out(NUMBER)
    deadline = time.monotonic() + 2
    while client.customer_status(NUMBER) != 5:
        assert time.monotonic() < deadline, "the slow opt-out was never applied"
        time.sleep(0.05)


def test_connection_refused_is_retryable_not_unknown():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Retryable) as err:
        client_for(f"http://127.0.0.1:{port}/smapi/rest").opt_out(NUMBER)
    assert not isinstance(err.value, OutcomeUnknown)


def test_hang_up_after_request_is_outcome_unknown():
    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        with pytest.raises(OutcomeUnknown):
            client_for(f"http://127.0.0.1:{listener.getsockname()[1]}/smapi/rest").opt_out(NUMBER)
    finally:
        listener.close()


def stub_client(status: int, body: str, headers: dict | None = None) -> CrmTextClient:
    config = CrmTextConfig(base_url="https://crm.test/smapi/rest", user="u", password="p", keyword="K")
    return CrmTextClient(config, session=CannedSession(status, body.encode(), headers))


def test_vendor_style_spaces_after_equals_parse():
    body = '<response op= "optoutcustomer" status= "200" message= "ok"></response>'
    assert stub_client(200, body).opt_out(NUMBER).status == "200"


def test_http_4xx_but_xml_200_is_ok():
    body = '<response op="optoutcustomer" status="200" message="ok"/>'
    assert stub_client(400, body).opt_out(NUMBER) == CrmTextResult(False, "200", "ok")


def test_http_200_but_xml_503_is_retryable_with_retry_after():
    body = '<response op="optoutcustomer" status="503" message="busy"/>'
    with pytest.raises(Retryable) as err:
        stub_client(200, body, {"Retry-After": "3"}).opt_out(NUMBER)
    assert err.value.status == 503 and err.value.retry_after == 3.0


@pytest.mark.parametrize("status, body", [
    (200, ""),
    (200, "<html>maintenance</html>"),
    (200, '<response op="optoutcustomer" status="4xx" message="reason"/>'),
    (200, '<response op="optoutcustomer" message="no status"/>'),
    (200, '<!DOCTYPE response><response status="200" message="ok"/>'),
    (503, "Service Unavailable"),
    (401, "<html>proxy login</html>"),
])
def test_unusable_answers_are_retryable(status, body):
    with pytest.raises(Retryable) as err:
        stub_client(status, body).opt_out(NUMBER)
    assert err.value.status == status


def test_customer_status_without_optin_status_is_retryable():
    body = '<response op="getcustomerinfo" status="200" message="ok"><customer/></response>'
    with pytest.raises(Retryable):
        stub_client(200, body).customer_status(NUMBER)


# -- the vendor's documented answer shapes (issue 10.13) ------------------------------------------
# The vendor's sample (vendor/crmtext-optoutcustomer.txt) puts fields directly under <response>;
# public client libraries read a <customer> child; the status tag's case varies (crm-apis.md, 2).

@pytest.mark.parametrize("layout", ["flat", "customer"])
@pytest.mark.parametrize("status_tag", ["optinStatus", "optInStatus", "OPTINSTATUS"])
def test_customer_status_reads_every_documented_shape(client, sandbox, layout, status_tag):
    resp = requests.post(f"{sandbox.url}/_sandbox/crmtext/shape", json={"layout": layout, "status_tag": status_tag},
                         timeout=5)
    resp.raise_for_status()
    assert client.customer_status(NUMBER) is None
    client.opt_out(NUMBER)
    assert client.customer_status(NUMBER) == 5


@pytest.mark.parametrize("body", [
    '<response op= "getcustomerinfo" status= "200" message= "ok"><timestamp>2014-08-11 14:23:36</timestamp>'
    "<custName>John Queue</custName><optinStatus>5</optinStatus></response>",
    '<response op="getcustomerinfo" status="200" message="ok"><optInStatus> 5 </optInStatus></response>',
    '<Response op="getcustomerinfo" status="200" message="ok"><customer><OptinStatus>5</OptinStatus>'
    "</customer></Response>",
])
def test_customer_status_directly_under_response_any_case(body):
    assert stub_client(200, body).customer_status(NUMBER) == 5


@pytest.mark.parametrize("body", [
    '<response op="getcustomerinfo" status="200" message="ok"><optinStatus>5</optinStatus>'
    "<customer><optInStatus>3</optInStatus></customer></response>",  # two answers in one
    '<response op="getcustomerinfo" status="200" message="ok"><optinStatus>opted out</optinStatus></response>',
])
def test_customer_status_that_is_not_one_known_code_is_retryable(body):
    with pytest.raises(Retryable):
        stub_client(200, body).customer_status(NUMBER)


# -- which error answers mean "done" (issue 11.1) -------------------------------------------------

@pytest.mark.parametrize("message", sorted(DONE_ANSWERS) + ["Customer already opted-out.", "CUSTOMER NOT FOUND"])
def test_only_the_named_answers_are_done(message):
    body = f'<response op="optoutcustomer" status="400" message="{message}"/>'
    assert stub_client(200, body).opt_out(NUMBER) == CrmTextResult(True, "400", message)


@pytest.mark.parametrize("message", [
    "Store not found for keyword", "User not found", "Keyword not found", "Already processing a request",
    "Customer already opted out of another store? contact support",
])
def test_other_4xx_answers_are_failures_retried(message):
    body = f'<response op="optoutcustomer" status="404" message="{message}"/>'
    with pytest.raises(Retryable) as err:
        stub_client(200, body).opt_out(NUMBER)
    assert not isinstance(err.value, OutcomeUnknown) and err.value.detail == message


def test_a_store_error_on_getcustomerinfo_is_not_an_unknown_customer():
    body = '<response op="getcustomerinfo" status="404" message="Store not found for keyword"/>'
    with pytest.raises(Retryable):
        stub_client(200, body).customer_status(NUMBER)
    unknown = '<response op="getcustomerinfo" status="404" message="Customer not found"/>'
    assert stub_client(200, unknown).customer_status(NUMBER) is None


# -- 5xx and pages from in front of the CRM (issue 11.3) ------------------------------------------

@pytest.mark.parametrize("status, body", [
    (502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
    (503, "Service Unavailable"),
    (200, "<html>maintenance</html>"),
    (200, '<response op="optoutcustomer" status="500" message="internal error"/>'),
])
def test_5xx_and_html_answers_are_unknown_outcomes(status, body):
    with pytest.raises(OutcomeUnknown):
        stub_client(status, body).opt_out(NUMBER)


def test_a_rate_limit_page_is_retryable_not_unknown():
    with pytest.raises(Retryable) as err:
        stub_client(429, "Too Many Requests", {"Retry-After": "5"}).opt_out(NUMBER)
    assert not isinstance(err.value, OutcomeUnknown) and err.value.retry_after == 5.0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirected_opt_out_is_an_unknown_outcome(status):
    # Review F5: the server handled the POST before answering 3xx, so it may have texted the guest:
    # the status is checked before any second optoutcustomer.
    with pytest.raises(OutcomeUnknown) as err:
        stub_client(status, "", {"Location": "https://crm.test/elsewhere"}).opt_out(NUMBER)
    assert err.value.status == status


def test_an_answer_over_the_cap_is_an_unknown_outcome():
    # An answer is a few hundred bytes (the vendor's sample); a gateway's error page a few KB.
    page = "<html><body>" + "x" * 8000 + "</body></html>"
    with pytest.raises(OutcomeUnknown) as err:
        stub_client(502, page).opt_out(NUMBER)
    assert "unusable CRM Text answer" in str(err.value)  # read whole: too big for nothing
    body = '<response op="optoutcustomer" status="200" message="ok"/>' + " " * MAX_ANSWER_BYTES
    with pytest.raises(OutcomeUnknown) as err:
        stub_client(200, body).opt_out(NUMBER)
    assert f"over {MAX_ANSWER_BYTES} bytes" in str(err.value)
