"""CRM Text inbound-message callbacks: a per-source ``?token=`` secret, fields matched in any case.

CRM Text handles only STOP and QUIT itself (and texts the guest), so only an opt-out it applied
is marked as reported by it and never sent back through OptOutCustomer: its ``optInStatus`` says
``Opt-out`` (which counts as an opt-out whatever the text), or the text is STOP or QUIT alone. Any
other opt-out ("UNSUBSCRIBE", "please stop texting me") left the guest opted in at CRM Text and is
delivered to it like a Twilio one. ``timeStamp`` is US Pacific time.
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from marshmallow import fields

from ..errors import BadRequest, BadSignature
from ..identities import normalize_phone
from ..schemas import identifier
from ..signals import OPT_OUT, Inbound
from ..states import CRMTEXT
from .base import HttpRequest, OptionsSchema, Secrets, Source, secret_matches
from .sms import classify, sms_signal

PACIFIC = ZoneInfo("America/Los_Angeles")
# What CRM Text's short code acts on by itself; compared as the whole text, trimmed, in any case
# (a looser match could skip an OptOutCustomer that CRM Text never made for the guest).
HANDLED_BY_CRMTEXT = frozenset({"STOP", "QUIT"})
# Why an opt-out's optoutcustomer is skipped or not, kept in the signal's detail for the audit trail.
OPTOUTCUSTOMER_STATUS = "skipped: optInStatus says Opt-out, CRM Text applied it"
OPTOUTCUSTOMER_TEXT = "skipped: the text is STOP or QUIT, which CRM Text applies itself"
OPTOUTCUSTOMER_OWED = "not skipped: neither optInStatus Opt-out nor a STOP or QUIT text"


class CrmTextOptions(OptionsSchema):
    token = Secrets(required=True)  # a string, or a list while rotating
    extra_opt_out = fields.List(fields.String())


def _pacific(value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=PACIFIC).astimezone(UTC)
    except (ValueError, OverflowError):  # 9999-12-31 23:59:59 Pacific is past the calendar's end in UTC
        return None


class CrmTextSource(Source):
    kind = "crmtext"
    options_schema = CrmTextOptions

    def verify(self, request: HttpRequest) -> None:
        if not secret_matches(request.args.get("token"), self.options["token"]):
            raise BadSignature("token: missing or wrong")

    def parse(self, request: HttpRequest) -> Inbound:
        form = {name.lower(): value for name, value in request.form.items()}
        msg_id = form.get("msgid")
        if not msg_id:
            raise BadRequest("msgID: missing", field="msgID")
        identifier(msg_id, "msgID")
        if not form.get("mobilenum"):
            raise BadRequest("mobileNum: missing", field="mobileNum")
        phone = normalize_phone(form["mobilenum"], field="mobileNum")
        text = form.get("message", "")
        intent, keyword, review = classify(text, self.options.get("extra_opt_out", ()))
        opted_out = form.get("optinstatus", "").lower() == "opt-out"
        if opted_out and intent != OPT_OUT:
            intent, keyword, review = OPT_OUT, "optInStatus=Opt-out", False
        detail = {k: form[k] for k in ("custid", "subacct", "keyword") if form.get(k)}
        applied = False
        if intent == OPT_OUT:
            if opted_out:
                applied, detail["optoutcustomer"] = True, OPTOUTCUSTOMER_STATUS
            elif text.strip().upper() in HANDLED_BY_CRMTEXT:
                applied, detail["optoutcustomer"] = True, OPTOUTCUSTOMER_TEXT
            else:
                detail["optoutcustomer"] = OPTOUTCUSTOMER_OWED
        signal = sms_signal(
            msg_id, phone, intent, keyword=keyword, review=review, text=text, reported_by=CRMTEXT if applied else None,
            occurred_at=_pacific(form.get("timestamp")), detail=detail,
        )
        return Inbound(request_key=msg_id, signals=[signal])
