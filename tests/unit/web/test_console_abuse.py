"""/console against bad input and abuse (issue 14's list): every POST needs its CSRF field, the staff
opt-out form refuses what /v1 refuses, a role's limits hold on the console too, and no password,
token or whole guest identity reaches a log line."""

import re

import pytest
from sqlalchemy import inspect, select, text

from receiver.access.credentials import Passwords
from receiver.access.roles import Role
from receiver.ledger.models import Delivery, ReviewDecision, SignalRow
from receiver.ledger.operators import add_operator
from tests.helpers import twilio_signature, twilio_sms
from tests.unit.web.test_console import HTTPS, PASSWORD, PHONE, console_app, csrf_of, sign_in, stop

EMAIL = "guest.name@example.com"


@pytest.fixture
def app(tmp_path, database_url, settings):
    yield from console_app(tmp_path, database_url)


def every_row(app) -> dict[str, list]:
    """Every row of every table: what a refused POST must leave as it was."""
    engine = app.extensions["receiver"].engine
    with engine.connect() as conn:
        return {table: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{table}"'))), key=repr)
                for table in inspect(engine).get_table_names()}


def flagged(client, phone=PHONE):
    params = twilio_sms(sid="SM" + "5" * 32, body="stop by the pool at 5", phone=phone)
    assert client.post("/hooks/twilio", data=params,
                       headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)}).status_code == 200


def as_admin(app):
    add_operator(app.extensions["receiver"].engine, "boss@grand.example", Role.ADMIN, None, Passwords().hash(PASSWORD),
                 by="tests")
    client = app.test_client()
    assert sign_in(client, email="boss@grand.example").status_code == 302
    return client


@pytest.mark.parametrize("csrf", [None, "forged", ""])
def test_every_console_post_needs_its_csrf_field(app, csrf):
    """Every POST route of the console (a new form included) with a form that would otherwise work."""
    client = as_admin(app)
    stop(client, phone="+15550000001")
    flagged(client)
    engine = app.extensions["receiver"].engine
    with engine.begin() as conn:
        conn.execute(Delivery.__table__.update().values(status="dead"))
        delivery = conn.execute(select(Delivery.id)).scalars().first()
        review_id = conn.execute(select(SignalRow.id).where(SignalRow.review.is_(True))).scalar_one()
    form = {"tenant": "grand", "phone": "+15551234599", "states": ["sms_ban"], "channel": "phone-call",
            "decision": "honour", "email": "desk@grand.example", "role": "viewer", "tenants": ["grand"],
            "password": "a long new password here", **({} if csrf is None else {"csrf": csrf})}
    posts = sorted(rule.rule for rule in app.url_map.iter_rules()
                   if rule.endpoint.startswith("console.") and "POST" in rule.methods)
    assert {"/console/login", "/console/logout", "/console/opt-outs", "/console/review", "/console/deliveries",
            "/console/operators", "/console/operators/token", "/console/operators/disable"} <= set(posts)
    before = every_row(app)
    for path in posts:
        ids = {"/console/review": review_id, "/console/deliveries": delivery}
        resp = client.post(path, data={**form, "id": ids.get(path, "")}, **HTTPS)
        assert resp.status_code == 400 and "csrf" in resp.text, (path, resp.status_code)
    assert every_row(app) == before
    assert client.get("/console", **HTTPS).status_code == 200  # a forged sign-out did not sign out


@pytest.mark.parametrize(("change", "field"), [
    ({"channel": "fax"}, "channel"),
    ({"states": ["sms_bam"]}, "states"),
    ({"states": []}, "states"),
    ({"phone": ""}, "email"),  # neither email nor phone
    ({"phone": "555-1234"}, "phone"),  # a 7-digit local number is never guessed into E.164
    ({"tenant": "smsonly"}, "tenant"),  # another hotel's: as unknown as one that does not exist
    ({"tenant": "nowhere"}, "tenant"),
])
def test_the_opt_out_form_refuses_what_v1_refuses_and_stores_nothing(app, change, field):
    client = app.test_client()
    sign_in(client)
    page = client.get("/console/opt-outs", **HTTPS)
    before = every_row(app)
    form = {"csrf": csrf_of(page.text), "tenant": "grand", "phone": PHONE, "states": ["sms_ban"],
            "channel": "phone-call", **change}
    bad = client.post("/console/opt-outs", data=form, **HTTPS)
    assert bad.status_code in (400, 404) and field in bad.text and 'class="problem"' in bad.text, bad.text
    assert every_row(app) == before


def test_a_viewer_may_not_decide_and_an_agent_may_not_replay_on_the_console(app):
    viewer, agent = app.test_client(), app.test_client()
    stop(agent, phone="+15550000001")
    flagged(agent)
    engine = app.extensions["receiver"].engine
    with engine.begin() as conn:
        conn.execute(Delivery.__table__.update().values(status="dead"))
        delivery = conn.execute(select(Delivery.id)).scalars().first()
        review_id = conn.execute(select(SignalRow.id).where(SignalRow.review.is_(True))).scalar_one()
    sign_in(viewer, email="look@grand.example")
    queue = viewer.get("/console/review", **HTTPS)
    assert "stop by the pool at 5" in queue.text and 'value="honour"' not in queue.text
    refused = viewer.post("/console/review", data={"csrf": csrf_of(queue.text), "id": review_id,
                                                  "decision": "honour"}, **HTTPS)
    assert refused.status_code == 403
    sign_in(agent)
    listed = agent.get("/console/deliveries", **HTTPS)
    assert agent.post("/console/deliveries", data={"csrf": csrf_of(listed.text), "id": delivery},
                      **HTTPS).status_code == 403
    with engine.connect() as conn:
        assert conn.execute(select(ReviewDecision.signal_id)).first() is None
        assert set(conn.execute(select(Delivery.status)).scalars()) == {"dead"}


def test_no_password_token_or_whole_guest_identity_in_the_logs(app, receiver_log):
    client = as_admin(app)
    assert sign_in(app.test_client(), password="a wrong password, long enough").status_code == 401
    page = client.get("/console/opt-outs", **HTTPS)
    csrf = csrf_of(page.text)
    assert client.post("/console/opt-outs", data={"csrf": csrf, "tenant": "grand", "phone": PHONE, "email": EMAIL,
                                                  "states": ["sms_ban", "mail_ban"], "channel": "phone-call"},
                       **HTTPS).status_code == 200
    assert client.post("/console/opt-outs", data={"csrf": csrf, "tenant": "grand", "phone": "+1555123456789012",
                                                  "states": ["sms_ban"], "channel": "phone-call"},
                       **HTTPS).status_code == 400
    for query in ({"phone": PHONE}, {"email": EMAIL}):
        assert client.get("/console", query_string={"tenant": "grand", **query}, **HTTPS).status_code == 200
    issued = client.post("/console/operators/token", data={"csrf": csrf, "email": "desk@grand.example"}, **HTTPS)
    token = re.search(r'<code id="token">(rcv_[^<]+)</code>', issued.text)[1]
    assert client.get("/v1/events", headers={"Authorization": f"Bearer {token}x"}).status_code == 401

    logged = receiver_log()
    assert "/console/opt-outs" in logged and '"status": 401' in logged  # the requests were logged
    for secret in (PASSWORD, "a wrong password, long enough", token, token[4:], PHONE, PHONE[1:], "5551234567",
                   EMAIL, "guest.name", "+1555123456789012"):
        assert secret not in logged, secret
