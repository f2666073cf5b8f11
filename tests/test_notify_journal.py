"""Deposit and refund events derived from the journal the sync worker wrote: exactly one event per ledger
operation however often (and by however many producers) the transfers are read."""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa

from ledger import Ledger
from ledger.sync import SyncWorker
from notify.journal import derive_ledger_events
from notify.sql import events, make_engine, migrate


def test_deposits_and_refunds_become_one_event_each(redis_url: str, sql_url: str) -> None:
    async def money() -> None:
        ledger = await Ledger.connect(redis_url)
        account = await ledger.open_account("open-1", "FAC-07", "+13125550101", owner="t")
        await ledger.deposit("dep-1", account, 2500)
        await ledger.deposit("dep-1", account, 2500)       # a retried op id: one deposit
        await ledger.refund("ref-1", account, 700)
        await ledger.close()

    asyncio.run(money())
    worker = SyncWorker(redis_url, sql_url, partitions=16)
    worker.drain()
    worker.close()
    migrate(sql_url)
    engine = make_engine(sql_url)
    since = int(time.time() * 1000) - 3_600_000
    with engine.begin() as conn:
        assert derive_ledger_events(conn, since_ms=since) == 2
    with engine.begin() as conn:                          # a second pass, or a second producer
        assert derive_ledger_events(conn, since_ms=since) == 0
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events.c.kind, events.c.payload, events.c.number_e164)
                            .order_by(events.c.kind)).all()
    assert [(r.kind, r.number_e164) for r in rows] == [("deposit_receipt", "+13125550101"),
                                                        ("refund_issued", "+13125550101")]
    assert '"amount_cents": 2500' in rows[0].payload and '"amount_cents": 700' in rows[1].payload
    engine.dispose()
