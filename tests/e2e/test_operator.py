"""The operator API end to end: the token, look-ups after each channel's opt-out, a dead letter
after the CRM's permanent refusal and its replay once the fault is cleared, the streamed export."""

import json
import secrets
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from tests.e2e.shared import PARTNER_SECRET
from tests.e2e.stack import ADMIN_TOKEN
from tests.e2e.test_sms import new_phone
from tests.helpers import PUBLIC_BASE_URL

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def v1(stack, method: str, path: str, **kwargs):
    return stack.http.request(method, f"{stack.web_url}/v1{path}", timeout=15, **kwargs)


def consent(stack, **params) -> dict:
    resp = v1(stack, "GET", "/consent", params={"tenant": "grand", **params}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return resp.json()["states"]


@pytest.mark.parametrize("method, path", [
    ("GET", "/consent?tenant=grand&email=a@example.com"), ("POST", "/consent/check"), ("GET", "/events"),
    ("GET", "/deliveries"), ("POST", "/deliveries/1/replay"), ("GET", "/export.csv"), ("POST", "/links"),
])
def test_every_endpoint_refuses_without_the_token(stack, method, path):
    assert v1(stack, method, path, json={}).status_code == 401
    assert v1(stack, method, path, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_look_up_after_each_channel(stack):
    phone, email = new_phone(), f"guest-{secrets.token_hex(4)}@example.com"
    assert consent(stack, phone=phone) == {}

    stack.sms("STOP", phone, sid="SM" + secrets.token_hex(16))
    assert set(consent(stack, phone=phone)) == {"sms_ban"}

    link = v1(stack, "POST", "/links", json={"tenant": "grand", "email": email}, headers=ADMIN).json()["url"]
    stack.http.post(stack.web_url + link.removeprefix(PUBLIC_BASE_URL), data="List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=15)
    assert set(consent(stack, email=email)) == {"marketing_decline"}

    form_email = f"form-{secrets.token_hex(4)}@example.com"
    stack.http.post(f"{stack.web_url}/forms/unsubscribe", json={"tenant": "grand", "email": form_email,
                                                                "email_marketing": True}, timeout=15)
    assert set(consent(stack, email=form_email)) == {"marketing_decline"}

    partner_email = f"partner-{secrets.token_hex(4)}@example.com"
    body = json.dumps({"id": "evt_" + secrets.token_hex(6), "type": "consent.opt_out",
                       "customer": {"email": partner_email}, "states": ["mail_ban"]})
    msg_id = "msg_" + secrets.token_hex(6)
    stack.http.post(f"{stack.web_url}/hooks/booking-engine", data=body, timeout=15, headers={
        "Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(int(time.time())),
        "webhook-signature": Webhook(PARTNER_SECRET).sign(msg_id, datetime.now(UTC), body)})
    assert set(consent(stack, email=partner_email)) == {"mail_ban"}

    check = v1(stack, "POST", "/consent/check", headers=ADMIN, json={"tenant": "grand", "recipients": [
        {"phone": phone}, {"email": email}, {"email": partner_email}]}).json()["recipients"]
    assert [(r["marketing_sms"], r["marketing_email"], r["transactional_email"]) for r in check] == [
        (False, True, True), (True, False, True), (True, False, False)]

    events = v1(stack, "GET", "/events", params={"email": partner_email}, headers=ADMIN).json()["items"]
    assert [(e["source"], e["status"]) for e in events] == [("booking-engine", "accepted")]
    assert len(events[0]["evidence_sha256"]) == 64


def test_dead_letter_after_a_permanent_refusal_then_replay(stack):
    phone = new_phone()
    stack.fault("experience", "400")
    stack.sms("STOP", phone, sid="SM" + secrets.token_hex(16))
    rows = stack.settled(phone)
    assert {r.crm: r.status for r in rows} == {"crmtext": "done", "experience": "dead"}

    dead = [d for d in v1(stack, "GET", "/deliveries", params={"status": "dead", "limit": 1000},
                          headers=ADMIN).json()["items"] if d["identity"] == phone]
    assert len(dead) == 1 and "bad request" in dead[0]["last_error"]
    assert dead[0]["attempt_log"][-1]["outcome"] == "permanent"

    stack.clear_faults()
    before = len(stack.experience_records(phone))
    resp = v1(stack, "POST", f"/deliveries/{dead[0]['id']}/replay", headers=ADMIN)
    assert resp.status_code == 200 and resp.json()["previous_status"] == "dead"
    assert {r.crm: r.status for r in stack.settled(phone)} == {"crmtext": "done", "experience": "done"}
    assert len(stack.experience_records(phone)) == before + 1
    assert len(stack.opt_out_calls(phone[2:])) == 1  # the replay did not text the guest again
    assert v1(stack, "POST", f"/deliveries/{dead[0]['id']}/replay", headers=ADMIN).status_code == 409


def test_export_streams_csv(stack):
    phone = new_phone()
    stack.sms("STOP", phone, sid="SM" + secrets.token_hex(16))
    resp = v1(stack, "GET", "/export.csv", params={"tenant": "grand"}, headers=ADMIN, stream=True)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
    lines = resp.text.splitlines()
    assert lines[0] == "tenant,identity,state,since"
    assert any(line.startswith(f"grand,{phone},sms_ban,") for line in lines[1:])
