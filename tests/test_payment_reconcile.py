"""The 800 line's payment trail journalled into SQL and `callcontrol payments reconcile` (real Redis,
SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from callcontrol.cli import main
from ledger import Ledger
from ledger.sql import make_engine
from ledger.sql import migrate as ledger_migrate
from ledger.sync import SyncWorker
from payments.reconcile import reconcile
from payments.saga import DepositOrder, charge
from payments.sandbox import SandboxGateway
from payments.sql import attempts, transitions
from payments.sql import migrate as payments_migrate
from payments.trail import JOURNAL_KEY, DepositTrail
from payments.trail_sync import TrailSync, apply_entry

VISA = "4111111111111111"
FAC, NUM = "FAC-07", "+13125551234"


@pytest.fixture(autouse=True)
def _keep_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


class Killed(BaseException):
    """The process dies here (kill -9 between two steps of the saga)."""


class DiesBeforeDeposit:
    def __init__(self, inner: Ledger) -> None:
        self.inner = inner

    async def deposit(self, *a: Any, **kw: Any) -> Any:
        raise Killed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def pay(ledger: Any, gw: SandboxGateway, trail: DepositTrail, order: DepositOrder,
              card: str = VISA) -> Any:
    await trail.record(order, "authorizing", {})
    return await charge(ledger, gw, order, card, "1230", "123", backoff=0, settle=0.2,
                        on_state=lambda state, fields: trail.record(order, state, fields))


def sync_all(redis_url: str, sql_url: str) -> None:
    worker = SyncWorker(redis_url, sql_url, partitions=16)
    try:
        worker.drain()
    finally:
        worker.close()
    trail = TrailSync(redis_url, sql_url)
    try:
        trail.drain()
    finally:
        trail.close()


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str, sql_url: str,
        *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("CALLCONTROL_REDIS_URL", redis_url)
    monkeypatch.setenv("CALLCONTROL_DATABASE_URL", sql_url)
    capsys.readouterr()
    code = main(["payments", "reconcile", *argv])
    return code, capsys.readouterr().out


def test_trail_reaches_sql_once_and_reconcile_finds_each_inconsistency(
        redis_url: str, sql_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ledger_migrate(sql_url)
    payments_migrate(sql_url)

    async def clean() -> str:
        ledger = await Ledger.connect(redis_url)
        try:
            gw = SandboxGateway()
            trail = DepositTrail(redis_client(redis_url), time.time, "sandbox")
            acc = await ledger.open_account("o1", FAC, NUM)
            ok = await pay(ledger, gw, trail, DepositOrder("dep-ok-1", FAC, NUM, acc, 2500))
            declined = await pay(ledger, gw, trail, DepositOrder("dep-no-1", FAC, NUM, acc, 900),
                                 "4000000000000002")
            await ledger.freeze("f1", acc, reason="test")
            voided = await pay(ledger, gw, trail, DepositOrder("dep-void-1", FAC, NUM, acc, 700))
            assert (ok.status, declined.status, voided.status) == ("posted", "declined", "failed")
            return acc
        finally:
            await ledger.close()

    acc = asyncio.run(clean())
    code, out = cli(capsys, monkeypatch, redis_url, sql_url)
    assert code == 0, out
    assert "OK" in out and "3 phone attempts" in out
    engine = make_engine(sql_url)
    try:
        with engine.connect() as conn:
            rows = {r["attempt_key"]: r for r in conn.execute(select(attempts)).mappings()}
            hist = [r.state for r in conn.execute(select(transitions.c.state).where(
                transitions.c.attempt_key == "dep-ok-1").order_by(transitions.c.entry_id))]
        assert rows["dep-ok-1"]["state"] == "captured" and rows["dep-ok-1"]["last4"] == "1111"
        assert rows["dep-ok-1"]["brand"] == "visa" and rows["dep-ok-1"]["gateway"] == "sandbox"
        assert rows["dep-ok-1"]["auth_id"] and rows["dep-ok-1"]["amount_cents"] == 2500
        assert rows["dep-no-1"]["state"] == "declined" and rows["dep-void-1"]["state"] == "voided"
        assert hist == ["authorizing", "authorized", "posted", "captured"]
        every = " ".join(str(v) for r in rows.values() for v in r.values())
        assert VISA not in every and "1230" not in every
        # An entry delivered twice is copied once.
        with engine.begin() as conn:
            before = conn.execute(select(func.count()).select_from(transitions)).scalar()
            first = conn.execute(select(transitions.c.entry_id, transitions.c.attempt_key)).first()
            assert first is not None
            apply_entry(conn, first.entry_id, {"key": first.attempt_key, "state": "bogus", "updated": 1})
            assert conn.execute(select(func.count()).select_from(transitions)).scalar() == before
    finally:
        engine.dispose()

    # The inconsistencies, each produced for real.
    async def broken() -> None:
        ledger = await Ledger.connect(redis_url)
        try:
            gw = SandboxGateway()
            trail = DepositTrail(redis_client(redis_url), time.time, "sandbox")
            acc2 = await ledger.open_account("o2", FAC, "+13125550002")
            # killed between authorize and deposit: approved, never credited
            with pytest.raises(Killed):
                await pay(DiesBeforeDeposit(ledger), gw, trail,
                          DepositOrder("dep-crash-1", FAC, NUM, acc2, 1500))
            # a card deposit nobody charged (no attempt, no capture)
            await ledger.deposit("dep-ghost-1:dep", acc2, 4200, source="ivr-card", reference="none")
            # an attempt left authorizing (the gateway's answer never came back)
            await trail.record(DepositOrder("dep-stuck-1", FAC, NUM, acc2, 300), "authorizing", {})
        finally:
            await ledger.close()

    asyncio.run(broken())
    code, out = cli(capsys, monkeypatch, redis_url, sql_url)
    assert code == 1 and "DEPOSIT_NO_CHARGE  dep-ghost-1" in out, out    # the others are still in grace
    assert "dep-crash-1" not in out and "dep-stuck-1" not in out
    code, out = cli(capsys, monkeypatch, redis_url, sql_url, "--grace", "0", "--json")
    assert code == 1
    report = json.loads(out)
    kinds = {(p["kind"], p["key"]) for p in report["problems"]}
    assert kinds == {("CHARGE_NO_DEPOSIT", "dep-crash-1"), ("DEPOSIT_NO_CHARGE", "dep-ghost-1"),
                     ("STUCK", "dep-stuck-1")}
    code, out = cli(capsys, monkeypatch, redis_url, sql_url, "--grace", "0")
    assert code == 1 and "CHARGE_NO_DEPOSIT  dep-crash-1" in out and "STUCK" in out
    assert acc


def redis_client(url: str) -> Any:
    import redis.asyncio as aredis

    return aredis.Redis.from_url(url)


def test_a_sql_outage_keeps_the_trail_in_the_journal_until_sql_is_back(redis_url: str, sql_url: str) -> None:
    async def write() -> None:
        trail = DepositTrail(redis_client(redis_url), time.time, "sandbox")
        order = DepositOrder("dep-out-1", FAC, NUM, "acct", 100)
        await trail.record(order, "authorizing", {})
        await trail.record(order, "declined", {"last4": "0002", "reason": "card_declined"})
        await trail.r.aclose()

    asyncio.run(write())
    down = TrailSync(redis_url, "postgresql+psycopg://nobody@127.0.0.1:1/none", run_migrations=False)
    try:
        with pytest.raises(OperationalError):
            down.run_once()
    finally:
        down.close()
    r = redis.Redis.from_url(redis_url)
    assert r.xlen(JOURNAL_KEY) == 2          # nothing acknowledged nor trimmed
    up = TrailSync(redis_url, sql_url, claim_idle_ms=0)
    try:
        assert up.drain() == 2
    finally:
        up.close()
    assert r.xlen(JOURNAL_KEY) == 0
    engine = make_engine(sql_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(attempts)).mappings().one()
        assert (row["state"], row["last4"], row["reason"]) == ("declined", "0002", "card_declined")
    finally:
        engine.dispose()
    # The clean database reconciles to nothing to report.
    ledger_migrate(sql_url)
    engine = make_engine(sql_url)
    try:
        assert not reconcile(engine, time.time()).problems
    finally:
        engine.dispose()


def test_stopping_after_a_failed_round_copies_what_it_left_pending(redis_url: str, sql_url: str) -> None:
    """`run_forever` stopped while backing off from a SQL outage copies its pending entries (and later ones)
    before it returns, instead of leaving them for another worker to reclaim after `claim_idle_ms`."""
    import threading

    async def write(state: str) -> None:
        trail = DepositTrail(redis_client(redis_url), time.time, "sandbox")
        await trail.record(DepositOrder("dep-stop-1", FAC, NUM, "acct", 100), state, {})
        await trail.r.aclose()

    asyncio.run(write("authorizing"))
    payments_migrate(sql_url)
    worker = TrailSync(redis_url, sql_url, claim_idle_ms=600_000, run_migrations=False)
    working = worker.engine
    worker.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    stop = threading.Event()
    r = redis.Redis.from_url(redis_url)
    r.xgroup_create(JOURNAL_KEY, "sql-sync", id="0", mkstream=True)
    thread = threading.Thread(target=worker.run_forever, args=(stop,), kwargs={"idle_sleep": 60.0},
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not r.xpending(JOURNAL_KEY, "sql-sync")["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.xpending(JOURNAL_KEY, "sql-sync")["pending"] == 1          # read, failed, backing off 60 s
    asyncio.run(write("declined"))
    worker.engine.dispose()
    worker.engine = working
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert r.xlen(JOURNAL_KEY) == 0 and r.xpending(JOURNAL_KEY, "sql-sync")["pending"] == 0
    with working.connect() as conn:
        assert conn.execute(select(attempts.c.state)).scalars().all() == ["declined"]
        assert conn.execute(select(func.count()).select_from(transitions)).scalar_one() == 2
    worker.close()
    r.close()
