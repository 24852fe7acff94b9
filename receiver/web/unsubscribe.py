"""The email link: GET shows the guest's page and changes nothing; POST is RFC 8058 one-click or the page's form.

- ``GET``/``HEAD /u/<token>``: the page (masked address, states in force, the four choices).
  Mail scanners and link prefetchers follow every link, so it never records anything.
- ``POST /u/<token>`` with ``List-Unsubscribe=One-Click`` (form-encoded or multipart, no
  cookies, no redirect — RFC 8058): applies the token's scope and answers the JSON receipt.
- ``POST /u/<token>`` from the page's form (``choice`` fields + the ``csrf`` field bound to the
  token): applies exactly the chosen states (a choice only ever adds one) and shows the page again.

Every POST answer carries the signed receipt headers. Each POST is its own event: posting the
same one-click three times records three signals, one state change and one CRM delivery.
"""

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from ..errors import BadRequest, TooManyRequests, UnsupportedMediaType
from ..identities import mask_email, mask_phone
from ..ledger.queries import guest_states
from ..ledger.ratelimit import rate_limited
from ..links import Link, rate_key
from ..services import services
from ..sources import email_link
from ..sources.base import FORM, MULTIPART
from ..states import MAIL_BAN, MARKETING_DECLINE, MARKETING_DECLINE_SMS, SMS_BAN
from .answers import LANGUAGES, answer_json, page_language, receipt_headers, record_own

bp = Blueprint("unsubscribe", __name__)
FORM_TYPES = (FORM, MULTIPART)
LABELS = {
    MARKETING_DECLINE: lazy_gettext("Marketing emails (offers, newsletters)"),
    MAIL_BAN: lazy_gettext("All emails, booking confirmations included"),
    MARKETING_DECLINE_SMS: lazy_gettext("Marketing text messages"),
    SMS_BAN: lazy_gettext("All text messages"),
}
PAGE_ORDER = (MARKETING_DECLINE, MAIL_BAN, MARKETING_DECLINE_SMS, SMS_BAN)


@bp.route("/u/<token>", methods=["GET", "HEAD"])
def page(token: str):
    link = services().links.load(token)
    return _page(token, link)


@bp.post("/u/<token>")
def post(token: str):
    link = services().links.load(token)
    # Per link, not per address: mailbox providers post one-clicks for many guests from few addresses.
    wait = rate_limited(services().engine, "link", rate_key(link), services().settings.forms_rate_limit)
    if wait is not None:
        raise TooManyRequests("too many posts for this link; retry later", retry_after=wait)
    evidence = request.get_data(cache=True)  # the exact bytes, kept before the form is parsed
    if request.mimetype not in FORM_TYPES:
        raise UnsupportedMediaType(f"content type must be {' or '.join(FORM_TYPES)}")
    form = request.form
    if email_link.is_one_click(form):
        outcome = record_own(email_link.NAME, link.tenant, email_link.one_click(link), evidence)
        body = answer_json(email_link.NAME, outcome)
        return Response(body, 200, content_type="application/json", headers=receipt_headers(body, outcome))
    email_link.check_page_form(form)
    if not services().links.csrf_ok(token, form.get("csrf")):
        raise BadRequest(_("This form has expired or was not sent from our page. Please reload it."), field="csrf")
    choices = email_link.choices(form)
    if not choices:
        return _page(token, link, problem=_("Choose at least one kind of message to stop."), status=400)
    outcome = record_own(email_link.NAME, link.tenant, email_link.page_choices(link, choices), evidence)
    response = _page(token, link, saved=True)
    body = response.get_data()
    response.headers.update(receipt_headers(body, outcome))
    return response


def _page(token: str, link: Link, *, saved: bool = False, problem: str | None = None, status: int = 200):
    in_force = guest_states(services().engine, link.tenant, link.email, link.phone,
                            key=services().settings.identity_key)
    lang = page_language()
    other = "fr" if lang == "en" else "en"
    html = render_template(
        "unsubscribe.html", lang=lang, tenant_title=services().settings.tenants[link.tenant].title,
        masked_email=mask_email(link.email), masked_phone=mask_phone(link.phone) if link.phone else None,
        in_force=[s for s in PAGE_ORDER if s in in_force], states=PAGE_ORDER, labels=LABELS,
        csrf=services().links.csrf(token), action=f"/u/{token}?lang={lang}", saved=saved, problem=problem,
        other_url=f"/u/{token}?lang={other}", other_lang=other, other_lang_name=LANGUAGES[other],
    )
    response = Response(html, status, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    return response
