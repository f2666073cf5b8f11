"""Alembic environment for the holder tables; run through holders.sql.migrate(url)."""

from ledger.sql.alembic_env import run_env

run_env("holders_alembic_version")
