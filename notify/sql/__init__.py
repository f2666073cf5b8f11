"""SQL side of notify: schema, `make_engine` and `migrate(url)` (own Alembic chain and version table)."""

from __future__ import annotations

from pathlib import Path

from holders.sql import make_engine
from notify.sql.schema import events, messages, metadata, optouts

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

__all__ = ["events", "make_engine", "messages", "metadata", "migrate", "optouts"]


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` with the scripts in notify/migrations."""
    from ledger.sql import upgrade

    upgrade(url, MIGRATIONS, revision)
