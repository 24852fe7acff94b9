"""Experience CRM: the API client (write opt-out states in batches) and its delivery protocol (deliveries coalesced into records, sent ``batch_size`` at a time).

The write endpoint is not publicly documented. Assumption used until the real contract is
known (crm-apis.md, section 1), kept here so that correcting it is a one-file change:

- ``POST base_url + opt_out_path`` with JSON ``{"recipients": [...]}``, one record per
  customer in the read endpoint's shape (``email`` and/or ``phone`` in E.164, each state
  key mapped to the time it was set, ``YYYY-MM-DD HH:MM:SS`` UTC), at most ``batch_size``.
- Auth ``Authorization: Bearer <partner>:<hotel>`` (joined by a colon, not base64).
- Any 2xx is success, except for the records named in the body's ``errors`` object,
  keyed by email, by phone (E.164 or its national number), or by the record's index as a
  string; those failed alone. An answer read as neither (not JSON, not an object) is an
  unknown outcome for the whole batch, never a success; an ``errors`` key naming no record of
  the batch leaves the records it does not name unknown (one of them may be the one it meant).
- One record per (email, phone): states of one email linked to two phones travel as two
  records, so each phone's state reaches the CRM before its delivery is done.
- The read endpoint (``retrieve-opt-out``) is read by ``backfill/experience.py``, as every provider's list.
"""

import json
from datetime import UTC, datetime
from typing import Any

import phonenumbers
import requests

from ..settings import ExperienceConfig
from ..sources.experience_sync import TIME_FORMAT
from .delivery import Books, Outcome, Report
from .errors import CrmError, OutcomeUnknown, check_response
from .transport import call, new_session

# A write answer is {"successes": {...}, "errors": {...}} for at most 250 records (crm-apis.md):
# tens of KB at the very most.
MAX_ANSWER_BYTES = 256 * 1024

def bearer(config: ExperienceConfig) -> dict[str, str]:
    """One hotel's Authorization header: ``partner:hotel`` joined by a colon, not base64 (the writes and
    the backfill's list reads alike)."""
    return {"Authorization": f"Bearer {config.partner_token}:{config.hotel_token}"}


def format_time(dt: datetime) -> str:
    """A time as Experience writes it: UTC, ``YYYY-MM-DD HH:MM:SS`` (naive means UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime(TIME_FORMAT)


class ExperienceClient:
    """One property's Experience account, over one pooled session."""

    def __init__(self, config: ExperienceConfig, session: requests.Session | None = None):
        self.config = config
        self.session = session or new_session()
        self._base = config.base_url.rstrip("/")
        # Set per request, not on the session: a shared session may serve several hotels.
        self._headers = {**bearer(config), "Accept": "application/json"}

    def opt_out(self, records: list[dict]) -> dict[int, str]:
        """Send one batch; return ``{index in records: error}`` for the records that failed."""
        if len(records) > self.config.batch_size:
            raise ValueError(f"at most {self.config.batch_size} records per call")
        if not records:
            return {}
        resp = call(self.session, "POST", self._base + self.config.opt_out_path,
                    timeout=self.config.timeout, json={"recipients": records}, headers=self._headers,
                    max_bytes=MAX_ANSWER_BYTES)
        check_response(resp)
        if not resp.content.strip():
            return {}
        try:
            body = resp.json()
            errors = body.get("errors")
            # None, {} and [] say no record failed; 0, false or "" say something we cannot read.
            failed, unmatched = ({}, 0) if errors in (None, {}, []) else _failed_records(records, errors)
        except (ValueError, AttributeError):
            # Success was said but not readable; sending the states again is harmless.
            raise OutcomeUnknown("unreadable Experience answer to opt-out", status=resp.status_code,
                                 detail=resp.text) from None
        if unmatched:
            raise PartlyUnknown(f"{unmatched} of Experience's errors name no record of the batch", failed,
                                status=resp.status_code, detail=resp.text)
        return failed


