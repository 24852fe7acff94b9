"""outbox.plan: which CRM deliveries a change of state owes (contract, "Where each state goes")."""

from datetime import UTC, datetime

import pytest

from receiver.ledger.outbox import PENDING, SKIPPED, plan
from receiver.settings import CrmTextConfig, ExperienceConfig, TenantConfig
from receiver.signals import OPT_OUT, Signal
from receiver.states import (
    CRMTEXT,
    EXPERIENCE,
    MAIL_BAN,
    MARKETING_DECLINE,
    MARKETING_DECLINE_SMS,
    SMS_BAN,
)

SINCE = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
PHONE, UK_PHONE, EMAIL = "+15551234567", "+442071838750", "guest@example.com"

XP = ExperienceConfig(base_url="https://xp.example", partner_token="p", hotel_token="h")
XP_EMAIL_ONLY = ExperienceConfig(base_url="https://xp.example", partner_token="p", hotel_token="h",
                                 sms_records="email-only")
CT = CrmTextConfig(base_url="https://ct.example", user="u", password="pw", keyword="K")

BOTH = TenantConfig("grand", experience=XP, crmtext=CT)
STRICT = TenantConfig("strict", experience=XP_EMAIL_ONLY, crmtext=CT)
SMS_ONLY = TenantConfig("smsonly", crmtext=CT)
EMAIL_ONLY_CRM = TenantConfig("xponly", experience=XP)
NONE = TenantConfig("bare")

SIGNAL = Signal(event_id="e", kind=OPT_OUT)
FROM_CRMTEXT = Signal(event_id="e", kind=OPT_OUT, reported_by=CRMTEXT)

# (tenant, signal, identity, added, email, phone) → [(crm, status)]
CASES = [
    ("sms_ban to both", BOTH, SIGNAL, PHONE, [SMS_BAN], None, PHONE,
     [(EXPERIENCE, PENDING), (CRMTEXT, PENDING)]),
    ("sms_ban with a linked email", BOTH, SIGNAL, PHONE, [SMS_BAN], EMAIL, PHONE,
     [(EXPERIENCE, PENDING), (CRMTEXT, PENDING)]),
    ("non-US phone", BOTH, SIGNAL, UK_PHONE, [SMS_BAN], None, UK_PHONE,
     [(EXPERIENCE, PENDING), (CRMTEXT, SKIPPED)]),
    ("reported by CRM Text", BOTH, FROM_CRMTEXT, PHONE, [SMS_BAN], None, PHONE,
     [(EXPERIENCE, PENDING), (CRMTEXT, SKIPPED)]),
    ("marketing_decline_sms is Experience only", BOTH, SIGNAL, PHONE, [MARKETING_DECLINE_SMS], None, PHONE,
     [(EXPERIENCE, PENDING)]),
    ("email states are Experience only", BOTH, SIGNAL, EMAIL, [MAIL_BAN, MARKETING_DECLINE], EMAIL, None,
     [(EXPERIENCE, PENDING)]),
    ("email state with a phone on the signal", BOTH, SIGNAL, EMAIL, [MARKETING_DECLINE], EMAIL, PHONE,
     [(EXPERIENCE, PENDING)]),
    ("sms_ban on an email identity: no phone for CRM Text", BOTH, SIGNAL, EMAIL, [SMS_BAN], EMAIL, None,
     [(EXPERIENCE, PENDING)]),
    ("email-only without email", STRICT, SIGNAL, PHONE, [SMS_BAN], None, PHONE,
     [(EXPERIENCE, SKIPPED), (CRMTEXT, PENDING)]),
    ("email-only with email", STRICT, SIGNAL, PHONE, [SMS_BAN], EMAIL, PHONE,
     [(EXPERIENCE, PENDING), (CRMTEXT, PENDING)]),
    ("email-only, marketing_decline_sms without email", STRICT, SIGNAL, PHONE, [MARKETING_DECLINE_SMS], None, PHONE,
     [(EXPERIENCE, SKIPPED)]),
    ("email-only does not concern email states", STRICT, SIGNAL, EMAIL, [MARKETING_DECLINE], EMAIL, None,
     [(EXPERIENCE, PENDING)]),
    ("tenant without Experience", SMS_ONLY, SIGNAL, PHONE, [SMS_BAN], None, PHONE,
     [(CRMTEXT, PENDING)]),
    ("tenant without Experience, email state", SMS_ONLY, SIGNAL, EMAIL, [MAIL_BAN], EMAIL, None, []),
    ("tenant without CRM Text", EMAIL_ONLY_CRM, SIGNAL, PHONE, [SMS_BAN], None, PHONE,
     [(EXPERIENCE, PENDING)]),
    ("tenant without CRMs", NONE, SIGNAL, PHONE, [SMS_BAN, MARKETING_DECLINE_SMS], None, PHONE, []),
    ("nothing added", BOTH, SIGNAL, PHONE, [], None, PHONE, []),
]


@pytest.mark.parametrize("tenant, signal, identity, added, email, phone, expected",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_plan(tenant, signal, identity, added, email, phone, expected):
    planned = plan(tenant, signal, identity, added, SINCE, email, phone)

    assert [(p.crm, p.status) for p in planned] == expected
    for p in planned:
        assert p.identity == identity
        assert (p.reason is None) == (p.status == PENDING)


def test_experience_payload_carries_every_added_state_with_its_time():
    [experience, _] = plan(BOTH, SIGNAL, PHONE, [SMS_BAN, MARKETING_DECLINE_SMS], SINCE, EMAIL, PHONE)

    assert experience.payload == {
        "email": EMAIL, "phone": PHONE,
        "states": {SMS_BAN: "2026-11-22T10:15:00+00:00", MARKETING_DECLINE_SMS: "2026-11-22T10:15:00+00:00"},
    }


def test_crmtext_payload_has_the_ten_digits():
    [_, crm_text] = plan(BOTH, SIGNAL, PHONE, [SMS_BAN], SINCE, None, PHONE)

    assert crm_text.payload == {"phone": PHONE, "ten_digits": "5551234567"}


@pytest.mark.parametrize("signal, phone, words", [
    (SIGNAL, UK_PHONE, "US"),
    (FROM_CRMTEXT, PHONE, "CRM Text reported"),
    (FROM_CRMTEXT, UK_PHONE, "CRM Text reported"),  # its own report wins over the number rule
])
def test_crmtext_skip_reasons(signal, phone, words):
    [_, crm_text] = plan(BOTH, signal, phone, [SMS_BAN], SINCE, None, phone)

    assert crm_text.status == SKIPPED
    assert words in crm_text.reason


def test_email_only_skip_reason():
    [experience, _] = plan(STRICT, SIGNAL, PHONE, [SMS_BAN], SINCE, None, PHONE)

    assert "email-only" in experience.reason
