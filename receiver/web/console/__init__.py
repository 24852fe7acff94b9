"""/console: the operators' pages, one module per page (sign in, find a guest, record a staff opt-out,
the review queue, a guest's proof, dead deliveries, operators); what they share is ``common.py``.

Server-rendered, usable without JavaScript, English and French. The session is Flask's signed
cookie (HttpOnly, SameSite=Lax, Secure outside development) holding the operator's id, read
against the operators table on every request, so disabling an operator ends their session at
once; sign-in replaces the whole session (no fixation) and is rate-limited per address and per
email in the database. Every form carries the session's CSRF token (missing or wrong: 400,
nothing stored). Every action calls the same functions as /v1, as the session's Principal.
A new page is one module here (its routes on ``common.bp``), imported below, and its template in
``web/templates/console_<page>.html``.
"""

from . import deliveries, guest, operators, opt_outs, proof, review, signin  # noqa: F401 (their routes hang on bp)
from .common import bp

__all__ = ["bp"]
