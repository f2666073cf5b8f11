"""The meter against the real ledger on a real redis-server, on a manual clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from callcontrol.call_state import CallState, CallStore
from callcontrol.metering import Meter, MeteredCall
from callcontrol.platform.clock import ManualClock
from ledger import Ledger


def charge(k: int) -> int:
    return 21 if k == 1 else 6        # a connect-fee-like first increment, then 6 c per minute


@dataclass
class Rig:
    """A running meter over a real ledger and call store, holding call c1 on a manual clock."""

    ledger: Ledger
    store: CallStore
    account: str
    meter: Meter
    clock: ManualClock = field(default_factory=lambda: ManualClock(start=1_000_000.0))
    cut: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def metering(redis_url: str, funds: int, hold: int) -> AsyncIterator[Rig]:
    ledger = await Ledger.connect(redis_url)
    store = CallStore.from_url(redis_url)
    account = await ledger.open_account("open-1", "FAC-T", "+13125551234")
    await ledger.deposit("dep-1", account, funds)
    await ledger.hold("c1:hold", account, "c1", hold, lease_seconds=600)
    await store.create(CallState(call_id="c1", account=account, hold_amount=hold), 1e12, 600)
    clock = ManualClock(start=1_000_000.0)
    cut: list[str] = []

    async def on_refused(call: MeteredCall, exc: BaseException) -> None:
        cut.append(type(exc).__name__)

    rig = Rig(ledger, store, account, Meter(ledger, store, clock, on_refused=on_refused), clock, cut)
    stop = asyncio.Event()
    loop = asyncio.create_task(rig.meter.run(stop))
    try:
        yield rig
    finally:
        stop.set()
        await loop
        await ledger.close()
        await store.close()


async def settle_down(until: Callable[[], bool], tries: int = 100) -> None:
    """Let the meter's task catch up with the clock, up to a bound."""
    for _ in range(tries):
        await asyncio.sleep(0.01)
        if until():
            break


def test_captures_one_increment_ahead(redis_url: str) -> None:
    async def go() -> None:
        async with metering(redis_url, 1000, 45) as r:
            r.meter.start(MeteredCall("c1", r.account, r.clock.now(), 60, charge, 45))
            await r.clock.advance(0.1)
            await settle_down(lambda: r.meter.captures == 1)
            info = await r.ledger.hold_info(r.account, "c1")
            assert info is not None and info.captured == 21          # first increment at acceptance
            await r.clock.advance_to(60.9)
            await asyncio.sleep(0.05)
            info = await r.ledger.hold_info(r.account, "c1")
            # Not before the next increment's first second has passed: a hang-up now bills 60 s.
            assert info is not None and info.captured == 21
            for t in (61.5, 121.5, 181.5, 241.5, 301.5):
                await r.clock.advance_to(t)
                await settle_down(lambda t=t: r.meter.captures >= min(5, int(t // 60) + 1))
            info = await r.ledger.hold_info(r.account, "c1")
            # 21 + 6 + 6 + 6 + 6 = 45 = the hold: the meter stops there (the L() limit ends the call).
            assert info is not None and info.captured == 45
            state = await r.store.get("c1")
            assert state is not None and (state.captured_k, state.captured) == (5, 45)
    asyncio.run(go())


def test_refused_capture_cuts_the_call(redis_url: str) -> None:
    async def go() -> None:
        async with metering(redis_url, 1000, 300) as r:
            r.meter.start(MeteredCall("c1", r.account, r.clock.now(), 60, charge, 300))
            await r.clock.advance(0.1)
            await asyncio.sleep(0.1)
            await r.ledger.freeze("freeze-1", r.account, reason="operator")
            await r.clock.advance_to(61.5)
            await settle_down(lambda: bool(r.cut))
            assert r.cut == ["AccountNotActive"]
            assert "c1" not in r.meter.calls
    asyncio.run(go())


def test_settled_elsewhere_stops_quietly(redis_url: str) -> None:
    async def go() -> None:
        async with metering(redis_url, 1000, 300) as r:
            await r.ledger.settle("c1:settle", r.account, "c1", 21)     # another instance settled it
            r.meter.start(MeteredCall("c1", r.account, r.clock.now(), 60, charge, 300))
            await r.clock.advance(0.1)
            await settle_down(lambda: "c1" not in r.meter.calls, 50)
            assert "c1" not in r.meter.calls and not r.cut
    asyncio.run(go())
