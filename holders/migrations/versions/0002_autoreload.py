"""AutoReload: autoreload_settings (per account) and autoreload_reloads (one row per crossing).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autoreload_settings",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("threshold_cents", sa.BigInteger, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("method_id", sa.String(64), nullable=False),
        sa.Column("declines", sa.Integer, nullable=False),
        sa.Column("since_ts", sa.BigInteger, nullable=False),
        sa.Column("off_reason", sa.String(200), nullable=False),
        sa.Column("off_ts", sa.BigInteger, nullable=True),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_autoreload_settings"),
        sa.ForeignKeyConstraint(["holder_id"], ["holders.holder_id"],
                                name="fk_autoreload_settings_holder_id"),
    )
    op.create_table(
        "autoreload_reloads",
        sa.Column("reload_key", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("crossing_op_id", sa.String(160), nullable=False),
        sa.Column("crossing_ts", sa.BigInteger, nullable=False),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("method_id", sa.String(64), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("charge_key", sa.String(60), nullable=False),
        sa.Column("due_ts", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("reload_key", name="pk_autoreload_reloads"),
        sa.UniqueConstraint("account_id", "crossing_op_id", name="uq_autoreload_reloads_crossing"),
    )
    op.create_index("ix_autoreload_reloads_due", "autoreload_reloads", ["state", "due_ts"])


def downgrade() -> None:
    op.drop_table("autoreload_reloads")
    op.drop_table("autoreload_settings")
