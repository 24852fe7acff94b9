"""A real local HTTP server standing in for a provider's list API: each test says how it answers."""

import json
import threading

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from receiver.backfill.pages import ListClient, RetryPolicy


class ProviderServer:
    """Answers every request with ``handler(request)``; keeps what each request carried."""

    def __init__(self):
        self.handler = lambda request: Response("no handler", status=500)
        self.requests: list[dict] = []
        self.url = ""

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.requests.append({"path": request.path, "args": request.args.to_dict(flat=True),
                              "query": request.query_string.decode(), "headers": dict(request.headers)})
        return self.handler(request)(environ, start_response)

    def routes(self, table: dict):
        """Answer by path and query: ``{(path, frozenset(args.items())): response}``; unknown → 404."""
        def handler(request):
            key = (request.path, frozenset(request.args.to_dict(flat=True).items()))
            return table.get(key) or Response(json.dumps({"message": "not found"}), status=404)
        self.handler = handler


def json_answer(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


@pytest.fixture(scope="session")
def _provider_server():
    app = ProviderServer()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_port}"
    yield app
    server.shutdown()
    server.server_close()


@pytest.fixture
def provider(_provider_server):
    _provider_server.requests.clear()
    _provider_server.handler = lambda request: Response("no handler", status=500)
    return _provider_server


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_client(provider, sleeps):
    """A ListClient on the local server that records its back-off instead of sleeping."""
    def make(name: str, **options) -> ListClient:
        options.setdefault("retry", RetryPolicy(max_attempts=3, base_seconds=0.01, max_seconds=0.02))
        return ListClient(name, provider.url, sleep=sleeps.append, **options)
    return make
