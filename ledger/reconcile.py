"""Compare Redis (the live ledger) with SQL (the synced copy), and rebuild Redis from SQL after a loss."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine, or_, select

from ledger.journal import ACCOUNT_OPS, Entry, decode
from ledger.keys import Keys, account_id_for, partition_of
from ledger.redisclient import SyncRedis
from ledger.sql import accounts, call_records, holds, inmate_blocks, journal, number_blocks

CHUNK = 1000


@dataclass(frozen=True)
class AccountRow:
    account_id: str
    facility_id: str
    number_e164: str
    owner: str
    state: str
    posted: int
    held: int
    ver: int


@dataclass(frozen=True)
class HoldRow:
    account_id: str
    hold_id: str
    amount: int
    captured: int
    status: str
    expires_at: float
    review: bool
    meta: str


def _chunks(items: list[Any], size: int = CHUNK) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def redis_accounts(r: SyncRedis, partitions: int) -> dict[str, AccountRow]:
    out: dict[str, AccountRow] = {}
    for p in range(partitions):
        keys = Keys(p)
        ids = sorted(r.smembers(keys.accts))
        for chunk in _chunks(ids):
            pipe = r.pipeline(transaction=False)
            for account_id in chunk:
                pipe.hmget(keys.account(account_id), "f", "n", "o", "s", "p", "h", "v")
            for account_id, (f, n, o, s, posted, held, ver) in zip(chunk, pipe.execute(), strict=True):
                if s is not None:
                    out[account_id] = AccountRow(account_id, f, n, o or "", s, int(posted), int(held),
                                                 int(ver))
    return out


def redis_holds(r: SyncRedis, partitions: int, *,
                pending_only: bool = True) -> dict[tuple[str, str], HoldRow]:
    """Holds in the reaper queues: pending ones, and resolved ones still retained."""
    out: dict[tuple[str, str], HoldRow] = {}
    for p in range(partitions):
        keys = Keys(p)
        members = r.zrange(keys.hexp, 0, -1)
        for chunk in _chunks(members):
            pipe = r.pipeline(transaction=False)
            pairs = [m.partition("|")[::2] for m in chunk]
            for account_id, hold_id in pairs:
                pipe.hget(keys.account(account_id), f"h:{hold_id}")
            for (account_id, hold_id), raw in zip(pairs, pipe.execute(), strict=True):
                if raw is None:
                    continue
                amount, captured, status, expires, review, meta = raw.split("|", 5)
                if pending_only and status != "pending":
                    continue
                out[(account_id, hold_id)] = HoldRow(account_id, hold_id, int(amount), int(captured), status,
                                                     float(expires), review == "1", meta)
    return out


def sql_accounts(engine: Engine) -> dict[str, AccountRow]:
    with engine.connect() as conn:
        rows = conn.execute(select(accounts.c.account_id, accounts.c.facility_id, accounts.c.number_e164,
                                   accounts.c.owner, accounts.c.state, accounts.c.posted, accounts.c.held,
                                   accounts.c.ver)).all()
    return {row[0]: AccountRow(*row) for row in rows}


def sql_pending_holds(engine: Engine) -> dict[tuple[str, str], HoldRow]:
    with engine.connect() as conn:
        rows = conn.execute(select(holds.c.account_id, holds.c.hold_id, holds.c.amount, holds.c.captured,
                                   holds.c.status, holds.c.expires_at, holds.c.review, holds.c.meta)
                            .where(holds.c.status == "pending")).all()
    return {(row[0], row[1]): HoldRow(*row[:6], bool(row[6]), row[7]) for row in rows}


def reconcile(r: SyncRedis, engine: Engine, partitions: int) -> list[str]:
    """Every difference between Redis and SQL in accounts (posted, held, state) and open holds."""
    drift: list[str] = []
    live, synced = redis_accounts(r, partitions), sql_accounts(engine)
    for account_id in sorted(live.keys() | synced.keys()):
        a, b = live.get(account_id), synced.get(account_id)
        if a is None:
            drift.append(f"account {account_id}: in SQL only (state {b.state}, posted {b.posted})")  # type: ignore[union-attr]
            continue
        if b is None:
            drift.append(f"account {account_id}: in Redis only (state {a.state}, posted {a.posted})")
            continue
        for name in ("posted", "held", "state"):
            if getattr(a, name) != getattr(b, name):
                drift.append(f"account {account_id}: {name} redis={getattr(a, name)} sql={getattr(b, name)}")
    live_h, synced_h = redis_holds(r, partitions), sql_pending_holds(engine)
    for key in sorted(live_h.keys() | synced_h.keys()):
        x, y = live_h.get(key), synced_h.get(key)
        label = f"hold {key[0]}/{key[1]}"
        if x is None:
            drift.append(f"{label}: pending in SQL only")
        elif y is None:
            drift.append(f"{label}: pending in Redis only")
        else:
            for name in ("amount", "captured", "status"):
                if getattr(x, name) != getattr(y, name):
                    drift.append(f"{label}: {name} redis={getattr(x, name)} sql={getattr(y, name)}")
    return drift


class RebuildRefused(RuntimeError):
    pass


def _record_partition(e: Entry, partitions: int) -> int:
    """The partition whose keys the scripts use for this entry's idempotency record, under the partition
    count being rebuilt (not `e.partition`, the stream it was journalled in, which may have had another
    count): an account operation's is its account's, a call record's its call id's, a block's the account's
    for that facility and number (see ledger/core.py)."""
    if e.op in ACCOUNT_OPS:
        return partition_of(e.scope, partitions)
    if e.op == "call":                  # fields: call id, record
        return partition_of(e.fields[0], partitions)
    if e.op == "block":                 # fields: facility, number, flag, source[, inmate]
        return partition_of(account_id_for(e.fields[0], e.fields[1]), partitions)
    raise ValueError(f"journal entry {e.stream_id} of unknown operation {e.op!r}")


def rebuild(r: SyncRedis, engine: Engine, partitions: int, ttl: int, *, force: bool = False,
            now: float | None = None) -> dict[str, int]:
    """Restore accounts, open (and recently resolved) holds, blocks and recent idempotency records.

    Accounts are written before their idempotency records, which live in the same hash.

    Only what the sync had written to SQL comes back: journal entries not yet synced when Redis was
    lost are gone, and so are idempotency records older than `ttl`."""
    now = time.time() if now is None else now
    all_keys = [Keys(p) for p in range(partitions)]
    if not force and any(r.scard(k.accts) for k in all_keys):
        raise RebuildRefused("Redis already holds ledger accounts; refusing to overwrite (use --force)")
    counts = {"accounts": 0, "holds": 0, "blocks": 0, "op_records": 0}
    since_ms = int((now - ttl) * 1000)
    with engine.connect() as conn:
        acct_rows = conn.execute(select(accounts)).mappings().all()
        hold_rows = conn.execute(select(holds).where(or_(holds.c.status == "pending",
                                                         holds.c.updated_ts >= since_ms))).mappings().all()
        block_rows = [*conn.execute(select(number_blocks)
                                    .where(number_blocks.c.blocked.is_(True))).mappings().all(),
                      *conn.execute(select(inmate_blocks)
                                    .where(inmate_blocks.c.blocked.is_(True))).mappings().all()]
        op_rows = [decode(part, sid, raw) for part, sid, raw in conn.execute(
            select(journal.c.partition, journal.c.stream_id, journal.c.entry)
            .where(journal.c.ts >= since_ms))]
    for chunk in _chunks(list(acct_rows)):
        pipe = r.pipeline(transaction=False)
        for row in chunk:
            keys = all_keys[partition_of(row["account_id"], partitions)]
            pipe.hset(keys.account(row["account_id"]), mapping={
                "f": row["facility_id"], "n": row["number_e164"], "o": row["owner"], "s": row["state"],
                "p": row["posted"], "h": row["held"], "v": row["ver"], "c": row["updated_ts"]})
            pipe.sadd(keys.accts, row["account_id"])
        pipe.execute()
        counts["accounts"] += len(chunk)
    for chunk in _chunks(list(hold_rows)):
        pipe = r.pipeline(transaction=False)
        for row in chunk:
            keys = all_keys[partition_of(row["account_id"], partitions)]
            packed = "|".join([str(row["amount"]), str(row["captured"]), row["status"],
                               f"{row['expires_at']:.3f}", "1" if row["review"] else "0",
                               row["meta"] or "{}"])
            pipe.hset(keys.account(row["account_id"]), f"h:{row['hold_id']}", packed)
            if row["status"] == "pending":      # resolved ones are kept for replays, then compacted away
                pipe.zadd(keys.hexp, {f"{row['account_id']}|{row['hold_id']}": row["expires_at"]})
        pipe.execute()
        counts["holds"] += len(chunk)
    for chunk in _chunks(list(block_rows)):
        pipe = r.pipeline(transaction=False)
        for row in chunk:
            keys = all_keys[partition_of(account_id_for(row["facility_id"], row["number_e164"]), partitions)]
            inmate = row.get("inmate_id", "")
            pipe.set(keys.block(row["facility_id"], row["number_e164"], inmate), row["source"])
            if inmate:
                pipe.hset(keys.blocked_inmates(row["facility_id"], row["number_e164"]), inmate, row["source"])
        pipe.execute()
        counts["blocks"] += len(chunk)
    for chunk in _chunks([e for e in op_rows if not e.op_id.startswith("!")]):
        pipe = r.pipeline(transaction=False)
        for e in chunk:
            remaining = int(e.ts / 1000 + ttl - now)
            if remaining <= 0:
                continue
            keys = all_keys[_record_partition(e, partitions)]
            if e.op in ACCOUNT_OPS:             # kept in the account's hash, as the scripts do
                pipe.hset(keys.account(e.scope), f"o:{e.op_id}", f"{e.fp}{e.ts:013d}{e.res}")
            else:
                pipe.set(keys.op(e.scope, e.op_id), e.fp + e.res, ex=remaining)
            counts["op_records"] += 1
        pipe.execute()
    for keys in all_keys:
        try:
            r.xgroup_create(keys.journal, "sql-sync", id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
    return counts


@dataclass(frozen=True)
class CallCharges:
    """What call holds took from families (resolved holds only) against what call records charge."""

    captured: int
    recorded: int
    unexplained: list[str]


def call_charges(engine: Engine) -> CallCharges:
    """Compare, per call, the money its resolved hold posted with its call record's amount (SQL).

    A call's hold id is its call id. A pending hold belongs to a call still running; a resolved one
    whose captures no call record matches is money taken that no record explains."""
    with engine.connect() as conn:
        held = {row[0]: row[1] for row in conn.execute(
            select(holds.c.hold_id, holds.c.captured, holds.c.meta).where(holds.c.status != "pending"))
            if '"kind":"call"' in (row[2] or "").replace(" ", "") or row[2] in (None, "", "{}")}
        records = dict(conn.execute(select(call_records.c.call_id, call_records.c.amount)).all())
    unexplained: list[str] = []
    for call_id in sorted(held.keys() | {c for c, amount in records.items() if amount}):
        taken, charged = held.get(call_id, 0), records.get(call_id)
        if charged is None:
            if not taken:
                continue        # a hold released whole (the call never dialled): no money to explain
            unexplained.append(f"call {call_id}: its hold posted {taken} c and it has no call record")
        elif taken != charged:
            unexplained.append(f"call {call_id}: its hold posted {taken} c, its call record says {charged} c")
    return CallCharges(sum(held.values()), sum(records.values()), unexplained)
