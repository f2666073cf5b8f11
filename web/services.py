"""What the app runs on, opened once per process in the app's lifespan: the SQL engine (holders', web's,
payments' and notify's tables in the ledger's database), the asyncio ledger, the holders registry, sign-in,
the rating catalog and, when a gateway is configured, stored payment methods and charges."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher
from sqlalchemy import Engine

from holders import CodeSender, Registry
from holders.request2call import DEFAULT_DAYS, CallRequests
from ledger import Balance, Ledger
from ledger.sync import SyncWorker
from payments.gateway import PaymentGateway
from payments.methods import PaymentMethods
from payments.stored_charge import StoredCharges
from rating.catalog import Catalog, load_catalog
from web.auth import Auth

T = TypeVar("T")


@dataclass(frozen=True)
class WebConfig:
    redis_url: str
    sql_url: str
    facility_dir: Path
    web_secret: str = field(repr=False)
    code_secret: str = field(default="", repr=False)
    code_sender: CodeSender | None = None
    gateway: PaymentGateway | None = None
    gateway_name: str = ""
    partitions: int = 16
    max_amount: int = 100_000
    deposit_min_cents: int = 100
    deposit_max_cents: int = 30_000
    cookie_secure: bool = True           # False only for plain-http development on loopback
    hasher: PasswordHasher | None = None
    call_request_days: int = DEFAULT_DAYS    # a Request2Call request expires this many days after it is made


class LoopLedger:
    """holders.Registry is blocking and runs in worker threads; this hands its ledger calls to the app's
    event loop, where the one asyncio Ledger lives."""

    def __init__(self, ledger: Ledger, loop: asyncio.AbstractEventLoop) -> None:
        self._ledger, self._loop = ledger, loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def find_account(self, facility_id: str, number_e164: str) -> str | None:
        return self._run(self._ledger.find_account(facility_id, number_e164))

    def open_account(self, op_id: str, facility_id: str, number_e164: str) -> str:
        return self._run(self._ledger.open_account(op_id, facility_id, number_e164))

    def balance(self, account_id: str) -> Balance:
        return self._run(self._ledger.balance(account_id))


@dataclass
class Services:
    config: WebConfig
    engine: Engine
    ledger: Ledger
    registry: Registry
    auth: Auth
    catalog: Catalog
    methods: PaymentMethods | None
    charges: StoredCharges | None
    sync: SyncWorker
    requests: CallRequests
    sync_lock: threading.Lock = field(default_factory=threading.Lock)

    def drain_journal(self) -> None:
        """Statements read the ledger's SQL copy: bring it up to date first (blocking; one at a time)."""
        with self.sync_lock:
            self.sync.drain()

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)
        await self.ledger.close()
        self.engine.dispose()


def migrate_all(url: str) -> None:
    """Every chain the API reads or writes: ledger, holders, payments, notify, web."""
    import holders.sql
    import ledger.sql
    import notify.sql
    import payments.sql
    import web.sql
    for migrate in (ledger.sql.migrate, holders.sql.migrate, payments.sql.migrate, notify.sql.migrate,
                    web.sql.migrate):
        migrate(url)


async def open_services(cfg: WebConfig) -> Services:
    from holders.sql import make_engine
    await asyncio.to_thread(migrate_all, cfg.sql_url)
    catalog = await asyncio.to_thread(load_catalog, cfg.facility_dir)
    engine = make_engine(cfg.sql_url)
    ledger = await Ledger.connect(cfg.redis_url, partitions=cfg.partitions, max_amount=cfg.max_amount)
    registry = Registry(engine, secret=cfg.code_secret, sender=cfg.code_sender,
                        ledger=LoopLedger(ledger, asyncio.get_running_loop()))
    auth = Auth(engine, registry, web_secret=cfg.web_secret, code_secret=cfg.code_secret,
                sender=cfg.code_sender, hasher=cfg.hasher)
    methods = PaymentMethods(engine, cfg.gateway, cfg.gateway_name) if cfg.gateway is not None else None
    charges = StoredCharges(ledger, methods) if methods is not None else None
    sync = await asyncio.to_thread(lambda: SyncWorker(cfg.redis_url, cfg.sql_url, partitions=cfg.partitions,
                                                      run_migrations=False))
    return Services(cfg, engine, ledger, registry, auth, catalog, methods, charges, sync,
                    CallRequests(engine, days=cfg.call_request_days, enabled=_r2c_switch(catalog)))


def _r2c_switch(catalog: Catalog) -> Callable[[str], bool]:
    """The facility file's `request2call` switch; an unknown facility counts as switched off."""
    def enabled(facility_id: str) -> bool:
        try:
            return bool(catalog.facility(facility_id).request2call)
        except Exception:
            return False
    return enabled
