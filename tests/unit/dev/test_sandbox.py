import base64
import gzip
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from receiver.dev.sandbox import create_sandbox_app

AUTH = {"Authorization": "Basic " + base64.b64encode(b"user:pass:GRAND").decode()}
BEARER = {"Authorization": "Bearer a:b"}
CRMTEXT = "/crmtext/smapi/rest"
OPT_OUT = "/experience/api/xp-unsubscribe/opt-out"
RETRIEVE = "/experience/api/xp-unsubscribe/retrieve-opt-out"


@pytest.fixture
def client():
    return create_sandbox_app().test_client()


def crmtext(client, method, number="5551234567", headers=AUTH):
    resp = client.post(CRMTEXT, data={"method": method, "phone_number": number}, headers=headers)
    assert resp.status_code == 200 and resp.mimetype == "text/xml"
    return resp.get_data(as_text=True)


def test_crmtext_opt_out_lifecycle(client):
    assert 'status="404" message="customer not found"' in crmtext(client, "getcustomerinfo")
    first = crmtext(client, "optoutcustomer")
    # The vendor's sample: fields directly under <response>, timestamp and custName only.
    assert re.fullmatch(r'<response op="optoutcustomer" status="200" message="ok">'
                        r"<timestamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</timestamp><custName/></response>", first)
    assert 'status="400" message="Customer already opted out"' in crmtext(client, "optoutcustomer")
    info = crmtext(client, "getcustomerinfo")
    assert "<optinStatus>5</optinStatus>" in info and "<custMobile>5551234567</custMobile>" in info
    assert "<customer>" not in info
    assert 'status="200"' in crmtext(client, "optincustomer")
    assert "<optinStatus>3</optinStatus>" in crmtext(client, "getcustomerinfo")
    calls = client.get("/_sandbox/calls?crm=crmtext").get_json()["calls"]
    assert [c["method"] for c in calls] == ["getcustomerinfo", "optoutcustomer", "optoutcustomer",
                                            "getcustomerinfo", "optincustomer", "getcustomerinfo"]
    assert {c["keyword"] for c in calls} == {"GRAND"} and calls[0]["phone_number"] == "5551234567"


def test_crmtext_stores_are_separate_by_keyword(client):
    crmtext(client, "optoutcustomer")
    other = {"Authorization": "Basic " + base64.b64encode(b"user:pass:OTHER").decode()}
    assert 'status="404"' in crmtext(client, "getcustomerinfo", headers=other)


def test_crmtext_missing_auth_is_xml_401_over_http_200(client):
    assert 'status="401"' in crmtext(client, "optoutcustomer", headers={})
    assert 'status="401"' in crmtext(client, "optoutcustomer",
                                     headers={"Authorization": "Basic " + base64.b64encode(b"u:p").decode()})


def test_crmtext_query_parameters_are_accepted(client):
    resp = client.post(f"{CRMTEXT}?method=optoutcustomer&phone_number=5551234567", headers=AUTH)
    assert 'status="200"' in resp.get_data(as_text=True)


@pytest.mark.parametrize("number", ["+15551234567", "555123456", "55512345678", ""])
def test_crmtext_wants_ten_digits(client, number):
    assert 'status="400"' in crmtext(client, "optoutcustomer", number)


def test_crmtext_unknown_method(client):
    assert 'status="400" message="unknown method"' in crmtext(client, "OptOutCustomer")


