"""Web tables: web_logins, web_tokens, web_signin_attempts, web_resets.

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
        "web_logins",
        sa.Column("holder_id", sa.String(40), primary_key=True),
        sa.Column("email_key", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.BigInteger, nullable=False),
        sa.Column("quiet_start", sa.Integer, nullable=False),
        sa.Column("quiet_end", sa.Integer, nullable=False),
        sa.Column("low_balance_cents", sa.Integer, nullable=False),
        sa.Column("alerts_sms", sa.Integer, nullable=False),
        sa.Column("alerts_email", sa.Integer, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "web_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
        sa.Column("revoked", sa.Integer, nullable=False),
    )
    op.create_index("ix_web_tokens_holder", "web_tokens", ["holder_id"])
    op.create_table(
        "web_signin_attempts",
        sa.Column("attempt_id", sa.String(40), primary_key=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("ok", sa.Integer, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_web_attempts_client", "web_signin_attempts", ["client", "ts"])
    op.create_table(
        "web_resets",
        sa.Column("reset_id", sa.String(40), primary_key=True),
        sa.Column("holder_id", sa.String(40), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_web_resets_holder", "web_resets", ["holder_id", "created_ts"])


def downgrade() -> None:
    for name in ("web_resets", "web_signin_attempts", "web_tokens", "web_logins"):
        op.drop_table(name)
