"""What the outbox speaks of: events, the recipients they fan out to, and where recipients come from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection

# Event kinds (issue #13). Their texts are in notify/templates.py.
LOW_BALANCE = "low_balance"
AUTORELOAD_OK = "autoreload_ok"
AUTORELOAD_DECLINED = "autoreload_declined"
AUTORELOAD_OFF = "autoreload_off"
DEPOSIT_RECEIPT = "deposit_receipt"
REFUND_ISSUED = "refund_issued"
INACTIVITY = "inactivity_150"
UNFUNDED_ATTEMPT = "unfunded_attempt"
VERIFICATION_CODE = "verification_code"     # sent directly, never through the outbox: a code is a secret
R2C_ANSWERED = "r2c_answered"
SIGNIN_LOCKED = "signin_locked"             # web sign-in locked after wrong passwords
KINDS = (LOW_BALANCE, AUTORELOAD_OK, AUTORELOAD_DECLINED, AUTORELOAD_OFF, DEPOSIT_RECEIPT, REFUND_ISSUED,
         INACTIVITY, UNFUNDED_ATTEMPT, VERIFICATION_CODE, R2C_ANSWERED, SIGNIN_LOCKED)

SMS, EMAIL, CALL = "sms", "email", "call"
CHANNELS = (SMS, EMAIL, CALL)
QUIET_CHANNELS = (SMS, CALL)       # held during quiet hours; email is not (it does not ring)

SECRET_WORDS = ("pin", "code", "card", "cvv", "password", "token", "secret")


class BadEvent(ValueError):
    """An event the outbox refuses (unknown kind, a secret in the payload, no dedupe key)."""


@dataclass(frozen=True)
class Event:
    kind: str
    dedupe_key: str                 # same key, same event: a second enqueue is a no-op
    account_id: str = ""
    holder_id: str = ""
    facility_id: str = ""
    number_e164: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    language: str = "en"
    time_zone: str = "UTC"

    def check(self) -> None:
        if self.kind not in KINDS or self.kind == VERIFICATION_CODE:
            raise BadEvent(f"unknown or non-outbox event kind {self.kind!r}")
        if not self.dedupe_key or len(self.dedupe_key) > 200:
            raise BadEvent("an event needs a dedupe key of at most 200 characters")
        if self.language not in ("en", "es"):
            raise BadEvent(f"unsupported language {self.language!r}")
        for key in self.payload:
            if any(word in key.lower() for word in SECRET_WORDS):
                raise BadEvent(f"payload key {key!r} looks like a secret: secrets never enter the outbox")


@dataclass(frozen=True)
class Recipient:
    """One address on one channel, with what sending to it must respect."""
    channel: str
    address: str
    language: str = "en"
    time_zone: str = "UTC"
    quiet_start: int = 21 * 60      # minutes after local midnight; equal start and end: no quiet hours
    quiet_end: int = 8 * 60
    opted_out: frozenset[str] = frozenset()    # channels this person switched off


class RecipientDirectory(Protocol):
    """Who hears of an event (holders.directory.HolderDirectory; tests use StaticDirectory). It reads on
    the fan-out's own connection: a second connection would wait on the fan-out's write lock (SQLite)."""

    def recipients(self, conn: Connection, event: Event) -> list[Recipient]: ...


@dataclass
class StaticDirectory:
    """Recipients by account id, and by number for events without an account (tests, the demo)."""
    by_account: dict[str, list[Recipient]] = field(default_factory=dict)
    by_number: dict[str, list[Recipient]] = field(default_factory=dict)

    def recipients(self, conn: Connection, event: Event) -> list[Recipient]:
        if event.account_id in self.by_account:
            return list(self.by_account[event.account_id])
        return list(self.by_number.get(event.number_e164, []))
