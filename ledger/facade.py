"""A blocking wrapper around the asyncio Ledger for scripts, tests and tools (not for the controller)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from ledger.core import Ledger


class SyncLedger:
    """Runs a private event loop; every Ledger coroutine method becomes a plain method."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self.ledger: Ledger = self._loop.run_until_complete(Ledger.connect(url, **kwargs))

    def run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.ledger, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attr(*args, **kwargs))

        return call

    def close(self) -> None:
        self._loop.run_until_complete(self.ledger.close())
        self._loop.close()

    def __enter__(self) -> SyncLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
