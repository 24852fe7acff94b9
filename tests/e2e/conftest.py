"""End-to-end fixtures: one real stack (sandbox, gunicorn, worker) per test module, on a fresh database."""

import pytest

from tests.e2e.stack import Stack
from tests.helpers import drop_database, fresh_database


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("stack")
    url = fresh_database(tmp)
    stack = Stack(tmp, url, getattr(request.module, "EXTRA_CONFIG", ""), getattr(request.module, "SERVICE_CONFIG", ""))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        if request.session.testsfailed:
            print(stack.logs()[-20000:])
        drop_database(url)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
