"""Low-balance alerts and the holder-backed recipient directory, on a real Redis ledger and real SQL
(SQLite and PostgreSQL): one alert per downward crossing of the holder's threshold, none again until the
balance is back above it, the holder's channels, quiet hours, opt-outs and muted kinds."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

import notify.sql
import payments.sql
from holders import Actor, BadInput, NotFound, Registry
from holders.alerts import Alerts, derive_low_balance
from holders.directory import HolderDirectory
from holders.ledgerport import BlockingLedger
from holders.sql import make_engine, migrate
from ledger import Ledger
from ledger.sql import migrate as ledger_migrate
from ledger.sync import SyncWorker
from notify import outbox
from notify.model import LOW_BALANCE, UNFUNDED_ATTEMPT, Event
from tests.test_autoreload import STAFF, Phone, spend

SECRET = "s3cret-key-for-tests-0123456789"


class W:
    def __init__(self, sql_url: str, redis_url: str) -> None:
        for m in (ledger_migrate, migrate, payments.sql.migrate, notify.sql.migrate):
            m(sql_url)
        self.sql_url, self.redis_url = sql_url, redis_url
        self.engine = make_engine(sql_url)
        self.blocking = BlockingLedger(redis_url)
        self.reg = Registry(self.engine, secret=SECRET, sender=Phone(), ledger=self.blocking)
        self.alerts = Alerts(self.engine)

    def holder(self, language: str = "en") -> tuple[str, str, str]:
        mobile = f"+1312555{random.randrange(1000, 9999)}"
        h = self.reg.create(STAFF, name="Pat Doe", email=f"pat{secrets.token_hex(3)}@example.com",
                            mobile=mobile, language=language).holder_id
        number = f"+1773555{random.randrange(1000, 9999)}"
        self.reg.claim(STAFF, h, "FAC-01", number, "sms")
        account = self.reg.verify(STAFF, h, "FAC-01", number, self.reg._sender.last).account_id  # type: ignore
        return h, account, mobile

    def ledger(self, coro: Any) -> Any:
        return asyncio.run(coro)

    def fund(self, account: str, cents: int) -> None:
        async def go() -> None:
            ledger = await Ledger.connect(self.redis_url)
            try:
                await ledger.deposit(f"fund-{secrets.token_hex(4)}", account, cents, source="test")
            finally:
                await ledger.close()
        asyncio.run(go())

    def spend(self, account: str, *totals: int) -> None:
        asyncio.run(spend(self.redis_url, account, list(totals), secrets.token_hex(3)))

    def sync_and_derive(self) -> int:
        worker = SyncWorker(self.redis_url, self.sql_url)
        try:
            worker.drain()
        finally:
            worker.close()
        with self.engine.begin() as conn:
            return derive_low_balance(conn, outbox.now_ms())

    def events(self, account: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT payload FROM notify_events WHERE kind = :k AND account_id = :a"),
                                {"k": LOW_BALANCE, "a": account}).all()
        return [json.loads(r[0]) for r in rows]


@pytest.fixture
def w(sql_url: str, redis_url: str) -> Iterator[W]:
    world = W(sql_url, redis_url)
    try:
        yield world
    finally:
        world.blocking.close()
        world.engine.dispose()


def test_one_alert_per_downward_crossing_and_none_until_back_above(w: W) -> None:
    h, account, _ = w.holder()
    w.fund(account, 2000)
    w.alerts.set_low_balance(Actor.holder(h), h, account, 1000, ["sms", "call"])
    w.spend(account, 500, 400)                   # 2000 -> 1500 -> 1100: above the threshold
    assert w.sync_and_derive() == 0
    w.spend(account, 300, 200, 100)              # 1100 -> 800 (crossing) -> 600 -> 500: one alert
    assert w.sync_and_derive() == 1
    assert w.sync_and_derive() == 0              # a second pass (or detector) raises nothing
    assert w.events(account) == [{"number": w.events(account)[0]["number"], "balance_cents": 800,
                                  "threshold_cents": 1000}]
    w.fund(account, 300)                          # 800 -> 800: still under: no new crossing possible
    w.spend(account, 100)
    assert w.sync_and_derive() == 0
    w.fund(account, 1000)                         # back above (1700)
    w.spend(account, 800)                         # 1700 -> 900: the second crossing
    assert w.sync_and_derive() == 1
    assert sorted(e["balance_cents"] for e in w.events(account)) == [800, 900]


def test_crossings_before_the_threshold_was_set_raise_nothing(w: W) -> None:
    h, account, _ = w.holder()
    w.fund(account, 1000)
    w.spend(account, 600)                         # crosses 500 before any alert was set
    w.sync_and_derive()
    w.alerts.set_low_balance(Actor.holder(h), h, account, 500)
    assert w.sync_and_derive() == 0 and w.events(account) == []


def test_settings_are_checked_and_another_holders_account_is_not_found(w: W) -> None:
    h, account, _ = w.holder()
    other, _, _ = w.holder()
    me = Actor.holder(h)
    for bad in ({"threshold_cents": -1}, {"threshold_cents": 10.5},
                {"threshold_cents": 500, "channels": ["fax"]}, {"threshold_cents": 500, "channels": []},
                {"threshold_cents": 500, "channels": "sms"}):
        with pytest.raises(BadInput):
            w.alerts.set_low_balance(me, h, account, **bad)  # type: ignore[arg-type]
    assert w.alerts.low_balance(me, h, account) is None          # nothing was written
    with pytest.raises(NotFound):
        w.alerts.set_low_balance(Actor.holder(other), other, account, 500)
    with pytest.raises(NotFound):
        w.alerts.low_balance(Actor.holder(other), h, account)
    with pytest.raises(BadInput):
        w.alerts.set_prefs(me, h, quiet_start=2000)


def test_directory_gives_the_holders_channels_quiet_hours_and_opt_outs(w: W) -> None:
    h, account, mobile = w.holder(language="es")
    me = Actor.holder(h)
    w.alerts.set_low_balance(me, h, account, 500, ["call", "email"])
    w.alerts.set_prefs(me, h, quiet_start=22 * 60, quiet_end=7 * 60, off_channels=["email"])
    directory = HolderDirectory()

    def recipients(event: Event) -> list[Any]:
        with w.engine.begin() as conn:       # as the worker's fan-out does: its own transaction
            return directory.recipients(conn, event)

    people = recipients(Event(LOW_BALANCE, "k1", account_id=account))
    assert sorted((p.channel, p.address) for p in people)[0] == ("call", mobile)
    assert {p.channel for p in people} == {"call", "email"}
    assert all(p.language == "es" and (p.quiet_start, p.quiet_end) == (1320, 420) for p in people)
    assert all(p.opted_out == frozenset({"email"}) for p in people)
    w.alerts.set_prefs(me, h, muted_kinds=[LOW_BALANCE])
    assert all(p.opted_out >= {"sms", "email", "call"}
               for p in recipients(Event(LOW_BALANCE, "k2", account_id=account)))
    # A number-addressed unfunded attempt: the holder of that number and facility, else the number itself.
    stranger = "+13125550111"
    alone = recipients(Event(UNFUNDED_ATTEMPT, "k3", facility_id="FAC-01", number_e164=stranger))
    assert sorted((p.channel, p.address) for p in alone) == [("call", stranger), ("sms", stranger)]
