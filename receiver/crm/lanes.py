"""Lanes, one CRM account of one tenant each, the delivery protocol serving each (add a CRM here), and
LaneRun: what one lane holds in a worker process (its queue, its call slots, its pace)."""

import time
from collections import deque
from typing import NamedTuple

from ..settings import AlertsConfig, TenantConfig
from ..states import CRMTEXT, EXPERIENCE
from .alerts import AlertsDelivery
from .crmtext import CrmTextDelivery
from .delivery import LaneDelivery
from .experience import ExperienceDelivery

PROTOCOLS = {EXPERIENCE: ExperienceDelivery, CRMTEXT: CrmTextDelivery}
ALERTS = "alerts"  # ledger.alerts.ALERTS: the operational webhooks' lane


class Lane(NamedTuple):
    crm: str
    tenant: str


class Protocols:
    """Each lane's protocol, made once so that its client's pooled connections are reused."""

    def __init__(self, tenants: dict[str, TenantConfig], alerts: AlertsConfig | None = None):
        self.tenants, self.alerts = tenants, alerts
        self._made: dict[Lane, LaneDelivery] = {}

    def __getitem__(self, lane: Lane) -> LaneDelivery:
        """LookupError when the tenant, or its account at that CRM, has left the config."""
        if lane not in self._made and lane.crm == ALERTS:  # one [alerts] url for every tenant
            if self.alerts is None or self.alerts.url is None:
                raise LookupError("alerts: no [alerts] url in the config")
            self._made[lane] = AlertsDelivery(self.alerts)
        if lane not in self._made:
            config = getattr(self.tenants.get(lane.tenant), lane.crm, None)
            if config is None:
                raise LookupError(f"tenant {lane.tenant!r} has no {lane.crm} settings in the config")
            self._made[lane] = PROTOCOLS[lane.crm](config)
        return self._made[lane]


class LaneRun:
    """One lane's rows in this process: queued, and units in flight: in their call (at most
    ``concurrency``), or being finished once their call is over (as many again at most).

    It holds up to ``concurrency`` units more, queued (each waits about a call: well within its
    lease), and asks for more once it has room for ``concurrency`` units: claiming after every
    finished unit cost a transaction for each CRM Text delivery (bench/drain.py).
    """

    def __init__(self, lane: Lane, protocol: LaneDelivery):
        self.lane, self.protocol = lane, protocol
        self.queue: deque = deque()
        self.calling = 0  # units in their call: a CRM call slot each
        self.in_flight = 0  # units started and not yet finished (calling, or being finished)
        self.held = 0  # rows queued or in flight
        self.paused_until = 0.0  # time.monotonic(): after a failed call
        self.next_start = 0.0  # time.monotonic(): max_per_second's next slot

    def room(self) -> int:
        if self.paused_until > time.monotonic():
            return 0
        return 3 * self.protocol.unit * self.protocol.concurrency - self.held

    def wants_more(self) -> bool:
        return self.room() >= self.protocol.unit * self.protocol.concurrency

    def startable(self) -> bool:
        concurrency = self.protocol.concurrency
        return (bool(self.queue) and self.calling < concurrency and self.in_flight < 2 * concurrency
                and self.paused_until <= time.monotonic())

    def take_slot(self) -> float:
        """Seconds to wait before starting one more unit, under ``max_per_second``."""
        rate, now = self.protocol.max_per_second, time.monotonic()
        if rate is None:
            return 0.0
        start = max(now, self.next_start)
        self.next_start = start + 1 / rate
        return start - now
