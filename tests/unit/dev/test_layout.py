"""Development tools live apart from the product, in receiver/dev/."""

import importlib

import pytest


@pytest.mark.parametrize("module", ["receiver.dev.sandbox", "receiver.dev.answers", "receiver.dev.demo",
                                    "receiver.dev.run"])
def test_development_tools_are_in_the_dev_package(module):
    assert importlib.import_module(module).__doc__


@pytest.mark.parametrize("module", ["receiver.sandbox", "receiver.sandbox_answers", "receiver.demo", "receiver.devrun"])
def test_no_development_tool_sits_beside_the_pipeline(module):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)
