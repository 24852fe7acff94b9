"""CRM Text SMS API client: OptOutCustomer and GetCustomerInfo for one store (keyword).

Assumptions, kept here so that correcting one is a one-file change (crm-apis.md, section 2):

- Every method is a form-encoded POST to the one endpoint, ``method`` in lowercase, auth
  HTTP Basic of ``user:password:KEYWORD`` where KEYWORD is the store's primary keyword.
- The answer is XML ``<response op=".." status=".." message="..">``. HTTP status and the
  XML ``status`` attribute may disagree: the XML wins whenever it parses. An answer that
  does not parse (including any DTD or entity, refused by defusedxml) is retryable; after
  a 2xx it is OutcomeUnknown, since the opt-out may have been applied.
- OptOutCustomer on a number already opted out, or unknown to the store, is not documented:
  a 4xx whose message says "already" or "not found" counts as done (``already_done=True``),
  never as a failure to retry: the store cannot text a number it does not have.
- GetCustomerInfo appears only in client code; its answer is taken to have the OptOut
  answer's shape, ``<customer><optinStatus>`` (1 new, 3 opted-in, 4 pending, 5 opted-out).
  A 404, or a 4xx whose message says "not found", means an unknown customer.
"""

import base64
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ..settings import CrmTextConfig
from .errors import OutcomeUnknown, Retryable, call, parse_retry_after, status_error

OPTED_OUT = 5
_TEN_DIGITS = re.compile(r"[0-9]{10}")


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

    def error(self):
        return status_error(self.status, f"CRM Text status {self.status_text}: {self.message}",
                            detail=self.message, retry_after=self.retry_after)


class CrmTextClient:
    """One store's CRM Text account, over one pooled session."""

    def __init__(self, config: CrmTextConfig, session: requests.Session | None = None):
        self.config = config
        self.session = session or requests.Session()
        secret = f"{config.user}:{config.password}:{config.keyword}".encode()
        # Set per request, not on the session: a shared session may serve several stores.
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(secret).decode("ascii"),
            "Accept": "text/xml, application/xml",
        }

    def opt_out(self, ten_digits: str) -> CrmTextResult:
        """Opt the number out of the store; CRM Text texts them its confirmation."""
        answer = self._post("optoutcustomer", ten_digits)
        if 200 <= answer.status < 300:
            return CrmTextResult(False, answer.status_text, answer.message)
        if 400 <= answer.status < 500 and _says_done(answer.message):
            return CrmTextResult(True, answer.status_text, answer.message)
        raise answer.error()

    def customer_status(self, ten_digits: str) -> int | None:
        """The number's optinStatus in the store (5 = opted out), or None if unknown."""
        answer = self._post("getcustomerinfo", ten_digits)
        if answer.status == 404 or (400 <= answer.status < 500 and "not found" in answer.message.lower()):
            return None
        if not 200 <= answer.status < 300:
            raise answer.error()
        text = (answer.root.findtext("customer/optinStatus") or "").strip()
        if not text.isdigit():
            raise Retryable("CRM Text answer has no customer/optinStatus",
                            status=answer.status, detail=answer.message)
        return int(text)

    def _post(self, method: str, ten_digits: str) -> _Answer:
        if not _TEN_DIGITS.fullmatch(ten_digits or ""):
            raise ValueError("CRM Text wants exactly 10 digits")
        resp = call(self.session, "POST", self.config.base_url, timeout=self.config.timeout,
                    data={"method": method, "phone_number": ten_digits}, headers=self._headers)
        return _parse(resp, method)


def _says_done(message: str) -> bool:
    message = message.lower()
    return "already" in message or "not found" in message


def _parse(resp: requests.Response, method: str) -> _Answer:
    """The XML answer whatever the HTTP status, or the error an unusable body calls for."""
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    try:
        root = fromstring(resp.content, forbid_dtd=True)
        status_text = root.get("status", "").strip()
        if root.tag != "response" or not status_text.isdigit():
            raise ValueError("no <response status=...>")
    except (DefusedXmlException, ET.ParseError, ValueError, LookupError) as exc:
        # After a 2xx (or a gateway timeout) the opt-out may have been applied all the same.
        cls = OutcomeUnknown if 200 <= resp.status_code < 300 or resp.status_code == 504 else Retryable
        raise cls(f"unusable CRM Text answer to {method} ({type(exc).__name__})",
                  status=resp.status_code, detail=resp.content[:500].decode("utf-8", "replace"),
                  retry_after=retry_after) from None
    return _Answer(int(status_text), status_text, root.get("message", ""), root, retry_after)
