"""``make run``: development secrets in instance/, then the sandbox CRMs, the web process and the worker together,
with the example config."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from ..keys import keep_in_instance
from .demo import sandbox_twilio_account

SANDBOX = "http://127.0.0.1:9000"
SANDBOX_ACCOUNT_SID = "AC" + "0" * 32  # receiver.example.toml's sources.twilio.backfill.account_sid

DEMO_SECRETS = {
    "RECEIVER_CONFIG_FILE": "receiver.example.toml",
    "TWILIO_AUTH_TOKEN": "demo-twilio-auth-token",
    "CRMTEXT_CALLBACK_TOKEN": "demo-callback-token",
    "XP_PARTNER_TOKEN": "demo-partner",
    "XP_HOTEL_TOKEN": "demo-hotel",
    "CRMTEXT_USER": "demo",
    "CRMTEXT_PASSWORD": "demo-password",
    "BOOKING_ENGINE_SECRET": "whsec_ZGVtby1ib29raW5nLWVuZ2luZS1zZWNyZXQtMzI=",
    # SendGrid's own published test key (inbound-formats.md, appendix A).
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1"
                                   "flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==",
    "MAILGUN_SIGNING_KEY": "demo-mailgun-signing-key",
    "POSTMARK_WEBHOOK_AUTH": "hooks:demo-postmark-password",
}


def main() -> None:
    env = {**DEMO_SECRETS, **os.environ}  # the children's environment: demo values under the real ones
    env.setdefault("PORT", "8000")
    env.setdefault("WEB_CONCURRENCY", "2")
    # Web and worker share one metrics folder, so the worker's counters show in /metrics too.
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="receiver-metrics-"))
    for path in keep_in_instance():  # what settings read outside production when SECRET_KEY etc. are unset
        print(f"made the development secret {path}", flush=True)
    bin_dir = Path(sys.executable).parent
    receiver = str(bin_dir / "receiver")
    subprocess.run([receiver, "db", "upgrade"], env=env, check=True)
    processes = [subprocess.Popen([receiver, "sandbox", "--port", "9000"], env=env)]
    _sandbox_knows_the_twilio_token(env["TWILIO_AUTH_TOKEN"])
    processes += [
        subprocess.Popen([str(bin_dir / "gunicorn"), "wsgi:app"], env=env),
        subprocess.Popen([receiver, "worker"], env=env),
    ]
    time.sleep(2)
    print(f"""
  receiver is running: web on http://localhost:{env['PORT']}, worker, CRM sandbox on http://127.0.0.1:9000
  In another terminal, text STOP as a guest (signed as Twilio signs it):
      .venv/bin/receiver demo sms STOP +15551234567
  then see what reached the sandbox CRMs:
      curl -s http://127.0.0.1:9000/_sandbox/calls
  Or a STOP whose webhook was lost (only in the sandbox's Twilio message log), then the backfill that finds it:
      .venv/bin/receiver demo sms --missed STOP +15551234568
      .venv/bin/receiver demo backfill
  The console (http://localhost:{env['PORT']}/console): its first operator, with a password on stdin:
      .venv/bin/receiver demo operator add desk@grand.example --role agent --tenant grand --password-stdin
  Ctrl-C stops everything.
""", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _sandbox_knows_the_twilio_token(auth_token: str) -> None:
    """The sandbox's Twilio account answers to the example source's auth token, so the worker's first
    scheduled backfill reads its message list instead of being refused (401)."""
    for _ in range(100):
        try:
            return sandbox_twilio_account(SANDBOX, SANDBOX_ACCOUNT_SID, auth_token, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.1)
    print(f"the sandbox did not answer at {SANDBOX}: the scheduled Twilio backfill will be refused", flush=True)


if __name__ == "__main__":
    main()
