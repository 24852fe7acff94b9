"""Signature-header edge cases of Standard Webhooks: a malformed entry never voids a valid one that
follows it, and nothing but a valid ``v1`` lets a request in."""

import json
from datetime import UTC, datetime
from unittest import mock

import pytest
import standardwebhooks.webhooks
from standardwebhooks import Webhook

from tests.helpers import config_toml, empty_tables, make_settings

# inbound-formats.md, Appendix A: the partner's secret and event.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + "A" * 43 + "="
EVENT = {"id": "evt_01HZX", "type": "consent.opt_out", "occurred_at": "2026-11-22T10:15:00Z",
         "customer": {"email": "guest@example.com", "phone": "+15551234567"},
         "states": ["marketing_decline", "marketing_decline_sms"], "reason": "guest asked at check-out"}
PATH = "/hooks/booking-engine"

MALFORMED = [
    "v1",  # no comma
    "v1,",  # nothing after it
    "v1,a,b",  # two commas
    "v1,!!!not base64!!!",
    "v1,AAAA",  # base64, but not an HMAC-SHA256's 32 bytes
    ",v1",
    "v1a,bm90LWNoZWNrZWQ=",  # another scheme (Ed25519): not ours to check
    "v2,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
]


@pytest.fixture
def settings(tmp_path, database_url):
    empty_tables(database_url)
    extra = f'[sources.booking-engine]\nkind = "standard-webhooks"\ntenant = "grand"\nsecret = "{SECRET}"\n'
    return make_settings(tmp_path, database_url, toml=config_toml(extra=extra))


def post(client, signature_header: str, *, msg_id: str = "msg_1", prefix: str = "webhook-"):
    body = json.dumps(EVENT)
    at = str(int(datetime.now(UTC).timestamp()))
    return client.post(PATH, data=body, content_type="application/json", headers={
        f"{prefix}id": msg_id, f"{prefix}timestamp": at, f"{prefix}signature": signature_header})


def valid(msg_id: str = "msg_1", secret: str = SECRET) -> str:
    """The v1 entry a Standard Webhooks sender makes, by the library itself."""
    return Webhook(secret).sign(msg_id, datetime.now(UTC), json.dumps(EVENT))


@pytest.mark.parametrize("malformed", MALFORMED)
def test_malformed_entry_before_a_valid_one_does_not_void_it(client, malformed):
    response = post(client, f"{malformed} {valid()}")

    assert response.status_code == 200, response.get_data()
    assert response.get_json()["status"] == "accepted"


@pytest.mark.parametrize("malformed", MALFORMED)
def test_valid_entry_between_malformed_ones_under_svix_names(client, malformed):
    response = post(client, f"{malformed} {valid()} {malformed}", prefix="svix-")

    assert response.status_code == 200, response.get_data()


def test_extra_spaces_between_entries_are_tolerated(client):
    assert post(client, f"  v1  {valid()}  ").status_code == 200


@pytest.mark.parametrize("header", [*MALFORMED, " ".join(MALFORMED), f"v1 {valid(secret=OTHER_SECRET)}",
                                    f"{valid(msg_id='msg_other')} v1,a,b"])
def test_without_a_valid_entry_it_is_401(client, header):
    response = post(client, header)

    assert response.status_code == 401
    assert "webhook-signature" in response.get_json()["error"]


def test_entries_are_compared_in_constant_time(client):
    header = f"v1,{'A' * 43}= {valid()}"
    with mock.patch.object(standardwebhooks.webhooks.hmac, "compare_digest",
                           wraps=standardwebhooks.webhooks.hmac.compare_digest) as compare:
        assert post(client, header).status_code == 200

    assert compare.call_count == 2  # the wrong entry, then the right one
