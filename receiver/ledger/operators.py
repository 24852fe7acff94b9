"""Operators in the ledger: creating them, their API tokens, disabling them, and a token's Principal.

Each change names who made it (``by``, kept in ``created_by``, ``issued_by``, ``disabled_by``): the
acting operator's email, ``cli:<OS account>`` from ``receiver operator``, or ``bootstrap admin``.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..access.credentials import new_token, token_hash, token_matches
from ..access.roles import Principal, Role
from ..errors import Conflict, NotFound
from .models import Operator, OperatorToken, utcnow


@dataclass(frozen=True)
class OperatorInfo:
    email: str
    role: str
    tenants: list[str] | None
    disabled_at: datetime | None
    tokens: int
    created_at: datetime | None = None
    created_by: str | None = None  # null: added before migration 0015, when nobody recorded who
    disabled_by: str | None = None
    last_token_by: str | None = None  # who issued the newest token


def add_operator(engine: Engine, email: str, role: Role, tenants: list[str] | None,
                 password_hash: str | None, *, by: str) -> None:
    """Create an operator (``email`` already normalized) on behalf of ``by``; Conflict when the email is taken."""
    Principal(email, role, frozenset(tenants) if tenants else None)  # refuses an admin with tenants and the reverse
    try:
        with engine.begin() as conn:
            conn.execute(insert(Operator).values(
                email=email, role=str(role), tenants=sorted(set(tenants)) if tenants else None,
                password_hash=password_hash, created_at=utcnow(), created_by=by))
    except IntegrityError:
        raise Conflict(f"an operator {email} already exists") from None


def issue_token(engine: Engine, email: str, *, by: str) -> str:
    """A new API token for an enabled operator, issued by ``by``: returned once, only its hash is stored."""
    token, digest = new_token()
    with engine.begin() as conn:
        operator_id = conn.execute(select(Operator.id).where(
            Operator.email == email, Operator.disabled_at.is_(None))).scalar()
        if operator_id is None:
            raise NotFound(f"no enabled operator {email}")
        conn.execute(insert(OperatorToken).values(operator_id=operator_id, token_hash=digest, created_at=utcnow(),
                                                 issued_by=by))
    return token


def disable_operator(engine: Engine, email: str, *, by: str) -> bool:
    """Disable an operator on behalf of ``by``: every token stops at the next request (each request
    checks ``disabled_at``).

    False when no such operator; disabling one already disabled keeps its first time and who did it.
    """
    with engine.begin() as conn:
        found = conn.execute(select(Operator.id).where(Operator.email == email)).scalar()
        if found is None:
            return False
        conn.execute(update(Operator).where(Operator.id == found, Operator.disabled_at.is_(None)).values(
            disabled_at=utcnow(), disabled_by=by))
    return True


def list_operators(engine: Engine) -> list[OperatorInfo]:
    with engine.connect() as conn:
        per: dict[int, int] = {}
        last: dict[int, str | None] = {}
        for token in conn.execute(select(OperatorToken.operator_id, OperatorToken.issued_by).order_by(OperatorToken.id)):
            per[token.operator_id] = per.get(token.operator_id, 0) + 1
            last[token.operator_id] = token.issued_by
        rows = conn.execute(select(Operator.__table__).order_by(Operator.email)).all()
    return [OperatorInfo(r.email, r.role, r.tenants, r.disabled_at, per.get(r.id, 0), r.created_at, r.created_by,
                         r.disabled_by, last.get(r.id)) for r in rows]


def principal_for_token(engine: Engine, token: str) -> Principal | None:
    """The enabled operator whose token this is, or None: one indexed look-up of the token's hash."""
    digest = token_hash(token)
    with engine.connect() as conn:
        row = conn.execute(
            select(Operator.email, Operator.role, Operator.tenants, OperatorToken.token_hash)
            .join(OperatorToken, OperatorToken.operator_id == Operator.id)
            .where(OperatorToken.token_hash == digest, Operator.disabled_at.is_(None))).first()
    if row is None or not token_matches(token, row.token_hash):
        return None
    return Principal(row.email, Role(row.role), frozenset(row.tenants) if row.tenants else None)


def any_operator(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(exists().where(Operator.id.is_not(None)))).scalar())


def sign_in_record(engine: Engine, email: str) -> tuple[int, str | None] | None:
    """(id, password hash) of the enabled operator ``email``, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(Operator.id, Operator.password_hash).where(
            Operator.email == email, Operator.disabled_at.is_(None))).first()
    return None if row is None else (row.id, row.password_hash)


def principal_for_id(engine: Engine, operator_id: int) -> Principal | None:
    """The enabled operator of a console session, read on every request (disabling ends it at once)."""
    with engine.connect() as conn:
        row = conn.execute(select(Operator.email, Operator.role, Operator.tenants).where(
            Operator.id == operator_id, Operator.disabled_at.is_(None))).first()
    if row is None:
        return None
    return Principal(row.email, Role(row.role), frozenset(row.tenants) if row.tenants else None)
