"""CRM Text inbound-message callbacks: a per-source ``?token=`` secret, fields matched in any case.

CRM Text already handled a STOP/QUIT itself (and texted the guest), so the signal says so and the
opt-out is never sent back through OptOutCustomer. Its ``optInStatus=Opt-out`` counts as an
opt-out too. ``timeStamp`` is US Pacific time.
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from marshmallow import fields

from ..errors import BadRequest, BadSignature
from ..identities import normalize_phone
from ..signals import OPT_OUT, Inbound
from ..states import CRMTEXT
from .base import HttpRequest, OptionsSchema, Secrets, Source, secret_matches
from .sms import classify, sms_signal

PACIFIC = ZoneInfo("America/Los_Angeles")


class CrmTextOptions(OptionsSchema):
    token = Secrets(required=True)  # a string, or a list while rotating
    extra_opt_out = fields.List(fields.String())


def _pacific(value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=PACIFIC).astimezone(UTC)
    except ValueError:
        return None


class CrmTextSource(Source):
    kind = "crmtext"
    options_schema = CrmTextOptions

    def verify(self, request: HttpRequest) -> None:
        token = self.options["token"]
        if not secret_matches(request.args.get("token"), [token] if isinstance(token, str) else token):
            raise BadSignature("token: missing or wrong")

    def parse(self, request: HttpRequest) -> Inbound:
        form = {name.lower(): value for name, value in request.form.items()}
        msg_id = form.get("msgid")
        if not msg_id:
            raise BadRequest("msgID: missing", field="msgID")
        if not form.get("mobilenum"):
            raise BadRequest("mobileNum: missing", field="mobileNum")
        phone = normalize_phone(form["mobilenum"], field="mobileNum")
        intent, keyword, review = classify(form.get("message", ""), self.options.get("extra_opt_out", ()))
        if form.get("optinstatus", "").lower() == "opt-out" and intent != OPT_OUT:
            intent, keyword, review = OPT_OUT, "optInStatus=Opt-out", False
        signal = sms_signal(
            msg_id, phone, intent, keyword=keyword, review=review,
            reported_by=CRMTEXT if intent == OPT_OUT else None,
            occurred_at=_pacific(form.get("timestamp")),
            detail={k: form[k] for k in ("custid", "subacct", "keyword") if form.get(k)},
        )
        return Inbound(request_key=msg_id, signals=[signal])
