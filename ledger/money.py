"""Dollars on the command line, integer cents inside: exact Decimal parsing, no float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ledger.errors import BadAmount


def parse_dollars(text: str, *, signed: bool = False) -> int:
    """"25", "25.5", "$25.00" -> cents. At most 2 decimals; zero refused; a sign only when `signed`."""
    raw = text.strip()
    sign = 1
    if raw[:1] in "+-" and raw:
        if not signed:
            raise BadAmount(f"amount must be positive: {text!r}")
        sign = -1 if raw[0] == "-" else 1
        raw = raw[1:]
    raw = raw.removeprefix("$")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BadAmount(f"not an amount in dollars: {text!r}") from None
    if not value.is_finite() or value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise BadAmount(f"at most 2 decimals (cents): {text!r}")
    if value <= 0:
        raise BadAmount(f"amount must be more than zero: {text!r}")
    return sign * int(value * 100)


def fmt_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"
