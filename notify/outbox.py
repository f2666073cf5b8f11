"""The outbox in SQL: enqueue events (idempotent by dedupe key), fan them out into messages, claim due
messages under a lease, and record what happened to each.

A message moves pending -> sending (claimed, with a lease) -> sent | failed | skipped, or back to pending
with a later next_attempt_ts (a transient error, quiet hours, the rate limit). A worker that dies while a
message is `sending` leaves the lease to expire; the next claim marks the message `uncertain` so that the
channel first asks its provider whether the earlier send arrived (notify/sms.py) instead of sending again.
Every outcome is written only while the writer still holds the lease, so a worker that lost its lease
cannot overwrite a newer outcome.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from notify.model import CHANNELS, Event, Recipient, RecipientDirectory
from notify.sql.schema import events, messages, optouts

PENDING, SENDING, SENT, FAILED, SKIPPED = "pending", "sending", "sent", "failed", "skipped"
STATES = (PENDING, SENDING, SENT, FAILED, SKIPPED)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000):x}{secrets.token_hex(6)}"


def _conn(session_or_conn: Session | Connection) -> Connection:
    return session_or_conn.connection() if isinstance(session_or_conn, Session) else session_or_conn


def _insert_ignore(conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row is new."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        stmt: Any = pg_insert(table).values(**values).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as lite_insert
        stmt = lite_insert(table).values(**values).on_conflict_do_nothing()
    key = next(iter(table.primary_key.columns))
    return conn.execute(stmt.returning(key)).first() is not None     # rowcount is -1 here on psycopg


def enqueue(session_or_conn: Session | Connection, event: Event, *, at_ms: int | None = None) -> bool:
    """Write `event` in the caller's transaction: it commits, or rolls back, with what caused it.
    True when new; False when an event with the same dedupe key is already there (delivered once)."""
    event.check()
    return _insert_ignore(_conn(session_or_conn), events, {
        "event_id": new_id("e"), "dedupe_key": event.dedupe_key, "kind": event.kind,
        "account_id": event.account_id, "holder_id": event.holder_id, "facility_id": event.facility_id,
        "number_e164": event.number_e164, "payload": json.dumps(dict(event.payload), sort_keys=True),
        "language": event.language, "time_zone": event.time_zone,
        "created_ts": now_ms() if at_ms is None else at_ms, "fanned_out": False,
    })


def event_of(row: Any) -> Event:
    return Event(kind=row.kind, dedupe_key=row.dedupe_key, account_id=row.account_id, holder_id=row.holder_id,
                 facility_id=row.facility_id, number_e164=row.number_e164, payload=json.loads(row.payload),
                 language=row.language, time_zone=row.time_zone)


def fan_out(conn: Connection, directory: RecipientDirectory, *, limit: int = 200, at_ms: int | None = None,
            fallback_to_number: Sequence[str] = ()) -> int:
    """Turn new events into one message per (channel, address). Idempotent: the (event, channel,
    address) index drops a second copy, so a crash between inserts and the flag repeats nothing.
    Kinds in `fallback_to_number` with nobody in the directory go by SMS to the event's number."""
    ts = now_ms() if at_ms is None else at_ms
    rows = conn.execute(sa.select(events).where(events.c.fanned_out == sa.false())
                        .order_by(events.c.created_ts).limit(limit)).all()
    made = 0
    for row in rows:
        event = event_of(row)
        people = directory.recipients(conn, event)
        if not people and event.kind in fallback_to_number and event.number_e164:
            people = [Recipient("sms", event.number_e164, event.language, event.time_zone)]
        for person in people:
            if person.channel not in CHANNELS or not person.address:
                continue
            skipped = person.channel in person.opted_out
            made += _insert_ignore(conn, messages, {
                "message_id": new_id("m"), "event_id": row.event_id, "channel": person.channel,
                "address": person.address, "language": person.language, "time_zone": person.time_zone,
                "quiet_start": person.quiet_start, "quiet_end": person.quiet_end,
                "state": SKIPPED if skipped else PENDING, "reason": "opted_out" if skipped else "",
                "attempts": 0, "next_attempt_ts": ts, "lease_owner": "", "lease_until_ts": 0,
                "uncertain": False, "first_attempt_ts": 0, "last_error": "", "provider_id": "",
                "created_ts": ts, "updated_ts": ts, "sent_ts": None,
            })
        conn.execute(events.update().where(events.c.event_id == row.event_id).values(fanned_out=True))
    return made


@dataclass(frozen=True)
class Claimed:
    message_id: str
    event: Event
    channel: str
    address: str
    language: str
    time_zone: str
    quiet_start: int
    quiet_end: int
    attempts: int            # including this one
    uncertain: bool          # an earlier attempt may have reached the provider
    first_attempt_ts: int


