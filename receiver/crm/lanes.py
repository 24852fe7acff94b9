"""Lanes, one CRM account of one tenant each, and the delivery protocol serving each (add a CRM here)."""

from typing import NamedTuple

from ..settings import TenantConfig
from ..states import CRMTEXT, EXPERIENCE
from .crmtext import CrmTextDelivery
from .delivery import LaneDelivery
from .experience import ExperienceDelivery

PROTOCOLS = {EXPERIENCE: ExperienceDelivery, CRMTEXT: CrmTextDelivery}


class Lane(NamedTuple):
    crm: str
    tenant: str


class Protocols:
    """Each lane's protocol, made once so that its client's pooled connections are reused."""

    def __init__(self, tenants: dict[str, TenantConfig]):
        self.tenants = tenants
        self._made: dict[Lane, LaneDelivery] = {}

    def __getitem__(self, lane: Lane) -> LaneDelivery:
        """LookupError when the tenant, or its account at that CRM, has left the config."""
        if lane not in self._made:
            config = getattr(self.tenants.get(lane.tenant), lane.crm, None)
            if config is None:
                raise LookupError(f"tenant {lane.tenant!r} has no {lane.crm} settings in the config")
            self._made[lane] = PROTOCOLS[lane.crm](config)
        return self._made[lane]
