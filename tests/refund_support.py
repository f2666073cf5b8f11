"""What the refund and inactivity tests share: a real ledger, SQL (SQLite or PostgreSQL), the sandbox
gateway, deposits made the way the 800 line and stored cards make them, and a holder who owns the account."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select

from holders import Actor, Registry
from holders.refunds import Refunds
from holders.sql import make_engine, migrate
from holders.sql.schema import holder_accounts
from ledger import Ledger, account_id_for
from ledger.sql import migrate as ledger_migrate
from ledger.sync import SyncWorker
from notify.journal import derive_ledger_events
from notify.model import REFUND_ISSUED
from notify.sql import migrate as notify_migrate
from notify.sql.schema import events
from payments.methods import PaymentMethods
from payments.saga import DepositOrder
from payments.saga import charge as ivr_charge
from payments.sandbox import SandboxGateway
from payments.sql import migrate as payments_migrate
from payments.stored_charge import StoredChargeOrder, StoredCharges

STAFF = Actor.support("tester")
FAC, NUM = "FAC-01", "+13125550100"
VISA, MC = "4111111111111111", "5555555555554444"
ADDRESS = "12 Elm St\nSpringfield, IL 62701"


class Crash(BaseException):
    """A process dying at a step: not an Exception, so nothing on the way catches it."""


@dataclass
class World:
    sql_url: str
    redis_url: str
    engine: Engine
    ledger: Ledger
    gateway: SandboxGateway
    methods: PaymentMethods
    registry: Registry

    async def sync(self) -> None:
        worker = SyncWorker(self.redis_url, self.sql_url)
        try:
            worker.drain()
        finally:
            worker.close()

    def refunds(self, checkpoint: Callable[[str], None] | None = None,
                clock: Callable[[], float] = time.time, gateway: Any = None) -> Refunds:
        return Refunds(self.engine, self.ledger, gateway or self.gateway, sync=self.sync, clock=clock,
                       checkpoint=checkpoint)

    def holder(self, email: str = "pat@example.com", address: str | None = ADDRESS) -> str:
        return self.registry.create(STAFF, name="Pat Doe", email=email, mobile="+13125550199",
                                    address=address).holder_id

    async def account(self, holder_id: str | None, number: str = NUM, facility: str = FAC) -> str:
        acct = await self.ledger.open_account(f"open-{facility}-{number[1:]}", facility, number)
        if holder_id is not None:
            with self.engine.begin() as conn:
                conn.execute(insert(holder_accounts).values(account_id=acct, holder_id=holder_id,
                                                            facility_id=facility, number_e164=number,
                                                            verified_ts=int(time.time() * 1000)))
        return acct

    async def stored_deposit(self, holder_id: str, acct: str, key: str, cents: int, card: str = VISA) -> str:
        method = await self.methods.add(holder_id, f"add-{key}", card, "1230", "123")
        out = await StoredCharges(self.ledger, self.methods).charge(
            StoredChargeOrder(key, holder_id, method.method_id, acct, cents))
        assert out.status == "posted", out
        return out.charge_id

    async def ivr_deposit(self, acct: str, key: str, cents: int, card: str = MC,
                          number: str = NUM, facility: str = FAC) -> str:
        out = await ivr_charge(self.ledger, self.gateway, DepositOrder(key, facility, number, acct, cents),
                               card, "1230", "123")
        assert out.status == "posted", out
        return out.ref

    async def refund_events(self, acct: str) -> int:
        """"Refund issued" events notify derives from the synced journal for the account."""
        await self.sync()
        with self.engine.begin() as conn:
            derive_ledger_events(conn, since_ms=0)
        with self.engine.connect() as conn:
            return len(conn.execute(select(events.c.event_id).where(
                events.c.kind == REFUND_ISSUED, events.c.account_id == acct)).all())


async def world(sql_url: str, redis_url: str, clock: Callable[[], float] = time.time) -> World:
    ledger_migrate(sql_url)
    payments_migrate(sql_url)
    migrate(sql_url)
    notify_migrate(sql_url)
    engine = make_engine(sql_url)
    gw = SandboxGateway()
    led = await Ledger.connect(redis_url)
    return World(sql_url, redis_url, engine, led, gw, PaymentMethods(engine, gw, "sandbox"),
                 Registry(engine, secret="x" * 32, sender=None, ledger=None, clock=clock))


__all__ = ["ADDRESS", "FAC", "MC", "NUM", "STAFF", "VISA", "Crash", "World", "account_id_for", "world"]
