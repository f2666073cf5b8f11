"""Ledger events derived from the SQL the journal sync wrote: a deposit -> "deposit receipt", a refund ->
"refund issued". It runs as its own consumer (called by the notify worker's loop), not inside the sync
worker: the ledger imports nothing of notify, its bulk-COPY batches stay as fast as they are, and an
outbox problem never holds up the journal. Exactly once by dedupe key: the key is the transfer's
(account, op id), so reading a transfer twice, or two producers at once, enqueues one event. Rather than a
cursor (a late batch can commit transfers older than one already seen) each pass reads a look-back window
and skips transfers whose event exists."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy import Connection

from ledger.sql.schema import accounts, transfers
from notify.model import DEPOSIT_RECEIPT, REFUND_ISSUED, Event
from notify.outbox import enqueue
from notify.sql.schema import events

KINDS = {"deposit": DEPOSIT_RECEIPT, "refund": REFUND_ISSUED}


def dedupe_key(account_id: str, op_id: str) -> str:
    key = f"ledger:{account_id}:{op_id}"
    return key if len(key) <= 200 else "ledger:" + hashlib.sha256(key.encode()).hexdigest()


def derive_ledger_events(conn: Connection, *, since_ms: int, limit: int = 500) -> int:
    """Enqueue events for deposits and refunds synced since `since_ms`; returns how many were new."""
    t, a = transfers.c, accounts.c
    rows = conn.execute(sa.select(t.account_id, t.op_id, t.kind, t.amount, t.posted_after, t.ts,
                                  a.facility_id, a.number_e164)
                        .join(accounts, a.account_id == t.account_id)
                        .where(t.kind.in_(tuple(KINDS)), t.ts >= since_ms).order_by(t.ts).limit(limit)).all()
    keys = {dedupe_key(r.account_id, r.op_id): r for r in rows}
    if not keys:
        return 0
    known = sa.select(events.c.dedupe_key).where(events.c.dedupe_key.in_(list(keys)))
    done = {k for (k,) in conn.execute(known)}
    made = 0
    for key, r in keys.items():
        if key in done:
            continue
        made += enqueue(conn, Event(
            kind=KINDS[r.kind], dedupe_key=key, account_id=r.account_id, facility_id=r.facility_id,
            number_e164=r.number_e164, payload={"amount_cents": abs(int(r.amount)),
                                                "balance_cents": int(r.posted_after), "at_ms": int(r.ts),
                                                "number": r.number_e164}), at_ms=int(r.ts))
    return made
