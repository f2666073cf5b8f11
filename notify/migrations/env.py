"""Alembic environment for the outbox tables; run through notify.sql.migrate(url)."""

from ledger.sql.alembic_env import run_env

run_env("notify_alembic_version")
