"""Payment trail journal -> SQL: copies `apc:paytrail` (payments/trail.py) into payment_attempts and
payment_transitions, exactly once.

Like the ledger's sync worker (ledger/sync.py): one consumer group, a batch applied in one SQL
transaction and acknowledged (XACK) only after the commit, so a database outage leaves the entries
pending and they come back; entries a dead worker left pending are reclaimed (XAUTOCLAIM). A transition
row's primary key is its journal entry id, so an entry delivered twice is written once. The attempt row
keeps the newest transition (by entry id) and, like the Redis hash, never leaves a final state.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import suppress
from typing import Any

import redis
import structlog
from sqlalchemy import Connection, insert, select, update

from ledger.redisclient import SyncRedis, connect_sync
from payments.sql import attempts, make_engine, migrate, transitions
from payments.trail import FINAL_STATES, JOURNAL_KEY

log = structlog.get_logger("payments.trail_sync")

GROUP = "sql-sync"


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _s(value: Any, size: int) -> str:
    return str(value if value is not None else "")[:size]


class TrailSync:
    """Moves payment trail journal entries into SQL. Several may run at once (one consumer group)."""

    def __init__(self, redis_url: str, sql_url: str, *, batch: int = 500, consumer: str | None = None,
                 claim_idle_ms: int = 30_000, cluster: bool | None = None, run_migrations: bool = True,
                 trim: bool = True) -> None:
        self.batch = batch
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.claim_idle_ms = claim_idle_ms
        self.trim = trim
        self.redis: SyncRedis = connect_sync(redis_url, cluster)
        if run_migrations:
            migrate(sql_url)
        self.engine = make_engine(sql_url)
        self._group_ready = False

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()

    def _ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(JOURNAL_KEY, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read(self) -> list[tuple[str, dict[str, str]]]:
        """Our own unacknowledged entries, those others left idle, then new ones."""
        if not self._group_ready:
            self._ensure_group()
        try:
            own = self.redis.xreadgroup(GROUP, self.consumer, {JOURNAL_KEY: "0"}, count=self.batch)
            claimed = self.redis.xautoclaim(JOURNAL_KEY, GROUP, self.consumer, self.claim_idle_ms, "0-0",
                                            count=self.batch)
            new = self.redis.xreadgroup(GROUP, self.consumer, {JOURNAL_KEY: ">"}, count=self.batch)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False           # the stream was lost (flushed): recreate
            return self._read()
        got: dict[str, dict[str, str]] = {}
        batches: list[Any] = [pair[1] for result in (own, new) for pair in (result or [])]
        if claimed and len(claimed) > 1:
            batches.append(claimed[1])
        for msgs in batches:
            got.update({sid: fields for sid, fields in msgs})
        return sorted(((sid, f or {}) for sid, f in got.items()), key=lambda m: _id(m[0]))

    def run_once(self) -> int:
        """Apply what is waiting; returns entries read. Raises on a Redis or SQL failure (then nothing
        of the batch is acknowledged)."""
        msgs = self._read()
        if not msgs:
            return 0
        with self.engine.begin() as conn:
            for sid, fields in msgs:
                if "e" in fields:
                    apply_entry(conn, sid, json.loads(fields["e"]))
        ids = [sid for sid, _ in msgs]
        self.redis.xack(JOURNAL_KEY, GROUP, *ids)
        if self.trim:
            self.redis.xdel(JOURNAL_KEY, *ids)      # SQL holds them now (one group reads this journal)
        return len(msgs)

    def drain(self, max_rounds: int = 100_000) -> int:
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            total += n
            if n == 0:
                break
        return total

    def run_forever(self, stop: threading.Event, *, idle_sleep: float = 0.5, max_backoff: float = 5.0,
                    finish_seconds: float = 5.0) -> None:
        """Copy until `stop`. Then, for `finish_seconds` at most, the entries a failed round left pending
        (else they wait `claim_idle_ms` for another worker) and those that arrived meanwhile (a stopping
        controller's last attempts); what is left then stays pending, as after any failure."""
        backoff = idle_sleep
        while not stop.is_set():
            try:
                n = self.run_once()
                backoff = idle_sleep
                if n == 0:
                    stop.wait(idle_sleep)
            except Exception as exc:    # keep running: the entries stay pending and come back
                log.warning("payments.trail_sync_failed", error=str(exc)[:300], retry_in=round(backoff, 2))
                stop.wait(backoff)
                backoff = min(max_backoff, backoff * 2)
        end = time.monotonic() + finish_seconds
        while True:
            try:
                if self.run_once() == 0:
                    return
            except Exception as exc:
                if time.monotonic() >= end:
                    log.warning("payments.trail_sync_left_pending", error=str(exc)[:300])
                    return
                time.sleep(0.1)
            if time.monotonic() >= end:
                return


def apply_entry(conn: Connection, entry_id: str, e: dict[str, Any]) -> None:
    """One journal entry: its transition row (once) and the attempt's newest state."""
    if conn.execute(select(transitions.c.entry_id).where(transitions.c.entry_id == entry_id)).first():
        return                                          # copied already (delivered twice)
    key, state = _s(e.get("key"), 160), _s(e.get("state"), 16)
    at = float(e.get("updated") or 0)
    row = conn.execute(select(attempts).where(attempts.c.attempt_key == key)).mappings().first()
    if row is not None and row["state"] in FINAL_STATES and _id(row["last_entry"]) < _id(entry_id):
        return                                          # the Redis hash refused it too
    conn.execute(insert(transitions).values(entry_id=entry_id, attempt_key=key, state=state, at=at,
                                            auth_id=_s(e.get("ref"), 64), reason=_s(e.get("reason"), 64)))
    if row is None:
        conn.execute(insert(attempts).values(
            attempt_key=key, channel=_s(e.get("channel") or "phone", 16),
            facility_id=_s(e.get("facility"), 128),
            number_e164=_s(e.get("number"), 16), account_id=_s(e.get("account"), 64),
            amount_cents=int(e.get("amount") or 0), last4=_s(e.get("last4"), 4), brand=_s(e.get("brand"), 16),
            gateway=_s(e.get("gateway"), 32), auth_id=_s(e.get("ref"), 64), state=state,
            reason=_s(e.get("reason"), 64), created_at=at, updated_at=at, last_entry=entry_id))
        return
    values: dict[str, Any] = {}
    for column, field, size in (("last4", "last4", 4), ("brand", "brand", 16), ("auth_id", "ref", 64),
                                ("gateway", "gateway", 32)):
        if e.get(field) and not row[column]:
            values[column] = _s(e[field], size)
    if _id(entry_id) > _id(row["last_entry"]):
        values.update(state=state, reason=_s(e.get("reason"), 64), updated_at=max(at, row["updated_at"]),
                      last_entry=entry_id)
    if at and at < row["created_at"]:
        values["created_at"] = at
    if values:
        conn.execute(update(attempts).where(attempts.c.attempt_key == key).values(**values))


def sync_once(redis_url: str, sql_url: str) -> int:
    """Drain the journal into SQL (what `payments reconcile` does first)."""
    worker = TrailSync(redis_url, sql_url)
    try:
        return worker.drain()
    finally:
        with suppress(Exception):
            worker.close()
