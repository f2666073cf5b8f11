"""Ledger tables: accounts, transfers, holds, journal, call records, number blocks.

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
        "ledger_accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("posted", sa.BigInteger, nullable=False),
        sa.Column("held", sa.BigInteger, nullable=False),
        sa.Column("ver", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_ledger_accounts"),
    )
    op.create_index("ix_ledger_accounts_facility_number", "ledger_accounts", ["facility_id", "number_e164"])
    op.create_table(
        "ledger_transfers",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("op_id", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("posted_after", sa.BigInteger, nullable=False),
        sa.Column("ver", sa.BigInteger, nullable=False),
        sa.Column("hold_id", sa.String(128), nullable=True),
        sa.Column("note", sa.String(512), nullable=False),
        sa.Column("reference", sa.String(512), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "op_id", name="pk_ledger_transfers"),
    )
    op.create_table(
        "ledger_holds",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("hold_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("captured", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("review", sa.Boolean, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("ver", sa.BigInteger, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "hold_id", name="pk_ledger_holds"),
    )
    op.create_index("ix_ledger_holds_status", "ledger_holds", ["status"])
    op.create_table(
        "call_records",
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("inmate_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("dialled", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(128), nullable=False),
        sa.Column("call_class", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("answered_at", sa.String(40), nullable=False),
        sa.Column("accepted_at", sa.String(40), nullable=False),
        sa.Column("ended_at", sa.String(40), nullable=False),
        sa.Column("billed_seconds", sa.Integer, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("recorded", sa.Boolean, nullable=False),
        sa.Column("privileged", sa.Boolean, nullable=False),
        sa.Column("jid", sa.String(32), nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_call_records"),
    )
    op.create_index("ix_call_records_facility_started", "call_records", ["facility_id", "started_at"])
    op.create_table(
        "number_blocks",
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("jid", sa.String(32), nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("facility_id", "number_e164", name="pk_number_blocks"),
    )
    op.create_table(
        "ledger_journal",
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("stream_id", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(300), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("partition", "stream_id", name="pk_ledger_journal"),
    )
    op.create_index("ix_ledger_journal_scope", "ledger_journal", ["scope"])


def downgrade() -> None:
    for table in ("ledger_journal", "number_blocks", "call_records", "ledger_holds", "ledger_transfers",
                  "ledger_accounts"):
        op.drop_table(table)
