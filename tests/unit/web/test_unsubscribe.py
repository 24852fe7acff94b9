"""/v1/links and /u/<token> through the Flask client: GET changes nothing, one-click, the page's form."""

import re

import pytest
from sqlalchemy import func, select

from receiver import create_app
from receiver.ledger.models import Consent, Delivery, SignalRow
from tests.helpers import make_settings, verify_receipt

ADMIN = {"Authorization": "Bearer admin-token"}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def issue(client, **fields) -> str:
    resp = client.post("/v1/links", json={"tenant": "grand", "email": "guest@example.com", **fields}, headers=ADMIN)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["url"].removeprefix("https://optout.example.com")


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


def states(engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return set(conn.execute(select(Consent.identity, Consent.state)).all())


def test_links_answer_url_and_list_unsubscribe_headers(client):
    resp = client.post("/v1/links", json={"tenant": "grand", "email": "guest@example.com"}, headers=ADMIN)
    body = resp.get_json()
    assert resp.status_code == 201
    assert body["url"].startswith("https://optout.example.com/u/")
    assert body["headers"] == {"List-Unsubscribe": f"<{body['url']}>",
                               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def test_a_batch_of_links_keeps_its_order(client):
    emails = [f"guest{n}@example.com" for n in range(5)]
    resp = client.post("/v1/links", json={"links": [{"tenant": "grand", "email": e} for e in emails]}, headers=ADMIN)
    assert resp.status_code == 201
    urls = [link["url"] for link in resp.get_json()["links"]]
    for email, url in zip(emails, urls, strict=True):
        page = client.get(url.removeprefix("https://optout.example.com"))
        assert email[:1] + "***@example.com" in page.get_data(as_text=True)


@pytest.mark.parametrize("body, field", [
    ({"tenant": "grand"}, "email"),
    ({"tenant": "grand", "email": "nope"}, "email"),
    ({"tenant": "nowhere", "email": "guest@example.com"}, "tenant"),
    ({"tenant": "grand", "email": "guest@example.com", "scope": "everything"}, "scope"),
    ({"tenant": "grand", "email": "guest@example.com", "phone": "12"}, "phone"),
    ({"tenant": "grand", "email": "guest@example.com", "color": "red"}, "color"),
    ({"links": [{"tenant": "grand", "email": "a@example.com"}, {"tenant": "grand", "email": "x"}]}, "links[1].email"),
    ({"links": []}, "links"),
    ({"links": [{"tenant": "grand", "email": "a@example.com"}] * 1001}, "links"),
])
def test_bad_link_requests_name_the_field(client, body, field):
    resp = client.post("/v1/links", json=body, headers=ADMIN)
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field
    assert resp.get_json()["error"].startswith(field)


def test_links_need_the_admin_token(client):
    body = {"tenant": "grand", "email": "guest@example.com"}
    assert client.post("/v1/links", json=body).status_code == 401
    assert client.post("/v1/links", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_operator_api_is_off_without_a_token(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url))
    resp = app.test_client().post("/v1/links", json={"tenant": "grand", "email": "a@example.com"}, headers=ADMIN)
    assert resp.status_code == 404
    app.extensions["receiver"].engine.dispose()


@pytest.mark.parametrize("method", ["get", "head"])
def test_get_and_head_change_nothing(client, engine, method):
    url = issue(client, phone="+15551234567")
    resp = getattr(client, method)(url)
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    assert count(engine, SignalRow) == count(engine, Delivery) == 0
    if method == "get":
        html = resp.get_data(as_text=True)
        assert "g***@example.com" in html and "guest@example.com" not in html
        assert "+1555***4567" in html
        assert "<script" not in html


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_applies_the_scope_and_answers_a_signed_receipt(client, engine, encoding):
    url = issue(client)
    if encoding == "urlencoded":
        resp = client.post(url, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    else:
        resp = client.post(url, data=ONE_CLICK, content_type="multipart/form-data")
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "accepted"
    assert resp.get_json()["changes"] == [{"email": "guest@example.com", "states": ["marketing_decline"]}]
    assert "Location" not in resp.headers and "Set-Cookie" not in resp.headers
    verify_receipt(client, resp)
    assert states(engine) == {("guest@example.com", "marketing_decline")}


def test_one_click_three_times_is_three_signals_one_change_one_delivery(client, engine):
    url = issue(client)
    answers = [client.post(url, data=ONE_CLICK).get_json() for _ in range(3)]
    assert [bool(a["changes"]) for a in answers] == [True, False, False]
    assert len({a["receipt_id"] for a in answers}) == 3
    assert count(engine, SignalRow) == 3
    assert count(engine, Delivery) == 1


def test_one_click_with_scope_all_bans_mail(client, engine):
    client.post(issue(client, scope="all"), data=ONE_CLICK)
    assert states(engine) == {("guest@example.com", "mail_ban")}


def test_a_link_with_a_phone_links_the_identities(client, engine):
    from receiver.ledger.models import IdentityLink

    client.post(issue(client, phone="+15551234567"), data=ONE_CLICK)
    with engine.connect() as conn:
        assert conn.execute(select(IdentityLink.email, IdentityLink.phone)).all() == [
            ("guest@example.com", "+15551234567")]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_the_page_form_applies_exactly_the_chosen_states(client, engine):
    url = issue(client, phone="+15551234567")
    csrf = csrf_of(client.get(url).get_data(as_text=True))
    resp = client.post(url, data={"csrf": csrf, "choice": ["marketing_decline_sms", "sms_ban"]})
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    verify_receipt(client, resp)
    assert states(engine) == {("+15551234567", "marketing_decline_sms"), ("+15551234567", "sms_ban")}
    html = resp.get_data(as_text=True)
    assert 'data-state="sms_ban"' in html and 'data-state="marketing_decline_sms"' in html
    assert 'data-state="marketing_decline"' not in html
    assert count(engine, SignalRow) == 1


@pytest.mark.parametrize("csrf", [None, "", "0" * 32])
def test_a_wrong_or_missing_csrf_field_is_400_and_nothing_recorded(client, engine, csrf):
    data = {"choice": "mail_ban"} if csrf is None else {"choice": "mail_ban", "csrf": csrf}
    resp = client.post(issue(client), data=data)
    assert resp.status_code == 400 and resp.mimetype == "text/html"
    assert count(engine, SignalRow) == 0


def test_a_csrf_field_of_another_link_is_refused(client, engine):
    other = issue(client, email="other@example.com")
    csrf = csrf_of(client.get(other).get_data(as_text=True))
    assert client.post(issue(client), data={"csrf": csrf, "choice": "mail_ban"}).status_code == 400
    assert count(engine, SignalRow) == 0


def test_an_unknown_choice_is_400_and_no_choice_shows_the_page_again(client, engine):
    url = issue(client)
    csrf = csrf_of(client.get(url).get_data(as_text=True))
    assert client.post(url, data={"csrf": csrf, "choice": "everything"}).status_code == 400
    resp = client.post(url, data={"csrf": csrf})
    assert resp.status_code == 400 and 'name="csrf"' in resp.get_data(as_text=True)
    assert count(engine, SignalRow) == 0


@pytest.mark.parametrize("mangle", [lambda u: u[:-2] + "xx", lambda u: u.replace("/u/", "/u/A")])
def test_a_tampered_token_is_a_404_page_for_get_and_post(client, engine, mangle):
    url = mangle(issue(client))
    for resp in (client.get(url), client.post(url, data=ONE_CLICK)):
        assert resp.status_code == 404 and resp.mimetype == "text/html"
        assert "Link not found" in resp.get_data(as_text=True)
    assert count(engine, SignalRow) == 0


def test_french_by_accept_language_or_lang(client):
    url = issue(client)
    assert "Vos préférences" in client.get(url, headers={"Accept-Language": "fr-CA,fr;q=0.9,en;q=0.5"}).get_data(
        as_text=True)
    assert "Vos préférences" in client.get(url + "?lang=fr").get_data(as_text=True)
    assert "Your preferences" in client.get(url + "?lang=en", headers={"Accept-Language": "fr"}).get_data(
        as_text=True)
    assert "Your preferences" in client.get(url, headers={"Accept-Language": "de"}).get_data(as_text=True)


def test_wrong_content_type_is_415(client, engine):
    resp = client.post(issue(client), data="{}", content_type="application/json")
    assert resp.status_code == 415
    assert count(engine, SignalRow) == 0


@pytest.mark.parametrize("choice, identity", [
    ("marketing_decline", "guest@example.com"),
    ("mail_ban", "guest@example.com"),
    ("marketing_decline_sms", "+15551234567"),
    ("sms_ban", "+15551234567"),
])
def test_each_choice_adds_its_own_state_to_its_own_identity(client, engine, choice, identity):
    url = issue(client, phone="+15551234567")
    csrf = csrf_of(client.get(url).get_data(as_text=True))
    assert client.post(url, data={"csrf": csrf, "choice": choice}).status_code == 200
    assert states(engine) == {(identity, choice)}
    with engine.connect() as conn:
        crms = sorted(conn.execute(select(Delivery.crm)).scalars())
    assert crms == (["crmtext", "experience"] if choice == "sms_ban" else ["experience"])


def test_sms_choices_without_a_phone_fall_back_to_the_email(client, engine):
    url = issue(client)
    csrf = csrf_of(client.get(url).get_data(as_text=True))
    client.post(url, data={"csrf": csrf, "choice": "sms_ban"})
    assert states(engine) == {("guest@example.com", "sms_ban")}
    with engine.connect() as conn:
        assert list(conn.execute(select(Delivery.crm)).scalars()) == ["experience"]  # no number for CRM Text


def test_posts_are_rate_limited_per_link(tmp_path, database_url, settings, engine):
    from tests.helpers import config_toml

    app = create_app(make_settings(tmp_path, database_url, config_toml(service="forms_rate_limit = 3"),
                                   RECEIVER_ADMIN_TOKEN="admin-token"))
    client = app.test_client()
    url, other = issue(client), issue(client, email="other@example.com")
    codes = [client.post(url, data=ONE_CLICK).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert client.post(other, data=ONE_CLICK).status_code == 200  # another guest's link has its own count
    assert count(engine, SignalRow) == 4
    app.extensions["receiver"].engine.dispose()


def test_link_and_form_signals_are_counted_and_logged(client, receiver_log):
    import json

    from prometheus_client.parser import text_string_to_metric_families

    def accepted(source: str) -> float:
        families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        return sum(s.value for f in families for s in f.samples if s.name == "receiver_signals_received_total"
                   and s.labels.get("source") == source and s.labels.get("outcome") == "accepted")

    before = accepted("email-link"), accepted("web-form")
    client.post(issue(client), data=ONE_CLICK)
    client.post("/forms/unsubscribe", json={"tenant": "grand", "email": "form@example.com"})
    assert (accepted("email-link"), accepted("web-form")) == (before[0] + 1, before[1] + 1)
    lines = [json.loads(line) for line in receiver_log().splitlines() if line.startswith("{")]
    assert {(line.get("source"), line.get("outcome")) for line in lines if line["method"] == "POST"} >= {
        ("email-link", "accepted"), ("web-form", "accepted")}
