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
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from ledger.apply import Raw, apply_entries
from ledger.keys import Keys
from ledger.redisclient import SyncRedis, connect_sync
from ledger.sql import make_engine, migrate

log = structlog.get_logger()

GROUP = "sql-sync"


@dataclass
class Fetched:
    """One read: entries to apply, and ids to acknowledge without applying (trimmed meanwhile)."""
    entries: list[Raw] = field(default_factory=list)
    acks: dict[int, list[str]] = field(default_factory=dict)
    more_own: bool = False      # a read of our own pending entries came back full: there may be more


class SyncWorker:
    """Moves journal entries into SQL. Several workers may run at once (one consumer group)."""

    def __init__(self, redis_url: str, sql_url: str, *, partitions: int = 16, batch: int = 1000,
                 consumer: str | None = None, group: str = GROUP, claim_idle_ms: int = 30_000,
                 trim: bool = True, cluster: bool | None = None, run_migrations: bool = True,
                 keep_journal: bool = True, read_ahead: bool = True) -> None:
        self.partitions = partitions
        self.batch = batch
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.claim_idle_ms = claim_idle_ms
        self.trim = trim
        self.keep_journal = keep_journal
        self.read_ahead = read_ahead
        self.redis: SyncRedis = connect_sync(redis_url, cluster)
        if run_migrations:
            migrate(sql_url)
        self.engine = make_engine(sql_url)
        self._keys = [Keys(p) for p in range(partitions)]
        self._recover = False      # our own delivered-but-unacknowledged entries need another go
        self._groups_ready = False
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: Future[Fetched] | None = None     # the next batch, read while one is written

    def close(self) -> None:
        self._drop_ahead()
        if self._pool is not None:
            self._pool.shutdown()
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

    def _read(self, recover: bool = False, in_flight: Sequence[Raw] = ()) -> Fetched:
        """Up to `batch` entries per partition from each source: our own unacknowledged ones (when
        recovering), those other consumers left idle (XAUTOCLAIM) and new ones. `in_flight` is the batch
        being written meanwhile: XAUTOCLAIM may hand its entries back to us, and they are not read twice."""
        if not self._groups_ready:
            self.ensure_groups()
        pipe = self.redis.pipeline(transaction=False)
        plan: list[tuple[int, str]] = []
        for p, keys in enumerate(self._keys):
            if recover:
                pipe.xreadgroup(self.group, self.consumer, {keys.journal: "0"}, count=self.batch)
                plan.append((p, "0"))
            pipe.xautoclaim(keys.journal, self.group, self.consumer, self.claim_idle_ms, "0-0",
                            count=self.batch)
            plan.append((p, "claim"))
            pipe.xreadgroup(self.group, self.consumer, {keys.journal: ">"}, count=self.batch)
            plan.append((p, ">"))
        results = pipe.execute(raise_on_error=False)
        if any(isinstance(r, redis.ResponseError) and "NOGROUP" in str(r) for r in results):
            self._groups_ready = False      # the stream was lost (Redis rebuilt or flushed): recreate
            self.ensure_groups()
            return self._read(recover, in_flight)
        for r in results:
            if isinstance(r, Exception):
                raise r
        seen: set[tuple[int, str]] = set()
        got = Fetched()
        for (p, source), result in zip(plan, results, strict=True):
            messages = _messages(result)
            if source == "0" and len(messages) >= self.batch:
                got.more_own = True
            elif source == "claim" and messages and in_flight:
                seen.update((q, sid) for q, sid, _ in in_flight)
                in_flight = ()
            for sid, fields in messages:
                if (p, sid) in seen:
                    continue
                seen.add((p, sid))
                if not fields or "e" not in fields:     # trimmed while pending, or not ours: just ack
                    got.acks.setdefault(p, []).append(sid)
                    continue
                got.entries.append((p, sid, fields["e"]))
        return got      # any order will do: applying keeps the newest state per row

    # --- one round ----------------------------------------------------------------------------------
    def run_once(self, *, read_ahead: bool | None = None) -> int:
        """Apply what is waiting (up to `batch` per partition and source); returns entries applied.

        While a batch is written, the next one is read (`read_ahead`, by default as constructed): reading
        and decoding in Python overlap the database's work. Raises on a Redis or SQL failure; then nothing
        of the batch is acknowledged, and entries read ahead are read again as our own pending ones."""
        ahead = self.read_ahead if read_ahead is None else read_ahead
        try:
            with _gc_paused():
                if self._ahead is not None:
                    got, self._ahead = self._ahead.result(), None
                else:
                    got = self._read(self._recover)
                    self._recover = got.more_own
                if got.entries:
                    if ahead and not self._recover:
                        self._ahead = self._reader().submit(self._read, False, got.entries)
                    with self.engine.begin() as conn:
                        apply_entries(conn, got.entries, keep_journal=self.keep_journal)
        except BaseException:
            self._drop_ahead()
            self._recover = True
            raise
        acks = got.acks
        for p, sid, _ in got.entries:
            acks.setdefault(p, []).append(sid)
        if acks:
            pipe = self.redis.pipeline(transaction=False)
            for p, ids in acks.items():
                pipe.xack(self._keys[p].journal, self.group, *ids)
            pipe.execute()
            if self.trim:
                self._trim(acks)
        return len(got.entries)

    def _reader(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ledger-sync-read")
        return self._pool

    def _drop_ahead(self) -> None:
        """Forget a batch read ahead (after letting the read finish): it stays pending for this consumer
        until recovered (or reclaimed by another worker, should this one stop)."""
        if self._ahead is not None:
            with suppress(Exception):
                self._ahead.result()
            self._ahead = None

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
        return total + self._finish()

    def _finish(self) -> int:
        """Write a batch still read ahead, so that stopping leaves nothing pending behind."""
        return self.run_once(read_ahead=False) if self._ahead is not None else 0

    def run_forever(self, stop: threading.Event, *, idle_sleep: float = 0.1, max_backoff: float = 5.0,
                    on_synced: Callable[[int], None] | None = None, finish_seconds: float = 5.0) -> None:
        """Sync until `stop`; `on_synced(n)` hears each round's count (the host's metrics). On stop it
        winds up for `finish_seconds` at most (`_wind_up`)."""
        backoff = idle_sleep
        while not stop.is_set():
            try:
                n = self.run_once()
                if on_synced is not None and n:
                    on_synced(n)
                backoff = idle_sleep
                if n == 0:
                    stop.wait(idle_sleep)
            except Exception as exc:  # keep running: the entries stay pending and come back
                log.warning("ledger.sync_failed", error=str(exc)[:300], retry_in=round(backoff, 2))
                stop.wait(backoff)
                backoff = min(max_backoff, backoff * 2)
        n = self._wind_up(finish_seconds)
        if on_synced is not None and n:
            on_synced(n)

    def _wind_up(self, seconds: float) -> int:
        """On stop: write the batch read ahead, our own entries a failed round left pending (else they
        wait `claim_idle_ms` for another worker to reclaim them) and what arrived meanwhile (a stopping
        controller's last records), retrying a failure, until nothing is left or `seconds` are up. What is
        left then stays pending, as after any failure."""
        end = time.monotonic() + seconds
        total = 0
        while True:
            try:
                n = self.run_once(read_ahead=False)
                total += n
                if n == 0 and not self._recover:
                    return total
            except Exception as exc:
                if time.monotonic() >= end:
                    log.warning("ledger.sync_left_pending", error=str(exc)[:300])
                    return total
                time.sleep(0.1)
            if time.monotonic() >= end:
                return total


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
