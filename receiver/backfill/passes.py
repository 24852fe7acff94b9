"""What every pass over a provider's own record holds: the ledger it records into, one pooled HTTP
session for the provider's API, and the sleep its retries wait with (tests pass a fake)."""

import time

import requests
from sqlalchemy import Engine

from ..crm.transport import new_session
from ..ledger.record import Ledger
from ..settings import Settings


class ReadBack:
    """The shared start of ``Backfiller`` (senders' providers) and ``Reconciler`` (Experience)."""

    def __init__(self, settings: Settings, engine: Engine, *, session: requests.Session | None = None,
                 sleep=time.sleep):
        self.settings = settings
        self.engine = engine
        self.ledger = Ledger(engine, settings.tenants, settings.identity_key)
        self.session = session or new_session()
        self.sleep = sleep
