"""CRM Text: the SMS API client (OptOutCustomer, GetCustomerInfo) and its delivery protocol.

Assumptions, kept here so that correcting one is a one-file change (crm-apis.md, section 2):

- Every method is a form-encoded POST to the one endpoint, ``method`` in lowercase, auth
  HTTP Basic of ``user:password:KEYWORD`` where KEYWORD is the store's primary keyword.
- The answer is XML ``<response op=".." status=".." message="..">`` with its fields directly
  under ``<response>`` (the vendor's sample) or in a ``<customer>`` child (client libraries);
  tag case varies, so fields are found anywhere under ``<response>``, case ignored. HTTP
  status and the XML ``status`` may disagree: the XML wins whenever it parses.
- An answer that does not parse (a gateway's HTML page, any DTD or entity, refused by
  defusedxml), or an XML status 5xx, is an unknown outcome: a 502 page can hide a call
  that did apply, so the number's status is asked before OptOutCustomer is sent again.
- OptOutCustomer on a number already opted out, or unknown to the store, is not documented:
  only the answers named in ``DONE_ANSWERS`` count as done (``already_done=True``). Any
  other 4xx ("Store not found for keyword", "User not found": a wrong keyword or password)
  is a failure, retried and then dead-lettered with the answer kept.
- GetCustomerInfo appears only in client code; its answer is taken to have the OptOut
  answer's shape plus ``optinStatus`` (1 new, 3 opted-in, 4 pending, 5 opted-out). An
  answer named in ``NOT_A_CUSTOMER`` means an unknown customer.

Delivery (``CrmTextDelivery``): one OptOutCustomer per delivery, and CRM Text texts the guest a
confirmation each time, so a call whose outcome is unknown (timeout, crash mid-call, a gateway's
error page) is never simply repeated: once that call's deadline has passed, the number's status
is asked first.
"""

import base64
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ..settings import CALL_MARGIN_SECONDS, CrmTextConfig
from .delivery import Books, Outcome, Report
from .errors import CrmError, OutcomeUnknown, Retryable, parse_retry_after
from .transport import Reply, call, new_session

OPTED_OUT = 5
_TEN_DIGITS = re.compile(r"[0-9]{10}")
# An answer is a few hundred bytes (vendor/crmtext-optoutcustomer.txt), a gateway's error page a few KB.
MAX_ANSWER_BYTES = 64 * 1024

# The only error answers that mean "nothing left to do", compared after folding case and
# punctuation. The vendor publishes no error list: its sample says only status="4xx"
# message="reason for Error", and its OptOutCustomer page calls the state "opted-out".
NOT_A_CUSTOMER = frozenset({"customer not found", "customer does not exist"})
DONE_ANSWERS = NOT_A_CUSTOMER | {
    "customer already opted out", "customer is already opted out", "customer has already opted out",
    "number already opted out", "number is already opted out",
}


@dataclass(frozen=True)
class CrmTextResult:
    already_done: bool
    status: str
    message: str


@dataclass(frozen=True)
class _Answer:
    status: int
    status_text: str
    message: str
    root: ET.Element
    retry_after: float | None

    def error(self) -> Retryable:
        """Never Permanent: an unnamed 4xx is retried, then dead-lettered (a keyword or password can
        be fixed meanwhile); a 5xx may hide a call that applied."""
        cls = OutcomeUnknown if self.status >= 500 else Retryable
        return cls(f"CRM Text status {self.status_text}: {self.message}", status=self.status,
                   detail=self.message, retry_after=self.retry_after)


class CrmTextClient:
    """One store's CRM Text account, over one pooled session."""

    def __init__(self, config: CrmTextConfig, session: requests.Session | None = None):
        self.config = config
        self.session = session or new_session()
        secret = f"{config.user}:{config.password}:{config.keyword}".encode()
        # Set per request, not on the session: a shared session may serve several stores.
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(secret).decode("ascii"),
            "Accept": "text/xml, application/xml",
        }

    def opt_out(self, ten_digits: str) -> CrmTextResult:
        """Opt the number out of the store; CRM Text texts them its confirmation."""
        try:
            answer = self._post("optoutcustomer", ten_digits)
        except Retryable as exc:
            if exc.status is not None and 300 <= exc.status < 400:
                # The server handled the POST before redirecting: it may have opted the number out.
                raise OutcomeUnknown(str(exc), status=exc.status, detail=exc.detail) from exc
            raise
        if 200 <= answer.status < 300:
            return CrmTextResult(False, answer.status_text, answer.message)
        if 400 <= answer.status < 500 and _names(answer.message, DONE_ANSWERS):
            return CrmTextResult(True, answer.status_text, answer.message)
        raise answer.error()

    def customer_status(self, ten_digits: str) -> int | None:
        """The number's optinStatus in the store (5 = opted out), or None if unknown."""
        answer = self._post("getcustomerinfo", ten_digits)
        if 400 <= answer.status < 500 and _names(answer.message, NOT_A_CUSTOMER):
            return None
        if not 200 <= answer.status < 300:
            raise answer.error()
        found = {(el.text or "").strip() for el in answer.root.iter() if el.tag.casefold() == "optinstatus"}
        if len(found) != 1 or not found.issubset({"1", "3", "4", "5"}):
            raise Retryable("CRM Text answer has no single optinStatus", status=answer.status,
                            detail=answer.message)
        return int(found.pop())

    def settled_after(self, started: datetime) -> datetime:
        """When a call started at ``started`` can no longer be applying at the CRM: its deadline plus
        margin. Asked sooner, GetCustomerInfo could say "not opted out" of a call still under way."""
        return started + timedelta(seconds=self.config.timeout + CALL_MARGIN_SECONDS)

    def _post(self, method: str, ten_digits: str) -> _Answer:
        if not _TEN_DIGITS.fullmatch(ten_digits or ""):
            raise ValueError("CRM Text wants exactly 10 digits")
        resp = call(self.session, "POST", self.config.base_url, timeout=self.config.timeout,
                    data={"method": method, "phone_number": ten_digits}, headers=self._headers,
                    max_bytes=MAX_ANSWER_BYTES)
        return _parse(resp, method)


