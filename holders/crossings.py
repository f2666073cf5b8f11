"""Downward crossings of a per-account threshold, found in the ledger's SQL mirror.

Each ledger operation runs in one Lua script, serialised per account, and records the posted balance
after it (`posted_after`) with its signed `amount`; the sync worker copies both into `ledger_transfers`.
So "this entry took the balance from >= threshold to < threshold" is a fact of one entry in the
account's total order: concurrent settlements give one crossing per descent, never two, and the next
one needs the balance back at or above the threshold first. AutoReload (`reloads.py`) and the
low-balance alert (`alerts.py`) both key their work by (account, crossing entry's op id).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_

from ledger.sql import transfers as tr

DEBITS = ("capture", "settle", "refund", "adjust")


def crossed(threshold: Any, since_ts: Any) -> ColumnElement[bool]:
    """The condition on `ledger_transfers` for an entry at or after `since_ts` that crossed `threshold`
    downwards (both may be columns of a joined settings table)."""
    return and_(tr.c.amount < 0, tr.c.kind.in_(DEBITS), tr.c.posted_after < threshold,
                tr.c.posted_after - tr.c.amount >= threshold, tr.c.ts >= since_ts)
