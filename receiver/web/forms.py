"""POST /forms/unsubscribe: the plain unsubscribe form on a hotel's own website.

Anyone can post it (no token), so it only ever applies ``marketing_decline`` and/or
``marketing_decline_sms``, never a ban, whatever else is sent. Fields: ``tenant`` (required),
``email`` and/or ``phone``, and the checkboxes ``email_marketing`` / ``sms_marketing`` (``on``,
``true``, ``1`` or JSON ``true``); when neither box is sent, both apply. Unknown fields are
ignored (websites add their own). Form-encoded or JSON.

Limits and browsers: posts are counted per client address in the database (the limit holds
across processes); the address is the one the host's router forwards (``service.proxy_hops``,
werkzeug's ProxyFix). A tenant's ``forms_origins`` may post it from a browser (CORS).
Answer: a 303 to the tenant's ``forms_return_url`` after the commit, else an HTML confirmation
when the client prefers HTML, else the JSON receipt; every answer carries the receipt headers.
The answer is the same whether or not the states were already in force (its ``changes`` are the
states asked for); the ledger's receipt records what really changed.
"""

import dataclasses

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext as _

from ..errors import TooManyRequests, UnsupportedMediaType
from ..ledger.ratelimit import client_key, rate_limited
from ..services import services
from ..signals import Signal
from ..sources import web_form
from ..states import STATES, identity_for
from .answers import answer_json, page_language, receipt_headers, record_own
from .bodies import json_body

bp = Blueprint("forms", __name__)
PATH = "/forms/unsubscribe"
FORM, JSON = "application/x-www-form-urlencoded", "application/json"


def prefers_html() -> bool:
    return request.accept_mimetypes.best_match([JSON, "text/html"]) == "text/html"


@bp.route(PATH, methods=["OPTIONS"])
def preflight():
    """CORS preflight: allowed for an origin some tenant lists; the POST checks the tenant's own list."""
    response = Response(status=204)
    origin = request.headers.get("Origin", "")
    if any(origin in t.forms_origins for t in services().settings.tenants.values()):
        response.headers.update({
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        })
    response.headers["Vary"] = "Origin"
    return response


@bp.post(PATH)
def unsubscribe():
    settings, origin = services().settings, request.headers.get("Origin", "")
    wait = rate_limited(services().engine, "forms", client_key(request.remote_addr), settings.forms_rate_limit)
    if wait is not None:
        raise TooManyRequests("too many posts from this address; retry later", retry_after=wait)
    evidence = request.get_data(cache=True)
    if request.mimetype == JSON:
        data = json_body()
    elif request.mimetype == FORM:
        data = request.form.to_dict()
    else:
        raise UnsupportedMediaType(f"content type must be {FORM} or {JSON}")
    tenant, inbound = web_form.parse(data, settings.tenants, origin)
    outcome = record_own(web_form.NAME, tenant.name, inbound, evidence)

    if tenant.forms_return_url:
        body = b""
        response = Response(body, 303, headers={"Location": tenant.forms_return_url})
    elif prefers_html():
        body = render_template("message.html", lang=page_language(), heading=_("You are unsubscribed"),
                               message=_("We will stop sending you the messages you chose."),
                               problem=False).encode()
        response = Response(body, 200, content_type="text/html; charset=utf-8")
    else:
        # What was asked, not what changed: a stranger must not learn whether it was already in force.
        body = answer_json(web_form.NAME, dataclasses.replace(outcome, changes=_asked(inbound.signals[0])))
        response = Response(body, 200, content_type=JSON)
    response.headers.update(receipt_headers(body, outcome))
    if origin in tenant.forms_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "webhook-id, webhook-timestamp, webhook-signature"
    response.headers["Vary"] = "Origin, Accept"
    return response


def _asked(signal: Signal) -> list[dict]:
    """The answer's ``changes`` as if every asked state were new, grouped as the ledger groups them."""
    asked: dict[str, list[str]] = {}
    for state in (s for s in STATES if s in signal.add):
        asked.setdefault(identity_for(state, signal.email, signal.phone), []).append(state)
    return [{"email" if "@" in identity else "phone": identity, "states": asked[identity]} for identity in sorted(asked)]
