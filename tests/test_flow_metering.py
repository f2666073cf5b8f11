"""The meter against the real ledger on a real redis-server, on a manual clock."""

from __future__ import annotations

import asyncio

from callcontrol.call_state import CallState, CallStore
from callcontrol.clock import ManualClock
from callcontrol.metering import Meter, MeteredCall
from ledger import Ledger


def charge(k: int) -> int:
    return 21 if k == 1 else 6        # a connect-fee-like first increment, then 6 c per minute


async def _setup(redis_url: str, funds: int, hold: int):
    ledger = await Ledger.connect(redis_url)
    store = CallStore.from_url(redis_url)
    account = await ledger.open_account("open-1", "FAC-T", "+13125551234")
    await ledger.deposit("dep-1", account, funds)
    await ledger.hold("c1:hold", account, "c1", hold, lease_seconds=600)
    await store.create(CallState(call_id="c1", account=account, hold_amount=hold), 1e12, 600)
    return ledger, store, account


def test_captures_one_increment_ahead(redis_url: str) -> None:
    async def go() -> None:
        ledger, store, account = await _setup(redis_url, 1000, 45)
        clock = ManualClock(start=1_000_000.0)
        meter = Meter(ledger, store, clock)
        stop = asyncio.Event()
        loop = asyncio.create_task(meter.run(stop))
        meter.start(MeteredCall("c1", account, clock.now(), 60, charge, 45))
        await clock.advance(0.1)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if meter.captures == 1:
                break
        info = await ledger.hold_info(account, "c1")
        assert info is not None and info.captured == 21          # first increment at acceptance
        await clock.advance(59.0)
        await asyncio.sleep(0.05)
        info = await ledger.hold_info(account, "c1")
        assert info is not None and info.captured == 21          # not before the next increment starts
        for t in (60.5, 120.5, 180.5, 240.5, 300.5):
            await clock.advance_to(t)
            for _ in range(50):
                await asyncio.sleep(0.01)
                if meter.captures >= min(5, int(t // 60) + 1):
                    break
        info = await ledger.hold_info(account, "c1")
        # 21 + 6 + 6 + 6 + 6 = 45 = the hold: the meter stops there (the L() limit ends the call).
        assert info is not None and info.captured == 45
        state = await store.get("c1")
        assert state is not None and (state.captured_k, state.captured) == (5, 45)
        stop.set()
        await loop
        await ledger.close()
        await store.close()
    asyncio.run(go())


def test_refused_capture_cuts_the_call(redis_url: str) -> None:
    async def go() -> None:
        ledger, store, account = await _setup(redis_url, 1000, 300)
        clock = ManualClock(start=1_000_000.0)
        cut: list[str] = []

        async def on_refused(call: MeteredCall, exc: BaseException) -> None:
            cut.append(type(exc).__name__)

        meter = Meter(ledger, store, clock, on_refused=on_refused)
        stop = asyncio.Event()
        loop = asyncio.create_task(meter.run(stop))
        meter.start(MeteredCall("c1", account, clock.now(), 60, charge, 300))
        await clock.advance(0.1)
        await asyncio.sleep(0.1)
        await ledger.freeze("freeze-1", account, reason="operator")
        await clock.advance_to(60.5)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if cut:
                break
        assert cut == ["AccountNotActive"]
        assert "c1" not in meter.calls
        stop.set()
        await loop
        await ledger.close()
        await store.close()
    asyncio.run(go())


def test_settled_elsewhere_stops_quietly(redis_url: str) -> None:
    async def go() -> None:
        ledger, store, account = await _setup(redis_url, 1000, 300)
        clock = ManualClock(start=1_000_000.0)
        cut: list[str] = []

        async def on_refused(call: MeteredCall, exc: BaseException) -> None:
            cut.append(type(exc).__name__)

        meter = Meter(ledger, store, clock, on_refused=on_refused)
        stop = asyncio.Event()
        loop = asyncio.create_task(meter.run(stop))
        await ledger.settle("c1:settle", account, "c1", 21)     # another instance settled it
        meter.start(MeteredCall("c1", account, clock.now(), 60, charge, 300))
        await clock.advance(0.1)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if "c1" not in meter.calls:
                break
        assert "c1" not in meter.calls and not cut
        stop.set()
        await loop
        await ledger.close()
        await store.close()
    asyncio.run(go())
