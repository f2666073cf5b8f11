"""Web's own tables in the ledger's database, with their own Alembic chain (`web/migrations`, version
table `web_alembic_version`) so they never conflict with the holders' or the ledger's migrations.

Nothing secret is stored in clear: passwords are argon2 hashes, tokens and reset codes HMAC digests.
Times are epoch milliseconds."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = MetaData()

logins = Table(
    "web_logins", metadata,
    Column("holder_id", String(40), primary_key=True),
    Column("email_key", String(254), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("failures", Integer, nullable=False),          # wrong passwords since the last success
    Column("locked_until", BigInteger, nullable=False),   # 0: not locked
    # the low-balance threshold given to accounts verified later (0: none); quiet hours, channels and
    # each account's threshold are the holders' (holders/alerts.py, web/alerting.py)
    Column("low_balance_cents", Integer, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
)

tokens = Table(
    "web_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),   # HMAC of the token: a stolen table opens nothing
    Column("holder_id", String(40), nullable=False),
    Column("kind", String(8), nullable=False),            # session | bearer
    Column("csrf", String(64), nullable=False),           # the session's CSRF token (sessions only)
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=False),
    Column("revoked", Integer, nullable=False),
    Index("ix_web_tokens_holder", "holder_id"),
)

attempts = Table(
    "web_signin_attempts", metadata,
    Column("attempt_id", String(40), primary_key=True),
    Column("client", String(64), nullable=False),         # the peer address
    Column("email_key", String(254), nullable=False),
    Column("ok", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Index("ix_web_attempts_client", "client", "ts"),
)

resets = Table(
    "web_resets", metadata,
    Column("reset_id", String(40), primary_key=True),
    Column("holder_id", String(40), nullable=False),
    Column("salt", String(32), nullable=False),
    Column("digest", String(64), nullable=False),         # HMAC of the code: never the code
    Column("status", String(10), nullable=False),         # pending used locked superseded failed
    Column("attempts", Integer, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=False),
    Index("ix_web_resets_holder", "holder_id", "created_ts"),
)


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the web tables at `url` to `revision`."""
    from ledger.sql import upgrade

    upgrade(url, MIGRATIONS, revision)
