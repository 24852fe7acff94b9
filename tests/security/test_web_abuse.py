"""Strangers at the open doors: re-spelled link tokens, what the open form tells, the CSV export, framing."""

import base64
import csv
import hashlib
import io
import re

import pytest
from sqlalchemy import func, select

from receiver import create_app
from receiver.ledger.models import RateHit, RequestRecord, SignalRow
from receiver.links import Link, LinkSigner
from receiver.web.v1.export import spreadsheet_safe
from tests.helpers import PUBLIC_BASE_URL, config_toml, make_settings

ADMIN_TOKEN = "admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NEW_KEY, OLD_KEY = "n" * 40, "o" * 40
ONE_CLICK = {"List-Unsubscribe": "One-Click"}  # RFC 8058's body, as mailbox providers post it


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, config_toml(service="forms_rate_limit = 3"),
                                   RECEIVER_ADMIN_TOKEN=ADMIN_TOKEN, SECRET_KEY=f"{NEW_KEY},{OLD_KEY}"))
    yield app
    app.extensions["receiver"].engine.dispose()


def token_for(app, email: str = "guest@example.com", keys: tuple[str, ...] = (NEW_KEY,)) -> str:
    return LinkSigner(keys, app.extensions["receiver"].settings.tenants, PUBLIC_BASE_URL).token(
        Link(tenant="grand", email=email))


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar()


# --- re-spelled link tokens (11.6) -------------------------------------------------------------

def spellings(token: str) -> list[str]:
    """Spellings base64 decoding would take for the same token: junk after it, non-ASCII, spare bits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare_bits = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]  # 32 bytes leave 2 unused bits
    standard_alphabet = token.replace("-", "+").replace("_", "/")
    return [spelling for spelling in (token + "!!", token + "~~", token + "%C3%A9", token + "=", spare_bits,
                                      standard_alphabet, "." + token) if spelling != token]


def test_a_re_spelled_token_is_404_and_records_nothing(app, client, engine):
    token = token_for(app)
    assert client.get(f"/u/{token}").status_code == 200

    assert len(spellings(token)) >= 6
    for spelling in spellings(token):
        assert client.get(f"/u/{spelling}").status_code == 404, spelling
        assert client.post(f"/u/{spelling}", data=ONE_CLICK).status_code == 404, spelling

    assert count(engine, SignalRow) == 0
    assert count(engine, RateHit) == 0


def test_the_limit_counts_the_link_whichever_key_signed_it(app, client, engine):
    new, old = token_for(app), token_for(app, keys=(OLD_KEY,))
    assert new != old

    codes = [client.post(f"/u/{token}", data=ONE_CLICK).status_code for token in (new, new, old, old)]

    assert codes == [200, 200, 200, 429]
    assert count(engine, RateHit) == 1


# --- the open form tells nobody who opted out (11.9) -------------------------------------------

def shape(answer) -> tuple:
    body = answer.get_json()
    return answer.status_code, sorted(body), body["status"], body["changes"], len(body["event_ids"])


@pytest.mark.parametrize("fields", [
    {"email": "guest@example.com"},
    {"email": "guest@example.com", "phone": "+15551234567", "sms_marketing": "on"},
    {"phone": "+15551234567"},
])
def test_the_open_form_answers_the_same_whatever_was_in_force(client, engine, fields):
    form = {"tenant": "grand", **fields}
    fresh = client.post("/forms/unsubscribe", data=form)
    again = client.post("/forms/unsubscribe", data=form)

    assert fresh.status_code == 200
    assert shape(again) == shape(fresh)
    with engine.connect() as conn:  # the receipts still record what changed
        recorded = conn.execute(select(RequestRecord.changes).order_by(RequestRecord.received_at, RequestRecord.id)).scalars().all()
    assert recorded[0] and recorded[1] == []


def test_the_open_form_names_what_was_asked(client):
    answer = client.post("/forms/unsubscribe", data={"tenant": "grand", "email": "Guest@Example.com",
                                                     "phone": "+15551234567"})

    assert answer.get_json()["changes"] == [{"phone": "+15551234567", "states": ["marketing_decline_sms"]},
                                            {"email": "guest@example.com", "states": ["marketing_decline"]}]


# --- CSV formula injection (11.10) -------------------------------------------------------------

@pytest.mark.parametrize("email", ["=1+2@example.com", "+cmd@example.com", "-2+3@example.com"])
def test_export_escapes_cells_a_spreadsheet_would_run(client, email):
    assert client.post("/forms/unsubscribe", data={"tenant": "grand", "email": email}).status_code == 200

    rows = list(csv.reader(io.StringIO(client.get("/v1/export.csv", headers=ADMIN).get_data(as_text=True))))

    assert rows[1][1] == "'" + email  # OWASP CSV injection guidance: a leading single quote
    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for row in rows for cell in row
                   if not re.fullmatch(r"\+\d+", cell))


@pytest.mark.parametrize("cell, safe", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("-1", "'-1"), ("+1 555", "'+1 555"), ("+15551234567", "+15551234567"),
    ("guest@example.com", "guest@example.com"), ("", ""), (None, None),
])
def test_spreadsheet_safe(cell, safe):
    assert spreadsheet_safe(cell) == safe


def test_export_keeps_phone_numbers_as_they_are(client):
    client.post("/forms/unsubscribe", data={"tenant": "grand", "phone": "+15551234567"})

    rows = list(csv.reader(io.StringIO(client.get("/v1/export.csv", headers=ADMIN).get_data(as_text=True))))

    assert rows[1][1] == "+15551234567"  # digits only: nothing a spreadsheet could run


# --- security headers on guest pages (11.15) ---------------------------------------------------

def test_guest_pages_forbid_framing_sniffing_and_scripts(app, client):
    token = token_for(app)
    pages = [client.get(f"/u/{token}"), client.get("/u/not-a-token"),
             client.post("/forms/unsubscribe", data={"tenant": "grand", "email": "guest@example.com"},
                         headers={"Accept": "text/html"})]

    for page in pages:
        assert page.mimetype == "text/html"
        csp = dict(rule.strip().split(" ", 1) for rule in page.headers["Content-Security-Policy"].split(";"))
        assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
        assert csp["form-action"] == "'self'" and csp["base-uri"] == "'none'"
        assert "script-src" not in csp and "unsafe-inline" not in csp["style-src"]
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        # The page's one inline <style> block is allowed by its hash, so it still renders styled.
        style = re.search(r"<style>(.*?)</style>", page.get_data(as_text=True), re.S)[1]
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp["style-src"]


def test_every_answer_forbids_sniffing(client):
    assert client.get("/healthz").headers["X-Content-Type-Options"] == "nosniff"
    assert client.post("/hooks/nobody").headers["X-Content-Type-Options"] == "nosniff"
