"""A sandbox server on an ephemeral 127.0.0.1 port, shared by the CRM client tests."""

import threading

import pytest
import requests
from werkzeug.serving import make_server

from receiver.sandbox import create_sandbox_app


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
