"""Alembic environment for the payments tables; run through payments.sql.migrate(url)."""

from __future__ import annotations

from alembic import context

config = context.config
VERSION_TABLE = "payments_alembic_version"  # own chain: the ledger and others migrate the same database


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is None:
        raise RuntimeError("run the payments migrations through payments.sql.migrate(url)")
    context.configure(connection=conn, version_table=VERSION_TABLE, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