def _names(message: str, answers: frozenset[str]) -> bool:
    return " ".join(re.findall(r"[a-z0-9]+", message.casefold())) in answers


def _parse(resp: Reply, method: str) -> _Answer:
    """The XML answer whatever the HTTP status, or the error an unusable body calls for."""
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    try:
        root = fromstring(resp.content, forbid_dtd=True)
        status_text = root.get("status", "").strip()
        if root.tag.casefold() != "response" or not status_text.isdigit():
            raise ValueError("no <response status=...>")
    except (DefusedXmlException, ET.ParseError, ValueError, LookupError) as exc:
        detail = resp.content[:500].decode("utf-8", "replace")
        if resp.status_code in (408, 429):  # refused before it reached the store
            cls: type[Retryable] = Retryable
        else:
            # A gateway's error page, or a broken body after the CRM took the call: it may have applied.
            cls = OutcomeUnknown
        raise cls(f"unusable CRM Text answer to {method} ({type(exc).__name__})",
                  status=resp.status_code, detail=detail, retry_after=retry_after) from None
    return _Answer(int(status_text), status_text, root.get("message", ""), root, retry_after)


# Attempts that may have reached CRM Text: a call after them could text the guest a second time.
MAY_HAVE_APPLIED = (Outcome.STARTED, Outcome.UNKNOWN, Outcome.OK, Outcome.ALREADY)


class CrmTextDelivery:
    """One store's delivery protocol: one row per unit, checked before it is called again."""

    unit = 1  # rows per call: each row is its own unit of work, up to ``concurrency`` at once

    def __init__(self, config: CrmTextConfig):
        self.client = CrmTextClient(config)
        self.concurrency, self.max_per_second = config.concurrency, config.max_per_second

    def deliver(self, unit: list, books: Books) -> list[Report]:
        [row] = unit
        ten = row.payload["ten_digits"]
        # One transaction: renewed, still owed, no earlier attempt that may have applied, STARTED written.
        started = books.start(row, unless=MAY_HAVE_APPLIED)
        if started is None:
            return []
        if started.earlier:
            earlier = started.earlier
            if {a.outcome for a in earlier} & {Outcome.OK, Outcome.ALREADY}:
                # A previous owner's call succeeded after its lease ran out, so it could not mark the
                # row done: calling again would text the guest a second confirmation.
                return [Report(row, Outcome.ALREADY, detail="an earlier attempt already delivered it")]
            settled = self.client.settled_after(max(a.started_at for a in earlier))
            if started.at < settled:
                # That call may still be under way: a status read now could say "not opted out".
                books.postpone([row], settled, "an earlier call's outcome is not settled yet")
                return []
            try:
                status = self.client.customer_status(ten)
            except CrmError as exc:
                return [Report(row, Outcome.RETRY, error=exc, started=started.at)]
            if status == OPTED_OUT:
                return [Report(row, Outcome.ALREADY, started=started.at,
                               detail="CRM Text already has the number opted out (checked)")]
            started = books.start(row)  # checked: not opted out, so this call is the one that applies
            if started is None:
                return []
        try:
            result = self.client.opt_out(ten)
        except CrmError as exc:
            outcome = Outcome.of(exc)
            return [Report(row, outcome, error=exc, attempt_id=started.attempt_id, started=started.at,
                           not_before=self.client.settled_after(started.at) if outcome == Outcome.UNKNOWN else None)]
        return [Report(row, Outcome.ALREADY if result.already_done else Outcome.OK, detail=result.message,
                       attempt_id=started.attempt_id, started=started.at)]
