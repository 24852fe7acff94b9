"""Operating the service, end to end: /metrics across gunicorn's workers and the delivery worker,
the queue gauges, the JSON request lines, masked logs everywhere, and `receiver status`."""

import json
import re
import subprocess
import threading
import time

import requests
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from tests.e2e.stack import BIN, ROOT
from tests.e2e.test_sms import new_phone, new_sid, ten
from tests.helpers import PUBLIC_BASE_URL, TWILIO_TOKEN

SIGNALS = "receiver_signals_received_total"
ACCEPTED = {"source": "twilio", "kind": "twilio", "outcome": "accepted"}


def scrape(stack) -> dict[tuple[str, frozenset], float]:
    # A fresh connection each time, so gunicorn may hand the scrape to either worker.
    response = requests.get(stack.web_url + "/metrics", timeout=10, headers={"Connection": "close"})
    assert response.status_code == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def stop_without_keepalive(stack, phone: str):
    params = stack.twilio_params("STOP", phone, new_sid())
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_BASE_URL + "/hooks/twilio", params)
    return requests.post(stack.web_url + "/hooks/twilio", data=params, timeout=15,
                         headers={"X-Twilio-Signature": signature, "Connection": "close"})


def test_a_signed_stop_shows_in_metrics(stack):
    stack.idle()
    before = scrape(stack)
    assert ("receiver_queue_depth", frozenset()) in before
    assert ("receiver_queue_oldest_pending_age_seconds", frozenset()) in before
    assert ("receiver_deliveries_dead", frozenset()) in before
    assert value(before, "receiver_database_up") == 1
    assert value(before, "receiver_queue_depth") == 0  # every earlier delivery is settled, none counted

    phone = new_phone()
    assert stack.sms("STOP", phone, new_sid()).status_code == 200
    after = scrape(stack)

    assert value(after, SIGNALS, **ACCEPTED) == value(before, SIGNALS, **ACCEPTED) + 1
    # At most this STOP's two deliveries, however far the worker got (exact counts: test_processes.py).
    assert value(after, "receiver_queue_depth") in (0, 1, 2)


def test_counts_add_up_across_gunicorn_workers(stack):
    before = value(scrape(stack), SIGNALS, **ACCEPTED)
    answers = []

    def send():
        for _ in range(5):
            answers.append(stop_without_keepalive(stack, new_phone()).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200] * 20
    # Whichever worker answers a scrape, it reports every worker's count.
    for _ in range(6):
        assert value(scrape(stack), SIGNALS, **ACCEPTED) == before + 20


def test_the_worker_counts_reach_metrics_through_the_shared_directory(stack):
    phone = new_phone()
    stack.sms("STOP", phone, new_sid())
    stack.settled(phone)
    stack.idle()

    samples = scrape(stack)

    assert value(samples, "receiver_delivery_attempts_total", crm="crmtext", outcome="ok") >= 1
    assert value(samples, "receiver_delivery_attempts_total", crm="experience", outcome="ok") >= 1
    assert value(samples, "receiver_delivery_latency_seconds_count", crm="crmtext") >= 1
    assert value(samples, "receiver_queue_depth") == 0


def test_signature_failures_are_counted(stack):
    name = "receiver_signature_failures_total"
    before = value(scrape(stack), name, source="twilio")

    answer = stack.post_twilio(stack.twilio_params("STOP", new_phone(), new_sid()), signature="bm9wZQ==")

    assert answer.status_code == 401
    assert value(scrape(stack), name, source="twilio") == before + 1


def test_request_lines_are_json_and_no_log_holds_a_full_email_or_phone(stack):
    phone, email = new_phone(), "ops.guest@example.com"
    started = time.perf_counter()
    answer = stack.post_twilio(stack.twilio_params("STOP", phone, new_sid()),
                               headers={"X-Request-ID": "heroku-request-0001"})
    wall_ms = (time.perf_counter() - started) * 1000
    stack.http.post(stack.web_url + "/forms/unsubscribe", data={"tenant": "grand", "email": email}, timeout=10)
    stack.http.post(stack.web_url + "/hooks/crmtext", params={"token": "guess"}, data={"mobileNum": ten(phone)},
                    timeout=10)
    stack.settled(phone)
    stack.settled(email)

    assert answer.headers["X-Request-ID"] == "heroku-request-0001"
    web_log = (stack.tmp / "web.log").read_text()
    lines = [json.loads(line) for line in web_log.splitlines() if line.startswith("{")]
    requests_logged = [line for line in lines if line.get("event") == "request"]
    [stop] = [line for line in requests_logged if line["request_id"] == "heroku-request-0001"]
    assert (stop["method"], stop["path"], stop["source"], stop["status"], stop["outcome"]) == (
        "POST", "/hooks/twilio", "twilio", 200, "accepted")
    assert 0 < stop["duration_ms"] < wall_ms  # measured inside the request the client timed
    refused = [line for line in requests_logged if line.get("source") == "crmtext" and line["status"] == 401]
    assert refused and all("?" not in line["path"] for line in requests_logged)
    assert all(line["request_id"] and "duration_ms" in line for line in requests_logged)

    logs = stack.logs()
    assert "guess" not in logs  # the query string never reaches a log
    assert email not in logs and "o***@example.com" in logs
    assert not re.search(r"\+1555\d{7}", logs)
    assert ten(phone) not in logs
    worker_lines = [json.loads(line) for line in (stack.tmp / "worker.log").read_text().splitlines()
                    if line.startswith("{")]
    assert any(line["event"] == "delivery attempt" and line["identity"].startswith("+1555***")
               for line in worker_lines)


def test_receiver_status_prints_the_queue(stack):
    done = subprocess.run([str(BIN / "receiver"), "status"], cwd=ROOT, env=stack.env, capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "database: ok"
    assert re.search(r"^queue_depth: \d+$", done.stdout, re.M)
    assert re.search(r"^oldest_pending_age_seconds: [\d.]+$", done.stdout, re.M)
    assert re.search(r"^deliveries: pending=\d+ done=[1-9]\d* skipped=\d+ dead=\d+$", done.stdout, re.M)


def test_receiver_status_without_a_database_exits_1(stack):
    env = {**stack.env, "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"}

    done = subprocess.run([str(BIN / "receiver"), "status"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 1
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1
    assert done.stdout == ""