class PartlyUnknown(OutcomeUnknown):
    """Errors the batch's records cannot be told from: those named in ``failed`` failed, the
    others' outcome is unknown (reading them as successes could lose an opt-out)."""

    def __init__(self, message: str, failed: dict[int, str], **kw):
        super().__init__(message, **kw)
        self.failed = failed


def _failed_records(records: list[dict], errors: Any) -> tuple[dict[int, str], int]:
    """Map the answer's ``errors`` (keyed by email, phone or index) back to record indices, and
    count the entries that name no record of the batch.

    ValueError when ``errors`` has another shape.
    """
    if isinstance(errors, list) and all(isinstance(key, str | int) for key in errors):
        errors = {str(key): "error" for key in errors}
    if not isinstance(errors, dict):
        raise ValueError("errors is neither an object nor a list of keys")
    failed: dict[int, str] = {}
    unmatched = 0
    for key, error in errors.items():
        indices = _indices(records, str(key).strip())
        if not indices:
            unmatched += 1
            continue
        text = error if isinstance(error, str) else json.dumps(error, default=str)
        for index in indices:
            failed[index] = text[:500]
    return failed, unmatched


def _indices(records: list[dict], key: str) -> list[int]:
    if key.isdigit() and int(key) < len(records):
        return [int(key)]
    folded, digits = key.casefold(), _digits(key)
    return [
        i for i, r in enumerate(records)
        if (r.get("email") and str(r["email"]).casefold() == folded)
        or (r.get("phone") and len(digits) >= 7 and digits in _phone_keys(str(r["phone"])))
    ]


def _phone_keys(phone: str) -> set[str]:
    """The digits a CRM may key a record's phone by: the E.164 number's, or its national number."""
    keys = {_digits(phone)}
    try:
        keys.add(str(phonenumbers.parse(phone).national_number))
    except phonenumbers.NumberParseException:
        pass
    return keys


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def coalesce(rows: list) -> tuple[list[dict], list[list]]:
    """One record per (email, phone): deliveries of one customer merge, but an email linked to two
    phones gives two records, so neither phone's state is dropped."""
    records: dict[tuple, dict] = {}
    owners: dict[tuple, list] = {}
    for row in rows:
        payload = row.payload
        key = (payload.get("email"), payload.get("phone"))
        record = records.setdefault(key, {field: payload[field] for field in ("email", "phone") if payload.get(field)})
        for state, since in payload["states"].items():
            record.setdefault(state, format_time(datetime.fromisoformat(since)))
        owners.setdefault(key, []).append(row)
    return list(records.values()), list(owners.values())


class ExperienceDelivery:
    """One property's delivery protocol: one call per unit, a batch of at most ``batch_size`` rows."""

    def __init__(self, config: ExperienceConfig):
        self.client = ExperienceClient(config)
        # rows per unit of work: one batch each (coalescing may make fewer records), up to ``concurrency`` at once
        self.unit = config.batch_size
        self.concurrency, self.max_per_second = config.concurrency, config.max_per_second

    def deliver(self, unit: list, books: Books) -> list[Report]:
        if len(unit) > self.unit:
            raise ValueError(f"at most {self.unit} rows per unit")
        # Renewed, and trimmed to what each row still owes, just before the call.
        records, owners = coalesce(books.renew(unit))
        if not records:
            return []
        started = books.now()
        try:
            failed = self.client.opt_out(records)
        except PartlyUnknown as exc:  # finish the records it names; the others may have failed
            return [
                Report(row, Outcome.RETRY, detail=f"record refused: {exc.failed[index]}"[:500], started=started)
                if index in exc.failed else Report(row, Outcome.UNKNOWN, error=exc, started=started)
                for index, group in enumerate(owners) for row in group
            ]
        except CrmError as exc:
            return [Report(row, Outcome.of(exc), error=exc, started=started) for group in owners for row in group]
        return [
            Report(row, Outcome.RETRY, detail=f"record refused: {failed[index]}"[:500], started=started)
            if index in failed else Report(row, Outcome.OK, started=started, http_status=200)
            for index, group in enumerate(owners) for row in group
        ]
