"""Real processes for end-to-end tests: the CRM sandbox, gunicorn (web) and workers, on one database."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from receiver.ledger.db import make_engine
from tests.helpers import CRMTEXT_TOKEN, PUBLIC_BASE_URL, TWILIO_TOKEN, base_env, config_toml

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def stop_all(processes) -> None:
    """SIGTERM each process group still running, then wait; a group that does not stop in 30 s is killed."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Stack:
    """sandbox + web + worker(s) as subprocesses; logs go to files under ``tmp``."""

    def __init__(self, tmp: Path, database_url: str, extra_config: str = "", service_config: str = ""):
        self.tmp = tmp
        self.database_url = database_url
        self.sandbox_port = free_port()
        self.web_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        config = tmp / "receiver.toml"
        config.write_text(config_toml(self.sandbox_url, extra_config, service_config))
        self.env = {**os.environ, **base_env(database_url, config), "RECEIVER_ADMIN_TOKEN": ADMIN_TOKEN,
                    "PORT": str(self.web_port), "WEB_CONCURRENCY": "2", "PYTHONUNBUFFERED": "1",
                    # Web and worker share one metrics folder, as under make run.
                    "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics")}
        self.processes: dict[str, subprocess.Popen] = {}
        self.engine = make_engine(database_url)
        self.http = requests.Session()

    # -- processes ------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes[name] = process
        return process

    def start_sandbox(self, timeout: float = 20.0):
        self._spawn("sandbox", [str(BIN / "receiver"), "sandbox", "--port", str(self.sandbox_port)])
        wait_until(lambda: self._ok(self.sandbox_url + "/_sandbox/calls"), timeout=timeout, message="sandbox")

    def start_web(self, timeout: float = 20.0):
        self._spawn("web", [str(BIN / "gunicorn"), "wsgi:app"])
        wait_until(lambda: self._ok(self.web_url + "/readyz"), timeout=timeout, message="web /readyz")

    def start_worker(self, name: str = "worker"):
        return self._spawn(name, [str(BIN / "receiver"), "worker"])

    def start(self):
        self.start_sandbox()
        self.start_web()
        self.start_worker()
        return self

    def kill(self, name: str, sig: int = signal.SIGKILL):
        process = self.processes.pop(name)
        os.killpg(process.pid, sig)
        process.wait(timeout=30)
        return process.returncode

    def stop(self):
        stop_all(list(self.processes.values()))
        self.processes.clear()
        self.engine.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.tmp.glob("*.log")))

    def _ok(self, url: str) -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    # -- senders --------------------------------------------------------------------------------

    def twilio_params(self, body: str, phone: str, sid: str, **extra) -> dict:
        return {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": phone,
                "To": "+15559876543", "Body": body, "NumMedia": "0", "ToCity": "", **extra}

    def post_twilio(self, params: dict, *, signature: str | None = None, token: str = TWILIO_TOKEN, headers=None,
                    source: str = "twilio"):
        path = f"/hooks/{source}"
        if signature is None:
            signature = RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, params)
        return self.http.post(self.web_url + path, data=params, timeout=15,
                              headers={"X-Twilio-Signature": signature, **(headers or {})})

    def sms(self, body: str, phone: str, sid: str, **extra):
        return self.post_twilio(self.twilio_params(body, phone, sid, **extra))

    def post_crmtext(self, fields: dict, token: str = CRMTEXT_TOKEN):
        return self.http.post(f"{self.web_url}/hooks/crmtext", params={"token": token}, data=fields, timeout=15)

    # -- the sandbox and the database -----------------------------------------------------------

    def calls(self, crm: str) -> list[dict]:
        return self.http.get(f"{self.sandbox_url}/_sandbox/calls", params={"crm": crm}, timeout=5).json()["calls"]

    def opt_out_calls(self, ten_digits: str) -> list[dict]:
        return [c for c in self.calls("crmtext")
                if c.get("method") == "optoutcustomer" and c.get("phone_number") == ten_digits]

    def experience_records(self, phone: str) -> list[dict]:
        return [r for c in self.calls("experience") if c.get("method") == "opt_out" and not c.get("fault")
                for r in c.get("records") or [] if r.get("phone") == phone]

    def fault(self, crm: str, mode: str, count: int = 1, **extra):
        """The sandbox's next ``count`` calls to ``crm`` fail, whoever they are for: on an idle queue,
        so only the deliveries the test makes next meet the fault, not an earlier test's."""
        self.idle()
        self.http.post(f"{self.sandbox_url}/_sandbox/faults", json={"crm": crm, "mode": mode, "count": count, **extra},
                       timeout=5).raise_for_status()

    def clear_faults(self):
        self.http.delete(f"{self.sandbox_url}/_sandbox/faults", timeout=5)

    def query(self, sql: str, **params) -> list:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).all()

    def deliveries(self, identity: str) -> list:
        return self.query("SELECT crm, status, reason, attempts, last_error FROM deliveries "
                          "WHERE identity = :identity ORDER BY id", identity=identity)

    def pending(self) -> int:
        return self.query("SELECT count(*) FROM deliveries WHERE status = 'pending'")[0][0]

    def idle(self, timeout: float = 60.0):
        """Wait until no delivery at all is pending (the worker must be running)."""
        wait_until(lambda: self.pending() == 0, timeout=timeout, message="an idle delivery queue")

    def settled(self, identity: str, timeout: float = 30.0):
        """Wait until no delivery for ``identity`` is pending; returns them."""
        return wait_until(lambda: (rows := self.deliveries(identity)) and all(r.status != "pending" for r in rows)
                          and rows, timeout=timeout, message=f"deliveries of {identity} to settle")
