"""Journal -> SQL sync worker.

Reads every journal partition through one consumer group, applies a batch in one SQL transaction and
acknowledges (XACK) only after the commit: a database outage raises and nothing is acknowledged, so the
entries are delivered again. Entries a dead worker left pending are reclaimed with XAUTOCLAIM once idle.
Applying is idempotent (ledger/apply.py).
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
import structlog

from ledger.apply import Raw, apply_entries
from ledger.keys import Keys
from ledger.redisclient import SyncRedis, connect_sync
from ledger.sql import make_engine, migrate

log = structlog.get_logger()

GROUP = "sql-sync"


class SyncWorker:
    """Moves journal entries into SQL. Several workers may run at once (one consumer group)."""

    def __init__(self, redis_url: str, sql_url: str, *, partitions: int = 16, batch: int = 1000,
                 consumer: str | None = None, group: str = GROUP, claim_idle_ms: int = 30_000,
                 trim: bool = True, cluster: bool | None = None, run_migrations: bool = True,
                 keep_journal: bool = True) -> None:
        self.partitions = partitions
        self.batch = batch
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.claim_idle_ms = claim_idle_ms
        self.trim = trim
        self.keep_journal = keep_journal
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

    def _read(self) -> list[Raw]:
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
        entries: list[Raw] = []
        for p, result in zip(plan, results, strict=True):
            for sid, fields in _messages(result):
                if (p, sid) in seen:
                    continue
                seen.add((p, sid))
                if not fields or "e" not in fields:     # trimmed while pending, or not ours: just ack
                    self._deleted.setdefault(p, []).append(sid)
                    continue
                entries.append((p, sid, fields["e"]))
        self._recover = False
        return entries      # any order will do: applying keeps the newest state per row

    # --- one round ----------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Apply what is waiting (up to `batch` per partition and source); returns entries applied.

        Raises on a Redis or SQL failure; then nothing of the batch is acknowledged."""
        try:
            with _gc_paused():
                entries = self._read()
                if entries:
                    with self.engine.begin() as conn:
                        apply_entries(conn, entries, keep_journal=self.keep_journal)
        except BaseException:
            self._recover = True
            raise
        acks: dict[int, list[str]] = {p: list(ids) for p, ids in self._deleted.items()}
        for p, sid, _ in entries:
            acks.setdefault(p, []).append(sid)
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


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is read and written. A batch is ~10^5 short-lived
    containers without cycles, kept until its commit; collections triggered by them traverse them (and
    the whole heap, once they reach the oldest generation) for nothing: ~40% of the worker's CPU."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
