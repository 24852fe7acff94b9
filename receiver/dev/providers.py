"""Fakes of the Twilio, SendGrid, Mailgun and Postmark list APIs that backfill reads, in their documented shapes.

``create_providers_blueprint(store)`` serves, each with the provider's auth and error bodies:

  GET /2010-04-01/Accounts/<sid>/Messages.json    To, From, DateSent / DateSent> / DateSent<, PageSize,
                                                  Page + PageToken (PA<sid> / PB<sid>); newest added first
  GET /v3/suppression/unsubscribes | spam_reports start_time, end_time, limit, offset; oldest first
  GET /v3/asm/suppressions                        every group unsubscribe, in one answer
  GET /v3/<domain>/unsubscribes | complaints      limit, page=first|last|next|previous & address
  GET /message-streams/<stream>/suppressions/dump fromdate, todate (whole days, both inclusive), emailaddress

and the controls a demo or a test seeds them with (JSON; one object, a list, or {"items": [...]}):

  POST /_sandbox/providers/reset        optional {"credentials": {...}}: forget items, faults, counts
  POST /_sandbox/providers/credentials  {"twilio": {"account_sid", "auth_token"}, "sendgrid": {"api_key"},
                                         "mailgun": {"api_key", "domain"}, "postmark": {"server_token"}}
  POST /_sandbox/providers/twilio/messages    {from, to, body, direction, status, date_sent, sid}
  POST /_sandbox/providers/sendgrid/<unsubscribes|spam_reports|group_unsubscribes>
                                              {email, created | created_at, group_id, group_name}
  POST /_sandbox/providers/mailgun/<unsubscribes|complaints>   {address, created_at, tags}
  POST /_sandbox/providers/postmark/<stream>  {email, reason, origin, created_at}
  POST /_sandbox/providers/faults       {"provider", "mode": "429" | "500" | "garbage", "count": 1, "retry_after": 1}
  GET  /_sandbox/providers              items per list, requests per provider

Seeded times are ISO 8601, RFC 2822 or unix seconds (default: now); naive ones are UTC.
"""

from datetime import date
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from .provider_store import MAILGUN_LISTS, SENDGRID_LISTS, ProviderStore, Text, same

TWILIO_ERRORS = {401: (20003, "Authenticate"), 404: (20404, "The requested resource was not found"),
                 429: (20429, "Too Many Requests"), 500: (20500, "Internal Server Error")}
POSTMARK_401 = ("The Server Token you provided in the X-Postmark-Server-Token request header was invalid. "
                "Please verify that you are using a valid token.")


