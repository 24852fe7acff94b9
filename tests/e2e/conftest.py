"""End-to-end fixtures: real stacks (sandbox, gunicorn, worker), each on a fresh database.

One stack is shared by every module for the whole session (its config: tests/e2e/shared.py); tests
on it use fresh identities and wait for an idle queue before setting a sandbox fault. A module that
stops or kills processes, or asserts on the whole ledger or sandbox, sets ``OWN_STACK = True`` (and
may add ``EXTRA_CONFIG``/``SERVICE_CONFIG``) and gets a stack of its own.
"""

import pytest

from tests.e2e import shared
from tests.e2e.stack import Stack
from tests.helpers import drop_database, fresh_database


def started_stack(tmp_path_factory, request, extra_config: str, service_config: str):
    tmp = tmp_path_factory.mktemp("stack")
    url = fresh_database(tmp)
    stack = Stack(tmp, url, extra_config, service_config)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        if request.session.testsfailed:
            print(stack.logs()[-20000:])
        drop_database(url)


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory, request):
    yield from started_stack(tmp_path_factory, request, shared.EXTRA_CONFIG, shared.SERVICE_CONFIG)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    module = request.module
    if getattr(module, "OWN_STACK", False):
        yield from started_stack(tmp_path_factory, request, getattr(module, "EXTRA_CONFIG", ""),
                                 getattr(module, "SERVICE_CONFIG", ""))
    else:
        yield request.getfixturevalue("shared_stack")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