def test_experience_opt_out_and_errors(client):
    body = {"recipients": [{"email": "a@example.com", "marketing_decline": "2026-11-22 10:15:00"},
                           {"sms_ban": "2026-11-22 10:15:00"},
                           {"phone": "+15551234567", "sms_ban": "2026-11-22 10:15:00"}]}
    resp = client.post(OPT_OUT, json=body, headers=BEARER)
    assert resp.status_code == 200
    assert resp.get_json() == {"successes": {"0": "a@example.com", "2": "+15551234567"},
                               "errors": {"1": "email or phone is required"}}
    [call] = client.get("/_sandbox/calls?crm=experience").get_json()["calls"]
    assert call["method"] == "opt_out" and call["records"] == body["recipients"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer ab"}, {"Authorization": "Basic a:b"}])
def test_experience_needs_bearer_pair(client, headers):
    assert client.post(OPT_OUT, json={"recipients": []}, headers=headers).status_code == 401


def test_experience_retrieve_pages_without_since_in_next_url(client):
    for start in (0, 250):
        batch = [{"email": f"g{i}@example.com", "mail_ban": "2026-11-22 10:15:00"} for i in range(start, start + 250)]
        assert client.post(OPT_OUT, json={"recipients": batch}, headers=BEARER).status_code == 200
    first = client.get(f"{RETRIEVE}?since=2000-01-01", headers=BEARER).get_json()
    assert len(first["recipients"]) == 250
    assert first["next_page_url"] == f"http://localhost{RETRIEVE}?cursor=250"
    assert client.get(f"{RETRIEVE}?cursor=250", headers=BEARER).status_code == 400
    second = client.get(f"{RETRIEVE}?cursor=250&since=2000-01-01", headers=BEARER).get_json()
    assert len(second["recipients"]) == 250 and second["next_page_url"] is None
    assert client.get(f"{RETRIEVE}?since=2999-01-01", headers=BEARER).get_json()["recipients"] == []


def test_faults_apply_to_next_calls_in_order_and_are_recorded(client):
    assert client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": "500", "count": 2}).status_code == 200
    client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": "429", "retry_after": 9})
    statuses = []
    for _ in range(4):
        resp = client.post(CRMTEXT, data={"method": "optoutcustomer", "phone_number": "5551234567"}, headers=AUTH)
        statuses.append((resp.status_code, resp.headers.get("Retry-After")))
    assert statuses == [(500, None), (500, None), (429, "9"), (200, None)]
    calls = client.get("/_sandbox/calls?crm=crmtext").get_json()["calls"]
    assert [c.get("fault") for c in calls] == ["500", "500", "429", None]
    # The faulted calls were not applied: the fourth one was the first opt-out.
    info = crmtext(client, "getcustomerinfo")
    assert "<optinStatus>5</optinStatus>" in info and "<custMobile>5551234567</custMobile>" in info
    assert "<customer>" not in info


def test_slow_fault_delays_then_applies(client):
    client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": "slow", "delay": 0.2})
    started = time.monotonic()
    assert 'status="200"' in crmtext(client, "optoutcustomer")
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("mode, marker", [
    ("billion_laughs", "<!ENTITY lol9"), ("external_entity", 'SYSTEM "file:///etc/passwd"'),
    ("malformed", "<<<"), ("truncated", "<custId>1</cu"),
])
def test_hostile_and_broken_xml_faults(client, mode, marker):
    client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": mode})
    body = crmtext(client, "optoutcustomer")
    assert marker in body and not body.rstrip().endswith("</response>")
    assert 'status="404"' in crmtext(client, "getcustomerinfo")


@pytest.mark.parametrize("layout", ["flat", "customer"])
@pytest.mark.parametrize("status_tag", ["optinStatus", "optInStatus", "OPTINSTATUS"])
def test_crmtext_answer_shape_variants(client, layout, status_tag):
    assert client.post("/_sandbox/crmtext/shape", json={"layout": layout, "status_tag": status_tag}).status_code == 200
    crmtext(client, "optoutcustomer")
    fields = (f"<custId>100000</custId><subacct>12345</subacct><timestamp>[0-9: -]+</timestamp><custName/>"
              f"<{status_tag}>5</{status_tag}><custMobile>5551234567</custMobile>")
    if layout == "customer":
        fields = f"<customer>{fields}</customer>"
    info = crmtext(client, "getcustomerinfo")
    assert re.fullmatch(f'<response op="getcustomerinfo" status="200" message="ok">{fields}</response>', info)
    client.post("/_sandbox/reset")
    crmtext(client, "optoutcustomer")
    assert "<customer>" not in crmtext(client, "getcustomerinfo")  # reset: the documented flat shape


@pytest.mark.parametrize("spec", [{"layout": "nested"}, {"status_tag": "status"}, {"layout": 3}])
def test_crmtext_answer_shape_validation(client, spec):
    assert client.post("/_sandbox/crmtext/shape", json=spec).status_code == 400


def test_502_html_and_drip_faults_apply_the_call(client):
    client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": "502_html"})
    resp = client.post(CRMTEXT, data={"method": "optoutcustomer", "phone_number": "5551234567"}, headers=AUTH)
    assert resp.status_code == 502 and resp.mimetype == "text/html" and b"502 Bad Gateway" in resp.data
    assert "<optinStatus>5</optinStatus>" in crmtext(client, "getcustomerinfo")

    client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": "drip", "delay": 0.01})
    started = time.monotonic()
    body = crmtext(client, "optoutcustomer", "5550000000")
    assert body.startswith('<response op="optoutcustomer" status="200"')
    assert time.monotonic() - started >= 0.01 * len(body)


def test_gzip_bomb_redirect_and_answer_faults(client):
    client.post("/_sandbox/faults", json={"crm": "experience", "mode": "gzip_bomb", "size_mb": 2})
    resp = client.post(OPT_OUT, json={"recipients": []}, headers=BEARER)
    assert resp.headers["Content-Encoding"] == "gzip" and len(resp.data) < 10_000
    assert gzip.decompress(resp.data) == b"\0" * (2 << 20)

    client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": "redirect"})
    resp = client.post(CRMTEXT, data={"method": "optoutcustomer", "phone_number": "5551234567"}, headers=AUTH)
    assert resp.status_code == 302 and resp.headers["Location"] == "/_sandbox/moved?crm=crmtext"
    assert 'status="200"' in client.get(resp.headers["Location"]).get_data(as_text=True)
    calls = client.get("/_sandbox/calls?crm=crmtext").get_json()["calls"]
    assert [c["method"] for c in calls] == ["optoutcustomer", "followed_redirect"]
    assert 'status="404"' in crmtext(client, "getcustomerinfo")  # not applied

    body = '<response op="optoutcustomer" status="404" message="Store not found for keyword"/>'
    client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": "answer", "body": body, "http_status": 404})
    resp = client.post(CRMTEXT, data={"method": "optoutcustomer", "phone_number": "5551234567"}, headers=AUTH)
    assert (resp.status_code, resp.get_data(as_text=True)) == (404, body)


def test_fault_validation_clear_and_reset(client):
    assert client.post("/_sandbox/faults", json={"crm": "x", "mode": "500"}).status_code == 400
    assert client.post("/_sandbox/faults", json={"crm": "experience", "mode": "nope"}).status_code == 400
    assert client.post("/_sandbox/faults", json={"crm": "crmtext", "mode": "answer", "http_status": 99}).status_code == 400
    client.post("/_sandbox/faults", json={"crm": "experience", "mode": "500"})
    assert client.delete("/_sandbox/faults").status_code == 200
    assert client.post(OPT_OUT, json={"recipients": [{"email": "a@example.com"}]}, headers=BEARER).status_code == 200
    client.post("/_sandbox/faults", json={"crm": "experience", "mode": "500"})
    assert client.post("/_sandbox/reset").status_code == 200
    assert client.get("/_sandbox/calls").get_json() == {"calls": []}
    assert client.get(f"{RETRIEVE}?since=2000-01-01", headers=BEARER).get_json()["recipients"] == []


def test_serve_stops_cleanly_on_sigterm():
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-c", "from receiver.dev.sandbox import serve; serve(port=0)"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert requests.get(f"{url}/_sandbox/calls", timeout=2).json() == {"calls": []}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
