"""The baseline for bench/ingest.py: a bare Flask app answering POST /hooks/twilio like receiver does.

It reads the form (so the body is parsed) and answers the same empty TwiML, without verifying,
storing or signing anything: what Flask + gunicorn cost on their own under the same settings.
"""

from flask import Flask, Response, request

app = Flask(__name__)
TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


@app.post("/hooks/twilio")
def twilio():
    request.form  # noqa: B018 - parse the body, as the real hook does
    return Response(TWIML, 200, content_type="text/xml; charset=utf-8")
