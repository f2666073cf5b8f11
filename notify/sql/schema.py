"""Outbox tables (SQLAlchemy Core). Times are epoch milliseconds, as in the ledger's and holders' tables."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
})

# One row per thing that happened; the unique dedupe key is what makes a second enqueue a no-op.
events = Table(
    "notify_events", metadata,
    Column("event_id", String(40), primary_key=True),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("holder_id", String(40), nullable=False),
    Column("facility_id", String(128), nullable=False),
    Column("number_e164", String(16), nullable=False),
    Column("payload", Text, nullable=False),            # JSON, never a secret
    Column("language", String(2), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("fanned_out", Boolean, nullable=False),
    Index("ix_notify_events_pending", "fanned_out", "created_ts"),
)

# One row per (event, channel, address): the unit that is claimed, sent, retried.
messages = Table(
    "notify_messages", metadata,
    Column("message_id", String(40), primary_key=True),
    Column("event_id", String(40), nullable=False),
    Column("channel", String(8), nullable=False),       # sms | email | call
    Column("address", String(254), nullable=False),
    Column("language", String(2), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("quiet_start", Integer, nullable=False),     # minutes after local midnight; start == end: none
    Column("quiet_end", Integer, nullable=False),
    Column("state", String(8), nullable=False),         # pending sending sent failed skipped
    Column("reason", String(64), nullable=False),       # why skipped / failed / held
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ts", BigInteger, nullable=False),
    Column("lease_owner", String(64), nullable=False),
    Column("lease_until_ts", BigInteger, nullable=False),
    Column("uncertain", Boolean, nullable=False),       # a send may have reached the provider unrecorded
    Column("first_attempt_ts", BigInteger, nullable=False),
    Column("last_error", String(300), nullable=False),
    Column("provider_id", String(80), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Column("sent_ts", BigInteger, nullable=True),
    Index("ix_notify_messages_due", "state", "next_attempt_ts"),
    Index("ix_notify_messages_address_sent", "channel", "address", "sent_ts"),
    Index("uq_notify_messages_fanout", "event_id", "channel", "address", unique=True),
)

# Opt-outs the recipients told us directly (SMS STOP, an unsubscribe link, a provider's 21610).
optouts = Table(
    "notify_optouts", metadata,
    Column("channel", String(8), primary_key=True),
    Column("address", String(254), primary_key=True),
    Column("opted_out", Boolean, nullable=False),
    Column("source", String(32), nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
)
