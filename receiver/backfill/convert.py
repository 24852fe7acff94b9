"""A backfill item as the signal its source's webhook would have made: the same rules, marked ``via: backfill``.

- Twilio: the body is classified by the keyword rules exactly as a webhook body (the source's
  ``extra_opt_out`` included); the event id is the message sid, the webhook's ``MessageSid``.
  An opt-in (START) read back is recorded but lifts nothing: the list comes newest first and a
  later STOP may already have arrived by webhook, so applying an old START could undo it.
- ESPs: an unsubscribe (global or group) is a ``marketing_decline``; a spam report or complaint
  follows the source's ``complaint`` option (``sources/esp.py``); a Postmark hard bounce is
  recorded as ignored, as its webhook is.
- An item that cannot be a signal (no address or number, an unknown reason) is recorded as
  ignored with the reason in its detail.
"""

import dataclasses

from ..errors import BadRequest
from ..settings import SourceConfig
from ..signals import OPT_IN, OTHER, Signal
from ..sources.esp import COMPLAINT, email_signal, mapped_state
from ..sources.sms import classify, sms_signal
from ..states import MARKETING_DECLINE
from .pages import BackfillItem, ItemKind

VIA = "backfill"
NOT_APPLIED = "an opt-in read back by backfill is recorded, not applied"
RULES = {
    ItemKind.UNSUBSCRIBE: MARKETING_DECLINE,
    ItemKind.GROUP_UNSUBSCRIBE: MARKETING_DECLINE,
    ItemKind.SPAM_REPORT: COMPLAINT,
    ItemKind.COMPLAINT: COMPLAINT,
    ItemKind.HARD_BOUNCE: None,
}


def to_signal(item: BackfillItem, config: SourceConfig) -> Signal:
    """The signal ``config``'s webhook rules make of ``item``; an unusable item is an ignored one."""
    detail = {"via": VIA, "list": item.position.list}
    if item.skipped:
        return skipped(item, detail, item.skipped)
    if item.kind is ItemKind.INBOUND_SMS:
        intent, keyword, review = classify(item.body or "", config.options.get("extra_opt_out", ()))
        signal = sms_signal(item.key, item.phone, intent, keyword=keyword, review=review,
                            occurred_at=item.occurred_at, detail=detail)
        if intent == OPT_IN:
            signal = dataclasses.replace(signal, remove=frozenset(), detail={**detail, "not_applied": NOT_APPLIED})
        return signal
    if item.kind not in RULES:
        return skipped(item, detail, f"unknown item kind {item.kind}")
    state = mapped_state(RULES[item.kind], config.options)
    try:
        return email_signal(item.key, item.email, add={state} if state else (), keyword=item.kind.value,
                            occurred_at=item.occurred_at, detail={**detail, "kind": item.kind.value})
    except BadRequest as refused:
        return skipped(item, detail, refused.message)


def skipped(item: BackfillItem, detail: dict, reason: str) -> Signal:
    return Signal(event_id=item.key, kind=OTHER, email=item.email, phone=item.phone,
                  keyword=item.kind.value if item.kind else None, occurred_at=item.occurred_at,
                  detail={**detail, "skipped": reason})
