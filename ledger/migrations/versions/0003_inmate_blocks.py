"""Inmate blocks: a family blocks one inmate of a facility from calling its number (number_blocks stays
the whole facility's block, unchanged).

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
    op.create_table(
        "inmate_blocks",
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("inmate_id", sa.String(128), nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("jid", sa.String(32), nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("facility_id", "number_e164", "inmate_id", name="pk_inmate_blocks"),
    )


def downgrade() -> None:
    op.drop_table("inmate_blocks")
