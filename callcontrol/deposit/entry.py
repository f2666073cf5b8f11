"""What the caller keys on the deposit line, checked (pure): the number to fund, the amount within the
per-transaction limits, and the gateway key of one deposit per Asterisk channel and account."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

DEFAULT_MIN_CENTS = 100                 # $1; no minimum balance may be required (47 CFR 64.6100)
DEFAULT_MAX_CENTS = 30_000              # $300 per transaction
REQUIRED_MAX_CENTS = 5_000              # deposits of at least $50 must be accepted (47 CFR 64.6100)


@dataclass(frozen=True)
class DepositLimits:
    """Per-transaction limits in cents and tries per field."""

    min_cents: int = DEFAULT_MIN_CENTS
    max_cents: int = DEFAULT_MAX_CENTS
    tries: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_cents <= DEFAULT_MIN_CENTS:
            raise ValueError("the minimum deposit must be 1..100 cents (no minimum-balance requirement)")
        if self.max_cents < REQUIRED_MAX_CENTS:
            raise ValueError("the maximum deposit must accept at least $50 (47 CFR 64.6100)")
        if self.tries < 1:
            raise ValueError("tries must be >= 1")

    @classmethod
    def from_settings(cls, settings: Any) -> DepositLimits:
        """`deposit_max_cents` from the settings when they have it; never above the ledger ceiling."""
        maximum = int(getattr(settings, "deposit_max_cents", DEFAULT_MAX_CENTS) or DEFAULT_MAX_CENTS)
        ceiling = int(getattr(settings, "max_amount", maximum))
        if maximum > ceiling:
            raise ValueError(f"deposit maximum {maximum} exceeds the ledger ceiling {ceiling} cents")
        return cls(max_cents=maximum)


def parse_amount(entry: str | None, limits: DepositLimits) -> tuple[int | None, str]:
    """Whole dollars keyed -> (cents, "") or (None, "malformed" | "out_of_range")."""
    if not entry or not (entry.isascii() and entry.isdigit()):
        return None, "malformed"
    cents = int(entry) * 100
    if not limits.min_cents <= cents <= limits.max_cents:
        return None, "out_of_range"
    return cents, ""


def spoken_number(e164: str) -> str:
    """What is read back: the 10 digits of a NANP number, else the international digits."""
    return e164[2:] if e164.startswith("+1") and len(e164) == 12 else e164[1:]


def parse_number(entry: str | None) -> tuple[str | None, str]:
    """Keyed number (10 digits, 1 + 10, or 011 + international) -> (E.164, "") or (None, refusal code).
    Facility-independent; the chosen facility's own rules are checked later (catalog.classify)."""
    from rating import numbers
    from rating.errors import NumberRefused

    if not entry:
        return None, "invalid"
    try:
        info = numbers.lookup(numbers.normalize(entry))
        numbers.refuse_by_policy(info, frozenset())
    except NumberRefused as exc:
        return None, exc.code
    return info.e164, ""


def idempotency_key(uniqueid: str, account_id: str) -> str:
    """One deposit per Asterisk channel and account: a re-run of the AGI for the same channel replays."""
    uid = re.sub(r"[^A-Za-z0-9.]", "", uniqueid or "")[:48] or secrets.token_hex(8)
    return f"dep-{uid}-{account_id}"