def claim(conn: Connection, owner: str, *, limit: int, lease_ms: int, channels: Sequence[str] = CHANNELS,
          at_ms: int | None = None) -> list[Claimed]:
    """Take up to `limit` due messages for `owner` until the lease runs out. PostgreSQL: FOR UPDATE SKIP
    LOCKED lets workers claim side by side; SQLite: the transaction is BEGIN IMMEDIATE (notify.sql's
    engine), so claims are serialised and the UPDATE's state/lease guard decides."""
    ts = now_ms() if at_ms is None else at_ms
    m = messages.c
    due = sa.or_(m.state == PENDING, sa.and_(m.state == SENDING, m.lease_until_ts < ts))
    query = (sa.select(m.message_id).where(due, m.next_attempt_ts <= ts, m.channel.in_(channels))
             .order_by(m.next_attempt_ts).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = [r[0] for r in conn.execute(query)]
    if not ids:
        return []
    conn.execute(messages.update().where(m.message_id.in_(ids), due).values(
        uncertain=sa.case((m.state == SENDING, sa.true()), else_=m.uncertain),
        first_attempt_ts=sa.case((m.first_attempt_ts == 0, ts), else_=m.first_attempt_ts),
        state=SENDING, lease_owner=owner, lease_until_ts=ts + lease_ms, attempts=m.attempts + 1,
        updated_ts=ts))
    rows = conn.execute(sa.select(messages, events).join(events, events.c.event_id == m.event_id)
                        .where(m.message_id.in_(ids), m.lease_owner == owner, m.state == SENDING)).all()
    return [Claimed(r.message_id, event_of(r), r.channel, r.address, r.language, r.time_zone, r.quiet_start,
                    r.quiet_end, r.attempts, bool(r.uncertain), r.first_attempt_ts) for r in rows]


def _finish(conn: Connection, message_id: str, owner: str, **values: Any) -> bool:
    m = messages.c
    result = conn.execute(messages.update().where(m.message_id == message_id, m.lease_owner == owner,
                                                  m.state == SENDING).values(**values))
    return result.rowcount == 1


def mark_sent(conn: Connection, message_id: str, owner: str, provider_id: str, at_ms: int) -> bool:
    return _finish(conn, message_id, owner, state=SENT, provider_id=provider_id[:80], sent_ts=at_ms,
                   updated_ts=at_ms, lease_owner="", reason="", last_error="")


def mark_failed(conn: Connection, message_id: str, owner: str, reason: str, error: str, at_ms: int) -> bool:
    return _finish(conn, message_id, owner, state=FAILED, reason=reason[:64], last_error=error[:300],
                   updated_ts=at_ms, lease_owner="")


def mark_skipped(conn: Connection, message_id: str, owner: str, reason: str, at_ms: int) -> bool:
    return _finish(conn, message_id, owner, state=SKIPPED, reason=reason[:64], updated_ts=at_ms,
                   lease_owner="")


def mark_retry(conn: Connection, message_id: str, owner: str, *, at_ms: int, next_ms: int, reason: str,
               error: str = "", uncertain: bool = False, counts: bool = True) -> bool:
    """Back to pending until `next_ms`. `counts=False` (quiet hours, rate limit) gives the attempt back."""
    m = messages.c
    values: dict[str, Any] = {"state": PENDING, "next_attempt_ts": next_ms, "reason": reason[:64],
                              "updated_ts": at_ms, "lease_owner": "", "lease_until_ts": 0}
    if error:
        values["last_error"] = error[:300]
    if uncertain:
        values["uncertain"] = True
    if not counts:
        values["attempts"] = m.attempts - 1
    return _finish(conn, message_id, owner, **values)


def sent_since(conn: Connection, channel: str, address: str, since_ms: int) -> list[int]:
    """When messages to this address were sent since `since_ms`, oldest first (the rate limit's memory)."""
    m = messages.c
    return [r[0] for r in conn.execute(sa.select(m.sent_ts).where(
        m.channel == channel, m.address == address, m.state == SENT, m.sent_ts >= since_ms)
        .order_by(m.sent_ts))]


def is_opted_out(conn: Connection, channel: str, address: str) -> bool:
    row = conn.execute(sa.select(optouts.c.opted_out).where(optouts.c.channel == channel,
                                                            optouts.c.address == address)).first()
    return bool(row and row[0])


def set_opt_out(conn: Connection, channel: str, address: str, opted_out: bool, source: str,
                at_ms: int | None = None) -> None:
    ts = now_ms() if at_ms is None else at_ms
    values = {"opted_out": opted_out, "source": source[:32], "updated_ts": ts}
    if not _insert_ignore(conn, optouts, {"channel": channel, "address": address, **values}):
        conn.execute(optouts.update().where(optouts.c.channel == channel, optouts.c.address == address)
                     .values(**values))


def provider_ids(conn: Connection, channel: str, address: str) -> set[str]:
    """Provider ids already recorded for this address: a lookup never claims another message's send."""
    m = messages.c
    return {r[0] for r in conn.execute(sa.select(m.provider_id).where(
        m.channel == channel, m.address == address, m.provider_id != ""))}


def listing(conn: Connection, *, state: str | None = None, address: str | None = None,
            limit: int = 100) -> list[Any]:
    m = messages.c
    query = sa.select(m.message_id, m.channel, m.address, m.state, m.reason, m.attempts, m.next_attempt_ts,
                      m.last_error, m.provider_id, events.c.kind)
    query = query.join(events, events.c.event_id == m.event_id)
    if state:
        query = query.where(m.state == state)
    if address:
        query = query.where(m.address == address)
    return list(conn.execute(query.order_by(m.created_ts.desc()).limit(limit)))


def retry(conn: Connection, message_id: str, at_ms: int | None = None) -> bool:
    """An operator's retry: a failed or skipped message goes back to pending now, attempts reset. A
    message being sent or already sent is left alone (it would be a duplicate)."""
    ts = now_ms() if at_ms is None else at_ms
    m = messages.c
    result = conn.execute(messages.update().where(m.message_id == message_id, m.state.in_((FAILED, SKIPPED)))
                          .values(state=PENDING, attempts=0, next_attempt_ts=ts, reason="operator_retry",
                                  updated_ts=ts))
    return result.rowcount == 1
