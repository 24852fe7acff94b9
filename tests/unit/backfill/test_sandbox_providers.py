"""The fake provider list APIs (receiver.dev.providers), served on a real port and read by the backfill clients.

Seeded entries are the providers' published samples the client tests use: twilio-python's recorded
Message (test_twilio.SAMPLE_OUTBOUND), SendGrid's "Retrieve all global suppressions" / spam reports /
group suppressions examples, Mailgun's "List all unsubscribes" sample (alice@example.com,
``Fri, 18 Oct 2024 18:28:14 UTC``), Postmark's "Suppression dump" example (address@wildbit.com…).
"""

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from receiver.backfill.mailgun import MailgunBackfill
from receiver.backfill.pages import (
    BadPage,
    CredentialsRefused,
    ItemKind,
    ListClient,
    RetryPolicy,
    flatten,
)
from receiver.backfill.postmark import PostmarkBackfill, server_token
from receiver.backfill.sendgrid import SendGridBackfill, bearer
from receiver.backfill.twilio import TwilioBackfill
from receiver.dev.provider_store import DEFAULT_CREDENTIALS
from receiver.dev.providers import create_providers_blueprint

from .test_twilio import SAMPLE_OUTBOUND

SID, TOKEN = DEFAULT_CREDENTIALS["twilio"]["account_sid"], DEFAULT_CREDENTIALS["twilio"]["auth_token"]
OURS, OTHER = "+14155552345", "+14155550000"
DOMAIN = DEFAULT_CREDENTIALS["mailgun"]["domain"]


@pytest.fixture(scope="module")
def _served():
    app = Flask(__name__)
    blueprint = create_providers_blueprint()
    app.register_blueprint(blueprint)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", blueprint.store, app
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake(_served):
    url, store, _app = _served
    store.reset()
    return url, store


@pytest.fixture
def sleeps():
    return []


def client(fake, sleeps, provider: str, **options) -> ListClient:
    options.setdefault("retry", RetryPolicy(max_attempts=3, base_seconds=0.01, max_seconds=0.02))
    return ListClient(provider, fake[0], sleep=sleeps.append, **options)


def twilio(fake, sleeps, *, token=TOKEN, numbers=(OURS,), page_size=2) -> TwilioBackfill:
    return TwilioBackfill(client(fake, sleeps, "twilio", auth=(SID, token)), SID, list(numbers), page_size=page_size)


def seed_texts(store):
    text = {"from": "+15005550006", "to": OURS, "body": "STOP"}
    store.add_texts([
        {**text, "sid": "SM01", "date_sent": "Thu, 03 Sep 2015 23:59:59 +0000"},  # before since: filtered
        {**text, "sid": "SM02", "date_sent": "2015-09-04T00:00:00Z"},
        {**text, "sid": "SM03", "body": "stop", "date_sent": "2015-09-04T10:00:00Z"},
        {"from": OURS, "to": OURS, "body": "O Slash", "sid": "SM04",  # as twilio-python's outbound sample
         "direction": "outbound-api", "status": "sent", "date_sent": "2015-09-04T10:00:01Z"},
        {**text, "sid": "SM05", "to": OTHER, "date_sent": "2015-09-05T00:00:00Z"},  # another number
        {**text, "sid": "SM06", "body": "Unsubscribe", "date_sent": "2015-09-05T00:00:00Z"},
        {**text, "sid": "SM07", "body": "thanks!", "date_sent": "2015-09-06T00:00:00Z"},
    ])


def test_twilio_pages_by_next_page_uri_with_to_and_date_sent_filters_and_only_inbound(fake, sleeps):
    seed_texts(fake[1])
    pages = list(twilio(fake, sleeps).pages(date(2015, 9, 4)))
    assert [i.key for p in pages for i in p.items] == ["SM07", "SM06", "SM03", "SM02"]  # newest first, SM04 is ours
    assert len(pages) == 3 and fake[1].requests["twilio"] == 3  # pages of 2: SM07 SM06 | SM04 SM03 | SM02
    first = pages[0].items[0]
    assert (first.kind, first.phone, first.body) == (ItemKind.INBOUND_SMS, "+15005550006", "thanks!")
    assert first.occurred_at == datetime(2015, 9, 6, tzinfo=UTC)


