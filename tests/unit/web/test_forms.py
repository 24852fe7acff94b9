"""POST /forms/unsubscribe: marketing states only, checkboxes, answers, rate limit, CORS, proxy address."""

import pytest
from sqlalchemy import func, select

from receiver import create_app
from receiver.ledger.models import Consent, SignalRow
from tests.helpers import config_toml, make_settings, verify_receipt

SITE = "https://www.grand-hotel.example"
def make_app(tmp_path, database_url, *, grand: str = "", service: str = ""):
    toml = config_toml()
    if grand:  # append keys to [tenants.grand] (it ends where [tenants.smsonly] starts)
        toml = toml.replace("\n[tenants.smsonly]", f"{grand}\n\n[tenants.smsonly]", 1)
    if service:
        toml = toml.replace("[service]\n", f"[service]\n{service}\n", 1)
    return create_app(make_settings(tmp_path, database_url, toml))


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = make_app(tmp_path, database_url, grand=f'forms_origins = ["{SITE}"]')
    yield app
    app.extensions["receiver"].engine.dispose()


def states(engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return set(conn.execute(select(Consent.identity, Consent.state)).all())


def signals(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(SignalRow)).scalar()


def test_neither_box_applies_both_marketing_states(client, engine):
    resp = client.post("/forms/unsubscribe", data={"tenant": "grand", "email": "guest@example.com",
                                                   "phone": "+15551234567", "newsletter_id": "site-added"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "accepted"
    verify_receipt(client, resp)
    assert states(engine) == {("guest@example.com", "marketing_decline"), ("+15551234567", "marketing_decline_sms")}


@pytest.mark.parametrize("value", ["on", "true", "1", True])
def test_one_box_applies_its_state_only(client, engine, value):
    body = {"tenant": "grand", "email": "guest@example.com", "sms_marketing": value}
    resp = client.post("/forms/unsubscribe", json=body) if value is True else client.post(
        "/forms/unsubscribe", data=body)
    assert resp.status_code == 200
    assert states(engine) == {("guest@example.com", "marketing_decline_sms")}


def test_a_ban_is_never_applied_whatever_is_sent(client, engine):
    resp = client.post("/forms/unsubscribe", json={"tenant": "grand", "email": "guest@example.com",
                                                   "email_marketing": True, "mail_ban": True, "sms_ban": "on",
                                                   "states": ["mail_ban", "sms_ban"]})
    assert resp.status_code == 200
    assert states(engine) == {("guest@example.com", "marketing_decline")}


@pytest.mark.parametrize("body, status, field", [
    ({"email": "guest@example.com"}, 400, "tenant"),
    ({"tenant": "nowhere", "email": "guest@example.com"}, 404, "tenant"),
    ({"tenant": "grand"}, 400, "email"),
    ({"tenant": "grand", "email": "not-an-email"}, 400, "email"),
    ({"tenant": "grand", "phone": "12"}, 400, "phone"),
    ({"tenant": "grand", "email": "a\x00b@example.com"}, 400, "email"),
    ({"tenant": "grand\x00", "email": "guest@example.com"}, 400, "tenant"),
    ({"tenant": "grand", "email": "guest@example.com", "email_marketing": "off", "sms_marketing": "0"},
     400, "email_marketing"),
])
def test_bad_input_names_the_field_and_records_nothing(client, engine, body, status, field):
    resp = client.post("/forms/unsubscribe", json=body)
    assert resp.status_code == status
    assert resp.get_json()["field"] == field
    assert signals(engine) == 0


def test_wrong_content_type_and_oversized_body(client, engine):
    assert client.post("/forms/unsubscribe", data="x", content_type="text/plain").status_code == 415
    big = {"tenant": "grand", "email": "guest@example.com", "pad": "x" * 300_000}
    assert client.post("/forms/unsubscribe", data=big).status_code == 413
    assert signals(engine) == 0


def test_html_when_the_browser_prefers_it(client):
    resp = client.post("/forms/unsubscribe", data={"tenant": "grand", "email": "guest@example.com"},
                       headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "You are unsubscribed" in resp.get_data(as_text=True)
    verify_receipt(client, resp)
    bad = client.post("/forms/unsubscribe", data={"tenant": "grand"}, headers={"Accept": "text/html"})
    assert bad.status_code == 400 and bad.mimetype == "text/html"


def test_return_url_is_a_303_after_the_commit(tmp_path, database_url, settings, engine):
    app = make_app(tmp_path, database_url, grand='forms_return_url = "https://www.grand-hotel.example/thanks"')
    resp = app.test_client().post("/forms/unsubscribe", data={"tenant": "grand", "email": "guest@example.com"})
    assert resp.status_code == 303
    assert resp.headers["Location"] == "https://www.grand-hotel.example/thanks"
    assert "webhook-signature" in resp.headers
    assert ("guest@example.com", "marketing_decline") in states(engine)
    app.extensions["receiver"].engine.dispose()


def test_rate_limited_per_client_address(tmp_path, database_url, settings, engine):
    app = make_app(tmp_path, database_url, service="forms_rate_limit = 3")
    client = app.test_client()
    body = {"tenant": "grand", "email": "guest@example.com"}
    codes = [client.post("/forms/unsubscribe", data=body).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.post("/forms/unsubscribe", data=body)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert signals(engine) == 3
    other = client.post("/forms/unsubscribe", data=body, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200  # another address has its own count
    app.extensions["receiver"].engine.dispose()


def test_forwarded_address_counts_only_behind_the_configured_proxy(tmp_path, database_url, settings):
    body = {"tenant": "grand", "email": "guest@example.com"}
    direct = make_app(tmp_path, database_url, service="forms_rate_limit = 1")
    client = direct.test_client()
    assert client.post("/forms/unsubscribe", data=body, headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    # Without proxy_hops a client cannot dodge the limit by claiming another address.
    assert client.post("/forms/unsubscribe", data=body, headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 429
    direct.extensions["receiver"].engine.dispose()

    proxied = make_app(tmp_path, database_url, service="forms_rate_limit = 1\nproxy_hops = 1")
    client = proxied.test_client()
    for address in ("203.0.113.1", "203.0.113.2"):
        assert client.post("/forms/unsubscribe", data=body, headers={"X-Forwarded-For": address}).status_code == 200
    proxied.extensions["receiver"].engine.dispose()


def test_cors_for_the_tenants_site_only(client):
    preflight = client.options("/forms/unsubscribe", headers={
        "Origin": SITE, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Content-Type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    stranger = client.options("/forms/unsubscribe", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    resp = client.post("/forms/unsubscribe", json={"tenant": "grand", "email": "guest@example.com"},
                       headers={"Origin": SITE})
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    resp = client.post("/forms/unsubscribe", json={"tenant": "smsonly", "phone": "+15551234567"},
                       headers={"Origin": SITE})
    assert "Access-Control-Allow-Origin" not in resp.headers  # not smsonly's site


def test_get_is_not_allowed(client):
    assert client.get("/forms/unsubscribe").status_code == 405


def test_the_open_form_never_links_an_email_to_a_phone(client, engine):
    from receiver.ledger.models import IdentityLink

    client.post("/forms/unsubscribe", json={"tenant": "grand", "email": "someone@example.com", "phone": "+15551234567"})
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(IdentityLink)).scalar() == 0


@pytest.mark.parametrize("address, same, other", [
    ("198.51.100.7", "198.51.100.7", "198.51.100.8"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2:ffff::9", "2001:db8:1:3::1"),  # one /64 is one client
    ("::ffff:198.51.100.7", "198.51.100.7", "198.51.100.8"),
])
def test_clients_are_counted_by_address_or_ipv6_64(address, same, other):
    from receiver.ledger.ratelimit import client_key

    assert client_key(address) == client_key(same) != client_key(other)
