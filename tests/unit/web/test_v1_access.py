"""/v1 for operators: every route × every role, tenant scopes, the token's lifecycle, the audit trail's operator."""

import hashlib
import re

import pytest
from sqlalchemy import select

from receiver import create_app
from receiver.access.roles import Permission, Role, may
from receiver.ledger.models import Delivery, OperatorToken, SignalRow
from receiver.ledger.operators import add_operator, disable_operator, issue_token
from tests.helpers import make_settings, twilio_signature, twilio_sms

PHONE = "+15551234567"
# Every /v1 endpoint and the permission it must declare: a new route missing here fails the suite.
EXPECTED = {
    "v1.consent": Permission.READ, "v1.consent_check": Permission.READ, "v1.events": Permission.READ,
    "v1.deliveries": Permission.READ, "v1.review_queue": Permission.READ, "v1.replay": Permission.REPLAY,
    "v1.export_csv": Permission.EXPORT, "v1.issue_links": Permission.LINKS,
    "v1.record_opt_out": Permission.RECORD_OPT_OUT, "v1.decide": Permission.DECIDE_REVIEW,
    "v1.clocks": Permission.READ, "v1.chain_head": Permission.READ, "v1.proof": Permission.READ,
    "v1.erasure": Permission.ERASURE,
}


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


@pytest.fixture
def engine_of(app):
    return app.extensions["receiver"].engine


def operator(engine, email, role, tenants=None) -> dict:
    add_operator(engine, email, Role(role), tenants, None, by="tests")
    return {"Authorization": f"Bearer {issue_token(engine, email, by='tests')}"}


@pytest.fixture
def tokens(engine_of) -> dict[Role, dict]:
    return {Role.VIEWER: operator(engine_of, "viewer@hotel.example", "viewer", ["grand"]),
            Role.AGENT: operator(engine_of, "agent@hotel.example", "agent", ["grand"]),
            Role.ADMIN: operator(engine_of, "admin@hotel.example", "admin")}


def v1_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1/")]


def stop(client, phone=PHONE, sid="SM" + "1" * 32, body="STOP"):
    params = twilio_sms(sid=sid, body=body, phone=phone)
    resp = client.post("/hooks/twilio", data=params,
                       headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})
    assert resp.status_code == 200


def test_every_v1_route_declares_its_permission(app):
    declared = {rule.endpoint: getattr(app.view_functions[rule.endpoint], "permission", None)
                for rule in v1_rules(app)}
    assert declared == EXPECTED


@pytest.mark.parametrize("role", list(Role))
def test_every_route_refuses_what_the_role_may_not_do(app, tokens, role):
    client, checked = app.test_client(), 0
    for rule in v1_rules(app):
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        permission = getattr(app.view_functions[rule.endpoint], "permission", None)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            status = client.open(path, method=method, json={}, headers=tokens[role]).status_code
            if permission is not None and may(role, permission):
                assert status not in (401, 403), (role, method, path, status)
            else:
                assert status == 403, (role, method, path, status)
            checked += 1
    assert checked == len(EXPECTED)


def test_a_scoped_operator_sees_only_their_tenant(app, engine_of):
    client = app.test_client()
    stop(client)
    grand = operator(engine_of, "desk@grand.example", "agent", ["grand"])
    small = operator(engine_of, "desk@small.example", "agent", ["smsonly"])

    assert client.get(f"/v1/consent?tenant=grand&phone={PHONE}", headers=grand).status_code == 200
    for tenant in ("grand", "nowhere"):  # another hotel and a hotel that does not exist answer alike
        resp = client.get(f"/v1/consent?tenant={tenant}&phone={PHONE}", headers=small)
        assert resp.status_code == 404 and resp.get_json()["field"] == "tenant"
    assert client.get("/v1/events?tenant=grand", headers=small).status_code == 404
    assert [i["tenant"] for i in client.get("/v1/events", headers=grand).get_json()["items"]] == ["grand"]
    assert client.get("/v1/events", headers=small).get_json()["items"] == []
    assert len(client.get("/v1/deliveries", headers=grand).get_json()["items"]) == 2
    assert client.get("/v1/deliveries", headers=small).get_json()["items"] == []
    resp = client.post("/v1/opt-outs", headers=small, json={
        "tenant": "grand", "phone": "+15559876543", "states": ["sms_ban"], "channel": "phone-call"})
    assert resp.status_code == 404
    with engine_of.connect() as conn:
        assert conn.execute(select(SignalRow.source)).scalars().all() == ["twilio"]  # nothing stored


