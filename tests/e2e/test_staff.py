"""An agent created with the real CLI takes a phone-call opt-out through /v1; the worker gets it to CRM Text."""

import secrets
import subprocess

from tests.e2e.stack import BIN, ROOT, wait_until
from tests.e2e.test_sms import new_phone


def operator_cli(stack, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([str(BIN / "receiver"), "operator", *args], cwd=ROOT, env=stack.env, input=stdin,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_an_agents_phone_call_opt_out_reaches_crm_text(stack):
    email = f"desk-{secrets.token_hex(4)}@grand.example"
    operator_cli(stack, "add", email, "--role", "agent", "--tenant", "grand")
    token = operator_cli(stack, "token", email)
    headers = {"Authorization": f"Bearer {token}"}
    phone = new_phone()

    resp = stack.http.post(f"{stack.web_url}/v1/opt-outs", headers=headers, timeout=15, json={
        "tenant": "grand", "phone": phone, "states": ["sms_ban"], "channel": "phone-call",
        "note": "guest called reception"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["source"] == "staff" and resp.headers["webhook-id"] == resp.json()["receipt_id"]

    [call] = wait_until(lambda: stack.opt_out_calls(phone[2:]), timeout=30, message="optoutcustomer at CRM Text")
    assert call["method"] == "optoutcustomer"
    events = stack.http.get(f"{stack.web_url}/v1/events", params={"phone": phone}, headers=headers, timeout=15)
    [event] = events.json()["items"]
    assert (event["source"], event["operator"]) == ("staff", email)

    operator_cli(stack, "disable", email)
    assert stack.http.get(f"{stack.web_url}/v1/events", headers=headers, timeout=15).status_code == 401