def test_twilio_page_is_the_documented_list_shape_with_previous_pages(fake):
    seed_texts(fake[1])
    url, auth = f"{fake[0]}/2010-04-01/Accounts/{SID}/Messages.json", (SID, TOKEN)
    first = requests.get(url, params={"To": OURS, "PageSize": 2}, auth=auth, timeout=5).json()
    assert set(first) == {"end", "first_page_uri", "messages", "next_page_uri", "page", "page_size",
                          "previous_page_uri", "start", "uri"}
    assert set(first["messages"][0]) == set(SAMPLE_OUTBOUND)
    assert first["messages"][0]["date_sent"] == "Sun, 06 Sep 2015 00:00:00 +0000"
    assert (first["page"], first["page_size"], first["start"], first["end"], first["previous_page_uri"]) == (0, 2, 0, 1, None)
    second = requests.get(fake[0] + first["next_page_uri"], auth=auth, timeout=5).json()
    assert [m["sid"] for m in second["messages"]] == ["SM04", "SM03"] and second["page"] == 1
    back = requests.get(fake[0] + second["previous_page_uri"], auth=auth, timeout=5).json()
    assert back["messages"] == first["messages"]


def test_each_provider_refuses_wrong_credentials_as_the_client_expects(fake, sleeps):
    since = date(2015, 9, 1)
    readers = [twilio(fake, sleeps, token="wrong"),
               SendGridBackfill(client(fake, sleeps, "sendgrid", headers=bearer("SG.wrong"))),
               MailgunBackfill(client(fake, sleeps, "mailgun", auth=("api", "wrong")), DOMAIN),
               PostmarkBackfill(client(fake, sleeps, "postmark", headers=server_token("wrong")), "broadcast")]
    for reader in readers:
        with pytest.raises(CredentialsRefused, match=f"^{reader.client.provider}: credentials refused"):
            list(reader.pages(since))
    answer = requests.get(f"{fake[0]}/2010-04-01/Accounts/{SID}/Messages.json", auth=(SID, "wrong"), timeout=5)
    assert answer.json() == {"code": 20003, "message": "Authenticate",
                             "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}
    answer = requests.get(f"{fake[0]}/v3/suppression/unsubscribes", timeout=5)
    assert answer.json() == {"errors": [{"field": None, "message": "authorization required"}]}
    assert (requests.get(f"{fake[0]}/v3/{DOMAIN}/complaints", timeout=5).text,
            requests.get(f"{fake[0]}/message-streams/broadcast/suppressions/dump", timeout=5).json()["ErrorCode"]) \
        == ("Forbidden", 10)


def test_credentials_are_configurable_over_http(fake, sleeps):
    answer = requests.post(f"{fake[0]}/_sandbox/providers/credentials", json={"twilio": {"auth_token": "new"}}, timeout=5)
    assert answer.status_code == 200
    seed_texts(fake[1])
    assert len(list(flatten(twilio(fake, sleeps, token="new").pages(date(2015, 9, 4))))) == 4
    with pytest.raises(CredentialsRefused):
        list(twilio(fake, sleeps).pages(date(2015, 9, 4)))


def test_429_with_retry_after_then_success(fake, sleeps):
    seed_texts(fake[1])
    answer = requests.post(f"{fake[0]}/_sandbox/providers/faults",
                           json={"provider": "twilio", "mode": "429", "count": 2, "retry_after": 7}, timeout=5)
    assert answer.status_code == 201
    items = list(flatten(twilio(fake, sleeps, page_size=50).pages(date(2015, 9, 4))))
    assert len(items) == 4
    assert sleeps == [7.0, 7.0] and fake[1].requests["twilio"] == 3  # Retry-After honoured, then the page


def test_500_is_retried_and_garbage_is_a_bad_page(fake, sleeps):
    fake[1].add_sendgrid("unsubscribes", [{"created": 1443651141, "email": "user1@example.com"}])
    fake[1].add_fault("sendgrid", "500")
    reader = SendGridBackfill(client(fake, sleeps, "sendgrid", headers=bearer("SG.sandbox-key")))
    assert [i.email for i in flatten(reader.pages(date(2015, 9, 30)))] == ["user1@example.com"]
    assert len(sleeps) == 1
    fake[1].add_fault("sendgrid", "garbage")
    with pytest.raises(BadPage, match="not JSON"):
        list(reader.pages(date(2015, 9, 30)))


def test_sendgrid_pages_by_offset_and_filters_by_start_time(fake, sleeps):
    store = fake[1]
    store.add_sendgrid("unsubscribes", [{"created": 1443651141 + n, "email": f"user{n}@example.com"} for n in range(5)]
                       + [{"created": 1410986704, "email": "old@example.com"}])  # 2014: before start_time
    store.add_sendgrid("spam_reports", [{"created": 1443651141, "email": "user1@example.com", "ip": "10.63.202.100"}])
    store.add_sendgrid("group_unsubscribes", [
        {"email": "test1@example.com", "group_id": 1, "group_name": "Weekly News", "created_at": 1410986704},
        {"email": "test2@example.com", "group_id": 2, "group_name": "Daily News", "created_at": 1443651154}])
    reader = SendGridBackfill(client(fake, sleeps, "sendgrid", headers=bearer("SG.sandbox-key")), page_size=2)
    pages = list(reader.pages(date(2015, 9, 30)))
    assert [str(p.position) for p in pages] == ["unsubscribes 0", "unsubscribes 2", "unsubscribes 4",
                                                "group_unsubscribes 0", "spam_reports 0"]
    assert [(i.kind, i.email) for p in pages for i in p.items][4:] == [
        (ItemKind.UNSUBSCRIBE, "user4@example.com"), (ItemKind.GROUP_UNSUBSCRIBE, "test2@example.com"),
        (ItemKind.SPAM_REPORT, "user1@example.com")]
    window = requests.get(f"{fake[0]}/v3/suppression/unsubscribes", headers=bearer("SG.sandbox-key"), timeout=5,
                          params={"start_time": 1443651142, "end_time": 1443651143}).json()
    assert window == [{"created": 1443651142, "email": "user1@example.com"},
                      {"created": 1443651143, "email": "user2@example.com"}]


def test_mailgun_pages_by_paging_next_in_address_order(fake, sleeps):
    store = fake[1]
    store.add_mailgun("unsubscribes", [{"address": f"{name}@example.com", "tags": ["some tag"],
                                        "created_at": "Fri, 18 Oct 2024 18:28:14 UTC"}
                                       for name in ("erin", "alice", "dave", "bob", "carol")])
    store.add_mailgun("complaints", [{"address": "alice@example.com", "created_at": "Wed, 15 Feb 2012 11:21:46 GMT"}])
    reader = MailgunBackfill(client(fake, sleeps, "mailgun", auth=("api", DEFAULT_CREDENTIALS["mailgun"]["api_key"])),
                             DOMAIN, page_size=2)
    pages = list(reader.pages(date(2024, 1, 1)))
    assert [i.email for p in pages for i in p.items] == [f"{n}@example.com" for n in ("alice", "bob", "carol", "dave", "erin")]
    assert pages[1].position.page.endswith("?page=next&address=bob%40example.com&limit=2")
    assert [p.position.list for p in pages][-1] == "complaints" and pages[-1].items == []  # 2012 is before since
    raw = requests.get(f"{fake[0]}/v3/{DOMAIN}/unsubscribes", params={"page": "last", "limit": 2}, timeout=5,
                       auth=("api", DEFAULT_CREDENTIALS["mailgun"]["api_key"])).json()
    assert [r["address"] for r in raw["items"]] == ["dave@example.com", "erin@example.com"]
    assert raw["items"][0] == {"address": "dave@example.com", "tags": ["some tag"], "created_at": "Fri, 18 Oct 2024 18:28:14 UTC"}
    assert set(raw["paging"]) == {"first", "last", "next", "previous"}


def test_postmark_dump_filters_by_fromdate_todate_and_email(fake, sleeps):
    fake[1].add_postmark("broadcast", [
        {"email": "address@wildbit.com", "reason": "ManualSuppression", "created_at": "2019-12-17T08:58:33-05:00"},
        {"email": "bounce.address@wildbit.com", "reason": "HardBounce", "created_at": "2019-12-10T08:58:33-05:00"},
        {"email": "spam.complaint.address@wildbit.com", "reason": "SpamComplaint", "created_at": "2019-12-19T23:30:00-05:00"}])
    reader = PostmarkBackfill(client(fake, sleeps, "postmark", headers=server_token("sandbox-postmark-token")),
                              "broadcast", window_days=2, today=lambda: date(2019, 12, 20))
    pages = list(reader.pages(date(2019, 12, 15)))
    assert len(pages) == 4  # windows 15-16, 17-18, 19-20, 21
    assert [(i.kind, i.email) for p in pages for i in p.items] == [
        (ItemKind.UNSUBSCRIBE, "address@wildbit.com"), (ItemKind.COMPLAINT, "spam.complaint.address@wildbit.com")]
    raw = requests.get(f"{fake[0]}/message-streams/broadcast/suppressions/dump", timeout=5,
                       headers=server_token("sandbox-postmark-token"), params={"emailaddress": "Address@wildbit.com"})
    assert raw.json() == {"Suppressions": [{"EmailAddress": "address@wildbit.com", "SuppressionReason": "ManualSuppression",
                                            "Origin": "Recipient", "CreatedAt": "2019-12-17T08:58:33-05:00"}]}
    unknown = requests.get(f"{fake[0]}/message-streams/nope/suppressions/dump", timeout=5,
                           headers=server_token("sandbox-postmark-token"))
    assert (unknown.status_code, unknown.json()["ErrorCode"]) == (422, 1226)


def test_controls_seed_over_http_and_name_the_bad_field(fake):
    url = f"{fake[0]}/_sandbox/providers"
    added = requests.post(f"{url}/twilio/messages", json={"items": [{"from": "+15005550006", "to": OURS, "body": "STOP"}]},
                          timeout=5)
    assert (added.status_code, added.json()) == (201, {"added": 1})
    bad = requests.post(f"{url}/sendgrid/unsubscribes", json={"email": "a@example.com", "created": "yesterday"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"].startswith("created:")
    assert requests.post(f"{url}/mailgun/bounces", json={}, timeout=5).status_code == 404
    assert requests.post(f"{url}/faults", json={"provider": "twilio", "mode": "teapot"}, timeout=5).status_code == 400
    assert requests.get(url, timeout=5).json()["twilio"] == {"messages": 1}
    assert requests.post(f"{url}/reset", timeout=5).json()["twilio"] == {"messages": 0}


class Watched(list):
    """A list that counts the entries read from it: iterating or copying it reads them all."""

    touched = 0

    def __getitem__(self, index):
        got = super().__getitem__(index)
        self.touched += len(got) if isinstance(index, slice) else 1
        return got

    def __iter__(self):
        self.touched += len(self)
        return super().__iter__()


def test_100000_entries_page_through_and_a_page_reads_only_its_own_entries(fake, _served, sleeps):
    store, start = fake[1], datetime(2026, 1, 1, tzinfo=UTC)
    store.add_texts({"from": "+15005550006", "to": OURS, "body": "STOP", "date_sent": start + timedelta(seconds=n)}
                    for n in range(100_000))
    store.add_sendgrid("unsubscribes", ({"created": 1443651141 + n, "email": f"u{n}@example.com"} for n in range(100_000)))
    store.add_mailgun("complaints", ({"address": f"u{n:06}@example.com", "created_at": 1443651141} for n in range(100_000)))
    reader = SendGridBackfill(client(fake, sleeps, "sendgrid", headers=bearer("SG.sandbox-key")))
    assert sum(1 for _ in flatten(reader.pages(date(2015, 9, 30)))) == 100_000
    assert store.requests["sendgrid"] == 201 + 2  # 200 full pages of 500, an empty one; groups, spam reports
    # a deep page of each list reads about its own entries (a bisect, a slice), never the whole list
    store.texts = Watched(store.texts)
    store.sendgrid["unsubscribes"] = Watched(store.sendgrid["unsubscribes"])
    store.mailgun["complaints"] = Watched(store.mailgun["complaints"])
    web, auth = _served[2].test_client(), {"Authorization": "Bearer SG.sandbox-key"}
    texts = web.get(f"/2010-04-01/Accounts/{SID}/Messages.json?PageSize=20&PageToken=PA{f'SM{50_000:032x}'}",
                    auth=(SID, TOKEN)).json["messages"]
    unsubscribes = web.get("/v3/suppression/unsubscribes?start_time=1443700000&offset=500&limit=20", headers=auth).json
    complaints = web.get(f"/v3/{DOMAIN}/complaints?page=next&address=u050000%40example.com&limit=20",
                         auth=("api", DEFAULT_CREDENTIALS["mailgun"]["api_key"])).json["items"]
    assert (texts[0]["sid"], unsubscribes[0]["created"], complaints[0]["address"]) == (
        f"SM{49_999:032x}", 1443700500, "u050001@example.com")
    touched = [store.texts.touched, store.sendgrid["unsubscribes"].touched, store.mailgun["complaints"].touched]
    assert max(touched) < 100  # of 100,000 each
    last = web.get(f"/2010-04-01/Accounts/{SID}/Messages.json?PageSize=1000&Page=99&PageToken=PA{f'SM{1_001:032x}'}",
                   auth=(SID, TOKEN)).json
    assert (len(last["messages"]), last["next_page_uri"]) == (1000, None)  # the oldest thousand end the list
