"""Endpoints for the platform and for verifiers: health, readiness, metrics, the receipt key set."""

import logging

from flask import Blueprint, Response, jsonify
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST

from .. import metrics
from ..ledger.db import is_migrated
from ..ledger.health import queue_health
from ..services import services

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


class HealthAnswer(Schema):
    status = fields.String(required=True)


class ReadyAnswer(HealthAnswer):
    database = fields.String(required=True)
    queue_depth = fields.Integer()
    oldest_pending_age_seconds = fields.Float()


class Jwk(Schema):
    kty = fields.String(required=True)
    crv = fields.String(required=True)
    x = fields.String(required=True)
    kid = fields.String(required=True)
    use = fields.String()
    alg = fields.String()


class JwkSet(Schema):
    keys = fields.List(fields.Nested(Jwk), required=True)


@bp.get("/healthz")
def healthz():
    return jsonify(HealthAnswer().dump({"status": "ok"}))


@bp.get("/readyz")
def readyz():
    try:
        migrated = is_migrated(services().engine)
        queue = queue_health(services().engine) if migrated else None
    except Exception as exc:  # any failure to reach the database means "not ready"
        log.warning("readyz: database unreachable (%s)", type(exc).__name__)
        return jsonify(ReadyAnswer().dump({"status": "unavailable", "database": "unreachable"})), 503
    if not migrated:
        return jsonify(ReadyAnswer().dump({"status": "unavailable", "database": "not migrated"})), 503
    return jsonify(ReadyAnswer().dump({"status": "ready", "database": "ok", "queue_depth": queue.queue_depth,
                                       "oldest_pending_age_seconds": queue.oldest_pending_age_seconds}))


@bp.get("/metrics")
def metrics_exposition():
    return Response(metrics.exposition(services().engine), content_type=CONTENT_TYPE_LATEST)


@bp.get("/.well-known/receipt-keys")
def receipt_keys():
    return jsonify(JwkSet().dump(services().signer.jwks()))
