"""A holder's alert preferences and the low-balance alert.

Preferences (one row per holder; none means the defaults): quiet hours, channels switched off, kinds of
notice not wanted. Low balance (one row per account): the threshold and the channels the alert goes by.
The alert is raised once per downward crossing of the threshold (holders/crossings.py): detection
inserts (account, crossing op id) under a primary key and enqueues the event in the same transaction,
so a re-run, a second detector or a crash between the two raises it at most once, and a balance still
under the threshold raises nothing until it has been back at or above it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, exists, insert, select, update

from holders.access import Actor
from holders.crossings import crossed
from holders.errors import BadInput, NotFound
from holders.sql.schema import holder_accounts, holder_alert_prefs, holder_low_balance, holders
from holders.sql.schema import holder_low_balance_alerts as sent
from ledger.sql import transfers as tr
from notify import Event, enqueue
from notify.model import CHANNELS, KINDS, LOW_BALANCE, VERIFICATION_CODE

log = structlog.get_logger()
DEFAULT_QUIET = (21 * 60, 8 * 60)
MUTABLE_KINDS = tuple(k for k in KINDS if k != VERIFICATION_CODE)


@dataclass(frozen=True)
class Prefs:
    quiet_start: int = DEFAULT_QUIET[0]
    quiet_end: int = DEFAULT_QUIET[1]
    off_channels: frozenset[str] = frozenset()
    muted_kinds: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LowBalance:
    account_id: str
    threshold_cents: int
    channels: tuple[str, ...]


def _split(value: str) -> frozenset[str]:
    return frozenset(v for v in value.split(",") if v)


def _names(values: Iterable[object], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise BadInput(f"{what}: a list, not a string")
    out = tuple(sorted({str(v) for v in values}))
    bad = [v for v in out if v not in allowed]
    if bad:
        raise BadInput(f"{what}: unknown {', '.join(bad)} (one of {', '.join(allowed)})")
    return out


def _minute(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value < 1440:
        raise BadInput(f"{what}: minutes after midnight, 0..1439")
    return value


def prefs_of(conn: Connection, holder_id: str) -> Prefs:
    row = conn.execute(select(holder_alert_prefs).where(holder_alert_prefs.c.holder_id == holder_id)).first()
    if row is None:
        return Prefs()
    return Prefs(int(row.quiet_start), int(row.quiet_end), _split(row.off_channels), _split(row.muted_kinds))


class Alerts:
    """Reading and changing alert settings; a holder acts only for itself (Actor)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time,
                 max_threshold_cents: int = 100_000) -> None:
        self._engine = engine
        self._clock = clock
        self._max = max_threshold_cents

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def prefs(self, actor: Actor, holder_id: str) -> Prefs:
        actor.check(holder_id)
        with self._engine.connect() as conn:
            self._holder(conn, holder_id)
            return prefs_of(conn, holder_id)

    def set_prefs(self, actor: Actor, holder_id: str, *, quiet_start: int | None = None,
                  quiet_end: int | None = None, off_channels: Iterable[str] | None = None,
                  muted_kinds: Iterable[str] | None = None) -> Prefs:
        """Change what is given; everything is checked before anything is written."""
        actor.check(holder_id)
        with self._engine.begin() as conn:
            self._holder(conn, holder_id)
            old = prefs_of(conn, holder_id)
            values: dict[str, Any] = {
                "quiet_start":
                    old.quiet_start if quiet_start is None else _minute(quiet_start, "quiet_start"),
                "quiet_end": old.quiet_end if quiet_end is None else _minute(quiet_end, "quiet end"),
                "off_channels": ",".join(sorted(old.off_channels) if off_channels is None
                                         else _names(off_channels, CHANNELS, "channels")),
                "muted_kinds": ",".join(sorted(old.muted_kinds) if muted_kinds is None
                                        else _names(muted_kinds, MUTABLE_KINDS, "kinds")),
                "updated_ts": self._now()}
            t = holder_alert_prefs
            if conn.execute(update(t).where(t.c.holder_id == holder_id).values(**values)).rowcount == 0:
                conn.execute(insert(t).values(holder_id=holder_id, **values))
            return prefs_of(conn, holder_id)

    def low_balance(self, actor: Actor, holder_id: str, account_id: str) -> LowBalance | None:
        actor.check(holder_id)
        with self._engine.connect() as conn:
            self._linked(conn, holder_id, account_id)
            row = conn.execute(select(holder_low_balance)
                               .where(holder_low_balance.c.account_id == account_id)).first()
        return None if row is None else LowBalance(account_id, int(row.threshold_cents),
                                                   tuple(sorted(_split(row.channels))))

    def set_low_balance(self, actor: Actor, holder_id: str, account_id: str, threshold_cents: int,
                        channels: Iterable[str] = ("sms", "email")) -> LowBalance:
        """Alert when the balance drops under `threshold_cents` (0: no alert) by `channels`. Counts
        from now: a crossing before this call raises nothing."""
        actor.check(holder_id)
        if type(threshold_cents) is not int or not 0 <= threshold_cents <= self._max:
            raise BadInput(f"threshold: whole cents, 0..{self._max}")
        names = _names(channels, CHANNELS, "channels")
        if threshold_cents and not names:
            raise BadInput("channels: at least one of sms, email, call")
        now = self._now()
        t = holder_low_balance
        with self._engine.begin() as conn:
            self._linked(conn, holder_id, account_id)
            values = {"holder_id": holder_id, "threshold_cents": threshold_cents, "channels": ",".join(names),
                      "since_ts": now, "updated_ts": now}
            if conn.execute(update(t).where(t.c.account_id == account_id).values(**values)).rowcount == 0:
                conn.execute(insert(t).values(account_id=account_id, **values))
        log.info("low_balance_set", holder_id=holder_id, account_id=account_id, threshold=threshold_cents)
        return LowBalance(account_id, threshold_cents, names)

    def _holder(self, conn: Connection, holder_id: str) -> None:
        if conn.execute(select(holders.c.holder_id).where(holders.c.holder_id == holder_id)).first() is None:
            raise NotFound(f"no holder {holder_id}")

    def _linked(self, conn: Connection, holder_id: str, account_id: str) -> None:
        if conn.execute(select(holder_accounts.c.account_id).where(
                holder_accounts.c.account_id == str(account_id),
                holder_accounts.c.holder_id == holder_id)).first() is None:
            raise NotFound(f"no verified account {account_id} for holder {holder_id}")


