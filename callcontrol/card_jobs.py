"""The stored-card work `callcontrol serve` runs beside the calls when a payment gateway is configured:
AutoReload (holders/reloads.py: crossings found in the ledger's SQL mirror, one reload each) and the
sweep of stored charges stuck part-way (payments/charge_sweep.py).

Every `serve` process runs it: both are idempotent by key (a crossing, a charge key), so several
processes at once still make one reload per crossing and one charge per key (tests/test_e2e_autoreload.py).
An SQL, Redis or gateway outage counts nothing: the rows wait for the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

log = structlog.get_logger("callcontrol.card_jobs")


class CardJobs:
    def __init__(self, sql_url: str, ledger: Any, gateway: Any, gateway_name: str, interval: float) -> None:
        self._sql_url = sql_url
        self._ledger = ledger
        self._gateway = gateway
        self._gateway_name = gateway_name
        self.interval = interval
        self.engine: Any = None
        self.reloader: Any = None
        self.sweeper: Any = None

    async def open(self) -> CardJobs:
        """Migrate the chains the jobs write (ledger, holders, payments, notify) and build them."""
        import holders.sql
        import ledger.sql
        import notify.sql
        import payments.sql
        from holders.reloads import Reloader
        from payments.charge_sweep import ChargeSweeper
        from payments.methods import PaymentMethods
        from payments.stored_charge import StoredCharges

        def migrate() -> None:
            for chain in (ledger.sql, holders.sql, payments.sql, notify.sql):
                chain.migrate(self._sql_url)

        await asyncio.to_thread(migrate)
        self.engine = holders.sql.make_engine(self._sql_url)
        charges = StoredCharges(self._ledger, PaymentMethods(self.engine, self._gateway, self._gateway_name))
        self.reloader = Reloader(self.engine, charges)
        self.sweeper = ChargeSweeper(charges)
        return self

    async def run_once(self) -> None:
        reloads = await self.reloader.run_once()
        swept = await self.sweeper.run_once()
        if reloads or swept:
            log.info("card_jobs_round", reloads=len(reloads), swept=len(swept))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("card_jobs_failed", error=type(exc).__name__, detail=str(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
