"""The chaos benchmark's senders: steady signed STOPs (Twilio) and partner batches (Standard Webhooks),
each sent at its scheduled time and retried as its sender would while the service is failing.

Signatures come from the senders' own libraries (twilio's RequestValidator, standardwebhooks'
Webhook), never from our code. A retry is the same message: the same MessageSid and parameters
(Twilio), the same ``webhook-id`` and body, signed afresh (Standard Webhooks). A 503, another 5xx or a
connection error (or a timeout: 15 s, Twilio's; 30 s for a batch) is retried after 1, 2, then every
5 s (Standard Webhooks senders wait 5 s before their first retry, Twilio does not retry by itself),
on the next web process, as a load balancer would; a 4xx is a refusal (counted, never retried). Every answer 200 is an acknowledgement:
the opt-outs it carries must reach the CRMs.
"""

import itertools
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from standardwebhooks import Webhook
from twilio.request_validator import RequestValidator

BACKOFF = (1.0, 2.0, 5.0)


@dataclass
class Ack:
    at: float  # time.time() of the answer 200
    kind: str  # "stop" or "batch"
    phones: list[str] = field(default_factory=list)  # E.164
    emails: list[str] = field(default_factory=list)
    attempts: int = 1


class Senders:
    """``stops_per_second`` STOPs and ``batches_per_second`` batches of ``batch_size`` opt-out events,
    spread over ``web_urls``, until ``stop()``."""

    def __init__(self, web_urls: list[str], *, public_base_url: str, twilio_token: str, partner_secret: str,
                 stops_per_second: float, batches_per_second: float, batch_size: int):
        self.web_urls, self.public_base_url = web_urls, public_base_url
        self.validator, self.webhook = RequestValidator(twilio_token), Webhook(partner_secret)
        self.stops_per_second, self.batches_per_second, self.batch_size = (
            stops_per_second, batches_per_second, batch_size)
        self.acks: list[Ack] = []
        self.answers: Counter = Counter()  # every answer: its status code, or the client's error (ReadTimeout …)
        self.seconds: list[float] = []  # how long each answer 200 took
        self.refused: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(256, thread_name_prefix="sender")
        self.numbers = itertools.count(1)
        self.next_web = itertools.count()
        self.local = threading.local()
        self.threads: list[threading.Thread] = []

    def start(self) -> "Senders":
        for rate, job in ((self.stops_per_second, self._stop), (self.batches_per_second, self._batch)):
            if rate > 0:
                thread = threading.Thread(target=self._schedule, args=(rate, job), daemon=True)
                thread.start()
                self.threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop scheduling; wait until every message sent so far is acknowledged or refused."""
        self.stopping.set()
        for thread in self.threads:
            thread.join()
        self.pool.shutdown(wait=True)

    def _schedule(self, rate: float, job) -> None:
        start, n = time.monotonic(), 0
        while not self.stopping.is_set():
            self.pool.submit(job)
            n += 1
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    # -- one message each ---------------------------------------------------------------------------

    def _stop(self) -> None:
        n = next(self.numbers)
        phone = f"+1555{2000000 + n:07d}"
        sid = f"SM{n:032x}"
        params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": phone,
                  "To": "+15559876543", "Body": "STOP", "NumMedia": "0"}
        path = "/hooks/twilio"
        signature = self.validator.compute_signature(self.public_base_url + path, params)

        def send(url: str) -> requests.Response:
            return self._http().post(url + path, data=params, headers={"X-Twilio-Signature": signature}, timeout=15)

        self._deliver(send, Ack(0.0, "stop", phones=[phone]))

    def _batch(self) -> None:
        n = next(self.numbers)
        emails = [f"guest-{n}-{i}@example.com" for i in range(self.batch_size)]
        events = [{"id": f"evt_{n}_{i}", "type": "consent.opt_out", "occurred_at": "2026-11-22T10:15:00Z",
                   "customer": {"email": email}, "states": ["marketing_decline"]} for i, email in enumerate(emails)]
        body, msg_id = json.dumps({"events": events}), f"msg_{n}"

        def send(url: str) -> requests.Response:
            now = datetime.now(UTC)
            headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": self.webhook.sign(msg_id, now, body), "Content-Type": "application/json"}
            return self._http().post(url + "/hooks/partner", data=body.encode(), headers=headers, timeout=30)

        self._deliver(send, Ack(0.0, "batch", emails=emails))

    def _deliver(self, send, ack: Ack) -> None:
        for attempt in itertools.count(1):
            url = self.web_urls[next(self.next_web) % len(self.web_urls)]
            started = time.monotonic()
            try:
                status = send(url).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            with self.lock:
                self.answers[status] += 1
                if status == 200:
                    self.seconds.append(time.monotonic() - started)
                    ack.at, ack.attempts = time.time(), attempt
                    self.acks.append(ack)
                    return
                if isinstance(status, int) and status < 500:
                    self.refused.append((ack.kind, status))
                    return
            time.sleep(BACKOFF[min(attempt, len(BACKOFF)) - 1])

    def _http(self) -> requests.Session:
        """One session (kept-alive connections) per sender thread."""
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        return session
