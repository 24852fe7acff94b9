"""Migrations (alembic): ``receiver migrate``, the tests and the benchmarks upgrade a database here.

Kept apart from db.py so the web process, which only asks whether a database is migrated
(db.is_migrated, against db.HEAD), never loads alembic and what it brings (mako, pygments,
every SQLAlchemy dialect): about 10 MB in each worker.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, identity_key: bytes | None = None) -> None:
    """Apply every migration; running it again does nothing. ``identity_key`` chains older signals (0010)."""
    config = alembic_config(url)
    config.attributes["identity_key"] = identity_key
    command.upgrade(config, "head")
