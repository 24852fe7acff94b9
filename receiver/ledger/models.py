"""The ledger's tables (SQLAlchemy 2); migrations under ``migrations/`` create them."""

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .. import clock

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


# Recording inserts a signal's consent, deliveries, clocks and receipt before the signal rows, which
# go in last under the chain head (each once, complete): these keys are checked at commit (migration 0013).
CHECKED_AT_COMMIT = {"deferrable": True, "initially": "DEFERRED"}


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC on every engine, returned as aware UTC, so comparisons agree."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=UTC) if value is not None else None


def utcnow() -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


class Base(DeclarativeBase):
    pass


class RequestRecord(Base):
    """One answered request, under the receipt id of its first answer; (source, request_key) unique
    makes a redelivery a duplicate. ("Receipt" is the signed answer, receipts.py; the table keeps its
    name ``receipts``, as renaming it would need a migration of every deployed ledger.)"""

    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("source", "request_key", name="uq_receipts_source_request_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    request_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    evidence_sha256: Mapped[str] = mapped_column(String(64))
    event_ids: Mapped[list] = mapped_column(JSON, default=list)
    changes: Mapped[list] = mapped_column(JSON, default=list)


class SignalRow(Base):
    """The audit trail: one row per signal, with the changes it made."""

    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_signals_source_event_id"),
        Index("ix_signals_tenant_phone", "tenant", "phone"),
        Index("ix_signals_tenant_email", "tenant", "email"),
        Index("ix_signals_received_at", "received_at"),
        Index("ix_signals_tenant_id", "tenant", "id"),  # a tenant's events page
        # A tenant's chain, in order; unique: two rows can never take one position (migration 0014).
        Index("ix_signals_tenant_chain_seq", "tenant", "chain_seq", unique=True),
        Index("ix_signals_tenant_email_hash", "tenant", "email_hash"),  # an erased guest's proof and erasure
        Index("ix_signals_tenant_phone_hash", "tenant", "phone_hash"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id", **CHECKED_AT_COMMIT))
    source: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    keyword: Mapped[str | None] = mapped_column(String(255))
    review: Mapped[bool] = mapped_column(Boolean, default=False)
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(320))
    changes: Mapped[list] = mapped_column(JSON, default=list)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    evidence_sha256: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    # The hash chain (compliance/chain.py): what the signal asked, its identities as keyed hashes, the link.
    # No Python defaults: rows written by older revisions (migration tests) leave them out.
    add_states: Mapped[list | None] = mapped_column(JSON)
    remove_states: Mapped[list | None] = mapped_column(JSON)
    email_hash: Mapped[str | None] = mapped_column(String(64))
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    chain_sha256: Mapped[str | None] = mapped_column(String(64))
    chain_seq: Mapped[int | None] = mapped_column(BigId)  # position in the tenant's chain; None: not chained


class ChainHead(Base):
    """The last link of a tenant's chain; recording locks this row just before commit, so one
    tenant's chain stays linear (ledger/chain.py)."""

    __tablename__ = "chain_heads"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    signal_id: Mapped[int | None] = mapped_column(BigId)
    chain_sha256: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigId, default=0, server_default="0")  # the last row's chain_seq


