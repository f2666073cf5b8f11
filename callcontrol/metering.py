"""Per-increment captures for every accepted call of this process: one heap, one task, no per-call timers.

Increment k of a call is captured one second into it, at acceptance + (k-1) increments + 1 s (the first
at acceptance, since any accepted moment bills a second): then what has been captured never exceeds
the cost of the whole seconds billed at hang-up. So the posted balance trails the call by at most one
increment and a crash loses at most that much. Captures use op ids derived from the call id, so a call
metered by two instances (after a recovery) is still charged once per increment. A refused capture
(account frozen, funds gone) calls `on_refused`, which hangs the call up through AMI; the settlement
then charges what was used.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from callcontrol import billing, decisions

if TYPE_CHECKING:
    from callcontrol.flows.ports import ClockPort, LedgerPort, Store

log = structlog.get_logger("callcontrol.metering")

RETRY_SECONDS = 2.0


class MeteredCall:
    """What the meter needs to know about one accepted call."""

    __slots__ = (
        "accepted_at",
        "account",
        "call_id",
        "captured",
        "charge",
        "hold_amount",
        "increment",
        "k",
        "stopped",
    )

    def __init__(self, call_id: str, account: str, accepted_at: float, increment: int,
                 charge: Callable[[int], int], hold_amount: int, captured_k: int = 0, captured: int = 0):
        self.call_id = call_id
        self.account = account
        self.accepted_at = accepted_at
        self.increment = max(1, int(increment))
        self.charge = charge            # k -> cents for increment k (quote.increment_charge)
        self.hold_amount = hold_amount
        self.k = captured_k             # increments captured so far
        self.captured = captured        # cents captured so far
        self.stopped = False


class Meter:
    """Schedules and runs captures for the calls started on it, until stopped or refused."""

    def __init__(self, ledger: LedgerPort, store: Store, clock: ClockPort,
                 on_refused: Callable[[MeteredCall, BaseException], Awaitable[None]] | None = None,
                 concurrency: int = 128) -> None:
        self.ledger = ledger
        self.store = store
        self.clock = clock
        self.on_refused = on_refused
        self.calls: dict[str, MeteredCall] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self.captures = 0
        self.refusals = 0

    def __len__(self) -> int:
        return len(self.calls)

    def start(self, call: MeteredCall) -> None:
        """Begin metering; the next increment (k+1) is due at once if its start has passed."""
        if call.call_id in self.calls:
            return
        self.calls[call.call_id] = call
        self._schedule(call)

    def stop(self, call_id: str) -> MeteredCall | None:
        call = self.calls.pop(call_id, None)
        if call is not None:
            call.stopped = True
        return call

    def _schedule(self, call: MeteredCall) -> None:
        due = decisions.capture_due_at(call.accepted_at, call.k + 1, call.increment)
        heapq.heappush(self._heap, (due, next(self._seq), call.call_id))
        if self._heap[0][2] == call.call_id:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """The single metering loop: sleep until the earliest due capture, then fire those due."""
        while not stop.is_set():
            now = self.clock.now()
            while self._heap and self._heap[0][0] <= now:
                _, _, call_id = heapq.heappop(self._heap)
                call = self.calls.get(call_id)
                if call is None or call.stopped:
                    continue
                task = asyncio.create_task(self._capture(call))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            delay = (self._heap[0][0] - now) if self._heap else 3600.0
            self._wake.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep(max(0.0, min(delay, 3600.0))))
            waker = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({sleeper, waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (sleeper, waker, stopper):
                    t.cancel()
        for task in list(self._inflight):
            task.cancel()

    async def _capture(self, call: MeteredCall) -> None:
        k = call.k + 1
        amount = call.charge(k)
        if amount <= 0 or call.captured + amount > call.hold_amount:
            # The hold is spent: the L() limit ends the call; the settlement charges the remainder.
            return
        async with self._sem:
            if call.stopped:
                return
            try:
                await billing.capture(self.ledger, call.call_id, call.account, k, amount)
            except billing.HOLD_GONE:         # settled or voided elsewhere: stop quietly
                self.stop(call.call_id)
                return
            except billing.CAPTURE_REFUSED as exc:
                self.refusals += 1
                log.warning("capture_refused", call_id=call.call_id, k=k, error=type(exc).__name__)
                self.stop(call.call_id)
                if self.on_refused is not None:
                    await self.on_refused(call, exc)
                return
            except Exception as exc:
                log.warning("capture_retry", call_id=call.call_id, k=k, error=type(exc).__name__)
                heapq.heappush(self._heap, (self.clock.now() + RETRY_SECONDS, next(self._seq), call.call_id))
                self._wake.set()
                return
        self.captures += 1
        call.k = k
        call.captured += amount
        if call.stopped:
            return
        try:
            await self.store.record_capture(call.call_id, k, call.captured)
        except Exception as exc:
            log.warning("capture_state_not_saved", call_id=call.call_id, error=type(exc).__name__)
        self._schedule(call)
