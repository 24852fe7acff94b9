"""Start-up as the platform sees it: bad settings stop a process with one line; no database is not fatal."""

import subprocess

import pytest
import requests

from tests.e2e.stack import BIN, ROOT, Stack, wait_until
from tests.helpers import TWILIO_TOKEN


@pytest.mark.parametrize("argv", [[str(BIN / "gunicorn"), "wsgi:app"], [str(BIN / "receiver"), "worker"],
                                  [str(BIN / "receiver"), "db", "upgrade"]])
@pytest.mark.parametrize("breakage, named", [
    ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN"),
    ({"PORT": "eighty"}, "PORT"),
    ({"RECEIVER_ENV": "production", "SECRET_KEY": ""}, "SECRET_KEY"),
    ({"RECEIPT_SIGNING_KEY": "not-a-key"}, "RECEIPT_SIGNING_KEY"),
])
def test_a_bad_setting_stops_the_process_with_one_line(tmp_path, argv, breakage, named):
    stack = Stack(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    env = {**stack.env, **breakage}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert named in lines[0] and "Traceback" not in done.stderr


def test_web_starts_without_a_database_and_refuses_to_store(tmp_path):
    stack = Stack(tmp_path, "postgresql+psycopg://nobody@127.0.0.1:1/nowhere")
    stack._spawn("web", [str(BIN / "gunicorn"), "wsgi:app"])
    try:
        wait_until(lambda: stack._ok(stack.web_url + "/healthz"), message="web /healthz")
        assert requests.get(stack.web_url + "/readyz", timeout=5).status_code == 503
        answer = stack.sms("STOP", "+15550001111", "SM" + "0" * 32)
        assert answer.status_code == 503
        assert "webhook-signature" not in answer.headers
        assert "retry" in answer.json()["error"]
    finally:
        stack.stop()
    assert TWILIO_TOKEN not in stack.logs()
