"""The email channel end to end: links issued through /v1/links, the page, one-click, the plain form,
through gunicorn (behind a pretend router: proxy_hops = 1 in tests/e2e/shared.py), recorded once,
delivered to Experience once."""

import itertools
import re
import secrets

import pytest

from tests.e2e.shared import SITE
from tests.e2e.stack import ADMIN_TOKEN
from tests.e2e.test_sms import new_phone
from tests.helpers import PUBLIC_BASE_URL

ONE_CLICK = "List-Unsubscribe=One-Click"


def new_email() -> str:
    return f"guest-{secrets.token_hex(5)}@example.com"


ADDRESSES = itertools.count(1)


def client_address() -> dict:
    """A new client address on each call (never reused: the rate limit counts per address),
    as the host's router forwards it after whatever the client claimed."""
    n = next(ADDRESSES)
    return {"X-Forwarded-For": f"203.0.113.99, 198.51.{100 + n // 250}.{n % 250 + 1}"}


def issue(stack, email: str, **fields) -> str:
    resp = stack.http.post(f"{stack.web_url}/v1/links", json={"tenant": "resort", "email": email, **fields},
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert answer["headers"]["List-Unsubscribe-Post"] == ONE_CLICK
    assert answer["url"].startswith(PUBLIC_BASE_URL + "/u/")
    return stack.web_url + answer["url"].removeprefix(PUBLIC_BASE_URL)


def records_for(stack, email: str) -> list[dict]:
    return [r for c in stack.calls("experience") if c.get("method") == "opt_out" and not c.get("fault")
            for r in c.get("records") or [] if r.get("email") == email]


def signals_for(stack, email: str) -> int:
    return stack.query("SELECT count(*) FROM signals WHERE email = :email", email=email)[0][0]


def test_get_and_head_change_nothing(stack):
    email = new_email()
    url = issue(stack, email, phone="+15557654321")
    page = stack.http.get(url, timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert email not in page.text and email[:1] + "***@example.com" in page.text
    assert "Seaside Resort" in page.text
    assert stack.http.head(url, timeout=10).status_code == 200
    assert signals_for(stack, email) == 0
    assert stack.deliveries(email) == []


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_reaches_experience_once(stack, encoding):
    email = new_email()
    url = issue(stack, email, campaign="nov-newsletter")
    if encoding == "urlencoded":
        kwargs = {"data": ONE_CLICK, "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    else:
        kwargs = {"files": {"List-Unsubscribe": (None, "One-Click")}}
    answers = [stack.http.post(url, timeout=10, allow_redirects=False, **kwargs) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json()["changes"] == [{"email": email, "states": ["marketing_decline"]}]
    assert all("webhook-signature" in a.headers for a in answers)
    assert [r.status for r in stack.settled(email)] == ["done"]
    [record] = records_for(stack, email)
    assert set(record) == {"email", "marketing_decline"}
    assert signals_for(stack, email) == 3


def test_scope_all_bans_mail(stack):
    email = new_email()
    stack.http.post(issue(stack, email, scope="all"), data=ONE_CLICK, timeout=10,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    stack.settled(email)
    [record] = records_for(stack, email)
    assert "mail_ban" in record and "marketing_decline" not in record


def test_the_page_form_applies_the_chosen_states_in_french(stack):
    email = new_email()
    url = issue(stack, email)
    page = stack.http.get(url, headers={"Accept-Language": "fr-FR,fr;q=0.9"}, timeout=10)
    assert "Vos préférences" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    resp = stack.http.post(stack.web_url + action.replace("&amp;", "&"), timeout=10,
                           data={"csrf": csrf, "choice": ["marketing_decline", "marketing_decline_sms"]})
    assert resp.status_code == 200 and "Enregistré" in resp.text
    assert 'data-state="marketing_decline_sms"' in resp.text
    stack.settled(email)
    [record] = records_for(stack, email)  # two states of one email: one record
    assert {"marketing_decline", "marketing_decline_sms"} <= set(record)


def test_a_tampered_token_is_a_404_page_and_records_nothing(stack):
    email = new_email()
    url = issue(stack, email)
    bad = url[:-3] + ("abc" if not url.endswith("abc") else "xyz")
    assert stack.http.get(bad, timeout=10).status_code == 404
    resp = stack.http.post(bad, data=ONE_CLICK, timeout=10,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 404 and "text/html" in resp.headers["Content-Type"]
    assert signals_for(stack, email) == 0


def post_form(stack, body, *, headers=None, as_json=False):
    headers = {**client_address(), **(headers or {})}
    kwargs = {"json": body} if as_json else {"data": body}
    return stack.http.post(f"{stack.web_url}/forms/unsubscribe", headers=headers, timeout=10,
                           allow_redirects=False, **kwargs)


def test_the_form_never_applies_a_ban(stack):
    email = new_email()
    resp = post_form(stack, {"tenant": "resort", "email": email, "mail_ban": True, "sms_ban": True,
                             "email_marketing": True}, as_json=True)
    assert resp.status_code == 200 and resp.json()["changes"] == [{"email": email, "states": ["marketing_decline"]}]
    stack.settled(email)
    [record] = records_for(stack, email)
    assert set(record) == {"email", "marketing_decline"}


def test_the_form_redirects_to_the_return_url_after_the_commit(stack):
    email = new_email()
    resp = post_form(stack, {"tenant": "inn", "email": email, "email_marketing": "on"})
    assert resp.status_code == 303 and resp.headers["Location"] == "https://www.inn.example/unsubscribed"
    assert signals_for(stack, email) == 1


def test_the_form_is_rate_limited_per_forwarded_address(stack):
    headers = client_address()
    codes = [post_form(stack, {"tenant": "resort", "email": new_email()}, headers=headers).status_code
             for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert post_form(stack, {"tenant": "resort", "email": new_email()}).status_code == 200  # another client


def test_cors_preflight_for_the_tenants_site(stack):
    resp = stack.http.options(f"{stack.web_url}/forms/unsubscribe", timeout=10, headers={
        "Origin": SITE, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert resp.status_code == 204 and resp.headers["Access-Control-Allow-Origin"] == SITE
    other = stack.http.options(f"{stack.web_url}/forms/unsubscribe", timeout=10, headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers
    post = post_form(stack, {"tenant": "resort", "email": new_email()}, headers={"Origin": SITE}, as_json=True)
    assert post.headers["Access-Control-Allow-Origin"] == SITE


def test_logs_hold_no_email_and_no_link_token(stack):
    email = new_email()
    url = issue(stack, email, phone="+15550009999")
    stack.http.get(url, timeout=10)
    stack.http.post(url, data=ONE_CLICK, timeout=10, headers={"Content-Type": "application/x-www-form-urlencoded"})
    stack.settled(email)
    token = url.rsplit("/u/", 1)[1]
    logs = stack.logs()
    assert "/u/" + token[:6] in logs  # the access log did see the requests
    assert token not in logs and email not in logs and "+15550009999" not in logs


def test_a_link_with_a_phone_gives_later_sms_opt_outs_their_email(stack):
    email, phone = new_email(), new_phone()
    stack.http.post(issue(stack, email, phone=phone, tenant="grand"), data=ONE_CLICK, timeout=10,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    stack.settled(email)
    assert stack.sms("STOP", phone, sid="SM" + secrets.token_hex(16)).status_code == 200
    stack.settled(phone)
    records = stack.experience_records(phone)
    assert any(r.get("email") == email and "sms_ban" in r for r in records)
    assert len(stack.opt_out_calls(phone[2:])) == 1
