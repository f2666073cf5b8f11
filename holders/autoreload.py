"""AutoReload settings per account: on/off, threshold, amount, the stored card to charge.

Only the account's verified holder (or support staff on their behalf) may read or change them; the card
must be one of that holder's stored methods; the amount stays within the facility's deposit limits
(never under $1, never over the deposit maximum, which itself can never be under $50: 47 CFR 64.6100).
Bad input raises and changes nothing. Reloads themselves run in holders/reloads.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, insert, select, update

from holders.access import Actor
from holders.errors import BadInput, NotFound
from holders.sql.schema import autoreload_settings as t
from holders.sql.schema import holder_accounts, holders
from payments.sql import methods as payment_methods

log = structlog.get_logger()

FLOOR_CENTS = 100              # a reload is at least $1
REQUIRED_MAX_CENTS = 5_000     # the deposit maximum may never refuse $50 (47 CFR 64.6100)


@dataclass(frozen=True)
class Limits:
    """The deposit limits a reload respects (the host passes the facility's; holders never import it)."""
    min_cents: int = FLOOR_CENTS
    max_cents: int = 30_000

    def __post_init__(self) -> None:
        if self.max_cents < REQUIRED_MAX_CENTS:
            raise ValueError("the deposit maximum must accept at least $50 (47 CFR 64.6100)")
        if not 1 <= self.min_cents <= self.max_cents:
            raise ValueError("the minimum deposit must be 1..max cents")

    @property
    def lowest(self) -> int:
        return max(self.min_cents, FLOOR_CENTS)


@dataclass(frozen=True)
class Settings:
    account_id: str
    holder_id: str
    enabled: bool
    threshold_cents: int
    amount_cents: int
    method_id: str
    declines: int          # in a row; three switch AutoReload off
    since_ts: int          # ms: crossings before this are not reloaded
    off_reason: str
    off_ts: int | None
    updated_by: str
    updated_ts: int


def settings_of(row: Any) -> Settings:
    return Settings(row.account_id, row.holder_id, bool(row.enabled), int(row.threshold_cents),
                    int(row.amount_cents), row.method_id, int(row.declines), int(row.since_ts),
                    row.off_reason, None if row.off_ts is None else int(row.off_ts), row.updated_by,
                    int(row.updated_ts))


def _cents(value: object, what: str) -> int:
    if type(value) is not int:
        raise BadInput(f"{what} must be a whole number of cents")
    return value


class AutoReload:
    def __init__(self, engine: Engine, limits: Limits = Limits(),
                 clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._limits = limits
        self._clock = clock

    def show(self, actor: Actor, holder_id: str, account_id: str) -> Settings | None:
        """The account's settings (None: never set). Another holder's account is NotFound."""
        actor.check(holder_id)
        with self._engine.connect() as conn:
            self._linked(conn, holder_id, account_id)
            row = conn.execute(select(t).where(t.c.account_id == account_id)).first()
        return None if row is None else settings_of(row)

    def set(self, actor: Actor, holder_id: str, account_id: str, *, threshold_cents: int | None = None,
            amount_cents: int | None = None, method_id: str | None = None) -> Settings:
        """Switch AutoReload on (omitted values keep the current ones). Resets the decline count and
        starts from now: a crossing before this call is not reloaded."""
        actor.check(holder_id)
        now = int(self._clock() * 1000)
        with self._engine.begin() as conn:
            self._linked(conn, holder_id, account_id, verified_active=True)
            old = conn.execute(select(t).where(t.c.account_id == account_id).with_for_update()).first()
            threshold = threshold_cents if threshold_cents is not None else (
                None if old is None else int(old.threshold_cents))
            amount = amount_cents if amount_cents is not None else (
                None if old is None else int(old.amount_cents))
            method = method_id if method_id is not None else (None if old is None else old.method_id)
            if threshold is None or amount is None or method is None:
                raise BadInput("threshold, amount and payment method are all needed to switch AutoReload on")
            values = {"holder_id": holder_id, "enabled": True,
                      "threshold_cents": self._threshold(threshold), "amount_cents": self._amount(amount),
                      "method_id": self._method(conn, holder_id, method), "declines": 0, "since_ts": now,
                      "off_reason": "", "off_ts": None, "updated_by": _who(actor), "updated_ts": now}
            if old is None:
                conn.execute(insert(t).values(account_id=account_id, **values))
            else:
                conn.execute(update(t).where(t.c.account_id == account_id).values(**values))
            row = conn.execute(select(t).where(t.c.account_id == account_id)).one()
        log.info("autoreload_set", holder_id=holder_id, account_id=account_id, by=_who(actor),
                 threshold=values["threshold_cents"], amount=values["amount_cents"])
        return settings_of(row)

    def off(self, actor: Actor, holder_id: str, account_id: str, reason: str = "") -> Settings:
        actor.check(holder_id)
        now = int(self._clock() * 1000)
        with self._engine.begin() as conn:
            self._linked(conn, holder_id, account_id)
            done = conn.execute(update(t).where(t.c.account_id == account_id, t.c.holder_id == holder_id)
                                .values(enabled=False, off_reason=(reason or f"off by {_who(actor)}")[:200],
                                        off_ts=now, updated_by=_who(actor), updated_ts=now)).rowcount
            if not done:
                raise NotFound(f"no AutoReload for {account_id}")
            row = conn.execute(select(t).where(t.c.account_id == account_id)).one()
        log.info("autoreload_off", holder_id=holder_id, account_id=account_id, by=_who(actor))
        return settings_of(row)

    # --- checks ----------------------------------------------------------------------------------
    def _linked(self, conn: Connection, holder_id: str, account_id: str,
                verified_active: bool = False) -> None:
        """The account is this holder's (else NotFound, whoever else holds it); for a change the holder
        must also be active (verified() of holders.Registry, in this transaction)."""
        row = conn.execute(select(holders.c.status).select_from(
            holder_accounts.join(holders, holders.c.holder_id == holder_accounts.c.holder_id))
            .where(holder_accounts.c.account_id == str(account_id),
                   holder_accounts.c.holder_id == holder_id)).first()
        if row is None:
            raise NotFound(f"no verified account {account_id} for holder {holder_id}")
        if verified_active and row.status != "active":
            raise BadInput(f"holder {holder_id} is {row.status}: AutoReload needs an active holder")

    def _threshold(self, value: object) -> int:
        cents = _cents(value, "threshold")
        if not 1 <= cents <= self._limits.max_cents:
            raise BadInput(f"threshold must be 1..{self._limits.max_cents} cents")
        return cents

    def _amount(self, value: object) -> int:
        cents = _cents(value, "amount")
        low, high = self._limits.lowest, self._limits.max_cents
        if not low <= cents <= high:
            raise BadInput(f"amount must be {low}..{high} cents (the facility's deposit limits)")
        return cents

    def _method(self, conn: Connection, holder_id: str, method_id: object) -> str:
        """A stored method of this holder, not removed; another owner's looks like none at all."""
        if not isinstance(method_id, str) or not method_id:
            raise BadInput("payment method id is required")
        row = conn.execute(select(payment_methods.c.method_id).where(
            payment_methods.c.method_id == method_id, payment_methods.c.owner == holder_id,
            payment_methods.c.removed_at.is_(None))).first()
        if row is None:
            raise BadInput(f"no stored payment method {method_id} for this holder")
        return method_id


def _who(actor: Actor) -> str:
    return f"staff:{actor.staff}" if actor.is_support else f"holder:{actor.holder_id}"
