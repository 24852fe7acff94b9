"""POST /v1/opt-outs: an opt-out staff took (a phone call, the front desk, a letter), recorded as source ``staff``."""

from flask import Response, request

from ...access.roles import Permission
from ...schemas import load
from ...sources import staff
from ..answers import answer_json, receipt_headers, record_own
from .common import allow, bp, json_body, known_tenant, principal


@bp.post("/opt-outs")
@allow(Permission.RECORD_OPT_OUT)
def record_opt_out():
    data = load(staff.StaffOptOutSchema(), json_body())
    tenant = known_tenant(data["tenant"])
    inbound = staff.parse(data, principal().name)
    outcome = record_own(staff.NAME, tenant, inbound, request.get_data(cache=True))
    body = answer_json(staff.NAME, outcome)
    return Response(body, 201, content_type="application/json", headers=receipt_headers(body, outcome))
