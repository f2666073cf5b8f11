"""Call state and PIN failure counters on a real redis-server."""

from __future__ import annotations

import asyncio

from callcontrol.call_state import CallState, CallStore


def run(coro):
    return asyncio.run(coro)


def test_state_roundtrip_and_first_writer_wins(redis_url: str) -> None:
    async def go() -> None:
        store = CallStore.from_url(redis_url)
        try:
            state = CallState(call_id="c1", facility_id="FAC-T", e164="+15551234567", hold_amount=540,
                              max_seconds=900, privileged=True, quoted_at=1000.5)
            await store.create(state, lease_expires_at=5000.0, ttl_seconds=3600)
            got = await store.get("c1")
            assert got == state
            assert await store.get("nope") is None
            assert await store.accept("c1", 1010.25) == 1010.25
            assert await store.accept("c1", 1020.0) == 1010.25       # second acceptance does not move it
            await store.create(CallState(call_id="c2"), lease_expires_at=1.0, ttl_seconds=60)
            await store.finish("c2", 1.0, "caller_hangup")
            assert await store.accept("c2", 2.0) is None               # ended first: never accepted
            assert await store.accept("ghost", 2.0) is None
            first = await store.finish("c1", 1100.0, "inmate")
            assert first is not None and first.ended_at == 1100.0
            second = await store.finish("c1", 1200.0, "hangup_agi")
            assert second is not None and (second.ended_at, second.end_reason) == (1100.0, "inmate")
            assert await store.finish("ghost", 1.0, "x") is None
            assert await store.get("ghost") is None
            assert await store.record_capture("c1", 2, 12) == 2
            assert await store.record_capture("c1", 1, 6) == 2       # never backwards
            assert await store.record_capture("gone", 1, 6) == -1
            got = await store.get("c1")
            assert got is not None
            assert (got.accepted_at, got.ended_at, got.end_reason, got.captured_k, got.captured) == \
                (1010.25, 1100.0, "inmate", 2, 12)
            assert sorted(c for c, _ in await store.live_calls()) == ["c1", "c2"]
            await store.mark_settled("c2", 0, "failed")
            await store.mark_settled("c1", 60, "completed")
            assert await store.live_calls() == []
            got = await store.get("c1")
            assert got is not None and got.settled and got.settled_total == 60
            await store.update("c1", recorded=True, screen_result="accepted")
            got = await store.get("c1")
            assert got is not None and got.recorded
        finally:
            await store.close()
    run(go())


def test_pin_failures_count_and_clear(redis_url: str) -> None:
    async def go() -> None:
        store = CallStore.from_url(redis_url)
        try:
            assert await store.pin_failures("F", "1042") == 0
            for n in (1, 2, 3):
                assert await store.add_pin_failure("F", "1042", 900) == n
            assert await store.pin_failures("F", "1042") == 3
            ttl = await store.r.ttl("apc:pinfail:F:1042")
            assert 0 < ttl <= 900
            await store.clear_pin_failures("F", "1042")
            assert await store.pin_failures("F", "1042") == 0
        finally:
            await store.close()
    run(go())
