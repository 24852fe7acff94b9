"""The operator API's read side: consent look-up and check, events, deliveries, replay, the CSV export."""

import csv
import io

import pytest
from sqlalchemy import select, update

from receiver import create_app
from receiver.ledger.models import Delivery
from tests.helpers import make_settings, twilio_signature, twilio_sms

ADMIN = {"Authorization": "Bearer admin-token"}
PHONE, EMAIL = "+15551234567", "guest@example.com"


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def sms(client, body="STOP", phone=PHONE, sid=None):
    params = twilio_sms(sid=sid or f"SM{abs(hash((body, phone))):032x}"[:34], body=body, phone=phone)
    resp = client.post("/hooks/twilio", data=params, headers={"X-Twilio-Signature": twilio_signature(
        "/hooks/twilio", params)})
    assert resp.status_code == 200
    return resp


def form(client, **fields):
    resp = client.post("/forms/unsubscribe", json={"tenant": "grand", **fields})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def get(client, path, **params):
    resp = client.get(path, query_string=params, headers=ADMIN)
    return resp.status_code, resp.get_json()


@pytest.mark.parametrize("method, path", [
    ("get", "/v1/consent?tenant=grand&email=a@example.com"), ("post", "/v1/consent/check"),
    ("get", "/v1/events"), ("get", "/v1/deliveries"), ("post", "/v1/deliveries/1/replay"),
    ("get", "/v1/export.csv"), ("post", "/v1/links"),
])
def test_every_endpoint_needs_the_token(client, tmp_path, database_url, method, path):
    resp = getattr(client, method)(path, json={})
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert getattr(client, method)(path, json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    off = create_app(make_settings(tmp_path, database_url))
    assert getattr(off.test_client(), method)(path, json={}, headers=ADMIN).status_code == 404
    off.extensions["receiver"].engine.dispose()


def test_consent_of_an_unknown_identity_is_empty(client):
    assert get(client, "/v1/consent", tenant="grand", email="nobody@example.com") == (200, {
        "tenant": "grand", "email": "nobody@example.com", "phone": None, "states": {}})


def test_consent_after_an_sms_stop_and_a_form(client):
    sms(client)
    form(client, email=EMAIL, email_marketing=True)
    status, body = get(client, "/v1/consent", tenant="grand", phone="(555) 123-4567")
    assert status == 200 and body["phone"] == PHONE and set(body["states"]) == {"sms_ban"}
    assert body["states"]["sms_ban"].endswith("Z")
    _, both = get(client, "/v1/consent", tenant="grand", phone=PHONE, email=EMAIL.upper().replace("GUEST", "guest"))
    assert set(both["states"]) == {"sms_ban", "marketing_decline"}


@pytest.mark.parametrize("params, field", [
    ({"email": EMAIL}, "tenant"),
    ({"tenant": "grand"}, "email"),
    ({"tenant": "nowhere", "email": EMAIL}, "tenant"),
    ({"tenant": "grand", "email": "nope"}, "email"),
    ({"tenant": "grand", "phone": "12"}, "phone"),
    ({"tenant": "grand", "email": EMAIL, "colour": "red"}, "colour"),
])
def test_consent_errors_name_the_field(client, params, field):
    status, body = get(client, "/v1/consent", **params)
    assert status == 400 and body["field"] == field


def test_consent_check_answers_each_recipient(client):
    sms(client)
    form(client, email=EMAIL, email_marketing=True)
    resp = client.post("/v1/consent/check", headers=ADMIN, json={"tenant": "grand", "recipients": [
        {"email": EMAIL}, {"phone": PHONE}, {"email": "new@example.com"}, {"email": EMAIL, "phone": PHONE}]})
    assert resp.status_code == 200
    got = [{k: r[k] for k in ("marketing_email", "transactional_email", "marketing_sms", "transactional_sms")}
           for r in resp.get_json()["recipients"]]
    assert got == [
        {"marketing_email": False, "transactional_email": True, "marketing_sms": True, "transactional_sms": True},
        {"marketing_email": True, "transactional_email": True, "marketing_sms": False, "transactional_sms": False},
        {"marketing_email": True, "transactional_email": True, "marketing_sms": True, "transactional_sms": True},
        {"marketing_email": False, "transactional_email": True, "marketing_sms": False, "transactional_sms": False},
    ]


@pytest.mark.parametrize("body, field", [
    ({"recipients": [{"email": EMAIL}]}, "tenant"),
    ({"tenant": "grand"}, "recipients"),
    ({"tenant": "grand", "recipients": []}, "recipients"),
    ({"tenant": "grand", "recipients": [{"email": EMAIL}] * 1001}, "recipients"),
    ({"tenant": "grand", "recipients": [{"email": EMAIL}, {"email": "bad"}]}, "recipients[1].email"),
    ({"tenant": "grand", "recipients": [{"email": EMAIL}, {}]}, "recipients[1].email"),
    ({"tenant": "grand", "recipients": ["x"]}, "recipients[0]"),
])
def test_consent_check_errors_name_the_field(client, body, field):
    resp = client.post("/v1/consent/check", headers=ADMIN, json=body)
    assert resp.status_code == 400 and resp.get_json()["field"] == field


def test_events_are_the_audit_trail_with_cursor_pages(client):
    for n in range(5):
        sms(client, phone=f"+1555000000{n}", sid=f"SM{n:032d}")
    status, first = get(client, "/v1/events", tenant="grand", limit=2)
    assert status == 200 and len(first["items"]) == 2 and first["next_cursor"]
    item = first["items"][0]
    assert set(item) >= {"id", "source", "kind", "received_at", "receipt_id", "status", "changes", "evidence_sha256"}
    assert (item["source"], item["kind"], item["status"]) == ("twilio", "opt_out", "accepted")
    assert len(item["evidence_sha256"]) == 64 and item["changes"] == [{"phone": "+15550000000", "states": ["sms_ban"]}]
    seen, cursor = [i["id"] for i in first["items"]], first["next_cursor"]
    while cursor:
        _, page = get(client, "/v1/events", tenant="grand", limit=2, cursor=cursor)
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == 5 and seen == sorted(seen)
    _, one = get(client, "/v1/events", phone="+15550000003")
    assert [i["phone"] for i in one["items"]] == ["+15550000003"]
    _, none = get(client, "/v1/events", since="2999-01-01")
    assert none == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("params, field", [
    ({"cursor": "garbage!"}, "cursor"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
    ({"since": "yesterday"}, "since"), ({"tenant": "nowhere"}, "tenant"),
    ({"since": "0001-01-01T00:00:00+01:00"}, "since"), ({"since": "9999-12-31T23:59:59-01:00"}, "since"),
    ({"cursor": "aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}, "cursor"),  # id:99999999999999999999999
])
def test_events_errors_name_the_field(client, params, field):
    status, body = get(client, "/v1/events", **params)
    assert status == 400 and body["field"] == field


def test_deliveries_by_status_and_replay(client, engine):
    sms(client)
    status, body = get(client, "/v1/deliveries", status="pending")
    assert status == 200 and sorted(i["crm"] for i in body["items"]) == ["crmtext", "experience"]
    crm_text = next(i for i in body["items"] if i["crm"] == "crmtext")
    assert set(crm_text) >= {"id", "crm", "status", "attempts", "last_error", "created_at", "attempt_log"}
    assert client.post(f"/v1/deliveries/{crm_text['id']}/replay", headers=ADMIN).status_code == 409
    with engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.id == crm_text["id"]).values(
            status="dead", attempts=10, last_error="HTTP 403: account suspended"))
    _, dead = get(client, "/v1/deliveries", status="dead")
    assert [(i["id"], i["last_error"]) for i in dead["items"]] == [(crm_text["id"], "HTTP 403: account suspended")]
    resp = client.post(f"/v1/deliveries/{crm_text['id']}/replay", headers=ADMIN)
    assert resp.status_code == 200 and resp.get_json()["previous_status"] == "dead"
    _, again = get(client, "/v1/deliveries", status="pending")
    replayed = next(i for i in again["items"] if i["id"] == crm_text["id"])
    assert replayed["attempts"] == 0
    assert client.post("/v1/deliveries/999999/replay", headers=ADMIN).status_code == 404
    assert get(client, "/v1/deliveries", status="lost")[0] == 400


def test_export_streams_one_row_per_identity_and_state(client):
    sms(client)
    form(client, email=EMAIL)
    resp = client.get("/v1/export.csv", headers=ADMIN)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert sorted((r["identity"], r["state"]) for r in rows) == [
        (PHONE, "sms_ban"), (EMAIL, "marketing_decline"), (EMAIL, "marketing_decline_sms")]
    assert all(r["tenant"] == "grand" and r["since"].endswith("Z") for r in rows)
    empty = client.get("/v1/export.csv", query_string={"since": "2999-01-01"}, headers=ADMIN)
    assert empty.get_data(as_text=True) == "tenant,identity,state,since\n"


def dead(engine, crm: str) -> int:
    with engine.begin() as conn:
        delivery_id = conn.execute(select(Delivery.id).where(Delivery.crm == crm)).scalar()
        conn.execute(update(Delivery).where(Delivery.id == delivery_id).values(status="dead", attempts=10))
    return delivery_id


def test_replay_is_refused_once_the_guest_re_consented(client, engine):
    sms(client)
    delivery_id = dead(engine, "crmtext")
    sms(client, body="START")
    resp = client.post(f"/v1/deliveries/{delivery_id}/replay", headers=ADMIN)
    assert resp.status_code == 409 and "owed no more" in resp.get_json()["error"]


def test_skipped_deliveries_are_not_replayed(client, engine):
    sms(client, phone="+447700900123")  # not a US number: CRM Text's delivery is skipped
    with engine.connect() as conn:
        delivery_id = conn.execute(select(Delivery.id).where(Delivery.status == "skipped")).scalar()
    resp = client.post(f"/v1/deliveries/{delivery_id}/replay", headers=ADMIN)
    assert resp.status_code == 409 and "not a US" in resp.get_json()["error"]


def test_a_huge_delivery_id_is_not_found(client):
    assert client.post("/v1/deliveries/99999999999999999999999/replay", headers=ADMIN).status_code == 404


def test_all_of_v1_is_one_blueprint_in_one_package(app):
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1/")]
    assert len(rules) == 14 and {rule.endpoint.split(".")[0] for rule in rules} == {"v1"}
    assert all(app.view_functions[rule.endpoint].__module__.startswith("receiver.web.v1.") for rule in rules)
