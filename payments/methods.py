"""Stored payment methods: a processor token with its brand, last four digits and expiry, owned by an
opaque holder id. The card number and CVV go to the gateway's ``tokenize`` and are dropped: they are
never stored, logged or journalled. Every read or removal is owner-checked, and a method another owner
holds looks exactly like one that does not exist."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine, RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from payments.gateway import PaymentError, PaymentGateway
from payments.sql import methods as t

log = structlog.get_logger("payments.methods")

MAX_OWNER = 128
MAX_KEY = 120


_stamp_lock = threading.Lock()
_last = 0                                # the last stamp handed out in this process


def _new_method_id() -> str:
    """``pm_`` + 16 hex digits of a strictly increasing nanosecond stamp + 8 random hex: ids sort in the
    order they were made, which breaks ties of ``created_at`` (the injected clock may stamp several
    methods alike) deterministically; across processes the wall clock orders them."""
    global _last
    with _stamp_lock:
        _last = max(time.time_ns(), _last + 1)
        stamp = _last
    return f"pm_{stamp:016x}{secrets.token_hex(4)}"


class MethodNotFound(PaymentError):
    """No such method for this owner (missing, another owner's, or removed)."""


@dataclass(frozen=True)
class PaymentMethod:
    method_id: str
    owner: str
    gateway: str
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    created_at: float
    removed_at: float | None


def _check(value: str, what: str, limit: int) -> str:
    if not (isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()):
        raise ValueError(f"{what} must be 1..{limit} printable characters")
    return value


def _method(row: RowMapping) -> PaymentMethod:
    return PaymentMethod(row["method_id"], row["owner"], row["gateway"], row["token"], row["brand"],
                         row["last4"], row["exp_month"], row["exp_year"], row["created_at"],
                         row["removed_at"])


class PaymentMethods:
    """Methods in SQL (tables from ``payments.sql.migrate``); ``gateway`` tokenizes new cards and is
    recorded under ``gateway_name``."""

    def __init__(self, engine: Engine, gateway: PaymentGateway, gateway_name: str,
                 now: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.gateway = gateway
        self.gateway_name = gateway_name
        self.now = now

    async def add(self, owner: str, key: str, card: str, expiry: str, cvv: str) -> PaymentMethod:
        """Tokenize the card and store the method. Idempotent by ``key``: a re-run (after a crash
        between the two steps, too) returns the same method, tokenized once."""
        _check(owner, "owner", MAX_OWNER)
        _check(key, "key", MAX_KEY)
        found = await asyncio.to_thread(self._by_key, key)
        if found is not None:
            if found.owner != owner:
                raise MethodNotFound("no such payment method")
            return found
        token = await self.gateway.tokenize(f"{key}:tok", card, expiry, cvv)
        row = {"method_id": _new_method_id(), "owner": owner, "add_key": key,
               "gateway": self.gateway_name, "token": token.token, "brand": token.brand,
               "last4": token.last4, "exp_month": token.exp_month, "exp_year": token.exp_year,
               "created_at": self.now(), "removed_at": None}
        try:
            await asyncio.to_thread(self._insert, row)
        except IntegrityError:          # a concurrent add with the same key won
            return await self.add(owner, key, card, expiry, cvv)
        log.info("payment_method_added", owner=owner, method=row["method_id"], brand=token.brand,
                 last4=token.last4)
        return _method(row)  # type: ignore[arg-type]

    async def list_for(self, owner: str) -> list[PaymentMethod]:
        """The owner's methods that are not removed, oldest first (ties: in the order they were added)."""
        _check(owner, "owner", MAX_OWNER)
        return await asyncio.to_thread(self._list, owner)

    async def get_for_charge(self, owner: str, method_id: str) -> PaymentMethod:
        """The owner's method, if not removed; else MethodNotFound."""
        _check(owner, "owner", MAX_OWNER)
        found = await asyncio.to_thread(self._get, owner, method_id)
        if found is None or found.removed_at is not None:
            raise MethodNotFound("no such payment method")
        return found

    async def remove(self, owner: str, method_id: str) -> None:
        """Soft-delete: never charged again. Idempotent for the owner; MethodNotFound for anyone else."""
        _check(owner, "owner", MAX_OWNER)
        if not await asyncio.to_thread(self._remove, owner, method_id):
            raise MethodNotFound("no such payment method")
        log.info("payment_method_removed", owner=owner, method=method_id)

    # --- SQL, one statement or transaction each (run in a worker thread) -------------------------------
    def _insert(self, row: dict[str, object]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t).values(**row))

    def _by_key(self, key: str) -> PaymentMethod | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.add_key == key)).mappings().first()
        return None if row is None else _method(row)

    def _get(self, owner: str, method_id: str) -> PaymentMethod | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.method_id == str(method_id),
                                               t.c.owner == owner)).mappings().first()
        return None if row is None else _method(row)

    def _list(self, owner: str) -> list[PaymentMethod]:
        return stored_methods(self.engine, owner)

    def _remove(self, owner: str, method_id: str) -> bool:
        with self.engine.begin() as conn:
            mine = conn.execute(select(t.c.method_id).where(t.c.method_id == str(method_id),
                                                            t.c.owner == owner)).first()
            if mine is None:
                return False
            conn.execute(update(t).where(t.c.method_id == str(method_id), t.c.removed_at.is_(None))
                         .values(removed_at=self.now()))
        return True


def stored_methods(engine: Engine, owner: str) -> list[PaymentMethod]:
    """The owner's methods that are not removed, oldest first: a read that needs no gateway (support
    tools list them; only adding a card talks to the processor)."""
    _check(owner, "owner", MAX_OWNER)
    with engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.owner == owner, t.c.removed_at.is_(None))
                            .order_by(t.c.created_at, t.c.method_id)).mappings().all()
    return [_method(r) for r in rows]
