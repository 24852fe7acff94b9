"""One secret or a list of them while rotating: one rule, for source options and environment keys alike."""

import base64
import re
from pathlib import Path

import pytest
from marshmallow import ValidationError

from receiver.errors import ConfigError
from receiver.rotation import comma_list, secret_list
from receiver.sources.base import Secrets
from receiver.sources.crmtext import CrmTextOptions
from receiver.sources.mailgun import MailgunOptions
from receiver.sources.postmark import PostmarkOptions
from receiver.sources.twilio import TwilioOptions
from tests.helpers import make_settings

RECEIVER = Path(__file__).resolve().parents[2] / "receiver"
SQLITE = "sqlite://"


@pytest.mark.parametrize("value, expected", [("one", ["one"]), (["new", "old"], ["new", "old"])])
def test_one_secret_or_a_list_is_a_list(value, expected):
    assert secret_list(value) == expected
    assert Secrets().deserialize(value) == expected


@pytest.mark.parametrize("value", ["", [], [""], ["ok", 3], 42, {"a": "b"}, None])
def test_anything_else_is_refused_without_quoting_it(value):
    with pytest.raises(ValueError, match="non-empty string or a non-empty list"):
        secret_list(value)
    with pytest.raises(ValidationError):
        Secrets(allow_none=False).deserialize(value)


@pytest.mark.parametrize("schema, option, value", [
    (TwilioOptions, "auth_token", "tok"),
    (CrmTextOptions, "token", "tok"),
    (MailgunOptions, "signing_key", "key"),
    (PostmarkOptions, "basic_auth", "user:password"),
])
def test_every_kind_loads_its_secret_as_a_list(schema, option, value):
    assert schema().load({option: value})[option] == [value]


def test_no_module_repeats_the_one_or_a_list_rule():
    pattern = re.compile(r"\[\w+\] if isinstance\(\w+, str\) else")
    repeated = [f"{path.relative_to(RECEIVER)}:{n}" for path in sorted(RECEIVER.rglob("*.py"))
                for n, line in enumerate(path.read_text().splitlines(), 1)
                if pattern.search(line) and path.name != "rotation.py"]
    assert repeated == []


def test_environment_key_lists_share_the_rule():
    assert comma_list("new, old ") == ("new", "old")
    with pytest.raises(ValueError, match="stray comma"):
        comma_list("new,,old")


def test_a_stray_comma_in_the_receipt_signing_key_is_refused_as_in_secret_key(tmp_path):
    key = base64.b64encode(bytes(32)).decode()
    with pytest.raises(ConfigError, match=r"^RECEIPT_SIGNING_KEY: an empty key in the list \(a stray comma\?\)$"):
        make_settings(tmp_path, SQLITE, RECEIPT_SIGNING_KEY=f"{key},")
