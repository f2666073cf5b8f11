"""End to end: a deposit on the 800 line through a running controller (simulated Asterisk over real TCP,
real redis-server, SQLite) reaches `payment_attempts` through the controller's own trail copy (no
`payments sync` run), and `callcontrol payments reconcile --no-sync` finds nothing to report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import func, inspect, select

from callcontrol.cli import main
from callcontrol.sim import SimConfig
from ledger.sql import make_engine, transfers
from payments.sandbox import SandboxGateway
from payments.sql import attempts, transitions
from tests.e2e_support import running, seed
from tests.test_e2e_deposit import MARIA, caller, deposit_call, heard, line


@pytest.fixture(autouse=True)
def _keep_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def sql_rows(sql_url: str, account: str) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """The trail's attempts, its transition count and the account's deposits, as SQL holds them now."""
    engine = make_engine(sql_url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("payment_attempts"):
                return [], 0, []
            found = [dict(r) for r in conn.execute(select(attempts)).mappings()]
            steps = conn.execute(select(func.count()).select_from(transitions)).scalar_one()
            deposits = [dict(r) for r in conn.execute(select(transfers).where(
                (transfers.c.account_id == account) & (transfers.c.kind == "deposit"))).mappings()]
        return found, steps, deposits
    finally:
        engine.dispose()


def test_serve_copies_a_deposits_trail_into_sql_and_reconcile_passes(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    sql_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"

    async def go() -> tuple[str, str]:
        async with running(tmp_path, redis_url, sim_config=SimConfig(), sql_url=sql_url, run_sync=True) as h:
            line(h).gateway = SandboxGateway(now=h.controller.clock.now)
            assert h.controller._trail_thread is not None and h.controller._trail_thread.is_alive()
            account = await seed(h.ledger, MARIA, 500)
            result = await deposit_call(h, caller(amount="25"))
            assert "deposit_success" in heard(result)
            [auth] = line(h).gateway.auths.values()
            deadline = time.monotonic() + 15
            while True:     # the controller's threads copy the trail and the ledger journal meanwhile
                found, steps, deposits = await asyncio.to_thread(sql_rows, sql_url, account)
                copied = bool(found) and found[0]["state"] == "captured" and len(deposits) == 2  # seed, card
                if copied or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert len(found) == 1, found
            row = found[0]
            assert (row["state"], row["amount_cents"], row["account_id"], row["last4"], row["auth_id"]) == (
                "captured", 2500, account, "1111", auth.auth_id)
            assert row["number_e164"] == MARIA and steps >= 3          # authorizing ... captured
            assert [d["amount"] for d in deposits if d["reference"] == auth.auth_id] == [2500]
        return account, auth.auth_id

    asyncio.run(go())
    monkeypatch.setenv("CALLCONTROL_REDIS_URL", redis_url)
    monkeypatch.setenv("CALLCONTROL_DATABASE_URL", sql_url)
    capsys.readouterr()
    code = main(["payments", "reconcile", "--no-sync"])        # SQL as the controller left it
    out = capsys.readouterr().out
    assert code == 0, out


def test_serve_no_sync_copies_no_trail(tmp_path: Path, redis_url: str) -> None:
    async def go() -> None:
        async with running(tmp_path, redis_url, sim_config=SimConfig(), run_sync=False) as h:
            assert h.controller._trail_thread is None and h.controller._sync_thread is None

    asyncio.run(go())
