"""What deposits and stored cards need from a card processor, and how it fails.

Deposit flow: ``authorize`` (money reserved on the card, nothing moved) -> the ledger credits the account ->
``capture``. If the credit cannot be posted, ``void`` releases the authorization, so a family is never
charged without being credited. ``authorize`` is idempotent by key: a retry (lost reply, controller
failover) returns the first answer and never reserves the money twice.

Stored cards: ``tokenize`` turns a card into a processor token (the card data is dropped), ``charge_token``
charges it (a sale), ``refund`` gives back all or part of a charge, and ``lookup`` tells what a key did,
so an answer that never came (``GatewayError``) can be resolved. Every call takes an idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


class PaymentError(Exception):
    """The gateway refused the request as malformed or inconsistent (not a card decline)."""


class GatewayError(PaymentError):
    """Transport failure or processor error: the outcome is unknown. Retry with the same idempotency key;
    an authorization that is never captured lapses on the card without moving money."""


#: The name callers use when they mean it: the request may or may not have been carried out.
OutcomeUnknown = GatewayError


class IdempotencyConflict(PaymentError):
    """The same idempotency key came with a different request."""


class Declined(PaymentError):
    """The issuer or processor said no; nothing was charged. ``reason`` is a short code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InsufficientFunds(Declined):
    """Declined for want of funds or credit."""


class InvalidCard(Declined):
    """The card itself is unusable: bad number, expiry or CVV."""


class DuplicateTransaction(PaymentError):
    """The processor refused the request as a repeat of a recent one that this key cannot account for."""


@dataclass(frozen=True)
class CardToken:
    """A card as a processor token: what may be stored (never the number or CVV)."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class Charge:
    """Money taken from a card (a sale), in cents."""

    charge_id: str
    amount_cents: int


@dataclass(frozen=True)
class Refund:
    refund_id: str
    charge_id: str
    amount_cents: int


@dataclass(frozen=True)
class Transaction:
    """What the processor holds under an idempotency key."""

    txn_id: str
    kind: Literal["authorization", "charge", "refund"]
    status: Literal["approved", "declined", "voided"]
    amount_cents: int


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

    async def tokenize(self, idempotency_key: str, card: str, expiry: str, cvv: str) -> CardToken:
        """Store the card at the processor; InvalidCard when it is unusable."""
        ...

    async def charge_token(self, idempotency_key: str, token: str, amount_cents: int) -> Charge:
        """A sale on a stored card. Declined / InsufficientFunds / InvalidCard: nothing charged;
        GatewayError: unknown, resolve with ``lookup`` or repeat with the same key."""
        ...

    async def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> Refund:
        """Give back ``amount_cents`` of a charge; several partial refunds may add up to the charge."""
        ...

    async def lookup(self, idempotency_key: str) -> Transaction | None:
        """What the key produced (None: nothing). GatewayError when the processor cannot say."""
        ...
