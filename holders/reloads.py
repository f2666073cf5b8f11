"""AutoReload's engine: find balance crossings in the ledger's SQL mirror, charge the stored card once
per crossing, handle declines.

A crossing is a posting (capture, settle, refund, negative adjust) whose posted balance went from
>= threshold to < threshold (holders/crossings.py, shared with the low-balance alert). Detection records one
`autoreload_reloads` row per (account, crossing op id) under a unique key (several detectors: one
insert wins), and the charge is `payments.stored_charge` under a key derived from that row, so a re-run
after a crash at any step charges at most once.

Declines: attempts 1, 2, 3 of one crossing at 0, +1 h, +6 h; every decline notifies the holder; three
declines in a row switch AutoReload off with the reason and time. An unknown outcome keeps its charge key
and is resumed (stored_charge looks it up first), never charged under a new key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as lite_insert

from holders.crossings import crossed
from holders.sql.schema import autoreload_reloads as r
from holders.sql.schema import autoreload_settings as s
from holders.sql.schema import holder_accounts, holders
from ledger.sql import transfers as tr
from notify import Event, enqueue
from notify.model import AUTORELOAD_DECLINED, AUTORELOAD_OFF, AUTORELOAD_OK
from payments.stored_charge import StoredChargeOrder, StoredCharges

log = structlog.get_logger()

BACKOFF_MS = (3_600_000, 6 * 3_600_000)     # before the 2nd and the 3rd attempt of one crossing
MAX_DECLINES = 3
LEASE_MS = 120_000                            # a runner that dies mid-charge is taken over after this
UNKNOWN_RETRY_MS = 60_000                     # an unknown outcome is resumed (same key) after this


@dataclass(frozen=True)
class Result:
    reload_key: str
    account_id: str
    state: str           # posted declined failed skipped charging (unknown: resumed later) due (backing off)
    reason: str = ""


def reload_key(account_id: str, crossing_op_id: str) -> str:
    """The crossing's identity: account + the op id of the entry that crossed (fits every gateway key)."""
    digest = hashlib.sha256(f"{account_id}\x00{crossing_op_id}".encode()).hexdigest()[:32]
    return f"ar-{digest}"


