"""The body of every package's Alembic env.py (ledger, payments, holders, notify, web, roster).

Each package keeps its own chain and its own version table in the one shared database, so chains never
see each other's heads. Migrations normally run through `ledger.sql.upgrade` (a connection handed in,
one transaction); a plain `alembic` run with a URL, or offline SQL generation, also works.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine


def _run(**options: object) -> None:
    context.configure(render_as_batch=True, **options)  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


def run_env(version_table: str) -> None:
    config = context.config
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        _run(url=url, version_table=version_table, literal_binds=True)
        return
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(connection=conn, version_table=version_table)
        return
    if not url:
        raise RuntimeError(f"no sqlalchemy.url for the {version_table} chain")
    with create_engine(url).begin() as connection:
        _run(connection=connection, version_table=version_table)
