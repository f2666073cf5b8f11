"""SQL side of payments: the tables and their own Alembic chain (version table
``payments_alembic_version``), so the ledger and other packages can migrate the same database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table

from ledger.sql import make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = MetaData()

methods = Table(
    "payment_methods", metadata,
    Column("method_id", String(40), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("add_key", String(160), nullable=False, unique=True),
    Column("gateway", String(32), nullable=False),
    Column("token", String(128), nullable=False),
    Column("brand", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("removed_at", Float, nullable=True),
)

charges = Table(
    "payment_charges", metadata,
    Column("key", String(160), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("method_id", String(40), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("charge_id", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# The payment trail of the 800 line (payments/trail_sync.py copies it from Redis): one row per attempt
# (gateway key) and one per state transition. Never card number, expiry or CVV: last four and brand only.
attempts = Table(
    "payment_attempts", metadata,
    Column("attempt_key", String(160), primary_key=True),   # the gateway idempotency key
    Column("channel", String(16), nullable=False),          # "phone" (the 800 line's deposits)
    Column("facility_id", String(128), nullable=False),
    Column("number_e164", String(16), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("last4", String(4), nullable=False),
    Column("brand", String(16), nullable=False),
    Column("gateway", String(32), nullable=False),
    Column("auth_id", String(64), nullable=False),           # the gateway's transaction/authorization id
    Column("state", String(16), nullable=False),             # the newest (final states are never replaced)
    Column("reason", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_entry", String(32), nullable=False),        # journal id of the newest transition applied
    Index("ix_payment_attempts_state", "state", "updated_at"),
)

transitions = Table(
    "payment_transitions", metadata,
    Column("entry_id", String(32), primary_key=True),        # the Redis journal entry: copied once
    Column("attempt_key", String(160), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("auth_id", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
)

__all__ = ["attempts", "charges", "make_engine", "metadata", "methods", "migrate", "transitions"]


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the payments tables at ``url`` to ``revision``."""
    from ledger.sql import upgrade

    upgrade(url, MIGRATIONS, revision)
