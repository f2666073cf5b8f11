"""Alembic environment for the web tables; run through web.sql.migrate(url)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config
VERSION_TABLE = "web_alembic_version"   # own table: the ledger runs its own Alembic on the same database


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(connection=conn, version_table=VERSION_TABLE, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no sqlalchemy.url for the web migrations")
    engine = create_engine(url)
    with engine.begin() as connection:
        context.configure(connection=connection, version_table=VERSION_TABLE, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), version_table=VERSION_TABLE,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run()
