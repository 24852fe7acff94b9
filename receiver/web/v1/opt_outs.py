"""POST /v1/opt-outs: an opt-out staff took (a phone call, the front desk, a letter), recorded as source ``staff``."""

from flask import Response, request

from ...access.roles import Permission
from ...ledger.record import Outcome
from ...schemas import load
from ...sources import staff
from ..answers import answer_json, receipt_headers, record_own
from .common import allow, bp, json_body, known_tenant, principal


def record_staff_opt_out(fields: dict, evidence: bytes) -> Outcome:
    """What /v1 and the console do with a staff opt-out: check, scope, record (BadRequest names the field)."""
    data = load(staff.StaffOptOutSchema(), fields)
    tenant = known_tenant(data["tenant"])
    return record_own(staff.NAME, tenant, staff.parse(data, principal().name), evidence)


@bp.post("/opt-outs")
@allow(Permission.RECORD_OPT_OUT)
def record_opt_out():
    outcome = record_staff_opt_out(json_body(), request.get_data(cache=True))
    body = answer_json(staff.NAME, outcome)
    return Response(body, 201, content_type="application/json", headers=receipt_headers(body, outcome))
