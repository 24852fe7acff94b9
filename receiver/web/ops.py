"""Endpoints for the platform and for verifiers: health, readiness, metrics, the receipt key set."""

import logging

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from .. import metrics
from ..ledger.db import is_migrated
from ..ledger.health import queue_health
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
        queue = queue_health(services().engine) if migrated else None
    except Exception as exc:  # any failure to reach the database means "not ready"
        log.warning("readyz: database unreachable (%s)", type(exc).__name__)
        return jsonify(status="unavailable", database="unreachable"), 503
    if not migrated:
        return jsonify(status="unavailable", database="not migrated"), 503
    return jsonify(status="ready", database="ok", queue_depth=queue.queue_depth,
                   oldest_pending_age_seconds=queue.oldest_pending_age_seconds)


@bp.get("/metrics")
def metrics_exposition():
    return Response(metrics.exposition(services().engine), content_type=CONTENT_TYPE_LATEST)


@bp.get("/.well-known/receipt-keys")
def receipt_keys():
    return jsonify(services().signer.jwks())
