"""A backfill item as the signal its source's webhook would have made: the same rules, marked ``via: backfill``.

- Twilio: the body is classified by the keyword rules exactly as a webhook body (the source's
  ``extra_opt_out`` included); the event id is the message sid, the webhook's ``MessageSid``.
  An opt-in (START) read back lifts what its webhook would have, but only a state that has held
  since before the START was sent: a STOP that arrived later (by webhook or read back) stands.
- ESPs: an unsubscribe (global or group) is a ``marketing_decline``; a spam report or complaint
  follows the source's ``complaint`` option (``sources/esp.py``); a Postmark hard bounce is
  recorded as ignored, as its webhook is.
- An item that cannot be a signal (no address or number, an unknown reason) is recorded as
  ignored with the reason in its detail.
"""

import dataclasses

from ..errors import BadRequest
from ..settings import SourceConfig
from ..signals import OTHER, Signal
from ..sources.esp import COMPLAINT, email_signal, mapped_state
from ..sources.sms import classify, sms_signal
from ..states import MARKETING_DECLINE
from .pages import BackfillItem, ItemKind

VIA = "backfill"
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
        return dataclasses.replace(signal, read_back=True)
    if item.kind not in RULES:
        return skipped(item, detail, f"unknown item kind {item.kind}")
    state = mapped_state(RULES[item.kind], config.options)
    try:
        signal = email_signal(item.key, item.email, add={state} if state else (), keyword=item.kind.value,
                              occurred_at=item.occurred_at, detail={**detail, "kind": item.kind.value})
        return dataclasses.replace(signal, read_back=True)
    except BadRequest as refused:
        return skipped(item, detail, refused.message)


def skipped(item: BackfillItem, detail: dict, reason: str) -> Signal:
    return Signal(event_id=item.key, kind=OTHER, email=item.email, phone=item.phone,
                  keyword=item.kind.value if item.kind else None, occurred_at=item.occurred_at,
                  detail={**detail, "skipped": reason})
