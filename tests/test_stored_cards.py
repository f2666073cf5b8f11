"""Stored cards: the sandbox's tokenize/charge/refund/lookup, payment methods in SQL (SQLite and
PostgreSQL), and charging a stored card into a ledger account with a crash at every step."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select, text

from ledger import Ledger
from ledger.sql import make_engine
from payments.gateway import (
    Declined,
    GatewayError,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidCard,
    PaymentError,
)
from payments.methods import MethodNotFound, PaymentMethods
from payments.sandbox import SANDBOX_LOST_REPLY, SANDBOX_STAYS_UNKNOWN, SandboxGateway
from payments.sql import charges, migrate
from payments.stored_charge import StoredChargeOrder, StoredCharges

NOW = datetime(2026, 11, 15, tzinfo=UTC).timestamp()
VISA = "4111111111111111"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sandbox() -> SandboxGateway:
    return SandboxGateway(now=lambda: NOW)


def test_sandbox_tokenizes_charges_refunds_and_looks_up() -> None:
    async def go() -> None:
        gw = sandbox()
        tok = await gw.tokenize("t1", VISA, "1230", "123")
        assert (tok.brand, tok.last4, tok.exp_month, tok.exp_year) == ("visa", "1111", 12, 2030)
        assert await gw.tokenize("t1", VISA, "1230", "123") == tok
        with pytest.raises(IdempotencyConflict):
            await gw.tokenize("t1", "5555555555554444", "1230", "123")
        for card, exp, cvv, reason in [("4111111111111112", "1230", "123", "invalid_number"),
                                       (VISA, "0120", "123", "expired_card"),
                                       (VISA, "1230", "12", "incorrect_cvc")]:
            with pytest.raises(InvalidCard) as bad:
                await gw.tokenize(f"bad-{reason}", card, exp, cvv)
            assert bad.value.reason == reason
        charge = await gw.charge_token("c1", tok.token, 5000)
        assert await gw.charge_token("c1", tok.token, 5000) == charge and gw.charges == 1
        with pytest.raises(IdempotencyConflict):
            await gw.charge_token("c1", tok.token, 5001)
        found = await gw.lookup("c1")
        assert found is not None and (found.txn_id, found.kind, found.status) == (charge.charge_id, "charge",
                                                                                  "approved")
        assert await gw.lookup("never") is None
        # Several partial refunds, never more than the charge.
        await gw.refund("r1", charge.charge_id, 2000)
        await gw.refund("r1", charge.charge_id, 2000)            # replay: refunded once
        await gw.refund("r2", charge.charge_id, 2500)
        with pytest.raises(PaymentError):
            await gw.refund("r3", charge.charge_id, 501)
        await gw.refund("r3", charge.charge_id, 500)
        assert gw.charged_cents() == 0
        # Test-card conventions on a stored card.
        for card, error in [("4000000000000002", Declined), ("4000000000009995", InsufficientFunds)]:
            t = await gw.tokenize(f"t-{card}", card, "1230", "123")
            with pytest.raises(error):
                await gw.charge_token(f"c-{card}", t.token, 100)
        lost = await gw.tokenize("t-lost", SANDBOX_LOST_REPLY, "1230", "123")
        with pytest.raises(GatewayError):
            await gw.charge_token("c-lost", lost.token, 100)
        assert (await gw.lookup("c-lost")) is not None                     # charged: lookup resolves it
        stays = await gw.tokenize("t-unknown", SANDBOX_STAYS_UNKNOWN, "1230", "123")
        with pytest.raises(GatewayError):
            await gw.charge_token("c-unknown", stays.token, 100)
        with pytest.raises(GatewayError):
            await gw.lookup("c-unknown")
        with pytest.raises(GatewayError):
            await gw.charge_token("c-err", tok.token, 1013)               # nothing charged
        assert await gw.lookup("c-err") is None
        assert VISA not in repr(gw.__dict__)
    run(go())


@pytest.fixture
def engine(sql_url: str) -> Iterator[Engine]:
    migrate(sql_url)
    eng = make_engine(sql_url)
    yield eng
    eng.dispose()


def test_migrations_have_their_own_version_table(sql_url: str) -> None:
    from ledger.sql import migrate as ledger_migrate
    ledger_migrate(sql_url)
    migrate(sql_url)
    migrate(sql_url)                        # idempotent
    eng = make_engine(sql_url)
    try:
        names = set(inspect(eng).get_table_names())
        assert {"payments_alembic_version", "ledger_alembic_version", "payment_methods",
                "payment_charges"} <= names
        with eng.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM payments_alembic_version")).scalar() == "p0003"
    finally:
        eng.dispose()


def dump(eng: Engine) -> str:
    out = []
    with eng.connect() as conn:
        for name in inspect(eng).get_table_names():
            out.append(repr(conn.execute(text(f"SELECT * FROM {name}")).all()))
    return "\n".join(out)


def test_methods_are_owner_checked_soft_deleted_and_hold_no_card_data(engine: Engine) -> None:
    async def go() -> None:
        gw = sandbox()
        pm = PaymentMethods(engine, gw, "sandbox", now=lambda: NOW)
        a = await pm.add("holder-a", "add-1", VISA, "1230", "123")
        assert await pm.add("holder-a", "add-1", VISA, "1230", "123") == a     # idempotent by key
        assert (a.brand, a.last4, a.exp_month, a.exp_year, a.gateway) == ("visa", "1111", 12, 2030, "sandbox")
        b = await pm.add("holder-a", "add-2", "5555555555554444", "0631", "456")
        c = await pm.add("holder-b", "add-3", "378282246310005", "0429", "7890")
        assert [m.method_id for m in await pm.list_for("holder-a")] == [a.method_id, b.method_id]
        assert [m.method_id for m in await pm.list_for("holder-b")] == [c.method_id]
        # Another owner can neither read, remove, nor replay an add of someone else's method.
        for call in (pm.get_for_charge("holder-b", a.method_id), pm.remove("holder-b", a.method_id),
                     pm.add("holder-b", "add-1", VISA, "1230", "123")):
            with pytest.raises(MethodNotFound):
                await call
        assert (await pm.get_for_charge("holder-a", a.method_id)).token == a.token
        await pm.remove("holder-a", a.method_id)
        await pm.remove("holder-a", a.method_id)                              # idempotent
        with pytest.raises(MethodNotFound):
            await pm.get_for_charge("holder-a", a.method_id)
        assert [m.method_id for m in await pm.list_for("holder-a")] == [b.method_id]
        with pytest.raises(InvalidCard):
            await pm.add("holder-a", "add-4", "4111111111111112", "1230", "123")
        with pytest.raises(ValueError):
            await pm.list_for("")
        everything = dump(engine)
        for secret in (VISA, "5555555555554444", "378282246310005", "7890", "'123'", "'456'", "1230"):
            assert secret not in everything
    run(go())


def test_methods_stamped_alike_list_in_the_order_they_were_added(engine: Engine) -> None:
    async def go() -> None:
        pm = PaymentMethods(engine, sandbox(), "sandbox", now=lambda: NOW)
        added = [(await pm.add("holder-c", f"same-{i}", VISA, "1230", "123")).method_id for i in range(8)]
        assert [m.method_id for m in await pm.list_for("holder-c")] == added
    run(go())


class Crash(BaseException):
    """The process dies here (BaseException: nothing in the code under test catches it)."""


@pytest.fixture
def ledger(redis_url: str) -> Iterator[Ledger]:
    loop = asyncio.new_event_loop()
    led = loop.run_until_complete(Ledger.connect(redis_url))
    led._test_loop = loop  # type: ignore[attr-defined]
    yield led
    loop.run_until_complete(led.close())
    loop.close()


def setup(engine: Engine, ledger: Ledger, gw: SandboxGateway, card: str = VISA) -> tuple[Any, str, str]:
    loop = ledger._test_loop  # type: ignore[attr-defined]
    pm = PaymentMethods(engine, gw, "sandbox", now=lambda: NOW)
    method = loop.run_until_complete(pm.add("holder-a", f"add-{card}", card, "1230", "123"))
    acc = loop.run_until_complete(ledger.open_account("open-1", "FAC-07", "+13125551234"))
    return StoredCharges(ledger, pm, now=lambda: NOW, backoff=0, settle=0.2), method.method_id, acc


def row_state(engine: Engine, key: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(charges.c.state).where(charges.c.key == key)).scalar())


@pytest.mark.parametrize("step", ["charged", "recorded_charge", "credited"])
def test_a_crash_at_each_step_neither_loses_nor_doubles_money(engine: Engine, ledger: Ledger,
                                                              step: str) -> None:
    gw = sandbox()
    sc, method_id, acc = setup(engine, ledger, gw)
    loop = ledger._test_loop  # type: ignore[attr-defined]
    order = StoredChargeOrder("reload-1", "holder-a", method_id, acc, 2500)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        loop.run_until_complete(sc.charge(order, checkpoint=crash))
    assert gw.charged_cents() == 2500                 # the card was charged before the crash
    again = loop.run_until_complete(sc.charge(order))
    assert again.status == "posted" and again.charge_id
    third = loop.run_until_complete(sc.charge(order))
    assert third.status == "posted" and third.charge_id == again.charge_id
    assert gw.charges == 1 and gw.charged_cents() == 2500
    assert loop.run_until_complete(ledger.balance(acc)).posted == 2500
    assert row_state(engine, "reload-1") == "credited"


def test_refused_credit_is_refunded_and_bad_cases_charge_nothing(engine: Engine, ledger: Ledger) -> None:
    gw = sandbox()
    sc, method_id, acc = setup(engine, ledger, gw)
    loop = ledger._test_loop  # type: ignore[attr-defined]
    go = loop.run_until_complete
    go(ledger.freeze("frz", acc, reason="test"))
    refused = go(sc.charge(StoredChargeOrder("k-frozen", "holder-a", method_id, acc, 700)))
    assert (refused.status, refused.refunded) == ("failed", True) and gw.charged_cents() == 0
    assert row_state(engine, "k-frozen") == "refunded"
    go(ledger.unfreeze("unfrz", acc))
    # Another owner's method, a removed method, a conflicting replay: nothing charged.
    other = go(sc.charge(StoredChargeOrder("k-other", "holder-b", method_id, acc, 700)))
    assert (other.status, other.reason) == ("failed", "no_such_method")
    assert go(sc.charge(StoredChargeOrder("k-frozen", "holder-a", method_id, acc, 701))).reason == \
        "idempotency_conflict"
    go(sc.methods.remove("holder-a", method_id))
    removed = go(sc.charge(StoredChargeOrder("k-removed", "holder-a", method_id, acc, 700)))
    assert removed.reason == "no_such_method" and gw.charges == 1
    assert go(ledger.balance(acc)).posted == 0


@pytest.mark.parametrize("card, status", [("4000000000009995", "declined"), (SANDBOX_LOST_REPLY, "posted"),
                                          (SANDBOX_STAYS_UNKNOWN, "unknown")])
def test_declines_and_lost_replies(engine: Engine, ledger: Ledger, card: str, status: str) -> None:
    gw = sandbox()
    sc, method_id, acc = setup(engine, ledger, gw, card)
    go = ledger._test_loop.run_until_complete  # type: ignore[attr-defined]
    order = StoredChargeOrder("k-1", "holder-a", method_id, acc, 1500)
    first = go(sc.charge(order))
    second = go(sc.charge(order))
    assert first.status == second.status == status
    posted = go(ledger.balance(acc)).posted
    assert posted == (1500 if status == "posted" else 0)
    # Unknown: the card may be charged, the account is not credited until the outcome is known.
    assert gw.charged_cents() == (0 if status == "declined" else 1500) and gw.charges <= 1
    if status == "unknown":
        assert row_state(engine, "k-1") == "started"