class Reloader:
    """Detects crossings and runs due reloads. Several may run at once (on several hosts)."""

    def __init__(self, engine: Engine, charges: StoredCharges, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._charges = charges
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # --- detection (SQL only) ------------------------------------------------------------------------
    def detect(self, limit: int = 1000) -> int:
        """Record each unrecorded crossing of an enabled account; returns how many were new."""
        now = self._now()
        recorded = exists().where(r.c.account_id == tr.c.account_id, r.c.crossing_op_id == tr.c.op_id)
        query = (select(tr.c.account_id, tr.c.op_id, tr.c.ts, s.c.holder_id, s.c.method_id, s.c.amount_cents)
                 .select_from(s.join(tr, tr.c.account_id == s.c.account_id))
                 .where(s.c.enabled.is_(True), crossed(s.c.threshold_cents, s.c.since_ts), ~recorded)
                 .order_by(tr.c.ts).limit(limit))
        new = 0
        with self._engine.begin() as conn:
            for row in conn.execute(query).all():
                key = reload_key(row.account_id, row.op_id)
                values = {"reload_key": key, "account_id": row.account_id, "crossing_op_id": row.op_id,
                          "crossing_ts": int(row.ts), "holder_id": row.holder_id, "method_id": row.method_id,
                          "amount_cents": int(row.amount_cents), "state": "due", "attempt": 0,
                          "charge_key": "", "due_ts": now, "reason": "", "created_ts": now, "updated_ts": now}
                if _insert_ignore(conn, values):
                    new += 1
                    log.info("autoreload_crossing", account_id=row.account_id, op_id=row.op_id, reload=key)
        return new

    # --- running -------------------------------------------------------------------------------------
    async def run_once(self, limit: int = 100) -> list[Result]:
        """Detect, then run every reload that is due (or whose runner's lease ran out)."""
        await asyncio.to_thread(self.detect)
        due = await asyncio.to_thread(self._due, limit)
        return [await self.run(row) for row in due]

    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:      # SQL or Redis down: nothing counted, the rows wait
                log.warning("autoreload_run_failed", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def _due(self, limit: int) -> list[Any]:
        with self._engine.connect() as conn:
            return list(conn.execute(select(r).where(r.c.state.in_(("due", "charging")),
                                                     r.c.due_ts <= self._now())
                                     .order_by(r.c.due_ts).limit(limit)).all())

    async def run(self, row: Any) -> Result:
        key, account = row.reload_key, row.account_id
        if row.state == "due":
            why = await self._not_needed(row)
            if why:
                await asyncio.to_thread(self._finish, row, "skipped", why)
                return Result(key, account, "skipped", why)
        charge_key = await asyncio.to_thread(self._claim, row)
        if charge_key is None:
            return Result(key, account, "charging", "taken by another runner")
        order = StoredChargeOrder(charge_key, row.holder_id, row.method_id, account, int(row.amount_cents))
        outcome = await self._charges.charge(order)
        if outcome.status == "unknown":
            await asyncio.to_thread(self._resume_later, key, charge_key)
            return Result(key, account, "charging", outcome.reason)
        return await asyncio.to_thread(self._record, row, charge_key, outcome.status, outcome.reason,
                                       outcome.available)

    async def _not_needed(self, row: Any) -> str:
        """Why a fresh attempt should not charge: AutoReload off or changed card/amount, or the balance
        is back at the threshold (a phone deposit came first). One ledger read (HMGET)."""
        with self._engine.connect() as conn:
            st = conn.execute(select(s).where(s.c.account_id == row.account_id)).first()
        if st is None or not st.enabled:
            return "autoreload_off"
        balance = await self._charges.ledger.balance(row.account_id)
        if balance.posted >= int(st.threshold_cents):
            return "balance_restored"
        return ""

    def _claim(self, row: Any) -> str | None:
        """Take the row under a lease; a fresh attempt gets a new charge key, a resumed one keeps its own."""
        now = self._now()
        attempt = int(row.attempt) + 1 if row.state == "due" else int(row.attempt)
        charge_key = f"{row.reload_key}:{attempt}" if row.state == "due" else row.charge_key
        with self._engine.begin() as conn:
            done = conn.execute(update(r).where(r.c.reload_key == row.reload_key, r.c.state == row.state,
                                                r.c.attempt == row.attempt, r.c.due_ts == row.due_ts)
                                .values(state="charging", attempt=attempt, charge_key=charge_key,
                                        due_ts=now + LEASE_MS, updated_ts=now)).rowcount
        return charge_key if done else None

    def _resume_later(self, key: str, charge_key: str) -> None:
        now = self._now()
        with self._engine.begin() as conn:
            conn.execute(update(r).where(r.c.reload_key == key, r.c.state == "charging",
                                         r.c.charge_key == charge_key)
                         .values(due_ts=now + UNKNOWN_RETRY_MS, reason="outcome_unknown", updated_ts=now))
        log.error("autoreload_outcome_unknown", reload=key, charge_key=charge_key)

    def _finish(self, row: Any, state: str, reason: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(r).where(r.c.reload_key == row.reload_key, r.c.state == "due")
                         .values(state=state, reason=reason, updated_ts=self._now()))
        log.info("autoreload_not_needed", reload=row.reload_key, reason=reason)

    def _record(self, row: Any, charge_key: str, status: str, reason: str, available: int | None) -> Result:
        """The outcome, the settings and the holder's notice in one transaction, written only by the
        runner whose charge key is still current (so a decline is never counted twice)."""
        now = self._now()
        key, account = row.reload_key, row.account_id
        with self._engine.begin() as conn:
            st = conn.execute(select(s).where(s.c.account_id == account).with_for_update()).one()
            ev = _event_base(conn, account)
            state, due = {"posted": "posted", "declined": "declined"}.get(status, "failed"), now
            # Declines: back off within the crossing, switch off after MAX_DECLINES in a row.
            declines = int(st.declines)
            switched_off = ""
            if status == "declined":
                declines += 1
                attempt = int(conn.execute(select(r.c.attempt).where(r.c.reload_key == key)).scalar_one())
                if declines >= MAX_DECLINES:
                    switched_off = f"{MAX_DECLINES} declines in a row ({reason})"
                elif attempt <= len(BACKOFF_MS):
                    state, due = "due", now + BACKOFF_MS[attempt - 1]
            elif status == "failed" and reason == "no_such_method":
                switched_off = "payment method removed"
            done = conn.execute(update(r).where(r.c.reload_key == key, r.c.state == "charging",
                                                r.c.charge_key == charge_key)
                                .values(state=state, due_ts=due, reason=reason[:200],
                                        updated_ts=now)).rowcount
            if not done:
                return Result(key, account, "charging", "recorded by another runner")
            values: dict[str, object] = {"declines": 0 if status == "posted" else declines, "updated_ts": now}
            if switched_off and st.enabled:
                values.update(enabled=False, off_reason=switched_off[:200], off_ts=now,
                              updated_by="autoreload")
            conn.execute(update(s).where(s.c.account_id == account).values(**values))
            amount = int(row.amount_cents)
            if status == "posted":
                enqueue(conn, Event(AUTORELOAD_OK, f"{charge_key}:ok",
                                    payload={"amount_cents": amount, "balance_cents": available or 0}, **ev))
            elif status == "declined":
                enqueue(conn, Event(AUTORELOAD_DECLINED, f"{charge_key}:declined",
                                    payload={"amount_cents": amount, "reason": reason}, **ev))
            if "enabled" in values:
                enqueue(conn, Event(AUTORELOAD_OFF, f"{charge_key}:off",
                                    payload={"amount_cents": amount, "reason": switched_off}, **ev))
        log.info("autoreload_" + state, reload=key, account_id=account, charge_key=charge_key, reason=reason,
                 switched_off=bool(switched_off))
        return Result(key, account, state, reason)


def _event_base(conn: Connection, account_id: str) -> dict[str, str]:
    row = conn.execute(select(holder_accounts.c.holder_id, holder_accounts.c.facility_id,
                              holder_accounts.c.number_e164, holders.c.language, holders.c.time_zone)
                       .select_from(holder_accounts.join(holders,
                                                         holders.c.holder_id == holder_accounts.c.holder_id))
                       .where(holder_accounts.c.account_id == account_id)).one()
    return {"account_id": account_id, "holder_id": row.holder_id, "facility_id": row.facility_id,
            "number_e164": row.number_e164, "language": row.language, "time_zone": row.time_zone}


def _insert_ignore(conn: Connection, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING (either unique key); True when the row is new."""
    stmt: Any = (pg_insert(r) if conn.dialect.name == "postgresql" else lite_insert(r)).values(**values)
    return conn.execute(stmt.on_conflict_do_nothing().returning(r.c.reload_key)).first() is not None
