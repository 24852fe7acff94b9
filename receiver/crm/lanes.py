"""Lanes, one CRM account of one tenant each, and the delivery protocol serving each (add a CRM here)."""

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
