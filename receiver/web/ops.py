"""Endpoints for the platform and for verifiers: health, readiness, the receipt key set."""

import logging

from flask import Blueprint, jsonify

from ..ledger.db import is_migrated
from ..services import services

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    try:
        migrated = is_migrated(services().engine)
    except Exception as exc:  # any failure to reach the database means "not ready"
        log.warning("readyz: database unreachable (%s)", type(exc).__name__)
        return jsonify(status="unavailable", database="unreachable"), 503
    if not migrated:
        return jsonify(status="unavailable", database="not migrated"), 503
    return jsonify(status="ready", database="ok")


@bp.get("/.well-known/receipt-keys")
def receipt_keys():
    return jsonify(services().signer.jwks())
