"""End to end, issue #12: two controllers (each with its simulated Asterisk, both running the SQL sync and
the stored-card jobs, as two `callcontrol serve` processes do) settle calls at once on one account with
AutoReload on; exactly one reload happens per balance crossing (gateway charges, ledger deposits)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

import holders.sql
import notify.sql
import payments.sql
from callcontrol.commands import DEMO_START, Stack
from callcontrol.sim import Recipient
from holders import Actor, Registry
from holders.autoreload import AutoReload, Limits
from holders.ledgerport import BlockingLedger
from holders.sql import autoreload_reloads
from ledger import Ledger
from ledger.sql import migrate as ledger_migrate
from ledger.sql import transfers
from payments.methods import PaymentMethods
from payments.sandbox import SandboxGateway
from tests.e2e_support import FAC, SCALE, handset, settings

MARIA = "+13125551234"
STAFF = Actor.support("e2e")
THRESHOLD, RELOAD = 1950, 100


class Phone:
    def __init__(self) -> None:
        self.last = ""

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        self.last = code


def test_two_controllers_settling_at_once_reload_once_per_crossing(tmp_path: Path, redis_url: str) -> None:
    sql_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    for migrate in (ledger_migrate, holders.sql.migrate, payments.sql.migrate, notify.sql.migrate):
        migrate(sql_url)
    engine = holders.sql.make_engine(sql_url)
    blocking = BlockingLedger(redis_url)
    gw = SandboxGateway()                        # one processor, shared by both controllers

    def crossings(account: str, since: int) -> int:
        with engine.connect() as conn:
            rows = conn.execute(select(transfers.c.posted_after, transfers.c.amount).where(
                transfers.c.account_id == account, transfers.c.amount < 0, transfers.c.ts >= since)).all()
        return sum(1 for after, amount in rows if after < THRESHOLD <= after - amount)

    def reloads(account: str) -> list[str]:
        with engine.connect() as conn:
            return [r.state for r in conn.execute(select(autoreload_reloads).where(
                autoreload_reloads.c.account_id == account))]

    def stored_card_deposits(account: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(transfers).where(
                transfers.c.account_id == account, transfers.c.kind == "deposit",
                transfers.c.note == "stored-card")).scalar_one())

    async def go() -> None:
        phone = Phone()
        reg = Registry(engine, secret="e2e-code-secret-0123456789", sender=phone, ledger=blocking)
        holder = reg.create(STAFF, name="Maria", email=f"m{secrets.token_hex(3)}@example.com",
                            mobile="+13125550199").holder_id
        await asyncio.to_thread(reg.claim, STAFF, holder, FAC, MARIA, "sms")
        account = (await asyncio.to_thread(reg.verify, STAFF, holder, FAC, MARIA, phone.last)).account_id
        ledger = await Ledger.connect(redis_url)
        method = await PaymentMethods(engine, gw, "sandbox").add(holder, "e2e-card", "4111111111111111",
                                                                  "1230", "123")
        await ledger.deposit("e2e-fund", account, 2000 - (await ledger.balance(account)).posted)
        since = int((await asyncio.to_thread(
            AutoReload(engine, Limits(100, 30_000)).set, STAFF, holder, account, threshold_cents=THRESHOLD,
            amount_cents=RELOAD, method_id=method.method_id)).since_ts)
        s = replace(settings(tmp_path), payment_gateway="sandbox")
        stacks = [Stack(s, redis_url, scale=SCALE, start_at=DEMO_START, sql_url=sql_url, run_sync=True,
                        names_dir=str(tmp_path / "names"), instance=f"ctl-{name}", gateway=gw,
                        card_jobs_interval=0.05) for name in "ab"]
        try:
            for st in stacks:
                await st.start()
            calls = [st.sim.start_call(FAC, f"07{i}{j}", extension=f"07{i}{j}", handset=handset(MARIA[2:]),
                                       recipient=Recipient(MARIA, keys="1", talk=150 + 30 * j))
                     for i, st in enumerate(stacks) for j in range(4)]
            results = await asyncio.gather(*calls)
            assert all(r.last_dial is not None and r.last_dial.bridge_start is not None for r in results)
            for _ in range(400):                 # synced, detected and reloaded by either controller
                await asyncio.sleep(0.05)
                states = await asyncio.to_thread(reloads, account)
                if states and all(x == "posted" for x in states) and \
                        len(states) == await asyncio.to_thread(crossings, account, since) and \
                        await asyncio.to_thread(stored_card_deposits, account) == len(states):
                    break
            n = await asyncio.to_thread(crossings, account, since)
            assert n >= 1, n
            assert await asyncio.to_thread(reloads, account) == ["posted"] * n
            assert gw.charges == n == await asyncio.to_thread(stored_card_deposits, account)
            assert gw.charged_cents() == RELOAD * n
            await asyncio.sleep(0.3)             # more rounds on both controllers add nothing
            assert gw.charges == n
            assert all(st.controller.card_jobs is not None for st in stacks)
        finally:
            for st in stacks:
                await st.stop()
            await ledger.close()

    try:
        asyncio.run(go())
    finally:
        blocking.close()
        engine.dispose()
