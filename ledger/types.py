"""Values the ledger returns: integer cents, never floats for money."""

from __future__ import annotations

from dataclasses import dataclass, field

ACCOUNT_STATES = ("opened", "active", "frozen", "closed")
HOLD_STATUSES = ("pending", "settled", "voided", "expired")


@dataclass(frozen=True)
class Balance:
    account_id: str
    posted: int
    held: int
    available: int
    state: str


@dataclass(frozen=True)
class HoldState:
    account_id: str
    hold_id: str
    amount: int
    captured: int
    status: str  # pending | settled | voided | expired
    expires_at: float
    meta: dict[str, str] = field(default_factory=dict)
