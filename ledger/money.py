"""Dollars on the command line, integer cents inside: exact Decimal parsing, no float."""

from __future__ import annotations

import re
from decimal import Decimal

from ledger.errors import BadAmount

DOLLARS_RE = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{1,2})?|\.\d{1,2}")


def parse_dollars(text: str, *, signed: bool = False) -> int:
    """"25", "25.5", "$1,025.00" -> cents. At most 2 decimals, no exponent; zero refused; a sign only
    when `signed`."""
    raw = text.strip()
    sign = 1
    if raw[:1] in ("+", "-"):
        if not signed:
            raise BadAmount(f"amount must be positive: {text!r}")
        sign = -1 if raw[0] == "-" else 1
        raw = raw[1:]
    raw = raw.removeprefix("$")
    if not DOLLARS_RE.fullmatch(raw):
        raise BadAmount(f"not an amount in dollars with at most 2 decimals (cents): {text!r}")
    value = Decimal(raw.replace(",", ""))
    if value <= 0:
        raise BadAmount(f"amount must be more than zero: {text!r}")
    return sign * int(value * 100)


def fmt_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"
