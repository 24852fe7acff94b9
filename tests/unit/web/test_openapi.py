"""/openapi.json, and schemathesis against it: no 5xx, every answer matches its documented schema.

The app runs in-process (WSGI) on the test database, with the admin token, so /v1 is exercised
too, on a ledger holding data (signals of each status, deliveries of each status with attempts,
consent rows) so list items are checked as well; the hypothesis database is off so nothing is
written to the tree.
"""

import re
from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from marshmallow import fields
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import insert, select, update

from receiver import create_app
from receiver.ledger.models import Attempt, Delivery
from receiver.web.openapi import build_spec
from receiver.web.v1.events import EventItem
from tests.helpers import PUBLIC_BASE_URL, make_settings, twilio_signature, twilio_sms

ADMIN = {"Authorization": "Bearer admin-token"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def test_the_document_covers_every_endpoint(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/hooks/{source}", "/u/{token}", "/forms/unsubscribe", "/v1/links", "/v1/consent", "/v1/consent/check",
        "/v1/events", "/v1/deliveries", "/v1/deliveries/{delivery_id}/replay", "/v1/export.csv", "/v1/clocks", "/v1/chain", "/v1/proof", "/v1/erasure", "/healthz",
        "/v1/opt-outs", "/v1/review", "/v1/review/{event_id}",
        "/readyz", "/metrics", "/.well-known/receipt-keys"}
    events = {p["name"] for p in document["paths"]["/v1/events"]["get"]["parameters"]}
    assert events == {"tenant", "email", "phone", "since", "cursor", "limit"}  # from EventsQuery itself
    form = document["components"]["schemas"]["UnsubscribeForm"]
    assert form["required"] == ["tenant"] and "email_marketing" in form["properties"]


def test_every_flask_route_is_documented(app):
    document = app.test_client().get("/openapi.json").get_json()
    documented = {re.sub(r"\{[^}]+\}", "<>", path) for path in document["paths"]}
    # The console's pages are for people in a browser, not part of the API (tests/unit/web/test_console.py).
    routes = {re.sub(r"<[^>]+>", "<>", rule.rule) for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" and not rule.rule.startswith("/console")}
    assert routes <= documented, routes - documented


def test_answers_and_document_come_from_one_schema(client, monkeypatch):
    """A field added to the schema an answer is dumped with shows in the answer and in the document alike."""
    monkeypatch.setitem(EventItem._declared_fields, "probe", fields.Constant("seen", required=True))
    post_sms(client, "+15550000001", "SM" + "1" * 32)
    [item] = client.get("/v1/events", headers=ADMIN).get_json()["items"]
    assert item["probe"] == "seen"
    document = build_spec(PUBLIC_BASE_URL)
    assert "probe" in document["components"]["schemas"]["EventItem"]["required"]


def post_sms(client, phone: str, sid: str, body: str = "STOP") -> None:
    params = twilio_sms(sid=sid, body=body, phone=phone)
    resp = client.post("/hooks/twilio", data=params, headers={
        "X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})
    assert resp.status_code == 200


def fill_the_ledger(app) -> None:
    """Signals accepted and ignored (and a duplicate receipt); deliveries pending, done, skipped and dead
    with attempts; consent rows set and lifted."""
    client = app.test_client()
    post_sms(client, "+15551230001", "SM" + "a" * 32)
    post_sms(client, "+15551230001", "SM" + "a" * 32)  # the same message again: a duplicate
    post_sms(client, "+15551230002", "SM" + "b" * 32)
    post_sms(client, "+15551230002", "SM" + "c" * 32, body="START")  # lifts a state: `removed` in changes
    post_sms(client, "+15551230003", "SM" + "d" * 32, body="hello")  # ignored
    post_sms(client, "+447700900123", "SM" + "e" * 32)  # not a US number: CRM Text's delivery is skipped
    post_sms(client, "+15551230004", "SM" + "f" * 32, body="stop by the pool at 5")  # flagged for review
    post_sms(client, "+15551230005", "SM" + "9" * 32, body="stop by the bar at 6")  # flagged, then decided
    [_, decided] = client.get("/v1/review", headers=ADMIN).get_json()["items"]
    assert client.post(f"/v1/review/{decided['id']}", headers=ADMIN, json={"decision": "honour"}).status_code == 200
    assert client.post("/v1/opt-outs", headers=ADMIN, json={
        "tenant": "grand", "email": "caller@example.com", "phone": "+15551230006", "channel": "phone-call",
        "states": ["sms_ban", "marketing_decline"], "note": "guest called"}).status_code == 201
    assert client.post("/forms/unsubscribe", json={"tenant": "grand", "email": "guest@example.com",
                                                   "email_marketing": True}).status_code == 200
    engine, when = app.extensions["receiver"].engine, datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    with engine.begin() as conn:
        pending = conn.execute(select(Delivery.id).where(Delivery.status == "pending").order_by(Delivery.id)).scalars()
        done, dead = list(pending)[:2]
        conn.execute(update(Delivery).where(Delivery.id == done).values(status="done", attempts=1))
        conn.execute(update(Delivery).where(Delivery.id == dead).values(
            status="dead", attempts=2, last_error="HTTP 403: account suspended"))
        conn.execute(insert(Attempt), [
            {"delivery_id": done, "started_at": when, "finished_at": when, "outcome": "ok", "http_status": 200,
             "detail": None},
            {"delivery_id": dead, "started_at": when, "finished_at": when, "outcome": "retry", "http_status": 500,
             "detail": "HTTP 500"},
            {"delivery_id": dead, "started_at": when, "finished_at": None, "outcome": "started", "http_status": None,
             "detail": None}])
    items = client.get("/v1/deliveries", headers=ADMIN).get_json()["items"]
    assert {i["status"] for i in items} == {"pending", "done", "skipped", "dead"}
    events = client.get("/v1/events", headers=ADMIN).get_json()["items"]
    assert {i["status"] for i in events} == {"accepted", "ignored"}  # a duplicate stores no second signal
    assert any("removed" in change for i in events for change in i["changes"])
    assert {c["regime"] for i in events for c in i["clocks"]} == {"tcpa", "can-spam"}


@pytest.fixture
def schema_app(tmp_path_factory, database_url):
    from tests.helpers import empty_tables

    empty_tables(database_url)
    app = create_app(make_settings(tmp_path_factory.mktemp("schemathesis"), database_url,
                                   RECEIVER_ADMIN_TOKEN="admin-token"))
    fill_the_ledger(app)
    yield app
    app.extensions["receiver"].engine.dispose()


def test_the_api_keeps_its_own_document(schema_app):
    """Every operation, 25 generated requests each, on a ledger holding data; the first failure is reported."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", schema_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 24
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.call_and_validate(headers=ADMIN, checks=CHECKS)

        conforms()
