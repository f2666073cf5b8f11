"""Quiet hours and alert channels live in holders' tables (holder_alert_prefs): drop web's copies.
web_logins.low_balance_cents stays: the threshold given to accounts the holder verifies later.

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

DROPPED = ("quiet_start", "quiet_end", "alerts_sms", "alerts_email")


COPY = """
INSERT INTO holder_alert_prefs (holder_id, quiet_start, quiet_end, off_channels, muted_kinds, updated_ts)
SELECT l.holder_id, l.quiet_start, l.quiet_end,
       CASE WHEN l.alerts_sms = 0 AND l.alerts_email = 0 THEN 'email,sms'
            WHEN l.alerts_sms = 0 THEN 'sms' WHEN l.alerts_email = 0 THEN 'email' ELSE '' END,
       '', l.updated_ts
FROM web_logins l JOIN holders h ON h.holder_id = l.holder_id
WHERE NOT EXISTS (SELECT 1 FROM holder_alert_prefs p WHERE p.holder_id = l.holder_id)
"""


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("holder_alert_prefs"):     # what a holder set so far is kept
        op.execute(COPY)
    with op.batch_alter_table("web_logins") as batch:
        for name in DROPPED:
            batch.drop_column(name)


def downgrade() -> None:
    defaults = {"quiet_start": "1260", "quiet_end": "480", "alerts_sms": "1", "alerts_email": "1"}
    with op.batch_alter_table("web_logins") as batch:
        for name in DROPPED:
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default=defaults[name]))
