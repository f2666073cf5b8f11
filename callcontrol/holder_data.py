"""What the phone flows read from and write to the holders' SQL: Request2Call requests (the inmate's
menu after the PIN, the 800 line's option 4), a number's verified holder, AutoReload settings and the
last calls (the 800 line's options 2 and 3). Blocking SQL runs in a thread; an outage raises to the 800
line (which says so) but never fails an inmate's call set-up: `offers` is fail-open (logged, no menu)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Engine, select

from holders.access import Actor
from holders.request2call import CallRequests, Request

log = structlog.get_logger("callcontrol.holder_data")

OFFER_TIMEOUT = 1.0          # seconds the inmate's call set-up waits for its requests at most
WAITING_TTL = 5.0            # clock seconds a facility's "inmates with requests" set is reused
IVR_ACTOR = Actor.support("ivr:800")


@dataclass(frozen=True)
class CallLine:
    """One call for the 800 line's history: when it started (UTC), billed seconds, cost in cents."""

    started: datetime
    seconds: int
    cents: int


class HolderData:
    def __init__(self, sql_url: str, *, days: int, catalog: Any, clock: Any) -> None:
        self.sql_url = sql_url
        self._catalog = catalog
        self._days = days
        self._clock = clock
        self._engine: Engine | None = None
        self._requests: CallRequests | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()
        # facility -> (read at, inmates with a pending request): most inmates have none, so most call
        # set-ups read no SQL at all; a new request is heard at most WAITING_TTL seconds late
        self._waiting: dict[str, tuple[float, frozenset[str]]] = {}
        self._refresh: dict[str, asyncio.Lock] = {}

    def enabled(self, facility_id: str) -> bool:
        try:
            return bool(self._catalog.facility(facility_id).request2call)
        except Exception:
            return False

    def _open(self) -> CallRequests:
        with self._lock:
            return self._requests or self._connect()

    def _connect(self) -> CallRequests:
        if self._requests is None:
            from holders.sql import make_engine, migrate
            from notify.sql import migrate as notify_migrate
            migrate(self.sql_url)
            notify_migrate(self.sql_url)
            self._engine = make_engine(self.sql_url)
            self._requests = CallRequests(self._engine, days=self._days, enabled=self.enabled,
                                          clock=self._clock.now)
        return self._requests

    async def start(self) -> None:
        """Migrate and connect now rather than in the first call's set-up; an outage is only logged."""
        try:
            await asyncio.to_thread(self._open)
        except Exception as exc:
            log.warning("holder_data_unavailable", error=type(exc).__name__)

    async def run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        def call() -> Any:
            return fn(self._open(), *args, **kw)
        return await asyncio.to_thread(call)

    # -- the inmate side -----------------------------------------------------------------------------
    async def offers(self, facility_id: str, inmate_id: str) -> list[Request]:
        """The inmate's pending requests: one SELECT; [] when switched off, slow or SQL is down."""
        if not self.enabled(facility_id):
            return []
        try:
            if inmate_id not in await self._inmates_waiting(facility_id):
                return []
            found: list[Request] = await asyncio.wait_for(
                self.run(CallRequests.pending_for, facility_id, inmate_id), OFFER_TIMEOUT)
            return found
        except Exception as exc:
            log.warning("call_requests_skipped", facility_id=facility_id, error=type(exc).__name__)
            return []

    async def _inmates_waiting(self, facility_id: str) -> frozenset[str]:
        """One SELECT per facility every WAITING_TTL seconds, shared by the calls setting up meanwhile;
        a failed read is remembered as "none" for the same time (no retry storm on a dead database)."""
        cached = self._waiting.get(facility_id)
        if cached is not None and self._clock.now() - cached[0] < WAITING_TTL:
            return cached[1]
        lock = self._refresh.setdefault(facility_id, asyncio.Lock())
        async with lock:
            cached = self._waiting.get(facility_id)
            if cached is not None and self._clock.now() - cached[0] < WAITING_TTL:
                return cached[1]
            try:
                found: frozenset[str] = await asyncio.wait_for(
                    self.run(CallRequests.inmates_waiting, facility_id), OFFER_TIMEOUT)
            except Exception:
                self._waiting[facility_id] = (self._clock.now(), frozenset())
                raise
            self._waiting[facility_id] = (self._clock.now(), found)
            return found

    def answered(self, request_id: str, call_id: str, facility_name: str) -> None:
        """Fire and forget: mark answered and enqueue the holder's notice; a failure is logged."""
        async def write() -> None:
            try:
                await self.run(CallRequests.answered, request_id, call_id, facility_name=facility_name)
            except Exception as exc:
                log.warning("call_request_not_marked", request_id=request_id, error=type(exc).__name__)
        task = asyncio.get_running_loop().create_task(write())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the 800 line --------------------------------------------------------------------------------
    async def holder_for(self, facility_id: str, number: str) -> tuple[str, str] | None:
        found: tuple[str, str] | None = await self.run(CallRequests.holder_for, facility_id, number)
        return found

    async def request(self, holder_id: str, facility_id: str, inmate_id: str, number: str,
                      name_file: str) -> Request:
        made: Request = await self.run(CallRequests.create, IVR_ACTOR, holder_id, facility_id, inmate_id,
                                       number, name_file=name_file)
        self._waiting.pop(facility_id, None)        # heard on this controller's next call at once
        return made

    async def autoreload(self, account_id: str) -> tuple[int, int] | None:
        """(threshold, amount) in cents when AutoReload is on for the account, else None."""
        from holders.sql.schema import autoreload_settings as t

        def read(_reqs: CallRequests) -> Any:
            assert self._engine is not None
            with self._engine.connect() as conn:
                return conn.execute(select(t.c.enabled, t.c.threshold_cents, t.c.amount_cents)
                                    .where(t.c.account_id == account_id)).first()
        row = await self.run(read)
        return (int(row.threshold_cents), int(row.amount_cents)) if row is not None and row.enabled else None

    async def last_calls(self, account_id: str, limit: int = 5) -> list[CallLine]:
        """The account's last connected calls from the ledger's SQL mirror (as recent as its sync)."""
        from ledger.sql.schema import call_records as c

        def read(_reqs: CallRequests) -> list[Any]:
            assert self._engine is not None
            with self._engine.connect() as conn:
                return list(conn.execute(
                    select(c.c.started_at, c.c.billed_seconds, c.c.amount)
                    .where(c.c.account_id == account_id, c.c.billed_seconds > 0)
                    .order_by(c.c.started_at.desc()).limit(limit)))
        rows = await self.run(read)
        return [CallLine(datetime.fromisoformat(r.started_at.replace("Z", "+00:00")), int(r.billed_seconds),
                         int(r.amount)) for r in rows]

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        if self._engine is not None:
            with contextlib.suppress(Exception):
                self._engine.dispose()
