"""Experience's ``retrieve-opt-out`` list, served from a local server in the documented page shape.

The recipients are the published sample's (crm-apis.md, section 1: ``{"recipients": [{"email":
"a@b.c", "mail_ban": "2022-01-01 10:10:09", "marketing_decline": "2021-12-26 15:04:06"}, ...],
"next_page_url": "..."}``), whose ``next_page_url`` carries a ``cursor`` and omits ``since``.
"""

from datetime import date

import pytest
from werkzeug.wrappers import Response

from receiver.backfill.experience import LIST, ExperienceBackfill
from receiver.backfill.pages import BadPage, CredentialsRefused, Position
from receiver.crm.experience import bearer
from receiver.settings import ExperienceConfig

from .conftest import json_answer

PATH = "/api/xp-unsubscribe/retrieve-opt-out"
SINCE = date(2022, 1, 1)
SAMPLE = {"email": "a@b.c", "mail_ban": "2022-01-01 10:10:09", "marketing_decline": "2021-12-26 15:04:06"}
SECOND = {"email": "d@e.f", "phone": "+15551234567", "sms_ban": "2022-02-02 02:02:02"}
CONFIG = ExperienceConfig(base_url="http://unused", partner_token="partner", hotel_token="hotel")


def reader(make_client, provider, path: str = "") -> ExperienceBackfill:
    client = make_client("experience", headers=bearer(CONFIG))
    client.base_url = provider.url + path
    return ExperienceBackfill(client, PATH)


def test_pages_follow_next_page_url_and_add_since_back(make_client, provider):
    link = f"{provider.url}/xp{PATH}?cursor=abc"
    provider.routes({
        ("/xp" + PATH, frozenset({"since": "2022-01-01"}.items())):
            json_answer({"recipients": [SAMPLE, "not a record"], "next_page_url": link}),
        ("/xp" + PATH, frozenset({"cursor": "abc", "since": "2022-01-01"}.items())):
            json_answer({"recipients": [SECOND], "next_page_url": None}),
    })
    pages = list(reader(make_client, provider, "/xp").pages(SINCE))
    assert [p.items for p in pages] == [[SAMPLE], [SECOND]]  # as read; a non-object entry is left out
    assert [(p.position, p.next) for p in pages] == [(Position(LIST), Position(LIST, link)), (Position(LIST, link), None)]
    assert [r["headers"]["Authorization"] for r in provider.requests] == ["Bearer partner:hotel"] * 2


def test_a_next_page_url_keeps_its_own_since_and_a_path_is_on_the_api_host(make_client, provider):
    provider.routes({("/xp" + PATH, frozenset({"cursor": "5", "since": "2020-01-01"}.items())):
                     json_answer({"recipients": [SAMPLE]})})
    resume = Position(LIST, f"/xp{PATH}?cursor=5&since=2020-01-01")
    [page] = reader(make_client, provider, "/xp").pages(SINCE, resume)
    assert page.items == [SAMPLE] and page.next is None
    assert provider.requests[0]["query"] == "cursor=5&since=2020-01-01"


def test_a_position_of_another_list_starts_the_pass_from_since(make_client, provider):
    provider.routes({(PATH, frozenset({"since": "2022-01-01"}.items())): json_answer({"recipients": []})})
    old = Position.parse(f"{provider.url}{PATH}?cursor=2")  # a cursor saved as a bare URL
    assert [p.items for p in reader(make_client, provider).pages(SINCE, old)] == [[]]


@pytest.mark.parametrize("answer, error", [
    ({"recipients": [], "next_page_url": "https://elsewhere.test/api/xp-unsubscribe/retrieve-opt-out?cursor=1"},
     "next-page link points to another host (elsewhere.test)"),
    ({"recipients": [], "next_page_url": ["a"]}, "unexpected answer: next_page_url is not a URL"),
    ({"recipients": [], "next_page_url": 7}, "unexpected answer: next_page_url is not a URL"),
    ({"recipients": "none"}, "unexpected answer: no recipients list"),
    ("customer not found", "unexpected answer: no recipients list"),
])
def test_a_page_that_is_not_the_documented_one_is_refused(make_client, provider, answer, error):
    provider.handler = lambda request: json_answer(answer)
    with pytest.raises(BadPage) as refused:
        list(reader(make_client, provider).pages(SINCE))
    assert str(refused.value) == f"experience: {error}" and refused.value.provider == "experience"
    assert len(provider.requests) == 1  # another host is never asked


def test_a_next_page_url_repeating_a_page_of_the_pass_is_refused(make_client, provider):
    again = f"{provider.url}{PATH}?cursor=1"
    provider.handler = lambda request: json_answer({"recipients": [SAMPLE], "next_page_url": again})
    with pytest.raises(BadPage, match="next_page_url repeats an earlier page"):
        list(reader(make_client, provider).pages(SINCE))
    assert len(provider.requests) == 2


def test_refused_credentials_are_not_retried(make_client, provider, sleeps):
    provider.handler = lambda request: Response('"unauthenticated"', status=401, content_type="application/json")
    with pytest.raises(CredentialsRefused, match=r"experience: credentials refused \(HTTP 401\)"):
        list(reader(make_client, provider).pages(SINCE))
    assert len(provider.requests) == 1 and sleeps == []
