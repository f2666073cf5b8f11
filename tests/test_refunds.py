"""Refunds of an account's available balance: to the cards it came from, newest deposit first, the rest
owed by check; frozen while in flight; exactly once across a crash at every step. Real Redis ledger,
SQLite and PostgreSQL, the sandbox gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from holders import Actor, NotFound
from holders.refunds import RefundInFlight, owed
from ledger import AccountNotActive
from ledger.sql.schema import transfers
from payments.gateway import GatewayError
from payments.sql import methods
from tests.refund_support import ADDRESS, STAFF, Crash, World, world


def run(sql_url: str, redis_url: str, body: Callable[[World], Awaitable[None]]) -> None:
    async def go() -> None:
        w = await world(sql_url, redis_url)
        try:
            await body(w)
        finally:
            await w.ledger.close()
            w.engine.dispose()
    asyncio.run(go())


async def two_cards(w: World) -> tuple[str, str, str, str]:
    """$30 from a stored Visa, then $20 on the 800 line (Mastercard); a $15 call: $35 available."""
    hid = w.holder()
    acct = await w.account(hid)
    older = await w.stored_deposit(hid, acct, "sc-1", 3000)
    newer = await w.ivr_deposit(acct, "ivr-1", 2000)
    await w.ledger.hold("call-1:hold", acct, "call-1", 1500, lease_seconds=600)
    await w.ledger.settle("call-1:settle", acct, "call-1", 1500)
    return hid, acct, older, newer


def refunded(w: World, charge_id: str) -> int:
    return w.gateway.auths[charge_id].refunded_cents


def test_two_cards_newest_first_within_each_charge(sql_url: str, redis_url: str) -> None:
    async def body(w: World) -> None:
        hid, acct, older, newer = await two_cards(w)
        res = await w.refunds().request(Actor.holder(hid), hid, acct, "r-1")
        assert res.state == "done" and res.amount == 3500
        assert [(p.method, p.charge_id, p.amount, p.state) for p in res.parts] == [
            ("card", newer, 2000, "refunded"), ("card", older, 1500, "refunded")]
        assert (refunded(w, newer), refunded(w, older)) == (2000, 1500)
        bal = await w.ledger.balance(acct)
        assert (bal.posted, bal.state) == (0, "active")           # unfrozen, not closed
        assert await w.refund_events(acct) == 1
        # The same request again does nothing more.
        again = await w.refunds().request(STAFF, hid, acct, "r-1")
        assert again.parts == res.parts and w.gateway.charged_cents() == 1500
        # A later refund takes only what each charge can still give back: the newer one is spent.
        await w.ivr_deposit(acct, "ivr-2", 1000)
        await w.ledger.hold("call-2:hold", acct, "call-2", 200, lease_seconds=600)
        await w.ledger.settle("call-2:settle", acct, "call-2", 200)
        more = await w.refunds().request(STAFF, hid, acct, "r-2", close=True)
        assert [(p.amount, p.state) for p in more.parts] == [(800, "refunded")]
        assert (await w.ledger.balance(acct)).state == "closed"
    run(sql_url, redis_url, body)


def test_refused_card_expired_card_and_cash_are_owed_by_check(sql_url: str, redis_url: str) -> None:
    async def body(w: World) -> None:
        hid = w.holder()
        acct = await w.account(hid)
        await w.ledger.deposit("cash-1", acct, 500, source="cash", reference="receipt-9")
        expired = await w.stored_deposit(hid, acct, "sc-1", 1000)
        with w.engine.begin() as conn:      # the stored card has expired since
            conn.execute(update(methods).values(exp_month=1, exp_year=2020))
        refused = await w.ivr_deposit(acct, "ivr-1", 700)
        await w.gateway.void(refused)       # the processor will refuse to refund it
        await w.ledger.adjust("adj-1", acct, 50, reason="goodwill")
        res = await w.refunds().request(STAFF, hid, acct, "r-1", close=True)
        assert res.state == "done" and res.to_cards == 0 and res.by_check == 2250
        assert [(p.amount, p.reason.split(":")[0]) for p in res.parts] == [
            (700, "refused"), (1000, "expired_card"), (500, "not_a_card"), (50, "no_deposit")]
        assert refunded(w, expired) == 0
        lines = owed(w.engine)
        assert sum(o.amount for o in lines) == 2250
        assert {(o.payee_name, o.payee_address) for o in lines} == {("Pat Doe", ADDRESS)}
        assert (await w.ledger.balance(acct)).state == "closed"
    run(sql_url, redis_url, body)


def test_frozen_while_in_flight_and_one_refund_at_a_time(sql_url: str, redis_url: str) -> None:
    async def body(w: World) -> None:
        hid, acct, *_ = await two_cards(w)

        def crash(step: str) -> None:
            if step == "ledger_refunded":
                raise Crash(step)
        with pytest.raises(Crash):
            await w.refunds(crash).request(STAFF, hid, acct, "r-1")
        with pytest.raises(AccountNotActive):     # a call cannot reserve money being returned
            await w.ledger.hold("call-2:hold", acct, "call-2", 100, lease_seconds=600)
        with pytest.raises(RefundInFlight):
            await w.refunds().request(STAFF, hid, acct, "r-other")
        assert (await w.refunds().request(STAFF, hid, acct, "r-1")).state == "done"
        assert (await w.ledger.balance(acct)).state == "active"
    run(sql_url, redis_url, body)


def test_another_holder_cannot_refund_someone_elses_account(sql_url: str, redis_url: str) -> None:
    async def body(w: World) -> None:
        hid, acct, *_ = await two_cards(w)
        other = w.holder("eve@example.com")
        for actor, holder in ((Actor.holder(other), hid), (Actor.holder(other), other)):
            with pytest.raises(NotFound):
                await w.refunds().request(actor, holder, acct, "r-evil")
        assert (await w.ledger.balance(acct)).available == 3500 and w.gateway.charged_cents() == 5000
    run(sql_url, redis_url, body)


class LostReply:
    """The processor refunds, then the process dies before it hears back."""

    def __init__(self, inner: Any, at: int) -> None:
        self.inner, self.at, self.calls = inner, at, 0

    async def refund(self, key: str, charge_id: str, cents: int) -> Any:
        got = await self.inner.refund(key, charge_id, cents)
        self.calls += 1
        if self.calls == self.at:
            raise Crash("after the processor's refund")
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


STEPS = ["frozen", "planned", "ledger_refunded", "gateway:1", "card_refunded:1", "gateway:2",
         "card_refunded:2", "finishing"]


@pytest.mark.parametrize("close", [False, True], ids=["refund", "close"])
@pytest.mark.parametrize("step", STEPS)
def test_crash_at_each_step_then_rerun_is_exactly_once(sql_url: str, redis_url: str, step: str,
                                                        close: bool) -> None:
    async def body(w: World) -> None:
        hid, acct, older, newer = await two_cards(w)

        def crash(at: str) -> None:
            if at == step:
                raise Crash(at)
        gateway = LostReply(w.gateway, int(step[-1])) if step.startswith("gateway:") else None
        with pytest.raises(Crash):
            await w.refunds(crash, gateway=gateway).request(STAFF, hid, acct, "r-1", close=close)
        res = await w.refunds().request(STAFF, hid, acct, "r-1", close=close)
        assert res.state == "done" and res.to_cards == 3500
        assert (refunded(w, newer), refunded(w, older)) == (2000, 1500)        # not lost, not doubled
        bal = await w.ledger.balance(acct)
        assert (bal.posted, bal.state) == (0, "closed" if close else "active")
        await w.sync()
        with w.engine.connect() as conn:
            outs = conn.execute(select(transfers.c.amount).where(transfers.c.account_id == acct,
                                                                 transfers.c.kind == "refund")).all()
        assert [o.amount for o in outs] == [-3500]
        assert await w.refund_events(acct) == 1
    run(sql_url, redis_url, body)


def test_unknown_processor_answer_stops_and_a_rerun_resolves_it(sql_url: str, redis_url: str) -> None:
    async def body(w: World) -> None:
        hid, acct, *_ = await two_cards(w)

        class Down:
            async def refund(self, *a: Any) -> Any:
                raise GatewayError("timeout")

            async def lookup(self, key: str) -> Any:
                raise GatewayError("timeout")
        res = await w.refunds(gateway=Down()).request(STAFF, hid, acct, "r-1")
        assert res.state == "unknown" and (await w.ledger.balance(acct)).state == "frozen"
        assert w.gateway.charged_cents() == 5000 and owed(w.engine) == []
        res = await w.refunds().request(STAFF, hid, acct, "r-1")
        assert res.state == "done" and res.to_cards == 3500
    run(sql_url, redis_url, body)
