"""Alerts: holder_alert_prefs (quiet hours, channels off, kinds muted), holder_low_balance (per-account
threshold and channels) and holder_low_balance_alerts (one row per crossing alerted).

Revision ID: 0005
Revises: 0004 (0004_call_requests.py)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "holder_alert_prefs",
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("quiet_start", sa.Integer, nullable=False),
        sa.Column("quiet_end", sa.Integer, nullable=False),
        sa.Column("off_channels", sa.String(40), nullable=False),
        sa.Column("muted_kinds", sa.String(400), nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("holder_id", name="pk_holder_alert_prefs"),
        sa.ForeignKeyConstraint(["holder_id"], ["holders.holder_id"], name="fk_holder_alert_prefs_holder_id"),
    )
    op.create_table(
        "holder_low_balance",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("threshold_cents", sa.BigInteger, nullable=False),
        sa.Column("channels", sa.String(40), nullable=False),
        sa.Column("since_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_holder_low_balance"),
        sa.ForeignKeyConstraint(["holder_id"], ["holders.holder_id"], name="fk_holder_low_balance_holder_id"),
    )
    op.create_table(
        "holder_low_balance_alerts",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("crossing_op_id", sa.String(160), nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "crossing_op_id", name="pk_holder_low_balance_alerts"),
    )


def downgrade() -> None:
    op.drop_table("holder_low_balance_alerts")
    op.drop_table("holder_low_balance")
    op.drop_table("holder_alert_prefs")
