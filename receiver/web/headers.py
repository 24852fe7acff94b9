"""Security headers: no answer may be MIME-sniffed; HTML pages run no script and are never framed.

The guest's pages use no script, no image and one inline ``<style>`` block (in base.html), which
the policy allows by its hash, so nothing else inline can ever apply.
"""

import base64
import hashlib
import re

from flask import Blueprint, Response, current_app

bp = Blueprint("headers", __name__)
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def page_policy(base_template: str) -> str:
    """The Content-Security-Policy of pages built on ``base_template`` (its source)."""
    styles = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
                      for block in _STYLE.findall(base_template))
    style_src = styles or "'none'"
    return (f"default-src 'none'; style-src {style_src}; img-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@bp.record_once
def _compute_policy(state) -> None:
    source, _, _ = state.app.jinja_env.loader.get_source(state.app.jinja_env, "base.html")
    state.app.extensions["receiver.page_policy"] = page_policy(source)


@bp.after_app_request
def secure(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", current_app.extensions["receiver.page_policy"])
        response.headers.setdefault("X-Frame-Options", "DENY")  # for browsers without frame-ancestors
    return response
