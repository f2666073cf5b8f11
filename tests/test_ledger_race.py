"""1,000 concurrent hold attempts, from asyncio tasks and from several processes, on one account funded
for exactly K holds: exactly K succeed and the account never goes negative."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from ledger import InsufficientFunds, Ledger
from ledger.facade import SyncLedger
from ledger.journal import decode
from ledger.keys import Keys

K = 37
AMOUNT = 100
SPARE = AMOUNT - 1            # less than one more hold
PROCESSES = 4
PER_PROCESS = 100
IN_LOOP = 1_000 - PROCESSES * PER_PROCESS
ROOT = Path(__file__).resolve().parent.parent


async def attempt_holds(url: str, account: str, prefix: str, n: int, start_at: float) -> dict[str, int]:
    """n concurrent hold attempts, released together at start_at; counts outcomes by error code."""
    led = await Ledger.connect(url)
    await asyncio.sleep(max(0.0, start_at - time.time()))

    async def one(i: int) -> str:
        try:
            await led.hold(f"{prefix}-op{i}", account, f"{prefix}-h{i}", AMOUNT, lease_seconds=600)
            return "ok"
        except InsufficientFunds as exc:
            return exc.code

    outcomes = await asyncio.gather(*(one(i) for i in range(n)))
    await led.close()
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    return counts


def _child(url: str, account: str, prefix: str, n: str, start_at: str) -> None:
    print(json.dumps(asyncio.run(attempt_holds(url, account, prefix, int(n), float(start_at)))))


def test_exactly_k_of_1000_concurrent_holds_succeed(redis_url: str) -> None:
    with SyncLedger(redis_url) as led:
        account = led.open_account("open", "FAC-R", "+13125550190")
        led.deposit("fund", account, K * AMOUNT + SPARE)
    start_at = time.time() + 2.0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", "import sys; from tests.test_ledger_race import _child; "
                               "_child(*sys.argv[1:])", redis_url, account, f"p{i}", str(PER_PROCESS),
                               str(start_at)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
             for i in range(PROCESSES)]
    totals = asyncio.run(attempt_holds(redis_url, account, "loop", IN_LOOP, start_at))
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        for code, n in json.loads(out.strip().splitlines()[-1]).items():
            totals[code] = totals.get(code, 0) + n
    assert totals == {"ok": K, "insufficient_funds": 1_000 - K}
    with SyncLedger(redis_url) as led:
        b = led.balance(account)
    assert (b.posted, b.held, b.available) == (K * AMOUNT + SPARE, K * AMOUNT, SPARE)
    # Every state the account went through (one journal entry each) had available >= 0.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    states = [decode(p, sid, f["e"]) for p in range(16) for sid, f in client.xrange(Keys(p).journal)]
    client.close()
    holds = [e for e in states if e.op == "hold"]
    assert len(holds) == K
    assert all(e.posted - e.held >= 0 for e in states)
    assert sorted(e.held for e in holds) == [AMOUNT * (i + 1) for i in range(K)]
