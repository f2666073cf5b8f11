"""Alembic environment for the ledger tables; run through ledger.sql.migrate(url)."""

from ledger.sql.alembic_env import run_env

run_env("ledger_alembic_version")
