"""`receiver sandbox`: a local fake of both CRMs, with a control API to script failures.

CRM Text (its wire format, crm-apis.md section 2):
  POST /crmtext/smapi/rest        form or query ``method`` (lowercase) = optoutcustomer |
      getcustomerinfo | optincustomer, ``phone_number`` (exactly 10 digits, else status 400).
      Basic auth ``user:password:KEYWORD`` is required (any values; the keyword selects the
      store); without it the XML says status 401 while HTTP says 200, as HTTP and XML may
      disagree. optoutcustomer sets optinStatus 5, and a second one answers status 400
      "Customer already opted out"; optincustomer sets 3; getcustomerinfo of an unknown
      number answers status 404 "customer not found". Answers are text/xml in the vendor's
      documented shape: fields directly under ``<response>`` (optoutcustomer and optincustomer:
      ``timestamp``, ``custName``, as in its sample; getcustomerinfo adds ``custId``,
      ``subacct``, ``optinStatus``, ``custMobile``).

Experience (the assumed write endpoint and the documented read endpoint, section 1):
  POST /experience/api/xp-unsubscribe/opt-out       ``Authorization: Bearer a:b`` (else 401),
      JSON ``{"recipients": [...]}`` (≤ 250); a record with neither email nor phone is listed
      in ``errors`` under its index; 200 ``{"successes": {...}, "errors": {...}}``.
  GET  /experience/api/xp-unsubscribe/retrieve-opt-out?since=YYYY-MM-DD[&cursor=N]
      the stored records received since then, 250 a page; ``next_page_url`` is absolute and
      lacks ``since``, as in the vendor's sample (a request without ``since`` gets 400).

The Twilio, SendGrid, Mailgun and Postmark list APIs that ``receiver backfill`` reads, and their
``/_sandbox/providers`` controls: ``providers.py`` (``/_sandbox/reset`` resets them too).

Control API (calls, reset, answer shapes, seeded records, faults, latency): docs/sandbox.md.
"""

import re
import signal
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.serving import make_server

from . import answers, pace
from .answers import basic_keyword, crmtext_xml
from .providers import create_providers_blueprint

