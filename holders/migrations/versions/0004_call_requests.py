"""Request2Call: call_requests, one pending request per holder and inmate.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_requests",
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("inmate_id", sa.String(64), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("name_file", sa.String(400), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("pending_key", sa.String(240), nullable=True),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
        sa.Column("closed_ts", sa.BigInteger, nullable=True),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_call_requests"),
        sa.ForeignKeyConstraint(["holder_id"], ["holders.holder_id"], name="fk_call_requests_holder_id"),
        sa.UniqueConstraint("pending_key", name="uq_call_requests_pending_key"),
    )
    op.create_index("ix_call_requests_inmate", "call_requests", ["facility_id", "inmate_id", "status"])
    op.create_index("ix_call_requests_holder", "call_requests", ["holder_id", "created_ts"])


def downgrade() -> None:
    op.drop_index("ix_call_requests_holder", table_name="call_requests")
    op.drop_index("ix_call_requests_inmate", table_name="call_requests")
    op.drop_table("call_requests")
