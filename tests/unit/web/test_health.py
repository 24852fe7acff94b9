"""Health, readiness and the receipt key set; a process without a database still answers health."""

import base64
import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from receiver import create_app
from tests.helpers import twilio_signature, twilio_sms

UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/x"


@pytest.fixture
def make_app():
    apps = []

    def make(settings):
        app = create_app(settings)
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["receiver"].engine.dispose()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_healthz(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_migrated(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_unreachable_database(settings, make_app):
    client = make_app(dataclasses.replace(settings, database_url=UNREACHABLE))

    ready = client.get("/readyz")
    params = twilio_sms()
    stop = client.post("/hooks/twilio", data=params,
                       headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})
    health = client.get("/healthz")

    assert ready.status_code == 503
    assert ready.get_json()["database"] == "unreachable"
    assert stop.status_code == 503
    assert "error" in stop.get_json()
    assert "webhook-signature" not in stop.headers
    assert health.status_code == 200


def test_unreachable_database_still_refuses_bad_signatures_with_401(settings, make_app):
    client = make_app(dataclasses.replace(settings, database_url=UNREACHABLE))

    assert client.post("/hooks/twilio", data=twilio_sms(), headers={"X-Twilio-Signature": "x"}).status_code == 401


def test_readyz_on_an_unmigrated_empty_sqlite_file(settings, make_app, tmp_path):
    client = make_app(dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'empty.db'}"))

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["database"] == "not migrated"
    assert client.get("/healthz").status_code == 200


def test_stop_on_an_unmigrated_database_is_503(settings, make_app, tmp_path):
    client = make_app(dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'empty.db'}"))
    params = twilio_sms()

    response = client.post("/hooks/twilio", data=params,
                           headers={"X-Twilio-Signature": twilio_signature("/hooks/twilio", params)})

    assert response.status_code == 503


def test_receipt_keys_is_a_jwk_set_of_the_configured_key(client, settings):
    response = client.get("/.well-known/receipt-keys")

    assert response.status_code == 200
    [key] = response.get_json()["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert key["kid"]
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(settings.receipt_keys[0]))
    expected = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert b64url_decode(key["x"]) == expected
    Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"]))


def test_receipt_keys_lists_current_then_previous(settings, make_app):
    previous = base64.b64encode(bytes(range(32))).decode()
    client = make_app(dataclasses.replace(settings, receipt_keys=(settings.receipt_keys[0], previous)))

    keys = client.get("/.well-known/receipt-keys").get_json()["keys"]

    assert len(keys) == 2
    assert len({key["kid"] for key in keys}) == 2
    old = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    assert b64url_decode(keys[1]["x"]) == old.public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_health_endpoints_live_in_web_health(app):
    endpoints = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    assert {endpoints[path] for path in ("/healthz", "/readyz", "/metrics", "/.well-known/receipt-keys")} == {
        "health.healthz", "health.readyz", "health.metrics_exposition", "health.receipt_keys"}
