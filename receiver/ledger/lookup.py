"""Reading the ledger: the states in force for a guest, and the per-client rate limit of open forms."""

import hashlib
import ipaddress
import random
import time
from datetime import datetime

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from .models import Consent, RateHit


def states_in_force(engine: Engine, tenant: str, identities: list[str]) -> dict[str, datetime]:
    """Each state held by any of ``identities`` (an email and its linked phone), with its earliest time."""
    found: dict[str, datetime] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(Consent.state, Consent.since).where(
            Consent.tenant == tenant, Consent.identity.in_([i for i in identities if i])))
        for state, since in rows:
            if state not in found or since < found[state]:
                found[state] = since
    return found


def client_key(address: str | None) -> str:
    """What a client is counted by: its IPv4 address, or its IPv6 /64 (one subscriber's whole block)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def rate_limited(engine: Engine, scope: str, client: str, limit: int, now: float | None = None) -> int | None:
    """Count one hit for ``client`` this minute; the seconds to wait when over ``limit``, else None.

    Counted in the database, so the limit holds across gunicorn's worker processes and web dynos.
    """
    now = time.time() if now is None else now
    minute = int(now // 60)
    key = f"{scope}:{hashlib.sha256(client.encode()).hexdigest()[:32]}"
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(RateHit).values(key=key, minute=minute, hits=1)
    statement = statement.on_conflict_do_update(
        index_elements=[RateHit.key, RateHit.minute], set_={"hits": RateHit.hits + 1},
    ).returning(RateHit.hits)
    with engine.begin() as conn:
        hits = conn.execute(statement).scalar_one()
        if random.random() < 0.01:  # old windows are pruned now and then, not on every post
            conn.execute(delete(RateHit).where(RateHit.minute < minute - 1))
    return None if hits <= limit else 60 - int(now % 60)
