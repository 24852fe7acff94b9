"""/openapi.json, and schemathesis against it: no 5xx, every answer matches its documented schema.

The app runs in-process (WSGI) on the test database, with the admin token, so /v1 is exercised
too; the hypothesis database is off so nothing is written to the tree.
"""

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from receiver import create_app
from tests.helpers import make_settings

ADMIN = {"Authorization": "Bearer admin-token"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def app(tmp_path, database_url, settings):
    app = create_app(make_settings(tmp_path, database_url, RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def test_the_document_covers_every_endpoint(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/hooks/{source}", "/u/{token}", "/forms/unsubscribe", "/v1/links", "/v1/consent", "/v1/consent/check",
        "/v1/events", "/v1/deliveries", "/v1/deliveries/{delivery_id}/replay", "/v1/export.csv", "/healthz",
        "/readyz", "/metrics", "/.well-known/receipt-keys"}
    events = {p["name"] for p in document["paths"]["/v1/events"]["get"]["parameters"]}
    assert events == {"tenant", "email", "phone", "since", "cursor", "limit"}  # from EventsQuery itself
    form = document["components"]["schemas"]["UnsubscribeForm"]
    assert form["required"] == ["tenant"] and "email_marketing" in form["properties"]


def test_every_flask_route_is_documented(app):
    document = app.test_client().get("/openapi.json").get_json()
    documented = {re.sub(r"\{[^}]+\}", "<>", path) for path in document["paths"]}
    routes = {re.sub(r"<[^>]+>", "<>", rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes <= documented, routes - documented


@pytest.fixture
def schema_app(tmp_path_factory, database_url):
    from tests.helpers import empty_tables

    empty_tables(database_url)
    app = create_app(make_settings(tmp_path_factory.mktemp("schemathesis"), database_url,
                                   RECEIVER_ADMIN_TOKEN="admin-token"))
    yield app
    app.extensions["receiver"].engine.dispose()


def test_the_api_keeps_its_own_document(schema_app):
    """Every operation, 25 generated requests each; the first failure is reported with its request."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", schema_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 17
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.call_and_validate(headers=ADMIN, checks=CHECKS)

        conforms()
