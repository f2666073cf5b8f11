"""Alembic environment for the web tables; run through web.sql.migrate(url)."""

from ledger.sql.alembic_env import run_env

run_env("web_alembic_version")
