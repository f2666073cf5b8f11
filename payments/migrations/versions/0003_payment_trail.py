"""The 800 line's payment trail in SQL: payment_attempts and payment_transitions (no card data).

Revision ID: p0003
Revises: p0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "p0003"
down_revision = "p0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_attempts",
        sa.Column("attempt_key", sa.String(160), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("brand", sa.String(16), nullable=False),
        sa.Column("gateway", sa.String(32), nullable=False),
        sa.Column("auth_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_entry", sa.String(32), nullable=False),
    )
    op.create_index("ix_payment_attempts_state", "payment_attempts", ["state", "updated_at"])
    op.create_table(
        "payment_transitions",
        sa.Column("entry_id", sa.String(32), primary_key=True),
        sa.Column("attempt_key", sa.String(160), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("auth_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
    )
    op.create_index("ix_payment_transitions_attempt_key", "payment_transitions", ["attempt_key"])


def downgrade() -> None:
    op.drop_index("ix_payment_transitions_attempt_key", "payment_transitions")
    op.drop_table("payment_transitions")
    op.drop_index("ix_payment_attempts_state", "payment_attempts")
    op.drop_table("payment_attempts")
