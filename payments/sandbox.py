"""An in-memory gateway for the demo and tests: public test card numbers, the rules of a processor,
and idempotency by key. No card data is kept beyond the last four digits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from payments.cards import brand, card_number_ok, cvv_ok, expiry_parts, expiry_problem
from payments.gateway import (
    Authorization,
    CardToken,
    Charge,
    Declined,
    GatewayError,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidCard,
    PaymentError,
    Refund,
    Transaction,
)

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
#: Test numbers for which the processor fails (GatewayError, nothing authorized or charged).
SANDBOX_ERROR = frozenset({"4000000000000119"})
#: Stored cards only: the charge goes through but its reply is lost (GatewayError; ``lookup`` finds it).
SANDBOX_LOST_REPLY = "4000000000000259"
#: Stored cards only: the charge goes through, its reply is lost and ``lookup`` cannot say either.
SANDBOX_STAYS_UNKNOWN = "4000000000000267"


@dataclass
class SandboxAuth:
    """What the sandbox keeps per authorization: no card data beyond the last four digits."""

    key: str
    auth_id: str
    amount_cents: int
    last4: str
    state: str = "authorized"        # authorized | captured | voided | refunded
    captured_cents: int = 0
    refunded_cents: int = 0          # partial refunds of a capture


@dataclass(frozen=True)
class SandboxCard:
    """A tokenized test card: how it behaves, never its number."""

    behaviour: str                   # "approve", a decline reason, "error", "lost", "unknown"
    token: CardToken


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
        self._now = now or time.time
        self._secret = secrets.token_bytes(32)
        self._by_key: dict[str, tuple[str, Authorization]] = {}
        self._dead_keys: set[str] = set()      # voided by key before any authorization under them
        self.auths: dict[str, SandboxAuth] = {}
        self.processed = 0            # authorizations that reached the "processor" (replays excluded)
        self.cards: dict[str, SandboxCard] = {}
        self._ops: dict[str, tuple[str, CardToken | Charge | Refund]] = {}
        self._unknown_keys: set[str] = set()     # keys whose outcome stays unknown
        self.charges = 0              # stored-card charges that reached the "processor"

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

    # --- stored cards ---------------------------------------------------------------------------------
    def _replay(self, key: str, fp: str) -> CardToken | Charge | Refund | None:
        if not isinstance(key, str) or not key:
            raise PaymentError("an idempotency key is required")
        seen = self._ops.get(key)
        if seen is None:
            return None
        if not hmac.compare_digest(seen[0], fp):
            raise IdempotencyConflict(f"key {key} was used for another request")
        return seen[1]

    async def tokenize(self, idempotency_key: str, card: str, expiry: str, cvv: str) -> CardToken:
        """Checks as ``authorize`` (InvalidCard); SANDBOX_ERROR numbers -> GatewayError. Any other
        Luhn-valid number gets a token; whether a charge on it succeeds is decided at charge time."""
        fp = self._fingerprint("tok", str(card), str(expiry), str(cvv))
        seen = self._replay(idempotency_key, fp)
        if isinstance(seen, CardToken):
            return seen
        if card in SANDBOX_ERROR:
            raise GatewayError("sandbox processor error")
        now = datetime.fromtimestamp(self._now(), tz=UTC)
        if not card_number_ok(card):
            raise InvalidCard("invalid_number")
        if expiry_problem(expiry, now) is not None:
            raise InvalidCard("expired_card")
        if not cvv_ok(cvv, card):
            raise InvalidCard("incorrect_cvc")
        behaviour = ("approve" if card in SANDBOX_APPROVE else "lost" if card == SANDBOX_LOST_REPLY
                     else "unknown" if card == SANDBOX_STAYS_UNKNOWN
                     else SANDBOX_DECLINE.get(card, "unknown_test_card"))
        month, year = expiry_parts(expiry)
        token = CardToken(f"sbxtok_{secrets.token_hex(8)}", brand(card), card[-4:], month, year)
        self.cards[token.token] = SandboxCard(behaviour, token)
        self._ops[idempotency_key] = (fp, token)
        return token

    async def charge_token(self, idempotency_key: str, token: str, amount_cents: int) -> Charge:
        """A sale: approve-list cards are charged; decline-list cards raise Declined (insufficient
        funds: InsufficientFunds); amounts ending in 13 cents raise GatewayError with nothing charged;
        SANDBOX_LOST_REPLY / SANDBOX_STAYS_UNKNOWN charge, then raise GatewayError."""
        if type(amount_cents) is not int or amount_cents <= 0:
            raise PaymentError("amount must be a positive integer number of cents")
        fp = self._fingerprint("charge", str(token), str(amount_cents))
        seen = self._replay(idempotency_key, fp)
        if idempotency_key in self._unknown_keys:
            raise GatewayError("sandbox reply lost")
        if isinstance(seen, Charge):
            return seen
        card = self.cards.get(token)
        if card is None:
            raise InvalidCard("unknown_token")
        if amount_cents % 100 == 13 or card.behaviour == "error":
            raise GatewayError("sandbox processor error")
        if card.behaviour == "insufficient_funds":
            raise InsufficientFunds(card.behaviour)
        if card.behaviour not in ("approve", "lost", "unknown"):
            raise Declined(card.behaviour)
        self.charges += 1
        charge_id = f"sbx_{secrets.token_hex(8)}"
        self.auths[charge_id] = SandboxAuth(idempotency_key, charge_id, amount_cents, card.token.last4,
                                            "captured", amount_cents)
        charge = Charge(charge_id, amount_cents)
        self._ops[idempotency_key] = (fp, charge)
        if card.behaviour == "unknown":
            self._unknown_keys.add(idempotency_key)
        if card.behaviour != "approve":
            raise GatewayError("sandbox reply lost")
        return charge

    async def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> Refund:
        """Give back part or all of a capture; refunds never add up to more than was captured."""
        fp = self._fingerprint("refund", str(charge_id), str(amount_cents))
        seen = self._replay(idempotency_key, fp)
        if isinstance(seen, Refund):
            return seen
        auth = self._auth(charge_id)
        if auth.state != "captured":
            raise PaymentError(f"cannot refund a {auth.state} charge")
        left = auth.captured_cents - auth.refunded_cents
        if type(amount_cents) is not int or not 0 < amount_cents <= left:
            raise PaymentError(f"refund amount must be 1..{left} cents")
        auth.refunded_cents += amount_cents
        refund = Refund(f"sbx_{secrets.token_hex(8)}", charge_id, amount_cents)
        self._ops[idempotency_key] = (fp, refund)
        return refund

    async def lookup(self, idempotency_key: str) -> Transaction | None:
        if idempotency_key in self._unknown_keys:
            raise GatewayError("sandbox processor cannot say")
        op = self._ops.get(idempotency_key)
        if isinstance(op, tuple) and isinstance(op[1], Charge):
            return Transaction(op[1].charge_id, "charge", "approved", op[1].amount_cents)
        if isinstance(op, tuple) and isinstance(op[1], Refund):
            return Transaction(op[1].refund_id, "refund", "approved", op[1].amount_cents)
        seen = self._by_key.get(idempotency_key)
        if seen is None:
            return None
        auth = seen[1]
        if not auth.approved:
            return Transaction("", "authorization", "declined", auth.amount_cents)
        state = self.auths[auth.auth_id].state
        return Transaction(auth.auth_id, "authorization", "voided" if state in ("voided", "refunded")
                           else "approved", auth.amount_cents)

    # --- what a test or the demo inspects -------------------------------------------------------------
    def charged_cents(self) -> int:
        """Money actually taken from cards (captured and not refunded)."""
        return sum(a.captured_cents - a.refunded_cents for a in self.auths.values() if a.state == "captured")

    def outstanding(self) -> list[SandboxAuth]:
        """Authorizations neither captured nor voided: money reserved on someone's card."""
        return [a for a in self.auths.values() if a.state == "authorized"]
