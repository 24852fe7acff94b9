"""The rate limit of the open pages (the plain form, the link's POST): hits per key per minute, in the database."""

import hashlib
import ipaddress
import random

from sqlalchemy import Engine, delete

from .. import clock
from .db import dialect_insert
from .models import RateHit


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
    now = clock.now() if now is None else now
    minute = int(now // 60)
    key = f"{scope}:{hashlib.sha256(client.encode()).hexdigest()[:32]}"
    statement = dialect_insert(engine)(RateHit).values(key=key, minute=minute, hits=1)
    statement = statement.on_conflict_do_update(
        index_elements=[RateHit.key, RateHit.minute], set_={"hits": RateHit.hits + 1},
    ).returning(RateHit.hits)
    with engine.begin() as conn:
        hits = conn.execute(statement).scalar_one()
        if random.random() < 0.01:  # old windows are pruned now and then, not on every post
            conn.execute(delete(RateHit).where(RateHit.minute < minute - 1))
    return None if hits <= limit else 60 - int(now % 60)