def create_providers_blueprint(store: ProviderStore | None = None) -> Blueprint:
    """The four fake list APIs and their controls over ``store`` (a fresh one when omitted; also ``bp.store``)."""
    store = store or ProviderStore()
    bp = Blueprint("fake_providers", __name__)
    bp.store = store

    def gate(provider: str, authorized: bool) -> Response | None:
        """Refused credentials first, then any pending fault (counted as a request either way)."""
        if not authorized:
            store.take_fault(provider, consume=False)
            return _error(provider, 401, "authorization required")
        fault = store.take_fault(provider)
        if fault is None:
            return None
        if fault["mode"] == "garbage":
            return Response("<html><body>Bad Gateway</body></html>", 200, content_type="text/html")
        status = int(fault["mode"])
        answer = _error(provider, status, "Too Many Requests" if status == 429 else "Internal Server Error")
        if status == 429:
            answer.headers["Retry-After"] = str(fault["retry_after"])
        return answer

    def basic(user: str, password: str) -> bool:
        auth = request.authorization
        return bool(auth and auth.type == "basic" and same(auth.username, user) and same(auth.password, password))

    @bp.get("/2010-04-01/Accounts/<sid>/Messages.json")
    def twilio_messages(sid: str):
        creds = store.credentials["twilio"]
        if refused := gate("twilio", basic(creds["account_sid"], creds["auth_token"])):
            return refused
        if sid != creds["account_sid"]:
            return _error("twilio", 404, "The requested resource was not found")
        args = request.args
        filters = {k: args[k] for k in ("To", "From", "DateSent", "DateSent>", "DateSent<") if k in args}
        try:
            size, number = max(1, min(int(args.get("PageSize", 50)), 1000)), max(int(args.get("Page", 0)), 0)
            days = {k: date.fromisoformat(v[:10]) for k, v in filters.items() if k.startswith("DateSent")}
        except ValueError:
            return _error("twilio", 400, "Invalid PageSize, Page or DateSent")
        token = args.get("PageToken", "")

        def keep(t: Text) -> bool:
            return (filters.get("To", t.to) == t.to and filters.get("From", t.sender) == t.sender
                    and days.get("DateSent", t.day) == t.day and days.get("DateSent>", t.day) <= t.day
                    and days.get("DateSent<", t.day) >= t.day)

        page, more = store.texts_page(keep, token, size)

        def uri(page_no: int, page_token: str | None = None) -> str:
            query = {**filters, "PageSize": size, "Page": page_no, **({"PageToken": page_token} if page_token else {})}
            return f"{request.path}?{urlencode(query)}"

        return jsonify({
            "first_page_uri": uri(0), "end": number * size + len(page) - 1, "page": number, "page_size": size,
            "messages": [_message(sid, t) for t in page], "start": number * size,
            "next_page_uri": uri(number + 1, "PA" + page[-1].sid) if page and more else None,
            "previous_page_uri": uri(number - 1, "PB" + page[0].sid) if page and number > 0 else None,
            "uri": uri(number, token or None)})

    def bearer() -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and same(header[7:], store.credentials["sendgrid"]["api_key"])

    @bp.get("/v3/suppression/<any(unsubscribes, spam_reports):name>")
    def sendgrid_list(name: str):
        if refused := gate("sendgrid", bearer()):
            return refused
        args = request.args
        try:
            start, end = int(args.get("start_time", 0)), int(args.get("end_time", 2**62))
            limit, offset = max(1, min(int(args.get("limit", 500)), 500)), max(int(args.get("offset", 0)), 0)
        except ValueError:
            return _error("sendgrid", 400, "start_time, end_time, limit and offset must be integers")
        return jsonify(store.sendgrid_page(name, start, end, offset, limit))

    @bp.get("/v3/asm/suppressions")
    def sendgrid_groups():
        if refused := gate("sendgrid", bearer()):
            return refused
        return jsonify(store.sendgrid_groups())

    @bp.get("/v3/<domain>/<any(unsubscribes, complaints):name>")
    def mailgun_list(domain: str, name: str):
        creds = store.credentials["mailgun"]
        if refused := gate("mailgun", basic("api", creds["api_key"])):
            return refused
        if domain != creds["domain"]:
            return _error("mailgun", 404, f"Domain not found: {domain}")
        try:
            limit = max(1, min(int(request.args.get("limit", 100)), 10000))
        except ValueError:
            return _error("mailgun", 400, "limit must be an integer")
        which, address = request.args.get("page", "first"), request.args.get("address", "")
        page = store.mailgun_page(name, which, address, limit)
        base = f"{request.host_url.rstrip('/')}{request.path}"
        first, last = (page[0]["address"], page[-1]["address"]) if page else (address, address)
        return jsonify({"items": page, "paging": {
            "first": f"{base}?{urlencode({'limit': limit})}",
            "last": f"{base}?{urlencode({'page': 'last', 'limit': limit})}",
            "next": f"{base}?{urlencode({'page': 'next', 'address': last, 'limit': limit})}",
            "previous": f"{base}?{urlencode({'page': 'previous', 'address': first, 'limit': limit})}"}})

    @bp.get("/message-streams/<stream>/suppressions/dump")
    def postmark_dump(stream: str):
        token = request.headers.get("X-Postmark-Server-Token", "")
        if refused := gate("postmark", same(token, store.credentials["postmark"]["server_token"])):
            return refused
        try:
            first = date.fromisoformat(request.args.get("fromdate", "0001-01-01")[:10])
            last = date.fromisoformat(request.args.get("todate", "9998-12-31")[:10])
        except ValueError:
            return _error("postmark", 422, "fromdate and todate must be dates (YYYY-MM-DD)")
        rows = store.postmark_dump(stream, first, last, request.args.get("emailaddress", ""))
        if rows is None:
            return _error("postmark", 422, "The message stream for the provided 'ID' was not found.", code=1226)
        return jsonify({"Suppressions": rows})

    @bp.get("/_sandbox/providers")
    def summary():
        return jsonify(store.summary())

    @bp.post("/_sandbox/providers/<any(reset, credentials):what>")
    def configure(what: str):
        body = request.get_json(silent=True) or {}
        credentials = body.get("credentials", {}) if what == "reset" and isinstance(body, dict) else body
        if not isinstance(credentials, dict):
            return jsonify(error="credentials: expected an object"), 400
        try:
            store.reset(credentials) if what == "reset" else store.set_credentials(credentials)
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(store.summary())

    @bp.post("/_sandbox/providers/faults")
    def fault():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="body: expected an object"), 400
        try:
            store.add_fault(str(body.get("provider")), str(body.get("mode")), int(body.get("count", 1)),
                            int(body.get("retry_after", 1)))
        except (ValueError, TypeError) as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(store.summary()), 201

    @bp.post("/_sandbox/providers/<provider>/<name>")
    def seed(provider: str, name: str):
        body = request.get_json(silent=True)
        rows = body.get("items", [body]) if isinstance(body, dict) else body
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            return jsonify(error='body: expected an object, a list of objects or {"items": [...]}'), 400
        try:
            if provider == "twilio" and name == "messages":
                added = store.add_texts(rows)
            elif provider == "sendgrid" and name in SENDGRID_LISTS:
                added = store.add_sendgrid(name, rows)
            elif provider == "mailgun" and name in MAILGUN_LISTS:
                added = store.add_mailgun(name, rows)
            elif provider == "postmark":
                added = store.add_postmark(name, rows)
            else:
                return jsonify(error=f"path: no list {provider}/{name}"), 404
        except (ValueError, TypeError) as exc:
            return jsonify(error=str(exc)), 400
        return jsonify(added=added), 201

    return bp


