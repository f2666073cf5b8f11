"""Values the ledger returns: integer cents, never floats for money.

Immutable named tuples: one is built per operation, and a tuple costs a fraction of a frozen dataclass."""

from __future__ import annotations

from typing import NamedTuple

ACCOUNT_STATES = ("opened", "active", "frozen", "closed")
HOLD_STATUSES = ("pending", "settled", "voided", "expired")


class Balance(NamedTuple):
    account_id: str
    posted: int
    held: int
    available: int
    state: str


class HoldState(NamedTuple):
    account_id: str
    hold_id: str
    amount: int
    captured: int
    status: str  # pending | settled | voided | expired
    expires_at: float
    meta: dict[str, str]
