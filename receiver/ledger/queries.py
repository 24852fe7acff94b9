"""What is read back from the ledger: a guest's states, the audit trail, deliveries, the export.

Lists are keyset-paginated on the row id (ascending, so a client can poll for what is new): a
cursor is the last id of the previous page, opaque to clients (base64), and a page of ``limit``
rows costs one index range scan however deep it is.
"""

import base64
import binascii
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import Engine, bindparam, select

from ..compliance.chain import erased_identity
from ..errors import BadRequest
from .models import Attempt, Consent, Delivery, RequestRecord, SignalRow

MAX_ID = 2**63 - 1  # ids are BIGINT: a larger number names no row (and SQLite cannot bind it)
IN_LIST = 500  # bounded IN lists
# Built once: GET /v1/consent is asked before every send, and building it cost more than running it.
_STATES = select(Consent.identity, Consent.state, Consent.since).where(
    Consent.tenant == bindparam("tenant"), Consent.identity.in_(bindparam("identities", expanding=True)))


def encode_cursor(last_id: int | None) -> str | None:
    return None if last_id is None else base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix == "id" and number.isdigit() and int(number) <= MAX_ID:
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise BadRequest("cursor: not a cursor this API gave out", field="cursor")


def states_by_identity(engine: Engine, tenant: str, identities: list[str],
                       key: bytes | None = None) -> dict[str, dict[str, datetime]]:
    """{identity: {state: since}} for the identities that hold any state; one query for the lot.

    With ``key`` (RECEIVER_IDENTITY_KEY), an erased identity's states (``ledger/erasure.py``) are
    found under the address asked too.
    """
    found: dict[str, dict[str, datetime]] = {}
    asked = {i: i for i in identities if i}
    if key is not None:
        asked |= {erased_identity(key, i): i for i in asked}
    wanted = sorted(asked)
    with engine.connect() as conn:
        if len(wanted) <= IN_LIST and conn.dialect.name == "postgresql":
            # One statement is its own snapshot: without BEGIN and ROLLBACK it is one round trip, not three.
            conn.execution_options(isolation_level="AUTOCOMMIT")
        for start in range(0, len(wanted), IN_LIST):  # several: one transaction, one snapshot for them all
            rows = conn.execute(_STATES, {"tenant": tenant, "identities": wanted[start:start + IN_LIST]})
            for identity, state, since in rows:
                held = found.setdefault(asked[identity], {})
                held[state] = min(since, held.get(state, since))
    return found


def merge_states(found: dict[str, dict[str, datetime]], *identities) -> dict[str, datetime]:
    """The states of several identities of one guest (an email and its phone), each at its earliest time."""
    states: dict[str, datetime] = {}
    for identity in identities:
        for state, since in found.get(identity, {}).items():
            states[state] = min(since, states.get(state, since))
    return states


def guest_states(engine: Engine, tenant: str, *identities, key: bytes | None = None) -> dict[str, datetime]:
    """What is in force for one guest, whichever of its identities holds it (erased ones too, given ``key``)."""
    return merge_states(states_by_identity(engine, tenant, list(identities), key), *identities)


def events_page(engine: Engine, *, tenant=None, tenants=None, email=None, phone=None, since=None, after: int = 0,
                limit: int = 100) -> tuple[list, int | None]:
    query = (select(SignalRow.__table__, RequestRecord.status)
             .join(RequestRecord, RequestRecord.id == SignalRow.receipt_id)
             .where(SignalRow.id > after).order_by(SignalRow.id).limit(limit + 1))
    for column, value in ((SignalRow.email, email), (SignalRow.phone, phone)):
        if value is not None:
            query = query.where(column == value)
    query = scoped(query, SignalRow.tenant, tenant, tenants)
    if since is not None:
        query = query.where(SignalRow.received_at >= since)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return cut_page(rows, limit)


def deliveries_page(engine: Engine, *, status=None, tenant=None, tenants=None, after: int = 0,
                    limit: int = 100) -> tuple[list[tuple], int | None]:
    """(delivery row, its attempt rows oldest first) for one page."""
    query = select(Delivery.__table__).where(Delivery.id > after).order_by(Delivery.id).limit(limit + 1)
    if status is not None:
        query = query.where(Delivery.status == status)
    query = scoped(query, Delivery.tenant, tenant, tenants)
    with engine.connect() as conn:
        deliveries = conn.execute(query).all()
        page, next_id = cut_page(deliveries, limit)
        attempts: dict[int, list] = {}
        if page:
            for attempt in conn.execute(select(Attempt.__table__).where(
                    Attempt.delivery_id.in_([d.id for d in page])).order_by(Attempt.id)):
                attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return [(d, attempts.get(d.id, [])) for d in page], next_id


def export_rows(engine: Engine, *, tenant=None, since=None, batch: int = 2000) -> Iterator[tuple]:
    """Every state in force as (tenant, identity, state, since), streamed from a server-side cursor."""
    query = select(Consent.tenant, Consent.identity, Consent.state, Consent.since).order_by(
        Consent.tenant, Consent.identity, Consent.state)
    if tenant is not None:
        query = query.where(Consent.tenant == tenant)
    if since is not None:
        query = query.where(Consent.since >= since)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
        yield from result


def scoped(query, column, tenant: str | None = None, tenants=None):
    """``query`` narrowed to one tenant, and to a scoped operator's tenants (None: every tenant)."""
    if tenant is not None:
        query = query.where(column == tenant)
    if tenants is not None:  # a scoped operator's list holds only their tenants
        query = query.where(column.in_(tenants))
    return query


def cut_page(rows: list, limit: int) -> tuple[list, int | None]:
    """Of ``limit + 1`` rows read in id order: the first ``limit``, and the cursor id after them (None on the last page)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, rows[-1].id
    return rows, None
