"""The one cost function. Exact integer arithmetic, one rounding per call.

Rounding rule (the only one): the exact cost of a call in dollars is

    (billed_minutes * rate + connect_fee) * (1 + sum of percent taxes / 100) + sum of per-call taxes

where billed_minutes = ceil(seconds / increment) * increment / 60. It is computed exactly (amounts are
held in micro-dollars, percentages in millionths, so every step is an integer) and rounded ONCE to
whole US cents, half up (x.5 cents -> x+1). A call of 0 seconds (never accepted) costs 0; any
accepted second bills the first whole increment. Cost never decreases as seconds grow.
"""

from __future__ import annotations

from decimal import Decimal

MICRO = 1_000_000               # micro-dollars per dollar; millionths per unit fraction
_D = 60 * MICRO * 10_000        # exact-cost numerator units per cent


def to_micro(amount: Decimal) -> int:
    """Dollars (<= 6 decimals, validated on load) -> integer micro-dollars."""
    value = amount * MICRO
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than 6 decimal places")
    return int(value)


def percent_to_millionths(percent: Decimal) -> int:
    """7.25 (percent) -> 72_500 millionths (0.0725)."""
    value = percent * 10_000
    if value != value.to_integral_value():
        raise ValueError(f"{percent}% has more than 4 decimal places")
    return int(value)


class Pricing:
    """Price of calls of one class (or one country) under one tariff version."""

    __slots__ = ("_a", "_b", "connect", "increment", "min_connect", "pct", "per_call", "rate")

    def __init__(self, rate: Decimal, connect_fee: Decimal, percent: Decimal, per_call: Decimal,
                 increment: int) -> None:
        if not 1 <= increment <= 60 or 60 % increment:
            raise ValueError("billing increment must divide 60 seconds")
        self.rate = to_micro(rate)
        self.connect = to_micro(connect_fee)
        self.pct = percent_to_millionths(percent)
        self.per_call = to_micro(per_call)
        self.increment = increment
        self._a = increment * self.rate * (MICRO + self.pct)
        self._b = 60 * self.connect * (MICRO + self.pct) + 60 * MICRO * self.per_call
        self.min_connect = self.cost(60)

    def cost_of_increments(self, n: int) -> int:
        if n <= 0:
            return 0
        return (2 * (n * self._a + self._b) + _D) // (2 * _D)

    def cost(self, seconds: int) -> int:
        """Cents for a call lasting `seconds` (rounded up to whole increments)."""
        if seconds <= 0:
            return 0
        return self.cost_of_increments(-(-seconds // self.increment))

    def increments_within(self, available: int) -> int | None:
        """Most whole increments whose cost fits in `available` cents; None if unlimited (free calls).

        Solves cost(n) <= available for the half-up rounding above in closed form:
        2(nA + B) + D < 2D(available + 1)  <=>  2nA < 2D*available + D - 2B.
        """
        x = 2 * _D * available + _D - 2 * self._b
        if x <= 0:
            return 0
        if self._a == 0:
            return None
        return (x - 1) // (2 * self._a)

    def per_minute_with_taxes(self) -> Decimal:
        """Dollars per billed minute including percentage taxes (exact; for the rate disclosure)."""
        return _plain(Decimal(self.rate * (MICRO + self.pct)).scaleb(-12))

    def per_minute(self) -> Decimal:
        return _plain(Decimal(self.rate).scaleb(-6))


def _plain(value: Decimal) -> Decimal:
    """Drop trailing zeros but keep at least cents and never use an exponent."""
    value = value.normalize()
    if value.as_tuple().exponent > -2:  # type: ignore[operator]
        value = value.quantize(Decimal("0.01"))
    return value
