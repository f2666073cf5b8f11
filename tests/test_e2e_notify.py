"""End to end with the simulator: a call refused for no account or insufficient funds raises the
unfunded-attempt notice for the number called, once per window, and the worker texts it through the local
Twilio-format server. A dead database means no notice, and the call goes exactly as before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from callcontrol.sim import Recipient
from notify import StaticDirectory, Worker
from notify.sms import TwilioSMS
from notify.sql import events, make_engine
from tests.e2e_support import handset, prompt_ids, running, seed
from tests.support.twilio import FakeTwilio

NOON_CHICAGO = datetime(2026, 3, 2, 18, 0, tzinfo=UTC).timestamp()


def test_refused_calls_notify_the_number_once(tmp_path: Path, redis_url: str) -> None:
    sql_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"

    async def go() -> None:
        async with running(tmp_path, redis_url, sql_url=sql_url) as h:
            await seed(h.ledger, "+13125556000", 5)
            for _ in range(2):
                r = await h.call(handset("3125555000"), Recipient("+13125555000", keys="1"))
                assert r.dials == [] and "no_account" in prompt_ids(r.prompts)
            r = await h.call(handset("3125556000"), Recipient("+13125556000", keys="1"))
            assert "insufficient_funds" in prompt_ids(r.prompts)
            await h.controller.ctx.unfunded_notice.drain()

    asyncio.run(go())
    engine = make_engine(sql_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events.c.number_e164, events.c.facility_id)).all()
    assert sorted(rows) == [("+13125555000", "FAC-07"), ("+13125556000", "FAC-07")]
    server = FakeTwilio().start()
    try:
        sms = TwilioSMS(server.account_sid, server.token, "+13125550000", base_url=server.base_url)
        worker = Worker(engine, StaticDirectory(), {"sms": sms}, clock=lambda: NOON_CHICAGO)
        asyncio.run(worker.run_once())
    finally:
        server.stop()
    texts = {m["to"]: m["body"] for m in server.delivered()}
    assert set(texts) == {"+13125555000", "+13125556000"} and len(server.delivered()) == 2
    assert "tried to call you" in texts["+13125555000"]
    engine.dispose()


def test_a_dead_database_means_no_notice_and_the_call_is_unchanged(tmp_path: Path, redis_url: str) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    sql_url = f"sqlite:///{blocker / 'ledger.sqlite3'}"        # cannot be opened

    async def go() -> None:
        async with running(tmp_path, redis_url, sql_url=sql_url) as h:
            r = await h.call(handset("3125555000"), Recipient("+13125555000", keys="1"))
            assert r.dials == [] and "no_account" in prompt_ids(r.prompts)
            assert h.record_for("+13125555000")["outcome"] == "unfunded"
            await h.controller.ctx.unfunded_notice.drain()

    asyncio.run(go())
