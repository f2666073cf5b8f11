"""A holder's money history, read from the ledger's SQL copy: deposits, refunds and adjustments
(`ledger_transfers`) and calls (`call_records`), newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from ledger.sql import call_records, transfers

MONEY_KINDS = ("deposit", "refund", "adjust")


@dataclass(frozen=True)
class Event:
    ts_ms: int
    account_id: str
    kind: str          # deposit refund adjust call
    amount: int        # signed cents: + into the account, - out of it
    detail: str


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) if iso else 0


def events(conn: Connection, account_ids: list[str], *, limit: int, offset: int) -> list[Event]:
    """One page: each source gives its newest offset+limit rows, merged and sliced."""
    if not account_ids:
        return []
    need = offset + limit
    money = conn.execute(
        select(transfers.c.ts, transfers.c.account_id, transfers.c.kind, transfers.c.amount,
               transfers.c.note, transfers.c.reference)
        .where(transfers.c.account_id.in_(account_ids), transfers.c.kind.in_(MONEY_KINDS))
        .order_by(transfers.c.ts.desc(), transfers.c.ver.desc()).limit(need)).all()
    calls = conn.execute(
        select(call_records.c.started_at, call_records.c.account_id, call_records.c.amount,
               call_records.c.outcome, call_records.c.billed_seconds, call_records.c.inmate_id,
               call_records.c.call_id)
        .where(call_records.c.account_id.in_(account_ids))
        .order_by(call_records.c.started_at.desc(), call_records.c.call_id.desc()).limit(need)).all()
    out = [Event(int(r.ts), r.account_id, r.kind, int(r.amount),
                 " ".join(x for x in (r.note, r.reference) if x)) for r in money]
    out += [Event(_ms(r.started_at), r.account_id, "call", -int(r.amount),
                  f"{r.outcome} {r.billed_seconds}s inmate {r.inmate_id} ({r.call_id})") for r in calls]
    out.sort(key=lambda e: e.ts_ms, reverse=True)
    return out[offset:need]