def alert_key(account_id: str, crossing_op_id: str) -> str:
    digest = hashlib.sha256(f"{account_id}\x00{crossing_op_id}".encode()).hexdigest()[:32]
    return f"low-{digest}"


def derive_low_balance(conn: Connection, now_ms: int, limit: int = 500) -> int:
    """Raise LOW_BALANCE for each crossing not yet alerted, in the caller's transaction (the notify
    worker's fan-out step). Returns how many were raised."""
    t = holder_low_balance
    done = exists().where(sent.c.account_id == tr.c.account_id, sent.c.crossing_op_id == tr.c.op_id)
    rows = conn.execute(
        select(tr.c.account_id, tr.c.op_id, tr.c.posted_after, t.c.threshold_cents,
               holder_accounts.c.holder_id, holder_accounts.c.facility_id, holder_accounts.c.number_e164,
               holders.c.language, holders.c.time_zone)
        .select_from(t.join(tr, tr.c.account_id == t.c.account_id)
                     .join(holder_accounts, (holder_accounts.c.account_id == t.c.account_id)
                           & (holder_accounts.c.holder_id == t.c.holder_id))
                     .join(holders, holders.c.holder_id == t.c.holder_id))
        .where(t.c.threshold_cents > 0, crossed(t.c.threshold_cents, t.c.since_ts), ~done)
        .order_by(tr.c.ts).limit(limit)).all()
    for row in rows:
        conn.execute(insert(sent).values(account_id=row.account_id, crossing_op_id=row.op_id,
                                         created_ts=now_ms))
        enqueue(conn, Event(LOW_BALANCE, alert_key(row.account_id, row.op_id), account_id=row.account_id,
                            holder_id=row.holder_id, facility_id=row.facility_id, number_e164=row.number_e164,
                            payload={"number": row.number_e164, "balance_cents": int(row.posted_after),
                                     "threshold_cents": int(row.threshold_cents)},
                            language=row.language, time_zone=row.time_zone), at_ms=now_ms)
        log.info("low_balance_crossing", account_id=row.account_id, op_id=row.op_id)
    return len(rows)
