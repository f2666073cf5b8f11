"""Every call hung up at once (a trunk failure): each settles, against a real redis-server.

At 19,500 held calls every settlement used to fail with LedgerUnavailable: ending ~20k sessions kept
the event loop busy for seconds between queueing the requests and writing them, and the transport's
watchdog timed the wait from the queueing, so it took a busy loop for a silent Redis.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from dataclasses import replace
from typing import Any

import pytest
import redis

from callcontrol import speech
from callcontrol.call_state import CallState, CallStore
from callcontrol.flows.context import FlowContext
from callcontrol.flows.hangup import settle_call
from callcontrol.metering import Meter
from callcontrol.platform.clock import Clock
from callcontrol.platform.config import REPO_ROOT, load_settings
from callcontrol.policy import Policy
from ledger import Ledger, LedgerUnavailable
from rating import load_catalog
from tests.support.loops import run_on

NUM = "+13125551234"


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_request_queued_behind_a_busy_loop_gets_its_reply(redis_url: str, loop_kind: str) -> None:
    # The request is queued, then other work of the same loop turn runs for 2.5 timeouts before the
    # request is written: Redis cannot be late for a request it has not been sent.
    async def main() -> None:
        led = await Ledger.connect(redis_url, timeout=1.0)
        try:
            account = await led.open_account("open-1", "FAC-07", NUM)
            await led.deposit("dep-1", account, 500)

            async def busy() -> None:
                time.sleep(2.5)

            queued = asyncio.ensure_future(led.balance(account))
            stall = asyncio.ensure_future(busy())  # runs right after `queued` sends, before the write
            assert (await queued).posted == 500
            await stall
        finally:
            await led.close()

    run_on(loop_kind, main)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_new_writes_do_not_keep_a_silent_redis_alive(redis_url: str, loop_kind: str) -> None:
    # Requests written while earlier ones wait must not restart the clock of those earlier ones.
    async def main() -> None:
        led = await Ledger.connect(redis_url, timeout=1.0)
        admin = redis.Redis.from_url(redis_url)
        try:
            account = await led.open_account("open-1", "FAC-07", NUM)
            # Redis answers nobody for 2.5 s (CLIENT PAUSE: DEBUG SLEEP is disabled by default since 7.0).
            admin.execute_command("CLIENT", "PAUSE", "2500", "ALL")
            started = time.monotonic()
            first = asyncio.ensure_future(led.balance(account))
            for _ in range(25):       # a new request every 0.1 s, each its own write
                await asyncio.sleep(0.1)
                if first.done():
                    break
                asyncio.ensure_future(led.balance(account)).add_done_callback(lambda f: f.exception())
            with pytest.raises(LedgerUnavailable):
                await first
            assert time.monotonic() - started < 2.0  # the first write's timeout, not Redis waking up
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
            admin.close()
            await led.close()

    run_on(loop_kind, main)


class _Stall(asyncio.Protocol):
    """Stalls the loop inside its I/O callbacks, as a GC pause or ~20k sessions ending at once do:
    each poke of the peer socket costs `seconds` of loop time, during which no socket is read.

    Stalls 0 and 3 each start a ledger request. Its write comes two loop turns later, when nothing else
    awaits a reply, and while Redis is busy for a few ms with a slow script, so the reply arrives
    during that turn's stall and is still unread when the watchdog looks. (On the stock loop the
    watchdog runs every other stalled turn; the two writes fall on turns of different parity.)"""

    def __init__(self, led: Ledger, account: str, redis_url: str, seconds: float) -> None:
        self.led, self.account, self.seconds = led, account, seconds
        self.busy = redis.Redis.from_url(redis_url).connection_pool.get_connection()
        self.peer: Any = None
        self.turn = 0
        self.requests: list[asyncio.Future[Any]] = []
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.turn:
            self.busy.read_response()
        if self.turn == 6:
            self.busy.disconnect()
            self.done.set_result(None)
            return
        if self.turn in (0, 3):
            self.requests.append(asyncio.ensure_future(self.led.balance(self.account)))
        self.turn += 1
        time.sleep(self.seconds)
        self.busy.send_command("EVAL", "for i = 1, 2000000 do end", "0")
        self.peer.send(b"x")


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_loop_stalls_between_reads_are_not_redis_silence(redis_url: str, loop_kind: str) -> None:
    # Replies that Redis sent while the loop stalled are unread when the watchdog next looks: the time
    # the loop spent stalled past the watchdog's turn is not Redis' silence.
    async def main() -> None:
        led = await Ledger.connect(redis_url, timeout=0.5)
        ours, peer = socket.socketpair()
        try:
            account = await led.open_account("open-1", "FAC-07", NUM)
            await led.deposit("dep-1", account, 500)
            loop = asyncio.get_running_loop()
            _, stall = await loop.create_connection(lambda: _Stall(led, account, redis_url, 0.7), sock=ours)
            stall.peer = peer
            peer.send(b"x")
            await stall.done
            assert [(await r).posted for r in stall.requests] == [500, 500]
        finally:
            peer.close()
            await led.close()

    run_on(loop_kind, main)


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_thousands_of_calls_ending_at_once_all_settle(redis_url: str, loop_kind: str) -> None:
    # 2,000 accepted calls end in the same instant, and while they settle the loop stalls four times
    # (as GC pauses of a 20k-call heap do) for longer than the Redis timeout: every call settles, at
    # the price one call alone settles at, and none is left in the live index.
    async def main() -> None:
        n, now = 2000, 1795536000.0
        ctx = await _flow_context(redis_url, timeout=0.5)
        ours, peer = socket.socketpair()
        try:
            calls = await _accepted_calls(ctx, n + 1, now)
            alone = await settle_call(ctx, calls[0], now, "caller_hangup")
            assert alone is not None and alone[0].settled_total > 0
            price = alone[0].settled_total
            _, stall = await asyncio.get_running_loop().create_connection(
                lambda: _Stalls(peer, seconds=0.8), sock=ours)
            ctx.on_record = stall.on_record
            results = await asyncio.gather(*(settle_call(ctx, c, now, "caller_hangup") for c in calls[1:]))
            assert stall.stalls == 4                             # the loop did stall during the burst
            assert [r[0].settled_total for r in results if r is not None] == [price] * n
            assert await ctx.store.live_calls() == []
            holds = await asyncio.gather(*(ctx.ledger.hold_info(r[0].account, r[0].call_id)
                                           for r in results if r is not None))
            assert {(h.status, h.captured) for h in holds if h is not None} == {("settled", price)}
            assert not ctx._locks                                # no per-call lock outlives its call
        finally:
            peer.close()
            await ctx.store.close()
            await ctx.ledger.close()

    run_on(loop_kind, main)


class _Stalls(asyncio.Protocol):
    """After every 400th call record, the loop stalls for `seconds` in its I/O callbacks, while the
    other settlements' requests are in flight (four times in all)."""

    def __init__(self, peer: socket.socket, seconds: float) -> None:
        self.peer, self.seconds = peer, seconds
        self.records = 0
        self.stalls = 0

    def on_record(self, record: dict[str, Any]) -> None:
        self.records += 1
        if self.records % 400 == 0 and self.records <= 1600:
            self.peer.send(b"x")

    def data_received(self, data: bytes) -> None:
        time.sleep(self.seconds)
        self.stalls += 1


