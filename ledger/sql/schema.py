"""SQL tables the journal is synced into (SQLAlchemy Core). Migrations in ledger/migrations mirror them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)


def _key(length: int) -> String:
    """An identifier column: bytewise order on PostgreSQL (migration 0002), plain text elsewhere."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

accounts = Table(
    "ledger_accounts", metadata,
    Column("account_id", _key(64), primary_key=True),
    Column("facility_id", String(128), nullable=False),
    Column("number_e164", String(16), nullable=False),
    Column("owner", String(512), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("posted", BigInteger, nullable=False),       # cents
    Column("held", BigInteger, nullable=False),         # cents
    Column("ver", BigInteger, nullable=False),          # per-account operation counter (sync guard)
    Column("updated_ts", BigInteger, nullable=False),   # ms since epoch
    Index("ix_ledger_accounts_facility_number", "facility_id", "number_e164"),
    postgresql_with={"fillfactor": 50},                 # room for in-place (HOT) updates: migration 0002
)

transfers = Table(
    "ledger_transfers", metadata,
    Column("account_id", _key(64), primary_key=True),
    Column("op_id", _key(160), primary_key=True),       # one posting per operation (idempotent sync)
    Column("kind", String(16), nullable=False),         # deposit capture settle refund adjust
    Column("amount", BigInteger, nullable=False),       # signed cents: + into the account, - out of it
    Column("posted_after", BigInteger, nullable=False),
    Column("ver", BigInteger, nullable=False),
    Column("hold_id", String(128), nullable=True),
    Column("note", String(512), nullable=False, default=""),       # source or reason
    Column("reference", String(512), nullable=False, default=""),
    Column("ts", BigInteger, nullable=False),
)

holds = Table(
    "ledger_holds", metadata,
    Column("account_id", _key(64), primary_key=True),
    Column("hold_id", _key(128), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    Column("captured", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),       # pending settled voided expired
    Column("expires_at", Float, nullable=False),        # epoch seconds (a lease time, not money)
    Column("review", Boolean, nullable=False, default=False),  # set by the reaper
    Column("meta", Text, nullable=False, default="{}"),
    Column("ver", BigInteger, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Index("ix_ledger_holds_status", "status"),
)

call_records = Table(
    "call_records", metadata,
    Column("call_id", String(128), primary_key=True),
    Column("facility_id", String(128), nullable=False),
    Column("inmate_id", String(128), nullable=False),
    Column("account_id", String(128), nullable=False),
    Column("dialled", String(128), nullable=False),
    Column("number_e164", String(128), nullable=False),
    Column("call_class", String(128), nullable=False),
    Column("outcome", String(128), nullable=False),
    Column("reason", String(128), nullable=False),
    Column("started_at", String(40), nullable=False),   # ISO-8601 UTC ("...Z") or empty
    Column("answered_at", String(40), nullable=False),
    Column("accepted_at", String(40), nullable=False),
    Column("ended_at", String(40), nullable=False),
    Column("billed_seconds", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),       # cents
    Column("recorded", Boolean, nullable=False),
    Column("privileged", Boolean, nullable=False),
    Column("jid", String(32), nullable=False),          # journal position: a later record wins
    Column("updated_ts", BigInteger, nullable=False),
    Index("ix_call_records_facility_started", "facility_id", "started_at"),
)

number_blocks = Table(
    "number_blocks", metadata,
    Column("facility_id", String(128), primary_key=True),
    Column("number_e164", String(16), primary_key=True),
    Column("blocked", Boolean, nullable=False),
    Column("source", String(512), nullable=False),
    Column("jid", String(32), nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
)

# One inmate's block of a number (ledger set_block with inmate_id); number_blocks is the whole facility's.
inmate_blocks = Table(
    "inmate_blocks", metadata,
    Column("facility_id", String(128), primary_key=True),
    Column("number_e164", String(16), primary_key=True),
    Column("inmate_id", String(128), primary_key=True),
    Column("blocked", Boolean, nullable=False),
    Column("source", String(512), nullable=False),
    Column("jid", String(32), nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
)

journal = Table(
    "ledger_journal", metadata,
    Column("partition", Integer, primary_key=True),
    Column("stream_id", _key(32), primary_key=True),     # a redelivered entry is the same row
    Column("scope", _key(300), nullable=False),
    Column("op", String(16), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("entry", Text, nullable=False),              # the whole entry (ledger.journal.decode reads it)
    Index("ix_ledger_journal_scope", "scope"),
)
