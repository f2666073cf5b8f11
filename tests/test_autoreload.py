"""AutoReload on a real Redis ledger and real SQL (SQLite and PostgreSQL): settings and who may change
them, exactly one reload per crossing under concurrent settlements from several clients, declines,
and a crash between detection and charge."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

import notify.sql
import payments.sql
from holders import Actor, BadInput, NotFound, Registry
from holders.autoreload import AutoReload, Limits
from holders.ledgerport import BlockingLedger
from holders.reloads import BACKOFF_MS, Reloader
from holders.sql import autoreload_reloads, make_engine, migrate
from ledger import InsufficientFunds, Ledger
from ledger.money import fmt_cents
from ledger.sql import migrate as ledger_migrate
from ledger.sql import transfers
from ledger.sync import SyncWorker
from payments.methods import PaymentMethods
from payments.sandbox import SandboxGateway
from payments.stored_charge import StoredCharges

SECRET = "s3cret-key-for-tests-0123456789"
STAFF = Actor.support("tester")
VISA, DECLINE = "4111111111111111", "4000000000000002"


class Phone:
    def __init__(self) -> None:
        self.last = ""

    def deliver(self, number: str, code: str, channel: str, language: str) -> None:
        self.last = code


class Clock:
    """Real time plus an offset the test moves (the ledger stamps entries with real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time
        return time.time() + self.offset


@dataclass
class World:
    engine: Engine
    sql_url: str
    redis_url: str
    reg: Registry
    auto: AutoReload
    gateway: SandboxGateway
    methods: PaymentMethods
    clock: Clock
    holder: str
    account: str

    def link(self, holder: str, number: str) -> str:
        facility = "FAC-01"
        self.reg.claim(STAFF, holder, facility, number, "sms")
        code = self.reg._sender.last  # type: ignore[union-attr]
        return self.reg.verify(STAFF, holder, facility, number, code).account_id

    def card(self, holder: str, card: str = VISA) -> str:
        async def add() -> str:
            added = await self.methods.add(holder, f"add-{secrets.token_hex(4)}", card, "1230", "123")
            return added.method_id
        return asyncio.run(add())

    def sync(self) -> None:
        worker = SyncWorker(self.redis_url, self.sql_url)
        try:
            worker.drain()
        finally:
            worker.close()

    def reloads(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(autoreload_reloads).where(
                autoreload_reloads.c.account_id == self.account).order_by(autoreload_reloads.c.created_ts)))

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT payload FROM notify_events WHERE kind = :k AND account_id = :a"),
                                {"k": kind, "a": self.account}).all()
        return [json.loads(r[0]) for r in rows]

    def reload_deposits(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(transfers).where(
                transfers.c.account_id == self.account, transfers.c.kind == "deposit",
                transfers.c.note == "stored-card")).scalar_one())

    async def run(self, rounds: int = 1) -> list[Any]:
        ledger = await Ledger.connect(self.redis_url)
        try:
            reloader = Reloader(self.engine, StoredCharges(ledger, self.methods, backoff=0), clock=self.clock)
            out = []
            for _ in range(rounds):
                out += await reloader.run_once()
            return out
        finally:
            await ledger.close()


@pytest.fixture
def world(sql_url: str, redis_url: str) -> Iterator[World]:
    for m in (ledger_migrate, migrate, payments.sql.migrate, notify.sql.migrate):
        m(sql_url)
    engine = make_engine(sql_url)
    blocking = BlockingLedger(redis_url)
    clock = Clock()
    reg = Registry(engine, secret=SECRET, sender=Phone(), ledger=blocking)
    gw = SandboxGateway()
    w = World(engine, sql_url, redis_url, reg, AutoReload(engine, Limits(100, 30_000), clock=clock), gw,
              PaymentMethods(engine, gw, "sandbox"), clock, "", "")
    w.holder = reg.create(STAFF, name="Pat Doe", email=f"pat{secrets.token_hex(3)}@example.com",
                          mobile="+13125550199").holder_id
    w.account = w.link(w.holder, f"+1312555{random.randrange(1000, 9999)}")
    try:
        yield w
    finally:
        blocking.close()
        engine.dispose()


