"""The sandbox's wire formats: CRM Text's credential and documented XML answers, and the broken,
slow and hostile answers a CRM (or what is in front of it) may give, as scripted faults."""

import base64
import binascii
import json
import time
import zlib
from functools import cache
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from flask import Response, jsonify

MODES = ("500", "429", "400", "slow", "malformed", "truncated", "billion_laughs", "external_entity",
         "502_html", "drip", "gzip_bomb", "redirect", "answer")
# These apply the call, then answer badly: "timed out (or failed), but it happened".
APPLYING = ("slow", "502_html", "drip")

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<response op="optoutcustomer" status="200" message="&lol9;"/>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<response op="optoutcustomer" status="200" message="&xxe;"/>
"""
# What nginx in front of an application answers when the application's answer did not reach it.
BAD_GATEWAY = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
               "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


def basic_keyword(header: str) -> str | None:
    """The KEYWORD of a Basic ``user:password:KEYWORD`` credential, or None if malformed."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, rest = text.partition(":")
    password, _, keyword = rest.rpartition(":")
    return keyword if user and password and keyword else None


def crmtext_xml(method: str, status: str, message: str, customer: dict | None = None,
         http_status: int = 200, shape: dict | None = None) -> Response:
    inner = ""
    if customer is not None:
        shape = shape or {"layout": "flat", "status_tag": "optinStatus"}
        fields = {"timestamp": customer["timestamp"], "custName": ""}
        if method == "getcustomerinfo":
            fields = {"custId": customer["custId"], "subacct": "12345", **fields,
                      shape["status_tag"]: customer["optinStatus"], "custMobile": customer["custMobile"]}
        inner = "".join(f"<{k}>{escape(str(v))}</{k}>" if v != "" else f"<{k}/>" for k, v in fields.items())
        if shape["layout"] == "customer":
            inner = f"<customer>{inner}</customer>"
    body = f"<response op={quoteattr(method)} status={quoteattr(status)} message={quoteattr(message)}>{inner}</response>"
    return Response(body, status=http_status, content_type="text/xml; charset=utf-8")


def parse(spec: dict) -> dict[str, Any]:
    """A fault from the control API's JSON; KeyError, TypeError or ValueError when malformed."""
    fault = {"mode": str(spec["mode"]), "count": int(spec.get("count", 1)),
             "retry_after": spec.get("retry_after", 1), "delay": float(spec.get("delay", 1)),
             "body": str(spec.get("body", "")), "http_status": int(spec.get("http_status", 200)),
             "size_mb": int(spec.get("size_mb", 300))}
    if fault["mode"] not in MODES or fault["count"] < 1 or not 100 <= fault["http_status"] <= 599:
        raise ValueError(fault["mode"])
    if not 1 <= fault["size_mb"] <= 1024:
        raise ValueError("size_mb")
    return fault


def crmtext_fault(fault: dict, method: str) -> Response:
    """The answer of a fault that does not apply the call (CRM Text's XML world)."""
    mode = fault["mode"]
    if mode == "400":
        return crmtext_xml(method, "400", "bad request (sandbox fault)", http_status=400)
    body = {
        "malformed": "<response op=optoutcustomer status=200 <<<",
        "truncated": f'<response op="{method}" status="200" message="ok"><customer><custId>1</cu',
        "billion_laughs": BILLION_LAUGHS,
        "external_entity": EXTERNAL_ENTITY,
    }.get(mode)
    if body is not None:
        return Response(body, status=200, content_type="text/xml; charset=utf-8")
    return _common(fault, "text/xml; charset=utf-8", f'<response op="{method}" status="200" message="ok"/>')


def experience_fault(fault: dict, normal: dict) -> Response | tuple:
    """The answer of a fault that does not apply the call (Experience's JSON world)."""
    mode = fault["mode"]
    if mode == "500":
        return jsonify({"error": "internal error (sandbox fault)"}), 500
    if mode == "429":
        return jsonify({"error": "too many requests"}), 429, {"Retry-After": str(fault["retry_after"])}
    if mode == "400":
        return jsonify({"error": "bad request (sandbox fault)"}), 400
    if mode in ("billion_laughs", "external_entity"):
        body = BILLION_LAUGHS if mode == "billion_laughs" else EXTERNAL_ENTITY
        return Response(body, status=200, content_type="application/xml")
    if mode in ("malformed", "truncated"):
        text = json.dumps(normal)
        body = "not json {" if mode == "malformed" else text[: len(text) // 2]
        return Response(body, status=200, content_type="application/json")
    return _common(fault, "application/json", json.dumps({"successes": {}, "errors": {}}))


def _common(fault: dict, content_type: str, success: str) -> Response:
    mode = fault["mode"]
    if mode == "500":
        return Response("Internal Server Error", status=500, content_type="text/plain")
    if mode == "429":
        return Response("Too Many Requests", status=429, content_type="text/plain",
                        headers={"Retry-After": str(fault["retry_after"])})
    if mode == "gzip_bomb":
        # ~300 KB on the wire that inflates to size_mb of zeros; sent whatever Accept-Encoding says.
        return Response(_bomb(fault["size_mb"]), status=200, content_type=content_type,
                        headers={"Content-Encoding": "gzip"})
    if mode == "redirect":
        # Followed, a 302 turns the POST into a GET, and this GET answers a success.
        return Response("", status=302, headers={"Location": "/_sandbox/moved?" + _query(content_type)})
    return Response(fault["body"], status=fault["http_status"], content_type=content_type)  # "answer"


def after(fault: dict, answer: Response) -> Response:
    """The answer of a fault that applied the call: a gateway's 502 page, or the real answer dripped."""
    if fault["mode"] == "502_html":
        return Response(BAD_GATEWAY, status=502, content_type="text/html")
    if fault["mode"] == "drip":
        body, delay = answer.get_data(), fault["delay"]

        def drip():
            for i in range(len(body)):
                time.sleep(delay)
                yield body[i:i + 1]

        return Response(drip(), status=answer.status_code, content_type=answer.content_type)
    return answer


def moved(crm: str) -> Response:
    """Where "redirect" points: a success-looking answer to the GET a followed redirect makes."""
    if crm == "crmtext":
        return Response('<response op="optoutcustomer" status="200" message="ok"/>', content_type="text/xml")
    return jsonify({"successes": {}, "errors": {}})


def _query(content_type: str) -> str:
    return "crm=crmtext" if "xml" in content_type else "crm=experience"


@cache
def _bomb(size_mb: int) -> bytes:
    pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    megabyte = b"\0" * (1 << 20)
    return b"".join(pack.compress(megabyte) for _ in range(size_mb)) + pack.flush()
