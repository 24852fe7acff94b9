"""What the email-provider sources share: the complaint option's lookup, written once."""

import inspect

import pytest

from receiver.sources import esp, mailgun, postmark, sendgrid
from receiver.states import MAIL_BAN, MARKETING_DECLINE


@pytest.mark.parametrize("option", [MARKETING_DECLINE, MAIL_BAN])
def test_complaint_becomes_the_sources_option(option):
    assert esp.mapped_state(esp.COMPLAINT, {"complaint": option}) == option


@pytest.mark.parametrize("rule", [MARKETING_DECLINE, None])
def test_other_entries_are_their_own_state(rule):
    assert esp.mapped_state(rule, {"complaint": MAIL_BAN}) == rule


@pytest.mark.parametrize("module", [sendgrid, mailgun, postmark])
def test_each_esp_source_uses_the_shared_lookup(module):
    """One place decides what a complaint means: no source reads the option or spells the marker itself."""
    text = inspect.getsource(module)

    assert 'options["complaint"]' not in text
    assert 'COMPLAINT = "complaint"' not in text
    assert module.COMPLAINT is esp.COMPLAINT and module.mapped_state is esp.mapped_state
