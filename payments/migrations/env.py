"""Alembic environment for the payments tables; run through payments.sql.migrate(url)."""

from ledger.sql.alembic_env import run_env

run_env("payments_alembic_version")
