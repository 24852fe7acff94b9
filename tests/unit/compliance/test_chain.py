"""The hash chain: keyed identity hashes, canonical bytes, links, and a streaming verify that names the bad row."""

import hashlib
import hmac
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone

import pytest

from receiver.compliance.chain import FIELDS, GENESIS, canonical, identity_hash, link, verify

KEY = b"k" * 32
RECEIVED = datetime(2026, 11, 25, 18, 0, 0, 123456, tzinfo=UTC)


def signal(n: int, tenant: str = "grand", email: str | None = "guest@example.com", phone=None) -> dict:
    """A signals row as the ledger would read it: raw identities, their hashes, and the chain fields."""
    return {
        "id": n, "tenant": tenant, "source": "twilio-main", "event_id": f"SM{n:032d}", "kind": "opt_out",
        "add": ["sms_ban"], "remove": [], "occurred_at": None, "received_at": RECEIVED + timedelta(seconds=n),
        "evidence_sha256": hashlib.sha256(str(n).encode()).hexdigest(), "receipt_id": f"r{n}", "operator": None,
        "email": email, "phone": phone,
        "email_hash": identity_hash(KEY, email) if email else None,
        "phone_hash": identity_hash(KEY, phone) if phone else None,
    }


def chained(rows):
    heads = {}
    for row in rows:
        row["chain_sha256"] = heads[row["tenant"]] = link(
            heads.get(row["tenant"]), canonical({name: row[name] for name in FIELDS}))
    return rows


def test_identity_hash_is_hmac_sha256_of_the_normalized_identity():
    expected = hmac.new(KEY, b"guest@example.com", hashlib.sha256).hexdigest()
    assert identity_hash(KEY, "guest@example.com") == expected
    assert identity_hash(KEY, " Guest@Example.COM ") == expected  # compares like identities do
    assert identity_hash(KEY, "+15551234567") == hmac.new(KEY, b"+15551234567", hashlib.sha256).hexdigest()
    assert identity_hash(b"x" * 32, "guest@example.com") != expected  # keyed: not a plain hash


@pytest.mark.parametrize("key, value", [(b"short", "guest@example.com"), (KEY, ""), (KEY, "  ")])
def test_identity_hash_refuses_short_keys_and_empty_identities(key, value):
    with pytest.raises(ValueError):
        identity_hash(key, value)


def test_canonical_form_is_sorted_compact_utf8_json():
    row = signal(1)
    row.update(add={"sms_ban", "mail_ban"}, operator="Zoë", occurred_at=datetime(2026, 11, 25, 13, tzinfo=timezone(timedelta(hours=-5))))
    data = canonical({name: row[name] for name in FIELDS})
    assert data == (
        '{"add":["mail_ban","sms_ban"],"email_hash":"' + row["email_hash"] + '",'
        '"event_id":"SM00000000000000000000000000000001","evidence_sha256":"' + row["evidence_sha256"] + '",'
        '"kind":"opt_out","occurred_at":"2026-11-25T18:00:00.000000Z","operator":"Zoë","phone_hash":null,'
        '"receipt_id":"r1","received_at":"2026-11-25T18:00:01.123456Z","remove":[],"source":"twilio-main",'
        '"tenant":"grand"}').encode("utf-8")
    assert b"guest@example.com" not in data


@pytest.mark.parametrize("change, named", [
    ({"email": "guest@example.com"}, "'email'"),          # a raw address never enters the chain
    ({"received_at": datetime(2026, 11, 25)}, "received_at"),  # naive: which instant?
    ({"tenant": None}, "tenant"),
    ({"kind": 3}, "kind"),
])
def test_canonical_refuses_what_would_not_be_reproducible(change, named):
    fields = {name: signal(1)[name] for name in FIELDS} | change
    with pytest.raises(ValueError, match=named):
        canonical(fields)


def test_canonical_names_a_missing_field():
    fields = {name: signal(1)[name] for name in FIELDS}
    del fields["operator"]
    with pytest.raises(ValueError, match="'operator'"):
        canonical(fields)


def test_link_chains_from_genesis():
    first = canonical({name: signal(1)[name] for name in FIELDS})
    head = link(None, first)
    assert head == hashlib.sha256(bytes(32) + first).hexdigest() == link(GENESIS, first)
    second = canonical({name: signal(2)[name] for name in FIELDS})
    assert link(head, second) == hashlib.sha256(bytes.fromhex(head) + second).hexdigest()


def test_an_untouched_chain_verifies():
    rows = chained([signal(n, tenant="grand" if n % 3 else "small") for n in range(1, 30)])
    assert verify(iter(rows), key=KEY) is None


@pytest.mark.parametrize("tamper", [
    lambda row: row.update(add=["mail_ban"]),
    lambda row: row.update(received_at=row["received_at"] + timedelta(microseconds=1)),
    lambda row: row.update(email_hash=identity_hash(KEY, "other@example.com")),
    lambda row: row.update(chain_sha256="f" * 64),
    lambda row: row.update(chain_sha256=None),
    lambda row: row.update(chain_sha256="é" * 64),
])
def test_a_tampered_row_is_named(tamper):
    rows = chained([signal(n) for n in range(1, 10)])
    tamper(rows[4])
    mismatch = verify(rows)
    assert (mismatch.row_id, mismatch.tenant) == (5, "grand")
    assert str(mismatch).startswith("row 5 (tenant grand): ")


def test_a_deleted_row_is_named_at_the_next_one():
    rows = chained([signal(n) for n in range(1, 10)])
    del rows[4]
    assert verify(rows).row_id == 6


def test_a_row_of_another_tenant_does_not_hide_a_break():
    rows = chained([signal(n, tenant="grand" if n % 2 else "small") for n in range(1, 10)])
    rows[5]["kind"] = "opt_in"
    assert (verify(rows).row_id, verify(rows).tenant) == (6, "small")


def test_an_address_edited_in_place_is_found_with_the_key():
    rows = chained([signal(n) for n in range(1, 5)])
    rows[2]["email"] = "someone.else@example.com"
    assert verify(rows) is None  # the chain covers only the hash …
    mismatch = verify(rows, key=KEY)  # … so the key checks the address against it
    assert mismatch.row_id == 3 and "email" in mismatch.reason and "example.com" not in str(mismatch)


def test_erasure_keeps_the_chain_valid():
    rows = chained([signal(n, phone="+15551234567") for n in range(1, 6)])
    for row in rows:
        row["email"] = row["phone"] = None  # erased; the keyed hashes stay
    assert verify(rows, key=KEY) is None
    assert rows[0]["email_hash"] == identity_hash(KEY, "guest@example.com")  # look-ups still find them


def test_verify_streams_and_stops_at_the_first_mismatch():
    good = chained([signal(n) for n in range(1, 4)])
    good[1]["kind"] = "opt_in"

    def rows():
        yield from good
        raise AssertionError("read past the first mismatch")

    assert verify(rows()).row_id == 2


def test_verify_memory_stays_bounded():
    def rows(count):
        head = None
        for n in range(1, count + 1):
            row = signal(n)
            row["chain_sha256"] = head = link(head, canonical({name: row[name] for name in FIELDS}))
            yield row

    tracemalloc.start()
    try:
        assert verify(rows(5_000)) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # 5,000 rows held at once would take megabytes
