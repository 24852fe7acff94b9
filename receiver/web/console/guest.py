"""/console: find a guest; their states, timeline, clocks and the CRMs' answers."""

from flask import g, request
from flask_babel import gettext as _

from ...access.roles import Permission
from ...errors import BadRequest, ReceiverError
from ...identities import normalize_contact
from ...ledger import queries
from ...ledger.proof import gather
from ...services import services
from .common import bp, page, tenants


@bp.get("")
def home():
    """Find a guest: their states and timeline."""
    who, hotels = g.principal, tenants()
    tenant, email, phone = request.args.get("tenant"), request.args.get("email") or None, request.args.get(
        "phone") or None
    found, error = None, None
    if tenant and (email or phone):
        try:
            if tenant not in hotels:
                raise BadRequest(_("Unknown hotel."), field="tenant")
            who.require(Permission.READ, tenant)
            email, phone = normalize_contact(email, phone)
            engine = services().engine
            events = {}
            for by in ({"email": email}, {"phone": phone}):  # the guest's signals under either identity
                if any(by.values()):
                    rows, _next = queries.events_page(engine, tenant=tenant, limit=200, **by)
                    events.update({row.id: row for row in rows})
            # The clocks and deliveries (with the CRMs' answers) as GET /v1/proof reads them.
            proof = gather(engine, services().settings.identity_key, tenant, email, phone)
            found = {"states": queries.guest_states(engine, tenant, email, phone),
                     "events": [events[key] for key in sorted(events)],
                     "clocks": proof["clocks"], "deliveries": proof["deliveries"]}
        except ReceiverError as exc:
            error = exc.message
    return page("console_home.html", tenants=hotels, tenant=tenant, email=email, phone=phone, found=found,
                error=error)