async def spend(redis_url: str, account: str, totals: list[int], tag: str) -> None:
    """One call per total: hold, then settle (each op a Lua script, as the controllers do)."""
    ledger = await Ledger.connect(redis_url)
    try:
        for i, total in enumerate(totals):
            call = f"{tag}-{i}"
            try:
                await ledger.hold(f"{call}:hold", account, call, total, lease_seconds=600)
            except InsufficientFunds:        # unfunded: the call is refused
                continue
            await ledger.settle(f"{call}:settle", account, call, total)
    finally:
        await ledger.close()


def fund(w: World, cents: int) -> None:
    async def go() -> None:
        ledger = await Ledger.connect(w.redis_url)
        try:
            await ledger.deposit(f"fund-{secrets.token_hex(4)}", w.account, cents, source="test")
        finally:
            await ledger.close()
    asyncio.run(go())


def concurrently(w: World, calls: int, cents: int) -> None:
    """`calls` settlements from 4 clients in 4 threads (own connections, own event loops) at once."""
    tag = secrets.token_hex(3)
    shares = [[cents] * (calls // 4 + (1 if k < calls % 4 else 0)) for k in range(4)]
    threads = [threading.Thread(target=lambda k=k: asyncio.run(spend(w.redis_url, w.account, shares[k],
                                                                     f"c{tag}{k}"))) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def crossings(w: World, threshold: int) -> int:
    with w.engine.connect() as conn:
        rows = conn.execute(select(transfers.c.posted_after, transfers.c.amount).where(
            transfers.c.account_id == w.account, transfers.c.amount < 0)).all()
    return sum(1 for after, amount in rows if after < threshold <= after - amount)


# --- settings ---------------------------------------------------------------------------------------
def test_settings_are_validated_owner_checked_and_change_nothing_when_bad(world: World) -> None:
    w = world
    card = w.card(w.holder)
    me = Actor.holder(w.holder)
    assert w.auto.show(me, w.holder, w.account) is None
    bad: list[dict[str, Any]] = [
        {"threshold_cents": 1000, "amount_cents": 99, "method_id": card},          # under $1
        {"threshold_cents": 1000, "amount_cents": 30_001, "method_id": card},      # over the deposit max
        {"threshold_cents": 0, "amount_cents": 2500, "method_id": card},
        {"threshold_cents": 1000, "amount_cents": 25.0, "method_id": card},        # no floats for money
        {"threshold_cents": 1000, "amount_cents": 2500, "method_id": "pm_nope"},
        {"threshold_cents": 1000, "amount_cents": 2500},                           # nothing to charge
    ]
    for kwargs in bad:
        with pytest.raises(BadInput):
            w.auto.set(me, w.holder, w.account, **kwargs)
        assert w.auto.show(me, w.holder, w.account) is None
    got = w.auto.set(me, w.holder, w.account, threshold_cents=1000, amount_cents=2500, method_id=card)
    assert (got.enabled, got.threshold_cents, got.amount_cents, got.method_id) == (True, 1000, 2500, card)
    # Another holder: cannot read, change or switch off; cannot use their own card on it either.
    other = w.reg.create(STAFF, name="Eve", email=f"eve{secrets.token_hex(3)}@example.com",
                         mobile="+13125550198").holder_id
    eve = Actor.holder(other)
    eve_card = w.card(other)
    for call in (lambda: w.auto.show(eve, w.holder, w.account),
                 lambda: w.auto.show(eve, other, w.account),
                 lambda: w.auto.set(eve, other, w.account, threshold_cents=1, amount_cents=100,
                                    method_id=eve_card),
                 lambda: w.auto.off(eve, other, w.account)):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(BadInput):          # the holder's account, but someone else's card
        w.auto.set(STAFF, w.holder, w.account, amount_cents=3000, method_id=eve_card)
    assert w.auto.show(me, w.holder, w.account) == got
    off = w.auto.off(STAFF, w.holder, w.account)
    assert not off.enabled and off.off_reason == "off by staff:tester"
    with pytest.raises(ValueError):
        Limits(100, 4_999)                 # the deposit maximum can never refuse $50


# --- exactly once ------------------------------------------------------------------------------------
def test_one_reload_per_crossing_with_concurrent_settlements(world: World) -> None:
    w = world
    w.auto.set(STAFF, w.holder, w.account, threshold_cents=1000, amount_cents=2500,
               method_id=w.card(w.holder))
    fund(w, 3000)
    concurrently(w, 40, 60)                # 30.00 -> 6.00: one crossing of 10.00, wherever it falls
    w.sync()

    def detect_twice() -> None:            # two detectors at once: one insert wins per crossing
        engine = make_engine(w.sql_url)
        try:
            Reloader(engine, None).detect()  # type: ignore[arg-type]
        finally:
            engine.dispose()
    threads = [threading.Thread(target=detect_twice) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(w.reloads()) == crossings(w, 1000) == 1
    results = asyncio.run(w.run(rounds=2))
    assert [r.state for r in results] == ["posted"]
    w.sync()
    assert w.gateway.charges == 1 and w.reload_deposits() == 1
    assert len(w.events("autoreload_ok")) == 1
    # the family is told the amount reloaded, not "$0.00" (the payload keys are the template's)
    from notify.templates import render
    ok = w.events("autoreload_ok")[0]
    assert fmt_cents(ok["amount_cents"]) in render("autoreload_ok", "en", ok).text
    # Refilled above the threshold (6.00 + 25.00); more spending crosses again: a second reload.
    concurrently(w, 40, 60)                # 31.00 -> 7.00
    w.sync()
    asyncio.run(w.run(rounds=2))
    w.sync()
    assert crossings(w, 1000) == 2 == len(w.reloads()) == w.gateway.charges == w.reload_deposits()
    assert asyncio.run(w.run()) == [] and w.gateway.charges == 2       # nothing left to do


def test_random_interleavings_give_one_reload_per_crossing(world: World) -> None:
    w = world
    w.auto.set(STAFF, w.holder, w.account, threshold_cents=500, amount_cents=700, method_id=w.card(w.holder))
    fund(w, 1500)
    rnd = random.Random(12)
    for _ in range(6):
        concurrently(w, rnd.randrange(4, 16), rnd.randrange(20, 90))
        w.sync()
        if rnd.random() < 0.6:
            asyncio.run(w.run())
            w.sync()
    asyncio.run(w.run())
    w.sync()
    n = crossings(w, 500)
    assert n >= 2
    assert len(w.reloads()) == n == w.gateway.charges == w.reload_deposits()


def test_a_crash_between_detection_and_charge_charges_once(world: World) -> None:
    w = world
    w.auto.set(STAFF, w.holder, w.account, threshold_cents=1000, amount_cents=2500,
               method_id=w.card(w.holder))
    fund(w, 1200)
    asyncio.run(spend(w.redis_url, w.account, [500], "crash"))
    w.sync()

    class Boom(Exception):
        pass

    async def crash() -> None:
        ledger = await Ledger.connect(w.redis_url)
        charges = StoredCharges(ledger, w.methods, backoff=0)

        async def charged_then_die(order: Any, checkpoint: Any = None) -> Any:
            def die(step: str) -> None:
                if step == "charged":
                    raise Boom()
            await StoredCharges.charge(charges, order, checkpoint=die)
        charges.charge = charged_then_die  # type: ignore[method-assign]
        try:
            with pytest.raises(Boom):
                await Reloader(w.engine, charges, clock=w.clock).run_once()
        finally:
            await ledger.close()
    asyncio.run(crash())
    assert w.gateway.charges == 1 and [r.state for r in w.reloads()] == ["charging"]
    assert asyncio.run(w.run()) == []      # the lease has not run out: nobody takes it over yet
    w.clock.offset = 300
    assert [r.state for r in asyncio.run(w.run())] == ["posted"]
    w.sync()
    assert w.gateway.charges == 1 and w.reload_deposits() == 1


# --- declines ----------------------------------------------------------------------------------------
def test_declines_back_off_notify_and_switch_off_after_three(world: World) -> None:
    w = world
    w.auto.set(STAFF, w.holder, w.account, threshold_cents=1000, amount_cents=2500,
               method_id=w.card(w.holder, DECLINE))
    fund(w, 1200)
    asyncio.run(spend(w.redis_url, w.account, [500], "d"))
    w.sync()
    assert [r.state for r in asyncio.run(w.run())] == ["due"]       # declined: backing off
    assert asyncio.run(w.run()) == []                               # not retried in a loop
    assert len(w.events("autoreload_declined")) == 1
    w.clock.offset = BACKOFF_MS[0] / 1000 + 1
    assert [r.state for r in asyncio.run(w.run())] == ["due"]
    w.clock.offset += BACKOFF_MS[1] / 1000 + 1
    assert [r.state for r in asyncio.run(w.run())] == ["declined"]
    st = w.auto.show(STAFF, w.holder, w.account)
    assert st is not None and not st.enabled and st.declines == 3 and "3 declines in a row" in st.off_reason
    assert st.off_ts is not None
    assert len(w.events("autoreload_declined")) == 3 and len(w.events("autoreload_off")) == 1
    assert w.gateway.charges == 0
    # Switched off: a new crossing is not reloaded.
    fund(w, 2000)
    asyncio.run(spend(w.redis_url, w.account, [2000], "d2"))
    w.sync()
    assert asyncio.run(w.run()) == [] and len(w.reloads()) == 1


def test_a_phone_deposit_before_the_retry_makes_it_unneeded(world: World) -> None:
    w = world
    w.auto.set(STAFF, w.holder, w.account, threshold_cents=1000, amount_cents=2500,
               method_id=w.card(w.holder, DECLINE))
    fund(w, 1200)
    asyncio.run(spend(w.redis_url, w.account, [500], "p"))
    w.sync()
    asyncio.run(w.run())
    fund(w, 5000)
    w.clock.offset = BACKOFF_MS[0] / 1000 + 1
    assert [(r.state, r.reason) for r in asyncio.run(w.run())] == [("skipped", "balance_restored")]
    st = w.auto.show(STAFF, w.holder, w.account)
    assert st is not None and st.enabled and st.declines == 1


# --- CLI -----------------------------------------------------------------------------------------------
def test_support_cli_shows_sets_and_switches_off(world: World, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from callcontrol.cli import main
    w = world
    for name, value in (("REDIS_URL", w.redis_url), ("DATABASE_URL", w.sql_url), ("LOG_FORMAT", "json")):
        monkeypatch.setenv("CALLCONTROL_" + name, value)
    monkeypatch.delenv("CALLCONTROL_CONFIG", raising=False)
    card = w.card(w.holder)

    def cli(*argv: str) -> tuple[int, Any]:
        capsys.readouterr()
        rc = main(["holders", "autoreload", *argv, "--json"])
        out = capsys.readouterr().out
        return rc, json.loads(out) if rc == 0 else None
    assert cli("show", w.holder, w.account) == (0, {"autoreload": None})
    assert cli("set", w.holder, w.account, "--threshold", "1000", "--amount", "50", "--method", card)[0] == 2
    rc, got = cli("set", w.holder, w.account, "--threshold", "1000", "--amount", "2500", "--method", card)
    assert rc == 0 and got["enabled"] and got["amount_cents"] == 2500
    assert got["updated_by"].startswith("staff:")
    rc, got = cli("off", w.holder, w.account, "--reason", "holder asked by phone")
    assert rc == 0 and not got["enabled"] and got["off_reason"] == "holder asked by phone"
    assert cli("show", "h_nobody", w.account)[0] == 1
