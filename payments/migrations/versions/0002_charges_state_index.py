"""Index payment_charges by (state, updated_at): the stuck-charge sweep looks rows up that way.

Revision ID: p0002
Revises: p0001
"""

from __future__ import annotations

from alembic import op

revision = "p0002"
down_revision = "p0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_payment_charges_state", "payment_charges", ["state", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_payment_charges_state", "payment_charges")
