"""Crashes: the sync worker killed with SIGKILL mid-batch, and the embedded Redis killed with SIGKILL and
restarted from its AOF."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from callcontrol.platform.redis_server import EmbeddedRedis
from ledger import Ledger, LedgerUnavailable
from ledger.keys import Keys
from ledger.reconcile import reconcile
from ledger.redisclient import connect_sync
from ledger.sql import make_engine, migrate
from ledger.sync import GROUP, SyncWorker

ROOT = Path(__file__).resolve().parent.parent
WORKER = """
import sys, threading
from ledger.sync import SyncWorker
worker = SyncWorker(sys.argv[1], sys.argv[2], batch=40, consumer="doomed", run_migrations=False)
worker.run_forever(threading.Event())
"""


async def _produce(url: str, accounts: int, calls: int) -> int:
    """Accounts with a deposit and `calls` settled holds each; returns the transfers it implies."""
    led = await Ledger.connect(url)

    async def one(i: int) -> None:
        a = await led.open_account(f"o{i}", "FAC-K", f"+1312556{i:04d}")
        await led.deposit(f"d{i}", a, 100_000)
        for c in range(calls):
            await led.hold(f"h{i}-{c}", a, f"call{c}", 500, lease_seconds=600)
            await led.settle(f"s{i}-{c}", a, f"call{c}", 1 + c % 7)

    await asyncio.gather(*(one(i) for i in range(accounts)))
    await led.close()
    return accounts * (1 + calls)


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"select count(*) from {table}")).scalar_one())


def test_sync_worker_killed_mid_batch(redis_url: str, sql_url: str) -> None:
    migrate(sql_url)
    transfers = asyncio.run(_produce(redis_url, accounts=150, calls=20))
    r = connect_sync(redis_url)
    entries = sum(r.xlen(Keys(p).journal) for p in range(16))
    assert entries == 150 * (2 + 2 * 20)
    engine = make_engine(sql_url)

    def doomed_pending() -> int:
        return sum(c["pending"] for p in range(16) for c in r.xinfo_consumers(Keys(p).journal, GROUP)
                   if c["name"] == "doomed")

    # Kill it while it holds read-but-unacknowledged entries (between XREADGROUP and XACK); if the kill
    # lands between two batches instead, start it again and retry.
    for attempt in range(1, 6):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, redis_url, sql_url], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            deadline = time.monotonic() + 60
            while _count(engine, "ledger_journal") < entries * attempt // 8 or doomed_pending() == 0:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.005)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if doomed_pending() > 0:
            break
    assert doomed_pending() > 0
    assert 0 < _count(engine, "ledger_journal") < entries
    survivor = SyncWorker(redis_url, sql_url, claim_idle_ms=0, run_migrations=False)
    survivor.drain()
    assert _count(engine, "ledger_journal") == entries   # everything, once
    assert _count(engine, "ledger_transfers") == transfers
    assert reconcile(r, engine, 16) == []
    assert sum(r.xpending(Keys(p).journal, GROUP)["pending"] for p in range(16)) == 0
    survivor.close()
    engine.dispose()
    r.close()


def test_redis_killed_loses_no_acknowledged_operation(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()

    async def scenario() -> None:
        led = await Ledger.connect(server.url, timeout=2.0)
        account = await led.open_account("open", "FAC-K", "+13125550177")
        acked: list[str] = []
        unknown: list[str] = []

        async def depositor(i: int) -> None:
            n = 0
            while True:
                op = f"d{i}-{n}"
                n += 1
                try:
                    await led.deposit(op, account, 1)
                except LedgerUnavailable:
                    unknown.append(op)          # in flight when Redis died: outcome unknown
                    return
                acked.append(op)

        tasks = [asyncio.create_task(depositor(i)) for i in range(32)]
        await asyncio.sleep(0.6)
        server.kill()
        await asyncio.gather(*tasks)
        assert len(acked) > 500
        with pytest.raises(LedgerUnavailable):
            await led.balance(account)
        server.start()                           # same data folder: the AOF is replayed
        posted = (await led.balance(account)).posted   # the client reconnects by itself
        assert len(acked) <= posted <= len(acked) + len(unknown)
        for op in acked:                         # each acknowledged deposit is there: a replay adds nothing
            await led.deposit(op, account, 1)
        assert (await led.balance(account)).posted == posted
        await asyncio.gather(*(led.deposit(op, account, 1) for op in unknown))   # retry the unknowns
        assert (await led.balance(account)).posted == len(acked) + len(unknown)
        await led.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
