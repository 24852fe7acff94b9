"""The email link's posts (RFC 8058 one-click, the guest page's form) as signals of source ``email-link``.

The link's token is verified by the web layer (it also serves the page); here the post's fields
become the signal. Each post is its own event: there is no sender id to deduplicate on.
"""

import uuid

from werkzeug.datastructures import MultiDict

from ..errors import BadRequest
from ..links import ALL, Link
from ..signals import OPT_OUT, Inbound, Signal
from ..states import MAIL_BAN, MARKETING_DECLINE, STATES

NAME = "email-link"
ONE_CLICK, PAGE = "one-click", "page"  # how the guest posted, kept in the signal's detail


def is_one_click(form: MultiDict) -> bool:
    """RFC 8058's ``List-Unsubscribe=One-Click``, as a mailbox provider posts it."""
    return form.get("List-Unsubscribe") == "One-Click"


def check_page_form(form: MultiDict) -> None:
    """Anything not one-click must look like the page's form (its ``csrf`` or ``choice`` fields)."""
    if "csrf" not in form and "choice" not in form:
        raise BadRequest("body: expected List-Unsubscribe=One-Click or the page's form", field="body")


def choices(form: MultiDict) -> set[str]:
    """The states ticked on the page; an unknown one is a 400 naming it."""
    chosen = form.getlist("choice")
    unknown = [c for c in chosen if c not in STATES]
    if unknown:
        raise BadRequest(f"choice: unknown state {unknown[0]!r}", field="choice")
    return set(chosen)


def came_by_one_click(signal: Signal) -> bool:
    """A signal of this source's one-click POST (the only kind the gmail-yahoo clock applies to)."""
    return signal.keyword == f"link:{ONE_CLICK}" and signal.detail.get("via") == ONE_CLICK


def one_click(link: Link) -> Inbound:
    """The token's scope: every email (``all``) is a mail ban, else a marketing decline."""
    return _inbound(link, {MAIL_BAN if link.scope == ALL else MARKETING_DECLINE}, ONE_CLICK)


def page_choices(link: Link, states: set[str]) -> Inbound:
    """Exactly the states chosen on the page."""
    return _inbound(link, states, PAGE)


def _inbound(link: Link, states: set[str], via: str) -> Inbound:
    detail = {"via": via, "scope": link.scope}
    if link.campaign:
        detail["campaign"] = link.campaign
    event_id = uuid.uuid4().hex
    signal = Signal(event_id=event_id, kind=OPT_OUT, email=link.email, phone=link.phone, add=frozenset(states),
                    keyword=f"link:{via}", detail=detail)
    return Inbound(request_key=event_id, signals=[signal])
