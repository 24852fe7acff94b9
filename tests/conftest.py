"""Fixtures: one migrated database per test session, emptied before each test that uses it;
a sandbox of both CRMs on an ephemeral 127.0.0.1 port, reset before each test that uses it."""

import io
import logging
import threading

import pytest
import requests
from werkzeug.serving import make_server

from receiver import create_app
from receiver.dev.sandbox import create_sandbox_app
from receiver.ledger.db import make_engine
from receiver.ledger.record import Ledger
from receiver.logs import _HANDLER_NAME, configure_logging
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
    return Ledger(engine, settings.tenants, settings.identity_key)


@pytest.fixture
def receiver_log():
    """What the receiver's masked root handler writes, read back as text."""
    configure_logging("INFO")
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == _HANDLER_NAME]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream.getvalue
    handler.setStream(previous)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    app.extensions["receiver"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


class Sandbox:
    """The running sandbox: its base URL and a thin wrapper over its control API."""

    def __init__(self, url: str):
        self.url = url

    def fault(self, crm: str, mode: str, **options) -> None:
        resp = requests.post(f"{self.url}/_sandbox/faults", json={"crm": crm, "mode": mode, **options}, timeout=5)
        resp.raise_for_status()

    def calls(self, crm: str) -> list[dict]:
        return requests.get(f"{self.url}/_sandbox/calls", params={"crm": crm}, timeout=5).json()["calls"]

    def reset(self) -> None:
        requests.post(f"{self.url}/_sandbox/reset", timeout=5).raise_for_status()

    def latency(self, seconds: float, crm: str | None = None, account: str | None = None) -> None:
        resp = requests.post(f"{self.url}/_sandbox/latency", json={"seconds": seconds, "crm": crm, "account": account},
                             timeout=5)
        resp.raise_for_status()

    def concurrency(self) -> dict:
        """The most calls under way at once, per CRM and account (CRM Text keyword, Experience hotel token)."""
        return requests.get(f"{self.url}/_sandbox/concurrency", timeout=5).json()["max"]

    def under_way(self, crm: str, account: str) -> int:
        """Calls from that account being served right now (answers held back by a latency)."""
        return requests.get(f"{self.url}/_sandbox/concurrency", timeout=5).json()["now"].get(crm, {}).get(account, 0)


@pytest.fixture(scope="session")
def sandbox_server():
    server = make_server("127.0.0.1", 0, create_sandbox_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Sandbox(f"http://127.0.0.1:{server.server_port}")
    server.shutdown()
    server.server_close()


@pytest.fixture
def sandbox(sandbox_server):
    sandbox_server.reset()
    return sandbox_server
