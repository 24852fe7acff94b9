"""The long-lived objects a process builds once from its settings: engine, ledger, signers, sources."""

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Engine

from .ledger.db import make_engine
from .ledger.record import Ledger
from .links import LinkSigner
from .receipts import ReceiptSigner
from .settings import Settings
from .sources import KINDS, Source


@dataclass
class Services:
    settings: Settings
    engine: Engine
    ledger: Ledger
    signer: ReceiptSigner
    sources: dict[str, Source]
    links: LinkSigner

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            ledger=Ledger(engine, settings.tenants, settings.identity_key),
            signer=ReceiptSigner(settings.receipt_keys),
            sources={name: KINDS[cfg.kind](cfg, settings) for name, cfg in settings.sources.items()},
            links=LinkSigner(settings.secret_keys, settings.tenants, settings.public_base_url),
        )


def services() -> Services:
    return current_app.extensions["receiver"]
