"""kill -9 of the delivery worker mid-batch: every message reaches the provider exactly once.

The worker runs in its own process against a SQLite outbox and the local Twilio-format server. The server
holds its Nth reply (the send is accepted, the worker has not heard back) and the process is killed right
then. A fresh worker takes over once the dead one's lease expires: it finds the accepted-but-unrecorded
send through the provider's message list instead of sending it again, and sends the rest."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from notify import Recipient, StaticDirectory, Worker, enqueue
from notify.model import DEPOSIT_RECEIPT, Event
from notify.sms import TwilioSMS
from notify.sql import make_engine, messages, migrate
from notify.worker import NotifyConfig
from tests.support.twilio import FakeTwilio

N = 30
REPO = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, sys
from notify import Recipient, StaticDirectory, Worker
from notify.sms import TwilioSMS
from notify.sql import make_engine
from notify.worker import NotifyConfig
url, base, sid, token, n = sys.argv[1:6]
numbers = [f"+1312555{i:04d}" for i in range(int(n))]
directory = StaticDirectory(by_account={f"A{i}": [Recipient("sms", x, quiet_start=0, quiet_end=0)]
                                        for i, x in enumerate(numbers)})
sms = TwilioSMS(sid, token, "+13125550000", base_url=base, timeout=30)
worker = Worker(make_engine(url), directory, {"sms": sms}, NotifyConfig(batch=10, lease_ms=1500),
                owner="doomed")
async def main():
    while True:
        await worker.run_once()
asyncio.run(main())
"""


@pytest.mark.slow
def test_kill_9_mid_batch_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    numbers = [f"+1312555{i:04d}" for i in range(N)]
    with engine.begin() as conn:
        for i, number in enumerate(numbers):
            enqueue(conn, Event(DEPOSIT_RECEIPT, f"dep-{i}", account_id=f"A{i}", number_e164=number,
                                payload={"amount_cents": 1000 + i, "number": number}))
    server = FakeTwilio().start()
    server.pause_at = 14           # mid second batch: 10 recorded sent, some of this batch in flight
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, server.base_url, server.account_sid,
                              server.token, str(N)], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert server.paused.wait(60), "the worker never reached the paused send"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    server.release.set()
    with engine.connect() as conn:
        counts = sa.select(messages.c.state, sa.func.count()).group_by(messages.c.state)
        before = dict(conn.execute(counts).all())
    assert before.get("sent", 0) >= 10 and before.get("sending", 0) >= 1, before   # killed mid-batch
    accepted_before = len(server.delivered())

    directory = StaticDirectory(by_account={f"A{i}": [Recipient("sms", x, quiet_start=0, quiet_end=0)]
                                            for i, x in enumerate(numbers)})
    sms = TwilioSMS(server.account_sid, server.token, "+13125550000", base_url=server.base_url, timeout=5)
    heir = Worker(engine, directory, {"sms": sms}, NotifyConfig(batch=10, lease_ms=1500), owner="heir")
    time.sleep(1.6)                # the dead worker's lease runs out

    async def finish() -> None:
        for _ in range(20):
            await heir.run_once()

    asyncio.run(finish())
    server.stop()
    delivered = [m["to"] for m in server.delivered()]
    assert sorted(delivered) == sorted(numbers), "a message was lost or delivered twice"
    with engine.connect() as conn:
        rows = conn.execute(sa.select(messages.c.state, messages.c.provider_id)).all()
    assert {r.state for r in rows} == {"sent"}
    assert {r.provider_id for r in rows} == {m["sid"] for m in server.delivered()}
    assert accepted_before >= 14
    engine.dispose()
