"""The inmate flow's side of the unfunded-attempt notice: fire and forget. The call never waits on it and
never fails because of it; a database outage means no notice, logged (docs/notifications.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from notify import unfunded_attempt
from notify.sql import make_engine, migrate

log = structlog.get_logger()


class UnfundedNotices:
    def __init__(self, sql_url: str, hours: int) -> None:
        self.sql_url = sql_url
        self.hours = hours
        self._engine: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, facility_id: str, e164: str, at: float, *, privileged: bool, facility_name: str = "",
                 language: str = "en", time_zone: str = "UTC") -> None:
        """Schedule the notice and return at once."""
        if self.hours <= 0 or privileged:
            return
        task = asyncio.get_running_loop().create_task(self._write(
            facility_id, e164, at, privileged, facility_name, language, time_zone))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write_sync(self, *args: Any) -> bool:
        facility_id, e164, at, privileged, facility_name, language, time_zone = args
        if self._engine is None:
            migrate(self.sql_url)
            self._engine = make_engine(self.sql_url)
        return unfunded_attempt(self._engine, facility_id, e164, at, hours=self.hours, privileged=privileged,
                                facility_name=facility_name, language=language, time_zone=time_zone)

    async def _write(self, *args: Any) -> None:
        try:
            await asyncio.to_thread(self._write_sync, *args)
        except Exception as exc:
            log.warning("unfunded_notice_failed", error=type(exc).__name__)

    async def drain(self) -> None:
        """Wait for notices being written (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
