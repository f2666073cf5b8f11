"""Refunds and inactivity: a holder's postal address, refund requests and their parts, the sweep's rows.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holders") as batch:
        batch.add_column(sa.Column("address", sa.String(400), nullable=True))
    op.create_table(
        "holder_refunds",
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("holder_id", sa.String(40), nullable=True),
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("close", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("in_flight", sa.String(64), nullable=True),
        sa.Column("was_frozen", sa.Boolean, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("payee_name", sa.String(200), nullable=False),
        sa.Column("payee_address", sa.String(400), nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.Column("done_ts", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_holder_refunds"),
        sa.UniqueConstraint("in_flight", name="uq_holder_refunds_in_flight"),
    )
    op.create_index("ix_holder_refunds_account", "holder_refunds", ["account_id"])
    op.create_table(
        "holder_refund_parts",
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("deposit_op", sa.String(160), nullable=False),
        sa.Column("charge_id", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("gateway_refund_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("request_id", "seq", name="pk_holder_refund_parts"),
    )
    op.create_index("ix_holder_refund_parts_charge", "holder_refund_parts", ["charge_id"])
    op.create_index("ix_holder_refund_parts_state", "holder_refund_parts", ["state"])
    op.create_table(
        "holder_inactivity",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("last_activity_ts", sa.BigInteger, nullable=False),
        sa.Column("noticed_ts", sa.BigInteger, nullable=True),
        sa.Column("refund_request_id", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("account_id", "last_activity_ts", name="pk_holder_inactivity"),
    )


def downgrade() -> None:
    op.drop_table("holder_inactivity")
    op.drop_table("holder_refund_parts")
    op.drop_table("holder_refunds")
    with op.batch_alter_table("holders") as batch:
        batch.drop_column("address")
