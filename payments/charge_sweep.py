"""Finish stored-card charges stuck part-way: rows of ``payment_charges`` left ``started``, ``charged`` or
``refund_failed`` by a crash or an unknown outcome.

Re-running the row's key is all it takes (payments/stored_charge.py): the gateway charge and the ledger
deposit replay by key, so a stuck charge ends with one charge and one credit, or refunded, never doubled.
A row is swept only once it has been still for ``min_age`` seconds, so a live request (a web deposit, a
reload) finishes its own run first; each sweep first moves the row's ``updated_at`` (compare-and-set),
so with several sweepers (one per ``callcontrol serve``) one re-runs a row at a time and a row that stays
unknown waits ``min_age`` again instead of starving the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select, update

from payments.sql import charges as t
from payments.stored_charge import StoredChargeOrder, StoredChargeOutcome, StoredCharges

log = structlog.get_logger("payments.charge_sweep")

STUCK = ("started", "charged", "refund_failed")
MIN_AGE_SECONDS = 600.0


@dataclass(frozen=True)
class Swept:
    key: str
    outcome: StoredChargeOutcome


class ChargeSweeper:
    def __init__(self, charges: StoredCharges, *, min_age: float = MIN_AGE_SECONDS) -> None:
        self._charges = charges
        self._min_age = min_age

    async def run_once(self, limit: int = 50) -> list[Swept]:
        """Re-run every stuck row still for ``min_age`` (at most ``limit``); returns what each gave."""
        rows = await asyncio.to_thread(self._stuck, limit)
        done: list[Swept] = []
        for row in rows:
            if not await asyncio.to_thread(self._take, row):
                continue                                   # another sweeper took it first
            outcome = await self._charges.charge(StoredChargeOrder(
                row.key, row.owner, row.method_id, row.account_id, int(row.amount_cents)))
            log.info("stored_charge_swept", key=row.key, was=row.state, status=outcome.status,
                     reason=outcome.reason)
            done.append(Swept(row.key, outcome))
        return done

    def _stuck(self, limit: int) -> list[Any]:
        cutoff = self._charges.now() - self._min_age
        with self._charges.engine.connect() as conn:
            return list(conn.execute(select(t).where(t.c.state.in_(STUCK), t.c.updated_at <= cutoff)
                                     .order_by(t.c.updated_at).limit(limit)).all())

    def _take(self, row: Any) -> bool:
        with self._charges.engine.begin() as conn:
            return bool(conn.execute(update(t).where(t.c.key == row.key, t.c.state == row.state,
                                                     t.c.updated_at == row.updated_at)
                                     .values(updated_at=self._charges.now())).rowcount)