class ClockRow(Base):
    """One regime's deadline for the states one signal added (compliance/clocks.py); status stored, not derived."""

    __tablename__ = "clocks"
    __table_args__ = (
        Index("ix_clocks_signal_id", "signal_id"),
        Index("ix_clocks_tenant_status_honour_by", "tenant", "status", "honour_by"),  # GET /v1/clocks
        Index("ix_clocks_status_at_risk_from", "status", "at_risk_from"),  # the worker's status pass
        Index("ix_clocks_status_honour_by", "status", "honour_by"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    signal_id: Mapped[int] = mapped_column(BigId, ForeignKey("signals.id", **CHECKED_AT_COMMIT))
    tenant: Mapped[str] = mapped_column(String(64))
    regime: Mapped[str] = mapped_column(String(16))
    states: Mapped[list] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    honour_by: Mapped[datetime] = mapped_column(UTCDateTime())
    at_risk_from: Mapped[datetime] = mapped_column(UTCDateTime())
    honoured_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))  # pending | at_risk | met | breached
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Consent(Base):
    """The current opt-out states: a row means the state holds for that identity since ``since``."""

    __tablename__ = "consent"
    __table_args__ = (Index("ix_consent_signal_id", "signal_id"),)  # deliveries ask what their signal still holds

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    identity: Mapped[str] = mapped_column(String(320), primary_key=True)
    state: Mapped[str] = mapped_column(String(32), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    signal_id: Mapped[int] = mapped_column(BigId, ForeignKey("signals.id", **CHECKED_AT_COMMIT))


class IdentityLink(Base):
    """An email and a phone of one tenant seen together in one signal."""

    __tablename__ = "identity_links"
    __table_args__ = (Index("ix_identity_links_phone", "tenant", "phone"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Delivery(Base):
    """The outbox: one CRM call owed for one identity's new states."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_signal_id", "signal_id"),  # a clock asks whether its signal still owes one
        Index("ix_deliveries_tenant_identity", "tenant", "identity"),  # proof, erasure, the console
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # NULL only for an alert no signal raised (backfill.recovered / backfill.failed)
    signal_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("signals.id", **CHECKED_AT_COMMIT))
    tenant: Mapped[str] = mapped_column(String(64))
    crm: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str] = mapped_column(String(320))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending | done | skipped | dead
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the age limit counts from here
    replayed_by: Mapped[str | None] = mapped_column(String(320))  # the operator who last replayed it


class Attempt(Base):
    """One call to a CRM for a delivery, written as 'started' before the call is made."""

    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_delivery", "delivery_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(BigId, ForeignKey("deliveries.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))  # started | ok | already | retry | unknown | permanent
    http_status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class ReplayNonce(Base):
    """A sender's single-use token (Mailgun's signature.token) and the request it was first used for."""

    __tablename__ = "replay_nonces"
    __table_args__ = (Index("ix_replay_nonces_expires_at", "expires_at"),)

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_key: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RateHit(Base):
    """Posts per client (a hash of its address, never the address) per one-minute window."""

    __tablename__ = "rate_hits"
    __table_args__ = (Index("ix_rate_hits_minute", "minute"),)

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # unix time // 60
    hits: Mapped[int] = mapped_column(Integer)


class SyncCursor(Base):
    """How far a backfill (``receiver backfill``, ``receiver reconcile``) got reading a provider's list,
    per tenant and source (``backfill/cursors.py``). ``next_url`` set: a pass from ``since`` stopped
    before that page and resumes there; empty: the last pass finished, and the next starts at ``since``."""

    __tablename__ = "sync_cursors"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    since: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, as the CRM's query takes it
    next_url: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when the current (or last) pass began
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Operator(Base):
    """A person (or a sender's system) acting through /v1: role and tenants (null: every tenant, admins only)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    tenants: Mapped[list | None] = mapped_column(JSON)
    password_hash: Mapped[str | None] = mapped_column(Text)  # Argon2id; null for a token-only operator
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(320))  # who: an email, "cli:<account>", …
    disabled_by: Mapped[str | None] = mapped_column(String(320))  # … or "bootstrap admin"; null before 0015


class OperatorToken(Base):
    """An operator's API token, by its SHA-256 only (the token is shown once); several per operator."""

    __tablename__ = "operator_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    operator_id: Mapped[int] = mapped_column(BigId, ForeignKey("operators.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_by: Mapped[str | None] = mapped_column(String(320))  # as Operator.created_by


class ReviewDecision(Base):
    """The one decision on a signal flagged for review: its primary key makes a second decision fail."""

    __tablename__ = "review_decisions"

    signal_id: Mapped[int] = mapped_column(BigId, ForeignKey("signals.id"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # honour | dismiss
    note: Mapped[str | None] = mapped_column(Text)
    operator: Mapped[str] = mapped_column(String(320))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
    receipt_id: Mapped[str] = mapped_column(String(40))  # of the signed answer (honour: the new signal's receipt)
