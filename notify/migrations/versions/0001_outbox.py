"""Outbox tables: notify_events, notify_messages, notify_optouts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_events",
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("fanned_out", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_notify_events"),
        sa.UniqueConstraint("dedupe_key", name="uq_notify_events_dedupe_key"),
    )
    op.create_index("ix_notify_events_pending", "notify_events", ["fanned_out", "created_ts"])
    op.create_table(
        "notify_messages",
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("quiet_start", sa.Integer, nullable=False),
        sa.Column("quiet_end", sa.Integer, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_ts", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        sa.Column("lease_until_ts", sa.BigInteger, nullable=False),
        sa.Column("uncertain", sa.Boolean, nullable=False),
        sa.Column("first_attempt_ts", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.String(300), nullable=False),
        sa.Column("provider_id", sa.String(80), nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.Column("sent_ts", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("message_id", name="pk_notify_messages"),
    )
    op.create_index("ix_notify_messages_due", "notify_messages", ["state", "next_attempt_ts"])
    op.create_index("ix_notify_messages_address_sent", "notify_messages", ["channel", "address", "sent_ts"])
    op.create_index("uq_notify_messages_fanout", "notify_messages", ["event_id", "channel", "address"],
                    unique=True)
    op.create_table(
        "notify_optouts",
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("opted_out", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("channel", "address", name="pk_notify_optouts"),
    )


def downgrade() -> None:
    op.drop_table("notify_optouts")
    op.drop_table("notify_messages")
    op.drop_table("notify_events")
