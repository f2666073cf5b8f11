"""Alembic environment for the roster tables; run through callcontrol.roster.store.migrate(url)."""

from ledger.sql.alembic_env import run_env

run_env("roster_alembic_version")