def test_review_items_of_another_tenant_are_not_there(app, engine_of):
    client = app.test_client()
    stop(client, body="stop by the pool at 5")
    small = operator(engine_of, "desk@small.example", "agent", ["smsonly"])
    grand = operator(engine_of, "desk@grand.example", "viewer", ["grand"])
    [item] = client.get("/v1/review", headers=grand).get_json()["items"]
    assert client.get("/v1/review", headers=small).get_json()["items"] == []
    resp = client.post(f"/v1/review/{item['id']}", headers=small, json={"decision": "honour"})
    assert resp.status_code == 404


def test_a_token_is_shown_once_stored_hashed_and_stops_when_disabled(app, engine_of):
    client = app.test_client()
    add_operator(engine_of, "agent@hotel.example", Role.AGENT, ["grand"], None, by="tests")
    first, second = (issue_token(engine_of, "agent@hotel.example", by="tests") for _ in range(2))
    assert first != second and first.startswith("rcv_") and len(first) == 47
    with engine_of.connect() as conn:
        stored = conn.execute(select(OperatorToken.token_hash)).scalars().all()
    assert sorted(stored) == sorted(hashlib.sha256(t.encode()).hexdigest() for t in (first, second))
    for token in (first, second):
        assert client.get("/v1/events", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/v1/events", headers={"Authorization": f"Bearer {first[:-1]}x"}).status_code == 401

    assert disable_operator(engine_of, "agent@hotel.example", by="tests")
    for token in (first, second):  # at once: no cache between the table and the next request
        resp = client.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(Exception, match="no enabled operator"):
        issue_token(engine_of, "agent@hotel.example", by="tests")


def test_v1_is_off_until_an_admin_token_or_an_operator_exists(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url))
    client, engine = app.test_client(), app.extensions["receiver"].engine
    try:
        assert client.get("/v1/events").status_code == 404
        headers = operator(engine, "viewer@hotel.example", "viewer", ["grand"])
        assert client.get("/v1/events").status_code == 401
        assert client.get("/v1/events", headers=headers).status_code == 200
    finally:
        engine.dispose()


def test_an_operators_writes_carry_their_email(app, engine_of):
    client = app.test_client()
    agent = operator(engine_of, "agent@hotel.example", "agent", ["grand"])
    admin = operator(engine_of, "admin@hotel.example", "admin")
    resp = client.post("/v1/opt-outs", headers=agent, json={
        "tenant": "grand", "email": "guest@example.com", "states": ["marketing_decline"], "channel": "letter"})
    assert resp.status_code == 201
    [event] = client.get("/v1/events", headers=agent).get_json()["items"]
    assert (event["source"], event["operator"]) == ("staff", "agent@hotel.example")

    [delivery] = client.get("/v1/deliveries", headers=admin).get_json()["items"]
    with engine_of.begin() as conn:
        conn.execute(Delivery.__table__.update().values(status="dead"))
    assert client.post(f"/v1/deliveries/{delivery['id']}/replay", headers=admin).status_code == 200
    [replayed] = client.get("/v1/deliveries", headers=admin).get_json()["items"]
    assert replayed["replayed_by"] == "admin@hotel.example"
    assert client.post(f"/v1/deliveries/{delivery['id']}/replay", headers=agent).status_code == 403


def test_an_erasure_names_the_operator_who_asked(app, engine_of):
    client = app.test_client()
    stop(client)
    admin = operator(engine_of, "dpo@hotel.example", "admin")
    assert client.post("/v1/erasure", headers=admin, json={"tenant": "grand", "phone": PHONE}).status_code == 200
    [erasure] = [e for e in client.get("/v1/events?tenant=grand", headers=admin).get_json()["items"]
                 if e["kind"] == "erasure"]
    assert erasure["operator"] == "dpo@hotel.example"
    bootstrap = {"Authorization": "Bearer admin-token"}
    stop(client, phone="+15559876543", sid="SM" + "2" * 32)
    assert client.post("/v1/erasure", headers=bootstrap, json={"tenant": "grand", "phone": "+15559876543"}
                       ).status_code == 200
    operators = [e["operator"] for e in client.get("/v1/events?tenant=grand", headers=admin).get_json()["items"]
                 if e["kind"] == "erasure"]
    assert operators == ["dpo@hotel.example", "bootstrap admin"]
