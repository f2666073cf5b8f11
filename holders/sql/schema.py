"""Holder tables (SQLAlchemy Core). Times are epoch milliseconds, as in the ledger's tables."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
})

holders = Table(
    "holders", metadata,
    Column("holder_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(254), nullable=False),        # as typed
    Column("email_key", String(254), nullable=False),    # lower-cased: uniqueness ignores case
    Column("mobile_e164", String(16), nullable=False),
    Column("language", String(2), nullable=False),       # en | es
    Column("time_zone", String(64), nullable=False),     # IANA
    Column("status", String(8), nullable=False),         # active | locked | closed
    Column("address", String(400), nullable=True),       # postal, for a refund owed by check (0003)
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    UniqueConstraint("email_key", name="uq_holders_email_key"),
    Index("ix_holders_mobile", "mobile_e164"),
)

# One verified link per ledger account: the unique account_id is what makes the first claim win.
holder_accounts = Table(
    "holder_accounts", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("holder_id", String(40), ForeignKey("holders.holder_id"), nullable=False),
    Column("facility_id", String(128), nullable=False),
    Column("number_e164", String(16), nullable=False),
    Column("verified_ts", BigInteger, nullable=False),
    Index("ix_holder_accounts_holder", "holder_id"),
    Index("ix_holder_accounts_number", "number_e164"),
)

# One-time codes: only a salted HMAC of the code is kept. Rows stay after use: they are the rate
# limits' memory (codes per number per hour, per holder per day).
holder_codes = Table(
    "holder_codes", metadata,
    Column("code_id", String(40), primary_key=True),
    Column("holder_id", String(40), ForeignKey("holders.holder_id"), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("facility_id", String(128), nullable=False),
    Column("number_e164", String(16), nullable=False),
    Column("channel", String(8), nullable=False),        # sms | call
    Column("salt", String(32), nullable=False),
    Column("digest", String(64), nullable=False),        # hex HMAC-SHA256(secret, salt|code_id|code)
    Column("status", String(12), nullable=False),        # pending used locked superseded failed
    Column("attempts", Integer, nullable=False),         # wrong codes tried
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=False),
    Column("used_ts", BigInteger, nullable=True),
    Index("ix_holder_codes_number_created", "number_e164", "created_ts"),
    Index("ix_holder_codes_holder_created", "holder_id", "created_ts"),
)

# AutoReload (holders/autoreload.py): one settings row per account. `since_ts` is when the current
# settings began: crossings before it are not reloaded. `declines` counts declines in a row.
autoreload_settings = Table(
    "autoreload_settings", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("holder_id", String(40), ForeignKey("holders.holder_id"), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("threshold_cents", BigInteger, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("method_id", String(64), nullable=False),
    Column("declines", Integer, nullable=False),
    Column("since_ts", BigInteger, nullable=False),
    Column("off_reason", String(200), nullable=False),
    Column("off_ts", BigInteger, nullable=True),
    Column("updated_by", String(200), nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
)

# One row per balance crossing (holders/reloads.py): the unique (account, crossing op) is what makes it
# one reload per crossing; `charge_key` is the stored charge's idempotency key of the current attempt.
autoreload_reloads = Table(
    "autoreload_reloads", metadata,
    Column("reload_key", String(40), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("crossing_op_id", String(160), nullable=False),
    Column("crossing_ts", BigInteger, nullable=False),
    Column("holder_id", String(40), nullable=False),
    Column("method_id", String(64), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),     # due charging posted declined failed skipped
    Column("attempt", Integer, nullable=False),
    Column("charge_key", String(60), nullable=False),
    Column("due_ts", BigInteger, nullable=False),    # due: next attempt; charging: lease end
    Column("reason", String(200), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    UniqueConstraint("account_id", "crossing_op_id", name="uq_autoreload_reloads_crossing"),
    Index("ix_autoreload_reloads_due", "state", "due_ts"),
)

# A refund request (0003): one row per request id, the unit of idempotency. `in_flight` is the account
# while the request is not done (unique: one refund at a time per account), NULL afterwards.
holder_refunds = Table(
    "holder_refunds", metadata,
    Column("request_id", String(100), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("holder_id", String(40), nullable=True),      # None: an unclaimed account (inactivity)
    Column("facility_id", String(128), nullable=False),
    Column("number_e164", String(16), nullable=False),
    Column("close", Boolean, nullable=False),
    Column("reason", String(16), nullable=False),        # holder | support | inactivity
    Column("requested_by", String(200), nullable=False),
    Column("state", String(12), nullable=False),         # started planned ledgered done
    Column("in_flight", String(64), nullable=True),
    Column("was_frozen", Boolean, nullable=False),       # frozen before: left frozen at the end
    Column("amount_cents", BigInteger, nullable=False),  # what the ledger refund takes (set when planned)
    Column("payee_name", String(200), nullable=False),
    Column("payee_address", String(400), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Column("done_ts", BigInteger, nullable=True),
    UniqueConstraint("in_flight", name="uq_holder_refunds_in_flight"),
    Index("ix_holder_refunds_account", "account_id"),
)

# Where a request's money goes: one part per deposit it is traced to, newest first (seq 1, 2...).
holder_refund_parts = Table(
    "holder_refund_parts", metadata,
    Column("request_id", String(100), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("deposit_op", String(160), nullable=False),   # the ledger deposit's op id ("" untraced)
    Column("charge_id", String(64), nullable=False),     # the gateway transaction ("" none)
    Column("method", String(8), nullable=False),         # card | check
    Column("amount_cents", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),         # pending refunded owed
    Column("gateway_refund_id", String(64), nullable=False),
    Column("reason", String(64), nullable=False),        # why by check
    Column("updated_ts", BigInteger, nullable=False),
    Index("ix_holder_refund_parts_charge", "charge_id"),
    Index("ix_holder_refund_parts_state", "state"),
)

# The inactivity sweep's memory: one row per account and period (its last activity).
holder_inactivity = Table(
    "holder_inactivity", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("last_activity_ts", BigInteger, primary_key=True),
    Column("noticed_ts", BigInteger, nullable=True),
    Column("refund_request_id", String(100), nullable=True),
)

# Request2Call (0004): a holder asks an inmate to call one of the holder's verified numbers. `pending_key`
# is "<holder>|<facility>|<inmate>" while the request is pending, NULL afterwards: unique, so one pending
# request per holder and inmate. `name_file` is the holder's recorded name (800 line), "" without one.
call_requests = Table(
    "call_requests", metadata,
    Column("request_id", String(40), primary_key=True),
    Column("holder_id", String(40), ForeignKey("holders.holder_id"), nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("facility_id", String(128), nullable=False),
    Column("inmate_id", String(64), nullable=False),
    Column("number_e164", String(16), nullable=False),
    Column("name_file", String(400), nullable=False),
    Column("status", String(10), nullable=False),        # pending answered cancelled expired
    Column("pending_key", String(240), nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=False),
    Column("closed_ts", BigInteger, nullable=True),      # answered, cancelled or found expired
    Column("call_id", String(64), nullable=False),       # the call that answered it
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("pending_key", name="uq_call_requests_pending_key"),
    Index("ix_call_requests_inmate", "facility_id", "inmate_id", "status"),
    Index("ix_call_requests_holder", "holder_id", "created_ts"),
)

# Alert preferences (holders/alerts.py): one row per holder (none: the defaults), one per account with a
# low-balance threshold, and one per low-balance crossing alerted (unique: one alert per crossing).
holder_alert_prefs = Table(
    "holder_alert_prefs", metadata,
    Column("holder_id", String(40), ForeignKey("holders.holder_id"), primary_key=True),
    Column("quiet_start", Integer, nullable=False),      # minutes after local midnight; start == end: none
    Column("quiet_end", Integer, nullable=False),
    Column("off_channels", String(40), nullable=False),  # comma list: sms,email,call switched off
    Column("muted_kinds", String(400), nullable=False),  # comma list of notify kinds not wanted
    Column("updated_ts", BigInteger, nullable=False),
)

holder_low_balance = Table(
    "holder_low_balance", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("holder_id", String(40), ForeignKey("holders.holder_id"), nullable=False),
    Column("threshold_cents", BigInteger, nullable=False),
    Column("channels", String(40), nullable=False),      # comma list the alert goes by
    Column("since_ts", BigInteger, nullable=False),      # crossings before this are not alerted
    Column("updated_ts", BigInteger, nullable=False),
)

holder_low_balance_alerts = Table(
    "holder_low_balance_alerts", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("crossing_op_id", String(160), primary_key=True),
    Column("created_ts", BigInteger, nullable=False),
)