CRMS = ("crmtext", "experience")
PAGE_SIZE = 250
MAX_RECORDS = 250
CRMTEXT_METHODS = ("optoutcustomer", "getcustomerinfo", "optincustomer")
_TEN_DIGITS = re.compile(r"[0-9]{10}")
_BEARER = re.compile(r"^Bearer [^:\s]+:[^:\s]+$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


class _State:
    """Everything the fake CRMs remember; every access holds ``lock``."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.calls: list[dict[str, Any]] = []
        self.customers: dict[tuple[str, str], dict[str, Any]] = {}  # (keyword, number) -> customer
        self.records: list[tuple[str, dict]] = []  # (received at, record)
        self.page_size = PAGE_SIZE
        self.shape = {"layout": "flat", "status_tag": "optinStatus"}
        self.faults: dict[str, deque[dict[str, Any]]] = {crm: deque() for crm in CRMS}

    def record_call(self, crm: str, method: str, **fields) -> dict[str, Any] | None:
        """Log the call and return the fault it must suffer, if one is pending."""
        call = {"crm": crm, "method": method, "phone_number": None, "keyword": None,
                "records": None, "since": None,
                "authorization": request.headers.get("Authorization"),
                "at": datetime.now(UTC).isoformat(), **fields}
        call["arrived_at"] = g.get("arrived_at", call["at"])  # before a set latency (pace.py)
        with self.lock:
            queue = self.faults[crm]
            fault = dict(queue[0]) if queue else None
            if queue:
                queue[0]["count"] -= 1
                if queue[0]["count"] <= 0:
                    queue.popleft()
                call["fault"] = fault["mode"]
            self.calls.append(call)
        return fault


def create_sandbox_app() -> Flask:
    """The fake CRMs; each app keeps its own in-memory state."""
    app = Flask(__name__)
    state = _State()
    providers = create_providers_blueprint()
    app.register_blueprint(providers)
    paced = pace.Pace()
    pace.register(app, paced, CRMS)

    @app.post("/crmtext/smapi/rest")
    @paced.serves("crmtext")
    def crmtext():
        method = request.values.get("method", "")
        number = request.values.get("phone_number", "")
        keyword = basic_keyword(request.headers.get("Authorization", ""))
        fault = state.record_call("crmtext", method, phone_number=number, keyword=keyword)
        if fault and fault["mode"] not in answers.APPLYING:
            return answers.crmtext_fault(fault, method)
        if fault and fault["mode"] == "slow":
            time.sleep(fault["delay"])
        answer = crmtext_answer(method, number, keyword)
        return answers.after(fault, answer) if fault else answer

    def crmtext_answer(method: str, number: str, keyword: str | None) -> Response:
        if keyword is None:
            return crmtext_xml(method, "401", "authentication failed")
        if method not in CRMTEXT_METHODS:
            return crmtext_xml(method, "400", "unknown method")
        if not _TEN_DIGITS.fullmatch(number):
            return crmtext_xml(method, "400", "phone_number must be 10 digits")
        with state.lock:
            customer = state.customers.get((keyword, number))
            if method == "getcustomerinfo":
                if customer is None:
                    return crmtext_xml(method, "404", "customer not found")
            elif method == "optoutcustomer" and customer and customer["optinStatus"] == 5:
                return crmtext_xml(method, "400", "Customer already opted out")
            else:
                if customer is None:
                    customer = {"custId": str(100000 + len(state.customers)), "custMobile": number}
                    state.customers[(keyword, number)] = customer
                customer["optinStatus"] = 5 if method == "optoutcustomer" else 3
                customer["timestamp"] = _now()
            return crmtext_xml(method, "200", "ok", dict(customer), shape=dict(state.shape))

    @app.post("/experience/api/xp-unsubscribe/opt-out")
    @paced.serves("experience")
    def experience_opt_out():
        body = request.get_json(silent=True)
        recipients = body.get("recipients") if isinstance(body, dict) else None
        fault = state.record_call("experience", "opt_out", records=recipients)
        if fault and fault["mode"] not in answers.APPLYING:
            return answers.experience_fault(fault, {"successes": {}, "errors": {}})
        if fault and fault["mode"] == "slow":
            time.sleep(fault["delay"])
        answer = experience_answer(recipients)
        return answers.after(fault, answer) if fault else answer

    def experience_answer(recipients) -> Response:
        if not _BEARER.match(request.headers.get("Authorization", "")):
            return Response('"unauthenticated"', status=401, content_type="application/json")
        if not isinstance(recipients, list) or len(recipients) > MAX_RECORDS:
            return Response(f'{{"error": "recipients must be a list of at most {MAX_RECORDS}"}}', status=400,
                            content_type="application/json")
        successes, errors = {}, {}
        received = _now()
        with state.lock:
            for i, record in enumerate(recipients):
                who = (record.get("email") or record.get("phone")) if isinstance(record, dict) else None
                if who:
                    successes[str(i)] = who
                    state.records.append((received, record))
                else:
                    errors[str(i)] = "email or phone is required"
        return jsonify({"successes": successes, "errors": errors})

    @app.get("/experience/api/xp-unsubscribe/retrieve-opt-out")
    def experience_retrieve():
        since, cursor = request.args.get("since"), request.args.get("cursor", "0")
        fault = state.record_call("experience", "retrieve", since=since)
        if fault and fault["mode"] not in answers.APPLYING:
            return answers.experience_fault(fault, {"recipients": [], "next_page_url": None})
        if fault and fault["mode"] == "slow":
            time.sleep(fault["delay"])
        if not _BEARER.match(request.headers.get("Authorization", "")):
            return jsonify("unauthenticated"), 401
        if not since or not cursor.isdigit():
            return jsonify({"error": "since is required, cursor must be a number"}), 400
        start = int(cursor)
        with state.lock:
            matching = [r for at, r in state.records if at >= since]
            size = state.page_size
        page = matching[start:start + size]
        more = start + size < len(matching)
        # Absolute and without since, like the vendor's published sample.
        next_url = f"{request.base_url}?cursor={start + size}" if more else None
        return jsonify({"recipients": page, "next_page_url": next_url})

    @app.get("/_sandbox/calls")
    def calls():
        crm = request.args.get("crm")
        with state.lock:
            found = [dict(c) for c in state.calls if crm in (None, c["crm"])]
        return jsonify({"calls": found})

    @app.post("/_sandbox/reset")
    def reset():
        with state.lock:
            state.reset()
        providers.store.reset()
        paced.reset()
        return jsonify({"reset": True})

    @app.post("/_sandbox/experience/records")
    def seed_experience_records():
        spec = request.get_json(silent=True)
        spec = spec if isinstance(spec, dict) else {}
        records, page_size, at = spec.get("records"), spec.get("page_size", PAGE_SIZE), spec.get("at") or _now()
        if (not isinstance(records, list) or not all(isinstance(r, dict) for r in records)
                or not isinstance(page_size, int) or page_size < 1 or not isinstance(at, str)):
            return jsonify({"error": "records is a list of objects, page_size a positive number, at a time"}), 400
        with state.lock:
            state.records.extend((at, record) for record in records)
            state.page_size = page_size
            stored = len(state.records)
        return jsonify({"records": stored, "page_size": page_size})

    @app.route("/_sandbox/moved", methods=["GET", "POST"])
    def moved():
        crm = request.args.get("crm", "")
        with state.lock:  # logged, not faulted: it shows a client that followed a redirect
            state.calls.append({"crm": crm, "method": "followed_redirect", "at": datetime.now(UTC).isoformat()})
        return answers.moved(crm)

    @app.post("/_sandbox/crmtext/shape")
    def crmtext_shape():
        spec = request.get_json(silent=True)
        spec = spec if isinstance(spec, dict) else {}
        shape = {"layout": spec.get("layout", "flat"), "status_tag": spec.get("status_tag", "optinStatus")}
        if shape["layout"] not in ("flat", "customer") or str(shape["status_tag"]).casefold() != "optinstatus":
            return jsonify({"error": "layout is flat or customer; status_tag is optinStatus in any case"}), 400
        with state.lock:
            state.shape = shape
        return jsonify(shape)

    @app.post("/_sandbox/faults")
    def add_faults():
        spec = request.get_json(silent=True) or {}
        try:
            fault = answers.parse(spec)
            crm = spec["crm"]
        except (KeyError, TypeError, ValueError):
            return jsonify({"error": f"crm and mode are required, mode in {answers.MODES}; count >= 1, "
                                     "delay, http_status and size_mb are numbers"}), 400
        if crm not in CRMS:
            return jsonify({"error": f"crm in {CRMS}"}), 400
        with state.lock:
            state.faults[crm].append(fault)
            pending = list(state.faults[crm])
        return jsonify({"crm": crm, "faults": pending})

    @app.delete("/_sandbox/faults")
    def clear_faults():
        with state.lock:
            for queue in state.faults.values():
                queue.clear()
        return jsonify({"faults": []})

    return app


def serve(host: str = "127.0.0.1", port: int = 9000) -> None:
    """Run the sandbox until SIGTERM or SIGINT (port 0 picks a free port, printed at start)."""
    server = make_server(host, port, create_sandbox_app(), threaded=True)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if on_main_thread:
        def stop(signum, frame):
            # shutdown() waits for serve_forever() to return, which runs on this very thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, stop)
    print(f"sandbox listening on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
