"""The stuck-charge sweeper on a real Redis ledger and real SQL: rows left part-way by a crash at each
step, or by an unknown outcome, are finished once and only once; live rows are left alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from ledger import Ledger
from ledger.sql import make_engine
from payments.charge_sweep import MIN_AGE_SECONDS, ChargeSweeper
from payments.methods import PaymentMethods
from payments.sandbox import SANDBOX_STAYS_UNKNOWN, SandboxGateway
from payments.sql import migrate
from payments.stored_charge import StoredChargeOrder, StoredCharges
from tests.test_stored_cards import NOW, VISA, Crash, row_state


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def engine(sql_url: str) -> Iterator[Engine]:
    migrate(sql_url)
    eng = make_engine(sql_url)
    yield eng
    eng.dispose()


async def stack(engine: Engine, redis_url: str, card: str = VISA
                ) -> tuple[Ledger, SandboxGateway, StoredCharges, StoredChargeOrder, Clock]:
    clock = Clock()
    gw = SandboxGateway(now=clock)
    ledger = await Ledger.connect(redis_url)
    pm = PaymentMethods(engine, gw, "sandbox", now=clock)
    method = await pm.add("holder-a", f"add-{card}", card, "1230", "123")
    acc = await ledger.open_account("open-sweep", "FAC-07", "+13125551999")
    sc = StoredCharges(ledger, pm, now=clock, backoff=0, settle=0.2)
    return ledger, gw, sc, StoredChargeOrder(f"sweep-{card}", "holder-a", method.method_id, acc, 2500), clock


@pytest.mark.parametrize("step", ["start", "charged", "recorded_charge"])
def test_a_charge_left_part_way_by_a_crash_is_finished_once(engine: Engine, redis_url: str,
                                                            step: str) -> None:
    async def go() -> None:
        ledger, gw, sc, order, clock = await stack(engine, redis_url)
        try:
            def crash(at: str) -> None:
                if at == step:
                    raise Crash(at)
            if step == "start":        # the process died after the row, before the gateway
                await asyncio.to_thread(sc._begin, order)
            else:
                with pytest.raises(Crash):
                    await sc.charge(order, checkpoint=crash)
            before = (await ledger.balance(order.account_id)).posted
            sweeper, rival = ChargeSweeper(sc), ChargeSweeper(sc)
            assert await sweeper.run_once() == []                   # too fresh: a live run may own it
            clock.t += MIN_AGE_SECONDS + 1
            swept = await asyncio.gather(sweeper.run_once(), rival.run_once())
            assert [s.outcome.status for s in swept[0] + swept[1]] == ["posted"]     # one sweeper ran it
            assert row_state(engine, order.key) == "credited"
            assert gw.charges == 1 and gw.charged_cents() == 2500
            assert (await ledger.balance(order.account_id)).posted - before == 2500
            clock.t += MIN_AGE_SECONDS + 1
            assert await sweeper.run_once() == []                   # final rows are never touched
            assert gw.charges == 1
        finally:
            await ledger.close()
    asyncio.run(go())


def test_an_outcome_that_stays_unknown_is_retried_later_and_never_credited(engine: Engine,
                                                                          redis_url: str) -> None:
    async def go() -> None:
        ledger, gw, sc, order, clock = await stack(engine, redis_url, SANDBOX_STAYS_UNKNOWN)
        try:
            before = (await ledger.balance(order.account_id)).posted
            assert (await sc.charge(order)).status == "unknown"
            sweeper = ChargeSweeper(sc)
            clock.t += MIN_AGE_SECONDS + 1
            assert [s.outcome.status for s in await sweeper.run_once()] == ["unknown"]
            assert await sweeper.run_once() == []                   # waits min_age again
            assert row_state(engine, order.key) == "started" and gw.charges <= 1
            assert (await ledger.balance(order.account_id)).posted == before
        finally:
            await ledger.close()
    asyncio.run(go())
