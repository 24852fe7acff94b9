"""GET /v1/clocks (compliance clocks, oldest deadline first) and GET /v1/chain (a tenant's signed chain head)."""

import base64
import binascii
import json
from datetime import UTC, datetime

from flask import Response, jsonify, request
from marshmallow import Schema, fields, validate

from ... import clock
from ...access.roles import Permission
from ...compliance.clocks import ClockStatus, Regime
from ...errors import BadRequest
from ...ledger import chain
from ...ledger import clocks as ledger_clocks
from ...schemas import MAX_TENANT, TEXT_ERRORS, load, text
from ...services import services
from ...states import STATES
from ..answers import Time
from .common import ListQuery, allow, bp, known_tenant, page_of

STATUSES = tuple(status.value for status in ClockStatus)


class ClocksQuery(ListQuery):
    tenant = text(1, MAX_TENANT, required=True)
    status = fields.String(validate=validate.OneOf(STATUSES, error="must be one of {choices}"),
                           error_messages=TEXT_ERRORS)


class ClockItem(Schema):
    id = fields.Integer(required=True)
    signal_id = fields.Integer(required=True)
    tenant = fields.String(required=True)
    regime = fields.String(required=True, validate=validate.OneOf([regime.value for regime in Regime]))
    states = fields.List(fields.String(validate=validate.OneOf(STATES)), required=True)
    started_at = Time(required=True)
    honour_by = Time(required=True)
    at_risk_from = Time(required=True)
    honoured_at = Time(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))


ClocksPage = page_of(ClockItem, "ClocksPage")


class ChainQuery(Schema):
    tenant = text(1, MAX_TENANT, required=True)


class ChainHead(Schema):
    tenant = fields.String(required=True)
    signal_id = fields.Integer(required=True, allow_none=True, metadata={"description": "the chain's last row"})
    chain_sha256 = fields.String(required=True, allow_none=True, metadata={"description": "null: no signal yet"})
    at = Time(required=True)


def _cursor(row) -> str:
    micros = round(row.honour_by.timestamp() * 1_000_000)
    return base64.urlsafe_b64encode(f"clock:{micros}:{row.id}".encode()).decode().rstrip("=")


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        prefix, micros, last = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        if prefix == "clock" and micros.lstrip("-").isdigit() and last.isdigit() and int(last) < 2**63:
            return datetime.fromtimestamp(int(micros) / 1_000_000, UTC), int(last)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        pass
    raise BadRequest("cursor: not a cursor this API gave out", field="cursor")


@bp.get("/clocks")
@allow(Permission.READ)
def clocks():
    data = load(ClocksQuery(), request.args.to_dict())
    rows = ledger_clocks.page(services().engine, known_tenant(data["tenant"]), data.get("status"),
                              _after(data.get("cursor")), data["limit"] + 1)
    more = len(rows) > data["limit"]
    rows = rows[:data["limit"]]
    return jsonify(ClocksPage().dump({"items": [row._mapping for row in rows],
                                      "next_cursor": _cursor(rows[-1]) if more else None}))


@bp.get("/chain")
@allow(Permission.READ)
def chain_head():
    """The head, signed like a receipt (v1a over the exact body), for operators to keep elsewhere."""
    data = load(ChainQuery(), request.args.to_dict())
    head = chain.head(services().engine, known_tenant(data["tenant"]))
    body = json.dumps(ChainHead().dump({**head, "at": datetime.fromtimestamp(clock.now(), UTC)}),
                      separators=(",", ":")).encode()
    return Response(body, mimetype="application/json", headers=services().signer.headers(body))
