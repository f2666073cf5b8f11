"""Dollars on the command line, integer cents inside: exact integer parsing, no float."""

from __future__ import annotations

import re

from ledger.errors import BadAmount

# [0-9], not \d: \d (like Decimal() and str.isdigit) also takes Arabic-Indic or fullwidth digits.
DOLLARS_RE = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]{1,2})?|\.[0-9]{1,2}")
MAX_DIGITS = 15   # of dollars: above any ledger ceiling (10**12 cents), and int() never sees a huge string


def parse_dollars(text: str, *, signed: bool = False) -> int:
    """"25", "25.5", "$1,025.00" -> cents, in exact integer arithmetic. At most 2 decimals, no exponent,
    ASCII digits only; zero refused; a sign only when `signed`."""
    raw = text.strip()
    sign = 1
    if raw[:1] in ("+", "-"):
        if not signed:
            raise BadAmount(f"amount must be positive: {text!r:.40}")
        sign = -1 if raw[0] == "-" else 1
        raw = raw[1:]
    raw = raw.removeprefix("$")
    if not DOLLARS_RE.fullmatch(raw):
        raise BadAmount(f"not an amount in dollars with at most 2 decimals (cents): {text!r:.40}")
    dollars, _, cents = raw.replace(",", "").partition(".")
    if len(dollars) > MAX_DIGITS:
        raise BadAmount(f"amount too large: {text!r:.40}")
    value = int(dollars or "0") * 100 + int(cents.ljust(2, "0"))
    if value <= 0:
        raise BadAmount(f"amount must be more than zero: {text!r:.40}")
    return sign * value


def fmt_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"
