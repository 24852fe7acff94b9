"""`receiver backfill` end to end: a STOP texted while the web process is down (only in the sandbox's Twilio
message log, seeded by `receiver demo sms --missed`) is found by the real command and delivered to CRM Text once."""

import subprocess

import requests

from tests.e2e.stack import BIN, ROOT

# It stops the web process: a stack of its own. The worker's schedule is off so only the command reads the log.
OWN_STACK = True
OURS, PHONE = "+15550001111", "+15557771234"
EXTRA_CONFIG = f"""
[backfill]
every_minutes = 0

[sources.sms]
kind = "twilio"
tenant = "grand"
auth_token = "env:TWILIO_AUTH_TOKEN"
backfill = {{ account_sid = "AC{'0' * 32}", to = ["{OURS}"], base_url = "SANDBOX_URL" }}
"""


def receiver(stack, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "receiver"), *args], cwd=ROOT, env=stack.env, capture_output=True, text=True,
                          timeout=120)


def test_a_stop_missed_while_web_was_down_is_found_by_backfill_and_delivered(stack):
    stack.kill("web")
    try:  # Twilio's webhook finds nobody listening and gives up
        requests.post(f"{stack.web_url}/hooks/sms", data={"Body": "STOP"}, timeout=2)
        raise AssertionError("the web process still answers")
    except requests.ConnectionError:
        pass
    seeded = receiver(stack, "demo", "sms", "--missed", "--source", "sms", "STOP", PHONE)
    assert seeded.returncode == 0, seeded.stderr
    stack.start_web()

    first = receiver(stack, "backfill")

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("sms: since ")
    assert first.stdout.strip().endswith("1 pages, 1 items recorded (1 new), 1 recovered, 0 skipped; complete")
    assert PHONE not in first.stderr  # the warning names the guest masked
    assert "backfill sms recovered sms_ban" in first.stderr
    assert [(r.crm, r.status) for r in stack.settled(PHONE) if r.crm == "crmtext"] == [("crmtext", "done")]
    assert len(stack.opt_out_calls(PHONE[2:])) == 1
    [detail] = [row[0] for row in stack.query("SELECT detail FROM signals WHERE phone = :p", p=PHONE)]
    assert "backfill" in str(detail)

    again = receiver(stack, "backfill", "--source", "sms")

    assert again.returncode == 0, again.stderr
    assert "(0 new), 0 recovered" in again.stdout
    assert len(stack.opt_out_calls(PHONE[2:])) == 1
