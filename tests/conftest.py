"""Fixtures: one migrated database per test session, emptied before each test that uses it."""

import pytest

from receiver import create_app
from receiver.ledger.db import make_engine
from receiver.ledger.record import Ledger
from tests.helpers import drop_database, empty_tables, fresh_database, make_settings


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url = fresh_database(tmp_path_factory.mktemp("db"))
    yield url
    drop_database(url)


@pytest.fixture
def settings(tmp_path, database_url):
    empty_tables(database_url)
    return make_settings(tmp_path, database_url)


@pytest.fixture
def engine(settings):
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def ledger(settings, engine):
    return Ledger(engine, settings.tenants)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    app.extensions["receiver"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()
