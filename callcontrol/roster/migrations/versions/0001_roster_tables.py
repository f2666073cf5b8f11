"""Roster tables: roster_inmates, roster_versions.

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
        "roster_inmates",
        sa.Column("facility_id", sa.String(40), primary_key=True),
        sa.Column("inmate_id", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("allowed", sa.Text, nullable=False),          # E.164 numbers joined by ";"
        sa.Column("pin_hash", sa.String(200), nullable=True),   # scrypt$... or pbkdf2_sha256$...; never a PIN
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "roster_versions",
        sa.Column("facility_id", sa.String(40), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),    # bumped by every import and set-pin
    )


def downgrade() -> None:
    op.drop_table("roster_versions")
    op.drop_table("roster_inmates")
