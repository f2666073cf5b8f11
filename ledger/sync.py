"""Journal -> SQL sync worker.

Reads every journal partition through one consumer group, applies a batch in one SQL transaction and
acknowledges (XACK) only after the commit: a database outage raises and nothing is acknowledged, so the
entries are delivered again. Entries a dead worker left pending are reclaimed with XAUTOCLAIM once idle.
Applying is idempotent: journal and transfer rows are unique per (scope, op id) and inserted with ON
CONFLICT DO NOTHING; account, hold, call-record and block rows carry the state after the operation and
are upserted only when newer (account version, or journal position), so a replay or a late reclaimed
entry never rolls a row back.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterable
from typing import Any

import redis
import structlog
from sqlalchemy import Connection, case
from sqlalchemy.dialects import postgresql, sqlite

from ledger import journal as j
from ledger.keys import Keys
from ledger.redisclient import SyncRedis, connect_sync
from ledger.sql import accounts, call_records, holds, make_engine, migrate, number_blocks, transfers
from ledger.sql import journal as journal_table

log = structlog.get_logger()

GROUP = "sql-sync"


def _insert(conn: Connection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def apply_entries(conn: Connection, entries: Iterable[j.Entry]) -> None:
    """Write a batch of journal entries; safe to call again with any of them."""
    journal_rows: list[dict[str, Any]] = []
    transfer_rows: list[dict[str, Any]] = []
    latest_account: dict[str, j.Entry] = {}
    latest_hold: dict[tuple[str, str], j.Entry] = {}
    hold_opened: dict[tuple[str, str], j.Entry] = {}   # the "hold" entry itself: meta and creation time
    latest_call: dict[str, tuple[str, dict[str, Any]]] = {}
    latest_block: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for e in entries:
        journal_rows.append({"partition": e.partition, "stream_id": e.stream_id, "scope": e.scope,
                             "op_id": e.op_id, "op": e.op, "ts": e.ts, "fp": e.fp, "res": e.res,
                             "entry": e.raw})
        if e.op in j.ACCOUNT_OPS:
            prev = latest_account.get(e.scope)
            if prev is None or e.ver > prev.ver:
                latest_account[e.scope] = e
            if e.hold_id:
                key = (e.scope, e.hold_id)
                prev = latest_hold.get(key)
                if prev is None or e.ver > prev.ver:
                    latest_hold[key] = e
                if e.op == "hold":
                    hold_opened[key] = e
            if e.op in j.POSTING_OPS and e.dp != 0:
                transfer_rows.append({
                    "account_id": e.scope, "op_id": e.op_id, "kind": e.op, "amount": e.dp,
                    "posted_after": e.posted, "ver": e.ver, "hold_id": e.hold_id or None,
                    "note": e.text1, "reference": e.text2 if e.op == "deposit" else "", "ts": e.ts})
        elif e.op == "call":
            jid = j.sortable_id(e.stream_id)
            call_id = e.fields[0]
            if call_id not in latest_call or jid > latest_call[call_id][0]:
                rec = json.loads(e.fields[1])
                rec.update(jid=jid, updated_ts=e.ts)
                latest_call[call_id] = (jid, rec)
        elif e.op == "block":
            jid = j.sortable_id(e.stream_id)
            fac, num, flag, source = e.fields[:4]
            if (fac, num) not in latest_block or jid > latest_block[(fac, num)][0]:
                latest_block[(fac, num)] = (jid, {"facility_id": fac, "number_e164": num,
                                                  "blocked": flag == "1", "source": source, "jid": jid,
                                                  "updated_ts": e.ts})

    if journal_rows:
        conn.execute(_insert(conn, journal_table).on_conflict_do_nothing(index_elements=["scope", "op_id"]),
                     journal_rows)
    if transfer_rows:
        conn.execute(_insert(conn, transfers).on_conflict_do_nothing(index_elements=["account_id", "op_id"]),
                     transfer_rows)
    if latest_account:
        stmt = _insert(conn, accounts)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id"],
            set_={"facility_id": ex.facility_id, "number_e164": ex.number_e164, "owner": ex.owner,
                  "state": ex.state, "posted": ex.posted, "held": ex.held, "ver": ex.ver,
                  "updated_ts": ex.updated_ts},
            where=accounts.c.ver < ex.ver)
        conn.execute(stmt, [{"account_id": e.scope, "facility_id": e.facility_id,
                             "number_e164": e.number_e164, "owner": e.owner, "state": e.state,
                             "posted": e.posted, "held": e.held, "ver": e.ver, "updated_ts": e.ts}
                            for e in latest_account.values()])
    if latest_hold:
        stmt = _insert(conn, holds)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id", "hold_id"],
            set_={"amount": ex.amount, "captured": ex.captured, "status": ex.status,
                  "expires_at": ex.expires_at, "review": ex.review, "ver": ex.ver,
                  "updated_ts": ex.updated_ts,
                  "meta": case((ex.meta == "", holds.c.meta), else_=ex.meta)},
            where=holds.c.ver < ex.ver)
        rows = []
        for key, e in latest_hold.items():
            amount, captured, status, expires, review = e.hold  # type: ignore[misc]
            opened = hold_opened.get(key)
            rows.append({"account_id": e.scope, "hold_id": e.hold_id, "amount": amount, "captured": captured,
                         "status": status, "expires_at": expires, "review": review,
                         "meta": opened.text2 if opened else "", "ver": e.ver,
                         "created_ts": opened.ts if opened else e.ts, "updated_ts": e.ts})
        conn.execute(stmt, rows)
    if latest_call:
        stmt = _insert(conn, call_records)
        ex = stmt.excluded
        cols = [c.name for c in call_records.columns if c.name != "call_id"]
        stmt = stmt.on_conflict_do_update(index_elements=["call_id"], set_={c: ex[c] for c in cols},
                                          where=call_records.c.jid < ex.jid)
        conn.execute(stmt, [rec for _, rec in latest_call.values()])
    if latest_block:
        stmt = _insert(conn, number_blocks)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["facility_id", "number_e164"],
            set_={"blocked": ex.blocked, "source": ex.source, "jid": ex.jid, "updated_ts": ex.updated_ts},
            where=number_blocks.c.jid < ex.jid)
        conn.execute(stmt, [row for _, row in latest_block.values()])


class SyncWorker:
    """Moves journal entries into SQL. Several workers may run at once (one consumer group)."""

    def __init__(self, redis_url: str, sql_url: str, *, partitions: int = 16, batch: int = 1000,
                 consumer: str | None = None, group: str = GROUP, claim_idle_ms: int = 30_000,
                 trim: bool = True, cluster: bool | None = None, run_migrations: bool = True) -> None:
        self.partitions = partitions
        self.batch = batch
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.claim_idle_ms = claim_idle_ms
        self.trim = trim
        self.redis: SyncRedis = connect_sync(redis_url, cluster)
        if run_migrations:
            migrate(sql_url)
        self.engine = make_engine(sql_url)
        self._keys = [Keys(p) for p in range(partitions)]
        self._recover = False      # our own delivered-but-unacknowledged entries need another go
        self._groups_ready = False

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()

    # --- reading ----------------------------------------------------------------------------------
    def ensure_groups(self) -> None:
        for keys in self._keys:
            try:
                self.redis.xgroup_create(keys.journal, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups_ready = True

    def _read(self) -> list[j.Entry]:
        if not self._groups_ready:
            self.ensure_groups()
        pipe = self.redis.pipeline(transaction=False)
        plan: list[int] = []
        for p, keys in enumerate(self._keys):
            if self._recover:
                pipe.xreadgroup(self.group, self.consumer, {keys.journal: "0"}, count=self.batch)
                plan.append(p)
            pipe.xautoclaim(keys.journal, self.group, self.consumer, self.claim_idle_ms, "0-0",
                            count=self.batch)
            plan.append(p)
            pipe.xreadgroup(self.group, self.consumer, {keys.journal: ">"}, count=self.batch)
            plan.append(p)
        results = pipe.execute(raise_on_error=False)
        if any(isinstance(r, redis.ResponseError) and "NOGROUP" in str(r) for r in results):
            self._groups_ready = False      # the stream was lost (Redis rebuilt or flushed): recreate
            self.ensure_groups()
            return self._read()
        for r in results:
            if isinstance(r, Exception):
                raise r
        seen: set[tuple[int, str]] = set()
        self._deleted: dict[int, list[str]] = {}
        entries: list[j.Entry] = []
        for p, result in zip(plan, results, strict=True):
            for sid, fields in _messages(result):
                if (p, sid) in seen:
                    continue
                seen.add((p, sid))
                if not fields or "e" not in fields:     # trimmed while pending, or not ours: just ack
                    self._deleted.setdefault(p, []).append(sid)
                    continue
                entries.append(j.decode(p, sid, fields["e"]))
        self._recover = False
        entries.sort(key=lambda e: (e.partition, j.sortable_id(e.stream_id)))
        return entries

    # --- one round ----------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Apply what is waiting (up to `batch` per partition and source); returns entries applied.

        Raises on a Redis or SQL failure; then nothing of the batch is acknowledged."""
        try:
            entries = self._read()
            if entries:
                with self.engine.begin() as conn:
                    apply_entries(conn, entries)
        except BaseException:
            self._recover = True
            raise
        acks: dict[int, list[str]] = {p: list(ids) for p, ids in self._deleted.items()}
        for e in entries:
            acks.setdefault(e.partition, []).append(e.stream_id)
        if acks:
            pipe = self.redis.pipeline(transaction=False)
            for p, ids in acks.items():
                pipe.xack(self._keys[p].journal, self.group, *ids)
            pipe.execute()
            if self.trim:
                self._trim(acks)
        return len(entries)

    def _trim(self, partitions: Iterable[int]) -> None:
        """Drop journal entries every consumer has acknowledged (SQL holds them now)."""
        parts = list(partitions)
        pipe = self.redis.pipeline(transaction=False)
        for p in parts:
            pipe.xpending(self._keys[p].journal, self.group)
            pipe.xinfo_groups(self._keys[p].journal)
        results = pipe.execute(raise_on_error=False)
        pipe = self.redis.pipeline(transaction=False)
        for i, p in enumerate(parts):
            pending, groups = results[2 * i], results[2 * i + 1]
            if isinstance(pending, Exception) or isinstance(groups, Exception):
                continue
            if len(groups) != 1:           # another group reads this journal: leave trimming to its owner
                continue
            minid = pending["min"] if pending["pending"] else _next_id(groups[0]["last-delivered-id"])
            pipe.execute_command("XTRIM", self._keys[p].journal, "MINID", minid)
        pipe.execute(raise_on_error=False)

    def drain(self, max_rounds: int = 1_000_000) -> int:
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            total += n
            if n == 0:
                break
        return total

    def run_forever(self, stop: threading.Event, *, idle_sleep: float = 0.1,
                    max_backoff: float = 5.0) -> None:
        backoff = idle_sleep
        while not stop.is_set():
            try:
                n = self.run_once()
                backoff = idle_sleep
                if n == 0:
                    stop.wait(idle_sleep)
            except Exception as exc:  # keep running: the entries stay pending and come back
                log.warning("ledger.sync_failed", error=str(exc)[:300], retry_in=round(backoff, 2))
                stop.wait(backoff)
                backoff = min(max_backoff, backoff * 2)


def _messages(result: Any) -> list[tuple[str, dict[str, str] | None]]:
    """Messages from an XREADGROUP ([[stream, msgs]]) or XAUTOCLAIM ([cursor, msgs, ...]) reply."""
    if not result:
        return []
    if isinstance(result, list) and result and isinstance(result[0], list | tuple) and len(result[0]) == 2 \
            and isinstance(result[0][1], list):
        out: list[tuple[str, dict[str, str] | None]] = []
        for _stream, msgs in result:
            out += [(sid, fields) for sid, fields in msgs]
        return out
    if isinstance(result, dict):  # RESP3 shape
        return [(sid, fields) for msgs in result.values() for sid, fields in msgs]
    msgs = result[1] if len(result) > 1 else []
    return [(sid, fields) for sid, fields in msgs]


def _next_id(stream_id: str) -> str:
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"
