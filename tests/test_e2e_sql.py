"""End to end into SQL: calls through the simulator, the journal synced by the controller's worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select

from callcontrol.sim import Recipient
from ledger.sql import accounts, call_records, make_engine, transfers
from tests.e2e_support import handset, running, seed

MARIA = "+13125551234"


def _rows(url: str, table, **where):  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            q = select(table)
            for k, v in where.items():
                q = q.where(table.c[k] == v)
            return [dict(r._mapping) for r in conn.execute(q)]
    finally:
        engine.dispose()


def test_calls_reach_sql_through_the_sync_worker(tmp_path: Path, redis_url: str, sql_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url, sql_url=sql_url, run_sync=True) as h:
            account = await seed(h.ledger, MARIA, 500)
            await h.call(handset("3125551234"), Recipient(MARIA, keys="1", talk=100))
            await h.call(handset("3125551234"), Recipient(MARIA, keys="2"))
            await h.call(handset("3125559999"), Recipient("+13125559999", keys="1"))
            ids = {r["call_id"] for r in h.records}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                rows = await asyncio.to_thread(_rows, sql_url, call_records)
                if {r["call_id"] for r in rows} >= ids and \
                        (await asyncio.to_thread(_rows, sql_url, accounts, account_id=account)):
                    acct = (await asyncio.to_thread(_rows, sql_url, accounts, account_id=account))[0]
                    if acct["posted"] == 500 - 17:
                        break
                await asyncio.sleep(0.1)
            rows = {r["call_id"]: r for r in await asyncio.to_thread(_rows, sql_url, call_records)}
            assert sorted(r["outcome"] for r in rows.values()) == ["completed", "refused", "unfunded"]
            done = next(r for r in rows.values() if r["outcome"] == "completed")
            assert done["amount"] == 17 and done["recorded"] and done["accepted_at"] and done["answered_at"]
            assert done["accepted_at"] > done["answered_at"]            # billing starts after screening
            acct = (await asyncio.to_thread(_rows, sql_url, accounts, account_id=account))[0]
            assert (acct["posted"], acct["held"]) == (500 - 17, 0)
            moves = await asyncio.to_thread(_rows, sql_url, transfers, account_id=account)
            charged = -sum(m["amount"] for m in moves if m["kind"] in ("capture", "settle"))
            assert charged == 17                                           # exactly once
    asyncio.run(go())
