"""Holder tables: holders, holder_accounts, holder_codes.

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
        "holders",
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("mobile_e164", sa.String(16), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("holder_id", name="pk_holders"),
        sa.UniqueConstraint("email_key", name="uq_holders_email_key"),
    )
    op.create_index("ix_holders_mobile", "holders", ["mobile_e164"])
    op.create_table(
        "holder_accounts",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("verified_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_holder_accounts"),
        sa.ForeignKeyConstraint(["holder_id"], ["holders.holder_id"], name="fk_holder_accounts_holder_id"),
    )
    op.create_index("ix_holder_accounts_holder", "holder_accounts", ["holder_id"])
    op.create_index("ix_holder_accounts_number", "holder_accounts", ["number_e164"])
    op.create_table(
        "holder_codes",
        sa.Column("code_id", sa.String(40), nullable=False),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("facility_id", sa.String(128), nullable=False),
        sa.Column("number_e164", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
        sa.Column("used_ts", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("code_id", name="pk_holder_codes"),
        sa.ForeignKeyConstraint(["holder_id"], ["holders.holder_id"], name="fk_holder_codes_holder_id"),
    )
    op.create_index("ix_holder_codes_number_created", "holder_codes", ["number_e164", "created_ts"])
    op.create_index("ix_holder_codes_holder_created", "holder_codes", ["holder_id", "created_ts"])


def downgrade() -> None:
    op.drop_table("holder_codes")
    op.drop_table("holder_accounts")
    op.drop_table("holders")
