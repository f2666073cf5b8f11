"""Authorization latency measured from the AGI side: a route wrapper that reports the seconds from the
session's start (its env block read) to the EXEC Dial it sends. Keeps the bench hook out of the flows."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any


def time_dial(route: Callable[[Any], Awaitable[None]],
              sink: Callable[[float], None]) -> Callable[[Any], Awaitable[None]]:
    async def timed(ch: Any) -> None:
        t0 = time.perf_counter()
        exec_ = ch.exec

        async def exec_timed(app: str, *args: str) -> int:
            if app == "Dial":
                sink(time.perf_counter() - t0)
            result: int = await exec_(app, *args)
            return result

        ch.exec = exec_timed
        await route(ch)

    return timed
