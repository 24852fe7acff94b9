"""The ``alerts`` lane: each queued alert POSTed to ``[alerts] url``, signed with Standard Webhooks.

``webhook-id`` is ``alert_<delivery id>``, the same on every retry, so a receiver that keeps the
ids it has seen (as Standard Webhooks asks) acts on an alert once even if a retry follows a call
whose answer was lost.

The url's path and query are kept out of what a failure stores and logs (``last_error``, attempts,
the worker's log line): an operations endpoint often carries its token there (Slack-style hooks).
"""

import json
from datetime import UTC, datetime

from standardwebhooks import Webhook

from .. import clock
from ..settings import AlertsConfig
from .delivery import Books, Outcome, Report
from .errors import CrmError, check_response
from .transport import call, new_session


class AlertsDelivery:
    # One alert per unit, one at a time: alerts are few, and their order should be kept.
    unit, concurrency, max_per_second = 1, 1, None

    def __init__(self, config: AlertsConfig):
        self.config = config
        self.webhook = Webhook(config.secret)
        self.session = new_session()

    def deliver(self, unit: list, books: Books) -> list[Report]:
        [row] = unit
        started = books.start(row)
        if started is None:
            return []
        body = json.dumps(row.payload, separators=(",", ":"))
        message_id, at = f"alert_{row.id}", datetime.fromtimestamp(int(clock.now()), UTC)
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(int(at.timestamp())),
                   "webhook-signature": self.webhook.sign(message_id, at, body)}
        try:
            reply = call(self.session, "POST", self.config.url, timeout=self.config.timeout, headers=headers,
                         data=body.encode(), hide_path=True)
            check_response(reply)
        except CrmError as error:  # retried after the backoff, as a CRM's deliveries are
            return [Report(row, Outcome.of(error), error=error, attempt_id=started.attempt_id, started=started.at)]
        return [Report(row, Outcome.OK, http_status=reply.status_code, attempt_id=started.attempt_id,
                       started=started.at)]
