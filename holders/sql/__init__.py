"""SQL side of holders: engine, schema, and `migrate(url)` (its own Alembic chain and version table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from holders.sql.schema import (
    autoreload_reloads,
    autoreload_settings,
    holder_accounts,
    holder_codes,
    holders,
    metadata,
)
from ledger.sql import make_engine as _ledger_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

__all__ = ["autoreload_reloads", "autoreload_settings", "holder_accounts", "holder_codes", "holders",
           "make_engine", "metadata", "migrate"]


def make_engine(url: str) -> Engine:
    """The ledger's engine (WAL, busy timeout, 0600 file); on SQLite every transaction begins IMMEDIATE
    so that a read-then-write (rate limits, a code's attempts) cannot interleave with another writer."""
    engine = _ledger_engine(url)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` with the scripts in holders/migrations."""
    from ledger.sql import upgrade

    upgrade(url, MIGRATIONS, revision)
