"""An erasure an operator asked for (``POST /v1/erasure``), as the signal of source ``erasure`` that records it.

The signal (kind ``erasure``) names the address being erased; ``ledger/erasure.py`` records it in
the chain, then removes the address from every row. Each erasure is its own event.
"""

import uuid

from ..signals import Inbound, Signal

NAME = "erasure"  # the source's name and kind, and the signal's kind
KIND = NAME


def request(email: str | None, phone: str | None, operator: str | None = None) -> tuple[Inbound, bytes]:
    """The erasure of ``email`` or ``phone`` as its one signal, and the evidence the ledger keeps (no
    address); ``operator`` (who asked) goes in its detail, as a staff opt-out keeps theirs."""
    event_id = uuid.uuid4().hex
    inbound = Inbound(request_key=event_id, signals=[Signal(event_id=event_id, kind=KIND, email=email, phone=phone,
                                                            detail={"operator": operator} if operator else {})])
    return inbound, f"erase {'email' if email else 'phone'}".encode()
