"""Stored payment methods (token, brand, last 4, expiry) and stored-card charges.

Revision ID: p0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "p0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_methods",
        sa.Column("method_id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("add_key", sa.String(160), nullable=False),
        sa.Column("gateway", sa.String(32), nullable=False),
        sa.Column("token", sa.String(128), nullable=False),
        sa.Column("brand", sa.String(16), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("exp_month", sa.Integer, nullable=False),
        sa.Column("exp_year", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("removed_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("method_id", name="pk_payment_methods"),
        sa.UniqueConstraint("add_key", name="uq_payment_methods_add_key"),
    )
    op.create_index("ix_payment_methods_owner", "payment_methods", ["owner"])
    op.create_table(
        "payment_charges",
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("method_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("charge_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_payment_charges"),
    )
    op.create_index("ix_payment_charges_method", "payment_charges", ["method_id"])


def downgrade() -> None:
    op.drop_table("payment_charges")
    op.drop_table("payment_methods")
