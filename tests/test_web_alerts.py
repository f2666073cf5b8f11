"""The alert settings a family sets over the web API are the ones the alerts run on (issues #13/#14): a
threshold set with PATCH /me raises exactly one low_balance event when a real ledger debit crosses it,
and the quiet hours and switched-off channels are what HolderDirectory hands notify. Real Redis ledger,
real SQL (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, text

from holders.alerts import derive_low_balance
from holders.directory import HolderDirectory
from holders.sql import make_engine
from ledger import Ledger
from ledger.sync import SyncWorker
from notify import outbox
from notify.model import LOW_BALANCE, Event
from tests.support.web import Phone, config, live_app, sign_up
from tests.test_autoreload import spend
from tests.test_web_api import bearer, own_account


@pytest.fixture
def phone() -> Phone:
    return Phone()


@pytest.fixture
def base(redis_url: str, sql_url: str, phone: Phone) -> Iterator[str]:
    with live_app(config(redis_url, sql_url, phone)) as url:
        yield url


@pytest.fixture
def engine(sql_url: str, base: str) -> Iterator[Engine]:
    eng = make_engine(sql_url)
    yield eng
    eng.dispose()


def fund(redis_url: str, account: str, cents: int) -> None:
    async def go() -> None:
        ledger = await Ledger.connect(redis_url)
        try:
            await ledger.deposit(f"fund-{secrets.token_hex(4)}", account, cents, source="test")
        finally:
            await ledger.close()
    asyncio.run(go())


def sync_and_derive(redis_url: str, sql_url: str, engine: Engine) -> int:
    worker = SyncWorker(redis_url, sql_url, run_migrations=False)
    try:
        worker.drain()
    finally:
        worker.close()
    with engine.begin() as conn:
        return derive_low_balance(conn, outbox.now_ms())


def low_events(engine: Engine, account: str) -> list[dict[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT payload FROM notify_events WHERE kind = :k AND account_id = :a"),
                            {"k": LOW_BALANCE, "a": account}).all()
    return [json.loads(r[0]) for r in rows]


def test_a_threshold_set_on_the_web_raises_one_alert_per_crossing(base: str, phone: Phone, redis_url: str,
                                                                   sql_url: str, engine: Engine) -> None:
    with httpx.Client(base_url=base) as c:
        token = sign_up(c, "alerts@example.com")
        account = own_account(c, token, phone)
        fund(redis_url, account, 2000)
        assert sync_and_derive(redis_url, sql_url, engine) == 0
        r = c.patch("/api/v1/me", headers=bearer(token), json={"low_balance_cents": 1000})
        assert r.status_code == 200, r.text
        assert r.json()["alerts"]["low_balance"] == {"cents": 1000, "formatted": "$10.00"}
        asyncio.run(spend(redis_url, account, [500, 400], secrets.token_hex(3)))  # 2000 -> 1100: above
        assert sync_and_derive(redis_url, sql_url, engine) == 0
        asyncio.run(spend(redis_url, account, [300, 200], secrets.token_hex(3)))  # -> 800 (crossing) -> 600
        assert sync_and_derive(redis_url, sql_url, engine) == 1
        assert sync_and_derive(redis_url, sql_url, engine) == 0
        events = low_events(engine, account)
        assert [(e["balance_cents"], e["threshold_cents"]) for e in events] == [(800, 1000)]
        again = c.patch("/api/v1/me", headers=bearer(token), json={"low_balance_cents": 1000})
        assert again.status_code == 200                          # the same amount: nothing re-armed
        assert sync_and_derive(redis_url, sql_url, engine) == 0
        assert c.get("/api/v1/me", headers=bearer(token)).json()["alerts"]["low_balance"]["cents"] == 1000


def test_new_accounts_get_the_holders_threshold(base: str, phone: Phone, engine: Engine) -> None:
    with httpx.Client(base_url=base) as c:
        token = sign_up(c, "later@example.com")
        r = c.patch("/api/v1/me", headers=bearer(token), json={"low_balance_cents": 700})
        assert r.status_code == 200 and r.json()["alerts"]["low_balance"]["cents"] == 700   # no account yet
        account = own_account(c, token, phone)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT threshold_cents, channels FROM holder_low_balance "
                                "WHERE account_id = :a"), {"a": account}).one()
    assert (int(got[0]), got[1]) == (700, "email,sms")


def test_quiet_hours_channels_and_mutes_set_on_the_web_reach_the_directory(base: str, phone: Phone,
                                                                            engine: Engine) -> None:
    with httpx.Client(base_url=base) as c:
        token = sign_up(c, "quiet@example.com", mobile="+13125550177")
        account = own_account(c, token, phone)
        r = c.patch("/api/v1/me", headers=bearer(token), json={
            "quiet_hours": {"start_minute": 1320, "end_minute": 420}, "alerts_email": False,
            "muted_kinds": ["deposit_receipt"]})
        assert r.status_code == 200, r.text
        alerts = r.json()["alerts"]
        assert (alerts["sms"], alerts["email"], alerts["muted_kinds"]) == (True, False, ["deposit_receipt"])
        bad = c.patch("/api/v1/me", headers=bearer(token), json={"muted_kinds": ["verification_code"]})
        assert bad.status_code == 422                           # a code is never muted
        holder_id = c.get("/api/v1/me", headers=bearer(token)).json()["holder_id"]
    directory, conn = HolderDirectory(), engine.connect()
    low = directory.recipients(conn, Event(LOW_BALANCE, "k-1", account_id=account, holder_id=holder_id,
                                           payload={"balance_cents": 400, "threshold_cents": 500}))
    assert {(x.channel, x.quiet_start, x.quiet_end) for x in low} == {("sms", 1320, 420),
                                                                      ("email", 1320, 420)}
    assert all(x.opted_out == frozenset({"email"}) for x in low)
    receipt = directory.recipients(conn, Event("deposit_receipt", "k-2", account_id=account,
                                               holder_id=holder_id, payload={"amount_cents": 100}))
    conn.close()
    assert receipt and all(x.opted_out == frozenset({"sms", "email", "call"}) for x in receipt)
