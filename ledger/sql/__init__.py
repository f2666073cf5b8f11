"""SQL side of the ledger: engines, schema and migrations (`migrate(url)` runs Alembic to head)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url

from ledger.sql.schema import (
    accounts,
    call_records,
    holds,
    inmate_blocks,
    journal,
    metadata,
    number_blocks,
    transfers,
)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

__all__ = ["accounts", "call_records", "holds", "inmate_blocks", "journal", "make_engine", "metadata",
           "migrate", "number_blocks", "transfers"]


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a busy timeout so the sync worker and the CLI can share a file."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            _private_file(Path(database))
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _private_file(path: Path) -> None:
    """The SQLite file holds balances and phone numbers: create it 0600 (missing folders 0700), tighten
    one an older version left 0644. SQLite gives its -wal and -shm files the database file's mode."""
    for folder in reversed([p for p in path.parents if not p.exists()]):
        folder.mkdir(mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    path.chmod(0o600)


def upgrade(url: str, script_location: str | Path, revision: str = "head") -> None:
    """Upgrade one package's Alembic chain (its env.py is `ledger.sql.alembic_env.run_env`) on the
    database at `url` to `revision`, in one transaction."""
    from alembic import command  # imported here: keep alembic off the hot import path
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` with the Alembic scripts shipped in ledger/migrations."""
    upgrade(url, MIGRATIONS, revision)
