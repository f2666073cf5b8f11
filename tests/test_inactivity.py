"""The 180-day inactivity sweep: a notice on the 150th idle local day in the facility's zone, refund and
close on the 180th, a deposit restarting the period, a per-facility period, idempotent re-runs and a
crash mid-way. Real Redis ledger, SQLite and PostgreSQL, the sandbox gateway.

The ledger stamps its journal with Redis' clock, so an "old" deposit is made old by moving its SQL
copy's timestamp back (`age`); everything else reads the real rows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from holders.inactivity import Notice, Rules, Sweep
from holders.refunds import owed
from ledger.sql.schema import transfers
from rating.catalog import load_facility_files
from rating.errors import TariffError
from tests.refund_support import FAC, NUM, Crash, World, world

DAY_MS = 86_400_000
LATER = time.time() + 400 * 86400        # the refund runs long after the deposits: too old for a card


class Inbox:
    def __init__(self) -> None:
        self.got: list[Notice] = []

    def inactivity(self, notice: Notice) -> None:
        self.got.append(notice)


def run(sql_url: str, redis_url: str, body: Callable[[World], Awaitable[None]]) -> None:
    async def go() -> None:
        w = await world(sql_url, redis_url)
        try:
            await body(w)
        finally:
            await w.ledger.close()
            w.engine.dispose()
    asyncio.run(go())


def sweep(w: World, facilities: dict[str, Rules], inbox: Inbox,
          checkpoint: Callable[[str], None] | None = None) -> Sweep:
    return Sweep(w.engine, w.refunds(checkpoint, clock=lambda: LATER), facilities, notices=inbox, sync=w.sync)


def deposit_day(w: World, acct: str, tz: ZoneInfo) -> date:
    with w.engine.connect() as conn:
        ts = conn.execute(select(transfers.c.ts).where(transfers.c.account_id == acct)
                          .order_by(transfers.c.ts.desc())).scalars().first()
    assert ts is not None
    return datetime.fromtimestamp(ts / 1000, tz).date()


def age(w: World, acct: str, days: int) -> None:
    with w.engine.begin() as conn:
        conn.execute(update(transfers).where(transfers.c.account_id == acct)
                     .values(ts=transfers.c.ts - days * DAY_MS))


async def funded(w: World, number: str = NUM, facility: str = FAC) -> str:
    hid = w.holder(email=f"p{number[-4:]}{facility}@example.com")
    acct = await w.account(hid, number, facility)
    await w.ivr_deposit(acct, f"ivr-{facility}-{number[1:]}", 2500, number=number, facility=facility)
    await w.sync()
    return acct


def test_notice_on_day_150_then_refund_and_close_on_day_180(sql_url: str, redis_url: str) -> None:
    async def body(w: World) -> None:
        tz = ZoneInfo("America/Chicago")
        acct = await funded(w)
        day0 = deposit_day(w, acct, tz)
        inbox = Inbox()
        s = sweep(w, {FAC: Rules(tz)}, inbox)
        assert (await s.run(day0 + timedelta(days=149))).noticed == []
        assert (await s.run(day0 + timedelta(days=150))).noticed == [acct]
        assert (await s.run(day0 + timedelta(days=150))).noticed == []            # once
        assert (await s.run(day0 + timedelta(days=179))).noticed == []
        assert [(n.account_id, n.last_activity, n.refund_on) for n in inbox.got] == [
            (acct, day0, day0 + timedelta(days=180))]
        assert (await w.ledger.balance(acct)).state == "active"
        report = await s.run(day0 + timedelta(days=180))
        assert report.refunded == [acct]
        bal = await w.ledger.balance(acct)
        assert (bal.posted, bal.state) == (0, "closed")
        assert [(o.amount, o.reason) for o in owed(w.engine)] == [(2500, "too_old")]   # 180 days on
        again = await s.run(day0 + timedelta(days=181))
        assert (again.refunded, again.noticed, len(inbox.got)) == ([], [], 1)
        assert await w.refund_events(acct) == 1
    run(sql_url, redis_url, body)


def test_local_dates_in_each_facilitys_zone(sql_url: str, redis_url: str) -> None:
    """UTC+14 and UTC-11 are never on the same date: the same `today` is day 150 in one, 149 in the other."""
    async def body(w: World) -> None:
        east, west = ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Pacific/Pago_Pago")
        a = await funded(w, NUM, "FAC-EAST")
        b = await funded(w, NUM, "FAC-WEST")
        de, dw = deposit_day(w, a, east), deposit_day(w, b, west)
        assert de - dw == timedelta(days=1)                 # 25 hours apart: always the next date
        s = sweep(w, {"FAC-EAST": Rules(east), "FAC-WEST": Rules(west)}, Inbox())
        assert (await s.run(dw + timedelta(days=150))).noticed == [b]
        assert (await s.run(de + timedelta(days=150))).noticed == [a]
    run(sql_url, redis_url, body)


def test_a_deposit_restarts_the_period(sql_url: str, redis_url: str) -> None:
    async def body(w: World) -> None:
        tz = ZoneInfo("America/Chicago")
        acct = await funded(w)
        age(w, acct, 100)                                   # that deposit was 100 days ago
        await w.ledger.deposit("cash-100", acct, 500, source="cash")    # day 100: a new deposit
        await w.sync()
        today = deposit_day(w, acct, tz)
        inbox = Inbox()
        s = sweep(w, {FAC: Rules(tz)}, inbox)
        r = await s.run(today + timedelta(days=80))          # 180 days after the first deposit
        assert (r.noticed, r.refunded) == ([], [])
        assert (await s.run(today + timedelta(days=150))).noticed == [acct]
        assert (await s.run(today + timedelta(days=180))).refunded == [acct]
    run(sql_url, redis_url, body)


def test_per_facility_period(sql_url: str, redis_url: str, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        tz = ZoneInfo("America/Chicago")
        acct = await funded(w)
        day0 = deposit_day(w, acct, tz)
        s = sweep(w, {FAC: Rules(tz, days=365)}, Inbox())
        assert (await s.run(day0 + timedelta(days=200))).noticed == []
        assert (await s.run(day0 + timedelta(days=335))).noticed == [acct]
        assert (await s.run(day0 + timedelta(days=364))).refunded == []
        assert (await s.run(day0 + timedelta(days=365))).refunded == [acct]
    run(sql_url, redis_url, body)


def test_crash_mid_sweep_then_rerun_finishes_once(sql_url: str, redis_url: str) -> None:
    async def body(w: World) -> None:
        tz = ZoneInfo("America/Chicago")
        acct = await funded(w)
        day = deposit_day(w, acct, tz) + timedelta(days=180)
        inbox = Inbox()

        def crash(step: str) -> None:
            if step == "ledger_refunded":
                raise Crash(step)
        with pytest.raises(Crash):
            await sweep(w, {FAC: Rules(tz)}, inbox, crash).run(day)
        assert (await w.ledger.balance(acct)).state == "frozen"
        report = await sweep(w, {FAC: Rules(tz)}, inbox).run(day)
        assert report.refunded == [acct] and len(inbox.got) == 1
        assert sum(o.amount for o in owed(w.engine)) == 2500
        assert (await w.ledger.balance(acct)).state == "closed"
    run(sql_url, redis_url, body)


def test_facility_period_is_a_validated_toml_field(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parent.parent / "facility_data" / "facilities" / "FAC-07.toml"
    text = src.read_text()
    assert load_facility_files([src])["FAC-07"].inactivity_days == 180
    for days, ok in ((365, True), (179, False)):
        f = tmp_path / f"F{days}.toml"
        f.write_text(text.replace('type = "jail"', f'type = "jail"\ninactivity_days = {days}'))
        if ok:
            assert load_facility_files([f])["FAC-07"].inactivity_days == days
        else:
            with pytest.raises(TariffError, match="inactivity_days"):
                load_facility_files([f])
