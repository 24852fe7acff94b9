"""/console/login and /console/logout: a password sign-in, rate-limited per address and per email."""

import secrets

from flask import redirect, request, session, url_for
from flask_babel import gettext as _

from ...errors import ReceiverError, TooManyRequests
from ...identities import normalize_email
from ...ledger.operators import sign_in_record
from ...ledger.ratelimit import client_key, rate_limited
from ...services import services
from .common import bp, page, passwords

SIGN_INS_PER_ADDRESS, SIGN_INS_PER_EMAIL = 10, 5  # a minute


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return page("console_login.html")
    engine, raw = services().engine, request.form.get("email", "")
    try:
        email = normalize_email(raw)
    except ReceiverError:
        email = raw.strip().lower()
    # Every attempt counts, known email or not, before the password is checked.
    waits = [rate_limited(engine, "login-ip", client_key(request.remote_addr), SIGN_INS_PER_ADDRESS),
             rate_limited(engine, "login-email", email, SIGN_INS_PER_EMAIL)]
    if any(wait is not None for wait in waits):
        raise TooManyRequests("too many sign-in attempts; retry in a minute",
                              retry_after=max(w for w in waits if w is not None))
    found = sign_in_record(engine, email)
    if not passwords().verify(found[1] if found else None, request.form.get("password", "")):
        return page("console_login.html", 401, error=_("Wrong email or password."))
    session.clear()  # a new session: nothing set before sign-in survives it
    session.update(operator=found[0], csrf=secrets.token_urlsafe(32))
    return redirect(url_for("console.home"))


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login"))