async def _flow_context(redis_url: str, *, timeout: float) -> FlowContext:
    settings = replace(load_settings(env={}), facility_dir=REPO_ROOT / "facility_data")
    clock = Clock(1.0, start=1795536000.0)
    led = await Ledger.connect(redis_url, timeout=timeout)
    store = CallStore.from_url(redis_url, timeout=timeout)
    return FlowContext(settings=settings, clock=clock, ledger=led, catalog=_catalog(),
                       policy=Policy.load(REPO_ROOT / "facility_data" / "policy"), store=store,
                       meter=Meter(led, store, clock), speech=speech)


@functools.cache
def _catalog() -> Any:
    return load_catalog(REPO_ROOT / "facility_data")


async def _accepted_calls(ctx: FlowContext, n: int, now: float) -> list[str]:
    """n calls on 100 accounts, each held, dialled at `now` - 90 s and accepted at `now` - 75 s."""
    gate = asyncio.Semaphore(200)

    async def one(i: int) -> str:
        async with gate:
            e164 = f"+1312555{i % 100:04d}"
            account = await ctx.ledger.open_account(f"open-{e164[1:]}", "FAC-07", e164)
            await ctx.ledger.deposit(f"dep-{i}", account, 5000)
            call_id = f"c{i:05d}"
            await ctx.ledger.hold(f"{call_id}:hold", account, call_id, 600, lease_seconds=3600)
            await ctx.store.create(CallState(
                call_id=call_id, facility_id="FAC-07", dialled=e164[2:], e164=e164, account=account,
                hold_amount=600, max_seconds=3000, increment=60, quoted_at=now - 100, dial_at=now - 90,
                answered_at=now - 80, accepted_at=now - 75, screen_result="accepted", created_at=now - 120,
            ), lease_expires_at=now + 3600, ttl_seconds=3600)
            return call_id

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_a_hold_voided_unused_still_lets_its_call_settle(redis_url: str) -> None:
    # store.create timed out after writing (the call is in the live index) and the inmate flow voided
    # the unused hold; recovery's settlement voids it again under its own reason: that must count as
    # done, not fail on the reused operation id at every recovery round.
    from callcontrol.flows.inmate_call import Attempt, _release_unused

    async def main() -> None:
        ctx = await _flow_context(redis_url, timeout=2.0)
        try:
            now = ctx.clock.now()
            account = await ctx.ledger.open_account("open-void", "FAC-07", "+13125550777")
            await ctx.ledger.deposit("dep-void", account, 5000)
            await ctx.ledger.hold("c777:hold", account, "c777", 600, lease_seconds=3600)
            await ctx.store.create(CallState(
                call_id="c777", facility_id="FAC-07", dialled="3125550777", e164="+13125550777",
                account=account, hold_amount=600, max_seconds=3000, increment=60, quoted_at=now - 10,
                dial_at=now - 5, created_at=now - 20,
            ), lease_expires_at=now + 3600, ttl_seconds=3600)
            await _release_unused(ctx, Attempt(call_id="c777", facility_id="FAC-07", station="0701",
                                               started_at=now - 20, account=account))
            settled = await settle_call(ctx, "c777", now, "recovery")
            assert settled is not None and settled[0].settled and settled[0].settled_total == 0
            assert (await ctx.ledger.balance(account)).available == 5000
        finally:
            await ctx.ledger.close()
            await ctx.store.close()

    asyncio.run(main())
