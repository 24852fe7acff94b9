"""An operator's decision to honour a text flagged for review, as a signal of source ``review``.

The new signal bans SMS for the original text's phone, and cites the original (its id and the
evidence hash of the request that carried it) and the operator who decided.
"""

from ..signals import OPT_OUT, Inbound, Signal
from ..states import SMS_BAN

NAME = "review"


def honour(original, operator: str, note: str | None) -> Inbound:
    """``original`` is the flagged signal's row (id, event_id, source, phone, evidence_sha256)."""
    event_id = f"review_{original.id}"
    detail = {"operator": operator, "original_id": original.id, "original_source": original.source,
              "original_event_id": original.event_id, "original_evidence_sha256": original.evidence_sha256}
    if note:
        detail["note"] = note
    signal = Signal(event_id=event_id, kind=OPT_OUT, phone=original.phone, email=original.email,
                    add=frozenset({SMS_BAN}), keyword="honour", links_identities=False, detail=detail)
    return Inbound(request_key=event_id, signals=[signal])
