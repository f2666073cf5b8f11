"""Simulated time shared by the controller and the Asterisk simulator.

`Clock(scale)` runs simulated time at 1/scale of real time: with `scale=0.01` one simulated second takes
10 ms, so scripted calls (ringing, prompts, talk, Dial's L() limit) finish fast while every duration the
two sides report stays in simulated seconds. `Clock()` is plain real time. `ManualClock` only moves when
a test advances it, which makes timing-dependent replies reproducible to the millisecond.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class Clock:
    """Simulated epoch time advancing at 1/scale of real time from a start point."""

    def __init__(self, scale: float = 1.0, start: float | None = None) -> None:
        if scale <= 0:
            raise ValueError("clock scale must be positive")
        self.scale = scale
        self._real0 = time.monotonic()
        self._epoch0 = time.time() if start is None else start

    def monotonic(self) -> float:
        """Simulated seconds since the clock was created."""
        return (time.monotonic() - self._real0) / self.scale

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self._epoch0 + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of simulated time."""
        await asyncio.sleep(max(0.0, seconds) * self.scale)

    def real(self, seconds: float) -> float:
        """Real seconds that `seconds` of simulated time take."""
        return seconds * self.scale


class ManualClock(Clock):
    """A clock that stands still until `advance_to`/`advance` moves it (deterministic tests).

    Sleepers wake in deadline order; after each wake-up the event loop gets a few turns (and
    `settle_real` seconds of real time, for socket I/O) so the woken task can run up to its next await
    (and register its next sleep) before later deadlines fire.
    """

    def __init__(self, start: float = 0.0, settle_real: float = 0.001) -> None:
        super().__init__(1.0, start)
        self.settle_real = settle_real
        self._t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._t + seconds, next(self._seq), fut))
        await fut

    def real(self, seconds: float) -> float:
        return seconds

    async def advance_to(self, target: float, settle_turns: int = 8) -> None:
        """Move simulated time (seconds since start) forward to `target`, waking sleepers on the way."""
        for _ in range(settle_turns):
            await asyncio.sleep(0)
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self._t = max(self._t, deadline)
            fut.set_result(None)
            for _ in range(settle_turns):
                await asyncio.sleep(0)
            if self.settle_real:
                await asyncio.sleep(self.settle_real)
        self._t = max(self._t, target)
        for _ in range(settle_turns):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._t + seconds)

    def pending(self) -> int:
        """Number of sleepers not yet woken (cancelled ones included until popped)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def autorun(self, idle: float = 0.002) -> None:
        """Virtual time: whenever `idle` real seconds pass, jump to the next sleeper's deadline.

        Run as a task next to a scenario: simulated durations come out exact while the scenario takes
        only as long as its I/O. Cancel the task to stop.
        """
        while True:
            await asyncio.sleep(idle)
            live = [d for d, _, f in self._sleepers if not f.done()]
            if live:
                await self.advance_to(min(live))
