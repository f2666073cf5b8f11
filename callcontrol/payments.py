"""Card payments for the deposit line: the gateway interface, card-entry checks, and a sandbox gateway.

Card data (number, expiry, CVV) only ever lives in the memory of one call: it is passed to the gateway
and dropped. Nothing here logs it or writes it anywhere; callers keep the last four digits and the
gateway's authorization id, nothing more.

Flow: ``authorize`` (money reserved on the card, nothing moved) -> the ledger credits the account ->
``capture``. If the credit cannot be posted, ``void`` releases the authorization, so a family is never
charged without being credited. ``authorize`` is idempotent by key: a retry (lost reply, controller
failover) returns the first answer and never reserves the money twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from callcontrol.platform.logs import luhn_ok

CARD_MIN_DIGITS = 13
CARD_MAX_DIGITS = 19
EXPIRY_MAX_YEARS_AHEAD = 20
# A card is valid through the last day of its month wherever the caller is: the month is judged at
# UTC-12, the last zone to leave it (every inhabited US place ends it earlier: American Samoa, UTC-11).
LAST_ZONE = timezone(timedelta(hours=-12))


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


# --- card-entry checks (pure) ---------------------------------------------------------------------------

def card_number_ok(digits: str | None) -> bool:
    """13-19 ASCII digits passing the Luhn check."""
    return (isinstance(digits, str) and digits.isascii() and digits.isdigit()
            and CARD_MIN_DIGITS <= len(digits) <= CARD_MAX_DIGITS and luhn_ok(digits))


def is_amex(card: str) -> bool:
    return len(card) == 15 and card[:2] in ("34", "37")


def cvv_ok(cvv: str | None, card: str) -> bool:
    """Four digits for American Express, three for every other brand."""
    want = 4 if is_amex(card) else 3
    return isinstance(cvv, str) and cvv.isascii() and cvv.isdigit() and len(cvv) == want


def expiry_problem(mmyy: str | None, now: datetime) -> str | None:
    """None when MMYY is a real month not yet over at ``now`` anywhere (a card is valid through the last
    day of its expiry month, judged at UTC-12) and not absurdly far ahead; else "malformed" or
    "expired"."""
    if not (isinstance(mmyy, str) and len(mmyy) == 4 and mmyy.isascii() and mmyy.isdigit()):
        return "malformed"
    month, year = int(mmyy[:2]), 2000 + int(mmyy[2:])
    if not 1 <= month <= 12:
        return "malformed"
    now = now.astimezone(LAST_ZONE)
    if (year, month) < (now.year, now.month):
        return "expired"
    if year > now.year + EXPIRY_MAX_YEARS_AHEAD:
        return "malformed"
    return None


# --- sandbox --------------------------------------------------------------------------------------------

#: Standard public test numbers the sandbox approves.
SANDBOX_APPROVE = frozenset({
    "4111111111111111", "4242424242424242", "5555555555554444", "2223003122003222",
    "378282246310005", "6011111111111117",
})
#: Test numbers the sandbox declines, with the reason.
SANDBOX_DECLINE = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
}
#: Test numbers for which the processor fails (GatewayError, nothing authorized).
SANDBOX_ERROR = frozenset({"4000000000000119"})


@dataclass
class SandboxAuth:
    """What the sandbox keeps per authorization: no card data beyond the last four digits."""

    key: str
    auth_id: str
    amount_cents: int
    last4: str
    state: str = "authorized"        # authorized | captured | voided | refunded
    captured_cents: int = 0


class SandboxGateway:
    """In-memory gateway for the demo and tests. Rules, in order:

    * amount not a positive int -> PaymentError; a whole amount ending in 13 cents -> GatewayError;
    * a number in SANDBOX_ERROR -> GatewayError; not 13-19 digits or Luhn-invalid -> declined
      "invalid_number"; expiry not a future MMYY (by ``now``) -> "expired_card"; CVV not 3 digits (4 for
      American Express) -> "incorrect_cvc";
    * SANDBOX_DECLINE numbers -> declined with their reason; SANDBOX_APPROVE numbers -> approved;
      any other number -> declined "unknown_test_card".

    Idempotent by key: the same key with the same request returns the first answer (approval or
    decline) without a new authorization; with a different request it raises IdempotencyConflict.
    Requests are compared through an HMAC under a per-instance random key, never stored in clear.
    """

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        import time

        self._now = now or time.time
        self._secret = secrets.token_bytes(32)
        self._by_key: dict[str, tuple[str, Authorization]] = {}
        self._dead_keys: set[str] = set()      # voided by key before any authorization under them
        self.auths: dict[str, SandboxAuth] = {}
        self.processed = 0            # authorizations that reached the "processor" (replays excluded)

    def _fingerprint(self, *parts: str) -> str:
        return hmac.new(self._secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()

    async def authorize(self, idempotency_key: str, card: str, expiry: str, cvv: str,
                        amount_cents: int) -> Authorization:
        if not isinstance(idempotency_key, str) or not idempotency_key:
            raise PaymentError("an idempotency key is required")
        if type(amount_cents) is not int or amount_cents <= 0:
            raise PaymentError("amount must be a positive integer number of cents")
        fp = self._fingerprint(str(card), str(expiry), str(cvv), str(amount_cents))
        seen = self._by_key.get(idempotency_key)
        if seen is not None:
            if not hmac.compare_digest(seen[0], fp):
                raise IdempotencyConflict(f"key {idempotency_key} was used for another request")
            return seen[1]
        if idempotency_key in self._dead_keys:
            raise PaymentError(f"key {idempotency_key} was voided")
        if amount_cents % 100 == 13 or card in SANDBOX_ERROR:
            raise GatewayError("sandbox processor error")
        self.processed += 1
        last4 = card[-4:] if isinstance(card, str) else ""
        now = datetime.fromtimestamp(self._now(), tz=UTC)
        reason = ""
        if not card_number_ok(card):
            reason = "invalid_number"
        elif expiry_problem(expiry, now) is not None:
            reason = "expired_card"
        elif not cvv_ok(cvv, card):
            reason = "incorrect_cvc"
        elif card in SANDBOX_DECLINE:
            reason = SANDBOX_DECLINE[card]
        elif card not in SANDBOX_APPROVE:
            reason = "unknown_test_card"
        if reason:
            result = Authorization(False, "", reason, last4, amount_cents)
        else:
            auth_id = f"sbx_{secrets.token_hex(8)}"
            self.auths[auth_id] = SandboxAuth(idempotency_key, auth_id, amount_cents, last4)
            result = Authorization(True, auth_id, "", last4, amount_cents)
        self._by_key[idempotency_key] = (fp, result)
        return result

    def _auth(self, auth_id: str) -> SandboxAuth:
        found = self.auths.get(auth_id)
        if found is None:
            raise PaymentError(f"unknown authorization {auth_id}")
        return found

    async def capture(self, auth_id: str, amount_cents: int) -> None:
        """Move the money. Idempotent; at most the authorized amount; never after a void."""
        auth = self._auth(auth_id)
        if type(amount_cents) is not int or not 0 < amount_cents <= auth.amount_cents:
            raise PaymentError("capture amount must be 1..authorized cents")
        if auth.state == "captured":
            if auth.captured_cents != amount_cents:
                raise IdempotencyConflict(f"{auth_id} already captured for another amount")
            return
        if auth.state != "authorized":
            raise PaymentError(f"cannot capture a {auth.state} authorization")
        auth.state, auth.captured_cents = "captured", amount_cents

    async def void(self, auth_id: str) -> None:
        """Release an authorization (or refund a captured one). Idempotent."""
        auth = self._auth(auth_id)
        if auth.state == "authorized":
            auth.state = "voided"
        elif auth.state == "captured":
            auth.state, auth.captured_cents = "refunded", 0

    async def void_by_key(self, idempotency_key: str) -> None:
        """Void the key's authorization if there is one; else no authorization will be made under it."""
        seen = self._by_key.get(idempotency_key)
        if seen is None:
            self._dead_keys.add(idempotency_key)
        elif seen[1].approved:
            await self.void(seen[1].auth_id)

    # --- what a test or the demo inspects -------------------------------------------------------------
    def charged_cents(self) -> int:
        """Money actually taken from cards (captured and not refunded)."""
        return sum(a.captured_cents for a in self.auths.values() if a.state == "captured")

    def outstanding(self) -> list[SandboxAuth]:
        """Authorizations neither captured nor voided: money reserved on someone's card."""
        return [a for a in self.auths.values() if a.state == "authorized"]
