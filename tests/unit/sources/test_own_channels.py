"""The receiver's own channels (email link, open web form, Experience sync) are sources like the rest:
each one module turning its input into an Inbound, with a config the registry gives."""

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from werkzeug.datastructures import MultiDict

from receiver.errors import BadRequest, NotFound
from receiver.links import ALL, MARKETING, Link
from receiver.settings import SourceConfig, TenantConfig
from receiver.signals import OPT_OUT, OTHER
from receiver.sources import OWN, email_link, experience_sync, own_source, web_form
from receiver.states import (
    MAIL_BAN,
    MARKETING_DECLINE,
    MARKETING_DECLINE_SMS,
    SMS_BAN,
    identity_for,
)

RECEIVER = Path(__file__).resolve().parents[3] / "receiver"
TENANTS = {"grand": TenantConfig(name="grand")}


@pytest.mark.parametrize("name", ["email-link", "web-form", "experience-sync", "staff", "review", "erasure"])
def test_the_registry_gives_each_own_channel_its_config(name):
    assert name in OWN
    assert own_source(name, "grand") == SourceConfig(name=name, kind=name, tenant="grand")


def test_the_registry_knows_no_other_own_channel():
    with pytest.raises(KeyError):
        own_source("twilio", "grand")


def test_no_channel_builds_signals_or_source_configs_outside_sources():
    """The web layer only does HTTP; reconcile only reads the CRM and records what experience_sync makes of it.

    Nor does any other module outside sources/ (erasure, the console, the ledger), but backfill's
    convert.py: its documented place, turning a provider's item into a signal by its source's rules."""
    paths = [*sorted((RECEIVER / "web").glob("*.py")), RECEIVER / "backfill" / "reconcile.py"]
    paths += sorted(path for path in RECEIVER.rglob("*.py") if path not in paths
                    and path.relative_to(RECEIVER).parts[0] not in ("sources", "settings")
                    and path != RECEIVER / "backfill" / "convert.py")
    built = [f"{path.name}:{node.lineno}" for path in paths for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Signal", "SourceConfig")]
    assert built == []


@pytest.mark.parametrize("scope, state", [(ALL, MAIL_BAN), (MARKETING, MARKETING_DECLINE)])
def test_a_one_click_applies_the_links_scope(scope, state):
    link = Link(tenant="grand", email="guest@example.com", phone=None, scope=scope, campaign="spring")

    inbound = email_link.one_click(link)

    [signal] = inbound.signals
    assert (signal.kind, signal.email, signal.add, signal.keyword) == (OPT_OUT, link.email, {state}, "link:one-click")
    assert signal.detail == {"via": "one-click", "scope": scope, "campaign": "spring"}
    assert inbound.request_key == signal.event_id  # each post is its own event
    assert email_link.one_click(link).request_key != inbound.request_key


def test_the_page_form_applies_exactly_the_choices_and_refuses_unknown_ones():
    link = Link(tenant="grand", email="guest@example.com", phone="+15551230001", scope=MARKETING, campaign=None)
    form = MultiDict([("csrf", "x"), ("choice", SMS_BAN), ("choice", MARKETING_DECLINE)])

    [signal] = email_link.page_choices(link, email_link.choices(form)).signals

    assert signal.add == {SMS_BAN, MARKETING_DECLINE} and signal.phone == link.phone
    assert signal.detail == {"via": "page", "scope": MARKETING}
    with pytest.raises(BadRequest, match="choice: unknown state 'everything'"):
        email_link.choices(MultiDict([("choice", "everything")]))
    with pytest.raises(BadRequest, match="body: expected List-Unsubscribe=One-Click"):
        email_link.check_page_form(MultiDict([("List-Unsubscribe", "Yes")]))


def test_the_web_form_adds_only_marketing_states_and_never_links_identities():
    tenant, inbound = web_form.parse({"tenant": "grand", "email": "Guest@Example.com", "phone": "+1 555 123 0001",
                                      "sms_marketing": "on", "mail_ban": "on"}, TENANTS, "https://grand.example")

    [signal] = inbound.signals
    assert tenant is TENANTS["grand"]
    assert (signal.email, signal.phone, signal.add) == ("guest@example.com", "+15551230001", {MARKETING_DECLINE_SMS})
    assert not signal.links_identities and signal.detail == {"origin": "https://grand.example"}


@pytest.mark.parametrize("data, error", [
    ({"tenant": "nowhere", "email": "guest@example.com"}, NotFound),
    ({"tenant": "grand"}, BadRequest),
    ({"tenant": "grand", "email": "guest@example.com", "email_marketing": "off"}, BadRequest),
])
def test_the_web_form_refuses_what_it_cannot_apply(data, error):
    with pytest.raises(error):
        web_form.parse(data, TENANTS, "")


def test_an_experience_page_is_one_signal_per_state_and_skips_the_unusable():
    # The shape of Experience's documented retrieve-opt-out records (docs/vendor, crm-apis.md).
    records = [
        {"email": "guest@example.com", "phone": "+15551230001", "mail_ban": "2026-11-20 10:00:00",
         "sms_ban": "2026-11-21 09:30:00"},
        {"email": "", "phone": None, "mail_ban": "2026-11-20 10:00:00"},  # nobody to apply it to
        {"email": "other@example.com", "marketing_decline": "yesterday"},  # an unreadable time
    ]
    asked = []

    def re_consents(emails, phones):
        asked.append((emails, phones))
        return {("+15551230001", SMS_BAN): datetime(2026, 11, 22, tzinfo=UTC)}  # START after the CRM's time

    page = experience_sync.read_page("grand", records, re_consents)

    mail, sms = page.inbound.signals
    assert asked == [({"guest@example.com", "other@example.com"}, {"+15551230001"})]
    assert (mail.kind, mail.add, mail.occurred_at) == (OPT_OUT, {MAIL_BAN}, datetime(2026, 11, 20, 10, tzinfo=UTC))
    assert (sms.kind, sms.add, sms.detail["ignored"]) == (OTHER, frozenset(), experience_sync.STALE)
    assert page.skipped == 2
    assert page.inbound.request_key.startswith("grand:")
    assert experience_sync.read_page("grand", records, re_consents).inbound.request_key == page.inbound.request_key


@pytest.mark.parametrize("state, email, phone, identity", [
    (MAIL_BAN, "guest@example.com", "+15551230001", "guest@example.com"),
    (SMS_BAN, "guest@example.com", "+15551230001", "+15551230001"),
    (MARKETING_DECLINE, None, "+15551230001", "+15551230001"),
    (MARKETING_DECLINE_SMS, "guest@example.com", None, "guest@example.com"),
])
def test_identity_for_takes_the_state_and_the_contacts(state, email, phone, identity):
    assert identity_for(state, email=email, phone=phone) == identity