def _message(account: str, t: Text) -> dict:
    """Twilio's Message resource as its list pages carry it (fields of twilio-python's recorded sample)."""
    uri = f"/2010-04-01/Accounts/{account}/Messages/{t.sid}"
    return {"account_sid": account, "api_version": "2010-04-01", "body": t.body, "date_created": t.sent,
            "date_sent": t.sent, "date_updated": t.sent, "direction": t.direction, "error_code": None,
            "error_message": None, "from": t.sender, "messaging_service_sid": None, "num_media": "0",
            "num_segments": "1", "price": None, "price_unit": "USD", "sid": t.sid, "status": t.status,
            "subresource_uris": {"media": f"{uri}/Media.json"}, "to": t.to, "uri": f"{uri}.json"}


def _error(provider: str, status: int, message: str, *, code: int = 0) -> Response:
    """Each provider's documented error body."""
    if provider == "twilio":
        code, text = TWILIO_ERRORS.get(status, (20001, message))
        body = {"code": code, "message": text, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status}
    elif provider == "sendgrid":
        body = {"errors": [{"field": None, "message": message}]}
    elif provider == "mailgun":
        if status == 401:
            return Response("Forbidden", 401, content_type="text/plain")
        body = {"message": message}
    else:
        body = {"ErrorCode": 10, "Message": POSTMARK_401} if status == 401 else {"ErrorCode": code, "Message": message}
    answer = jsonify(body)
    answer.status_code = status
    return answer
