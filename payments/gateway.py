"""What a deposit needs from a card processor, and how it fails.

Flow: ``authorize`` (money reserved on the card, nothing moved) -> the ledger credits the account ->
``capture``. If the credit cannot be posted, ``void`` releases the authorization, so a family is never
charged without being credited. ``authorize`` is idempotent by key: a retry (lost reply, controller
failover) returns the first answer and never reserves the money twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class PaymentError(Exception):
    """The gateway refused the request as malformed or inconsistent (not a card decline)."""


class GatewayError(PaymentError):
    """Transport failure or processor error: the outcome is unknown. Retry with the same idempotency key;
    an authorization that is never captured lapses on the card without moving money."""


class IdempotencyConflict(PaymentError):
    """The same idempotency key came with a different request."""


@dataclass(frozen=True)
class Authorization:
    approved: bool
    auth_id: str = ""
    decline_reason: str = ""
    last4: str = ""
    amount_cents: int = 0


class PaymentGateway(Protocol):
    """What the deposit flow needs from a card processor (amounts in integer US cents)."""

    async def authorize(self, idempotency_key: str, card: str, expiry: str, cvv: str,
                        amount_cents: int) -> Authorization: ...

    async def capture(self, auth_id: str, amount_cents: int) -> None: ...

    async def void(self, auth_id: str) -> None: ...

    async def void_by_key(self, idempotency_key: str) -> None:
        """Release whatever authorization ``idempotency_key`` produced, if any, and refuse any later
        authorization under that key (a request still in flight). For when ``authorize`` never answered:
        afterwards nothing is held under the key. Idempotent; GatewayError = outcome unknown."""
        ...
