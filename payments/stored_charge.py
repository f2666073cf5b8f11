"""Charging a stored card into a ledger account: charge the token -> credit the account -> record.

What AutoReload and the web deposit call. Idempotent end to end by the caller's key: the gateway key is
the key, the ledger deposit's op id is ``<key>:dep``, a refund's gateway key ``<key>:refund``, and a row
in ``payment_charges`` (state started -> charged -> credited, or declined / failed / refunded /
refund_failed) says how far a run got. A re-run with the same key after a crash at any step finishes
the job: the charge and the deposit replay by key, so money is neither lost nor doubled. Fail closed:
a credit the ledger certainly refused is refunded; one whose outcome stays unknown leaves the row
``charged`` for a re-run, never refunded (that could credit for free) and never charged again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from payments.gateway import Declined, GatewayError, PaymentError, Transaction
from payments.methods import MAX_KEY, MethodNotFound, PaymentMethods
from payments.saga import LEDGER_SETTLE_SECONDS, DepositOrder, _credit, _retry
from payments.sql import charges as t

log = structlog.get_logger("payments.stored_charge")

SOURCE = "stored-card"           # the ledger deposit's source
FINAL = frozenset({"credited", "declined", "failed", "refunded"})


@dataclass(frozen=True)
class StoredChargeOrder:
    key: str                     # caller's idempotency key: same key, same charge, same credit
    owner: str
    method_id: str
    account_id: str
    cents: int


@dataclass(frozen=True)
class StoredChargeOutcome:
    status: Literal["posted", "declined", "failed", "unknown"]   # unknown: re-run with the same key
    reason: str = ""
    charge_id: str = ""
    available: int | None = None
    refunded: bool = False


def _outcome(row: RowMapping) -> StoredChargeOutcome:
    state, reason, ref = row["state"], row["reason"], row["charge_id"]
    if state == "credited":
        return StoredChargeOutcome("posted", "", ref)
    if state == "declined":
        return StoredChargeOutcome("declined", reason)
    return StoredChargeOutcome("failed", reason, ref, refunded=state == "refunded")


class StoredCharges:
    """Runs stored-card charges against ``ledger`` (the asyncio Ledger) with ``methods`` (its engine
    holds ``payment_charges``; its gateway charges)."""

    def __init__(self, ledger: Any, methods: PaymentMethods, *, now: Callable[[], float] = time.time,
                 tries: int = 3, backoff: float = 0.05, settle: float = LEDGER_SETTLE_SECONDS) -> None:
        self.ledger = ledger
        self.methods = methods
        self.gateway = methods.gateway
        self.engine = methods.engine
        self.now = now
        self.tries, self.backoff, self.settle = tries, backoff, settle

    async def charge(self, order: StoredChargeOrder,
                     checkpoint: Callable[[str], None] | None = None) -> StoredChargeOutcome:
        """Charge, credit, record; see the module docstring. ``checkpoint`` hears each step done
        ("charged", "recorded_charge", "credited"): tests crash there."""
        if type(order.cents) is not int or order.cents <= 0:
            raise ValueError("amount must be a positive integer number of cents")
        if not (isinstance(order.key, str) and 0 < len(order.key) <= MAX_KEY and order.key.isprintable()):
            raise ValueError(f"key must be 1..{MAX_KEY} printable characters")
        cp = checkpoint or (lambda step: None)
        bound = log.bind(key=order.key, account=order.account_id, amount=order.cents)
        row, replay = await asyncio.to_thread(self._begin, order)
        if (row["owner"], row["method_id"], row["account_id"], row["amount_cents"]) != (
                order.owner, order.method_id, order.account_id, order.cents):
            bound.warning("stored_charge_conflict")
            return StoredChargeOutcome("failed", "idempotency_conflict")
        state, charge_id = row["state"], row["charge_id"]
        if state in FINAL:
            return _outcome(row)
        if state == "refund_failed":
            return await self._refund(order, charge_id, row["reason"], bound)
        if state == "started":
            got = await self._charge(order, replay, bound)
            if isinstance(got, StoredChargeOutcome):
                return got
            charge_id = got
            cp("charged")
            await self._set(order.key, "charged", charge_id=charge_id)
            cp("recorded_charge")
        deposit = DepositOrder(order.key, "", "", order.account_id, order.cents, source=SOURCE)
        result, value = await _credit(self.ledger, deposit, charge_id, tries=self.tries,
                                      backoff=self.backoff, settle=self.settle, replay=replay)
        if result == "unknown":
            bound.error("stored_charge_credit_unknown", ref=charge_id)
            return StoredChargeOutcome("unknown", "ledger_unknown", charge_id)
        if result == "refused":
            return await self._refund(order, charge_id, f"ledger_{getattr(value, 'code', 'error')}", bound)
        cp("credited")
        await self._set(order.key, "credited")
        bound.info("stored_charge_posted", ref=charge_id, available=value.available)
        return StoredChargeOutcome("posted", "", charge_id, value.available)

    async def _charge(self, order: StoredChargeOrder, replay: bool,
                      bound: Any) -> str | StoredChargeOutcome:
        """The charge id, or the outcome when there is nothing to credit."""
        gw = self.gateway
        if replay:              # an earlier run may have charged before it could record it
            try:
                found = await self._lookup(order.key)
            except GatewayError:
                return StoredChargeOutcome("unknown", "gateway_unknown")
            if found is not None and found.status == "approved":
                return found.txn_id
        try:
            method = await self.methods.get_for_charge(order.owner, order.method_id)
        except MethodNotFound:
            await self._set(order.key, "failed", reason="no_such_method")
            return StoredChargeOutcome("failed", "no_such_method")
        try:
            charge = await _retry(lambda: gw.charge_token(order.key, method.token, order.cents),
                                  self.tries, self.backoff, lambda e: isinstance(e, GatewayError))
            return str(charge.charge_id)
        except Declined as exc:
            await self._set(order.key, "declined", reason=exc.reason[:64])
            bound.info("stored_charge_declined", reason=exc.reason, last4=method.last4)
            return StoredChargeOutcome("declined", exc.reason)
        except GatewayError:
            try:
                found = await self._lookup(order.key)
            except GatewayError:
                found = None
            if found is not None and found.status == "approved":
                return found.txn_id
            # Maybe still in flight: the row stays "started"; a re-run with this key resolves it.
            bound.error("stored_charge_gateway_unknown")
            return StoredChargeOutcome("unknown", "gateway_unknown")
        except PaymentError as exc:
            await self._set(order.key, "failed", reason="gateway_refused")
            bound.warning("stored_charge_refused", error=type(exc).__name__)
            return StoredChargeOutcome("failed", "gateway_refused")

    async def _lookup(self, key: str) -> Transaction | None:
        found: Transaction | None = await _retry(lambda: self.gateway.lookup(key), self.tries, self.backoff,
                                                 lambda e: isinstance(e, GatewayError))
        return found

    async def _refund(self, order: StoredChargeOrder, charge_id: str, reason: str,
                      bound: Any) -> StoredChargeOutcome:
        """The credit was refused: give the charge back (gateway key ``<key>:refund``)."""
        try:
            await _retry(lambda: self.gateway.refund(f"{order.key}:refund", charge_id, order.cents),
                         self.tries, self.backoff, lambda e: isinstance(e, GatewayError))
        except Exception as exc:
            await self._set(order.key, "refund_failed", reason=reason)
            bound.error("stored_charge_refund_failed", ref=charge_id, reason=reason, error=type(exc).__name__)
            return StoredChargeOutcome("failed", reason, charge_id)
        await self._set(order.key, "refunded", reason=reason)
        bound.error("stored_charge_refunded", ref=charge_id, reason=reason)
        return StoredChargeOutcome("failed", reason, charge_id, refunded=True)

    # --- the row ---------------------------------------------------------------------------------------
    def _begin(self, order: StoredChargeOrder) -> tuple[RowMapping, bool]:
        """The key's row, created as "started" if new; and whether it already existed."""
        now = self.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t).values(key=order.key, owner=order.owner, method_id=order.method_id,
                                              account_id=order.account_id, amount_cents=order.cents,
                                              state="started", charge_id="", reason="",
                                              created_at=now, updated_at=now))
            existed = False
        except IntegrityError:
            existed = True
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.key == order.key)).mappings().one()
        return row, existed

    async def _set(self, key: str, state: str, **values: str) -> None:
        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(update(t).where(t.c.key == key, t.c.state.not_in(FINAL))
                             .values(state=state, updated_at=self.now(), **values))
        await asyncio.to_thread(write)
