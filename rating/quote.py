"""Destination and Quote: everything the call controller needs to admit, time and bill one call."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from rating.errors import RatingError
from rating.facility import Facility
from rating.pricing import Pricing
from rating.tariff import CallClass, TariffVersion

# When two limits give the same duration, the first named here is reported.
LIMIT_ORDER = ("curfew", "facility_max", "funds")


@dataclass(frozen=True, slots=True)
class Destination:
    e164: str                 # "+13128681234"
    call_class: CallClass
    region: str               # ISO region of the number ("US", "PR", "MX", ...)
    state: str | None         # USPS code for US states, DC and territories; None elsewhere / unknown
    number_type: str          # phonenumbers type name ("fixed_line_or_mobile", "mobile", ...)
    country_code: int


class Quote:
    """Prices and limits of one call from one facility to one destination, at one instant.

    All amounts come from one cost function (Pricing.cost); cost(max_duration(b)) <= b always.
    """

    __slots__ = ("_close", "_pricing", "_ts", "at", "capped_by", "destination", "facility", "tariff")

    def __init__(self, destination: Destination, facility: Facility, at: dt.datetime,
                 tariff: TariffVersion, pricing: Pricing, ts: float) -> None:
        self.destination = destination
        self.facility = facility
        self.at = at
        self._ts = ts
        self.tariff = tariff
        self._pricing = pricing
        self._close: int | bool | None = False    # False: not computed yet
        self.capped_by: str | None = None          # set by max_duration / limit

    # -- identity -------------------------------------------------------------------------------
    @property
    def tariff_id(self) -> str:
        return self.tariff.id

    @property
    def tariff_version(self) -> int:
        return self.tariff.version

    @property
    def increment_seconds(self) -> int:
        return self._pricing.increment

    # -- money ----------------------------------------------------------------------------------
    def cost(self, seconds: int) -> int:
        """Cents for a completed call of `seconds` (0 for a call never accepted)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise RatingError(f"seconds must be a non-negative integer, got {seconds!r}")
        return self._pricing.cost(seconds)

    def increment_charge(self, k: int) -> int:
        """Cents for the k-th increment (k >= 1); charges 1..n sum exactly to cost(n * increment)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise RatingError(f"increment number must be an integer >= 1, got {k!r}")
        p = self._pricing
        return p.cost_of_increments(k) - p.cost_of_increments(k - 1)

    @property
    def minimum_to_connect(self) -> int:
        """Cents the account must hold for the call to connect: cost of a one-minute call."""
        return self._pricing.min_connect

    @property
    def rate_per_minute(self) -> Decimal:
        return self._pricing.per_minute()

    @property
    def per_minute_with_taxes(self) -> Decimal:
        """Dollars per billed minute including percentage taxes (per-call taxes excluded)."""
        return self._pricing.per_minute_with_taxes()

    @property
    def connect_fee(self) -> Decimal:
        return self.tariff.connect_fee

    # -- time -----------------------------------------------------------------------------------
    @property
    def seconds_until_close(self) -> int | None:
        if self._close is False:
            self._close = self.facility.close_after(self.at, self._ts)
        return self._close

    def limit(self, available: int) -> tuple[int, str]:
        """(longest call in seconds, what capped it) for `available` cents, at the quote's instant."""
        if isinstance(available, bool) or not isinstance(available, int):
            raise RatingError(f"available must be integer cents, got {available!r}")
        p = self._pricing
        funds: int | None
        if available < p.min_connect:
            funds = 0
        else:
            n = p.increments_within(available)
            funds = None if n is None else n * p.increment
        # ties go to the first of LIMIT_ORDER: curfew, facility_max, funds
        best, reason = self.facility.max_call_seconds, "facility_max"
        close = self.seconds_until_close
        if close is not None and close <= best:
            best, reason = close, "curfew"
        if funds is not None and funds < best:
            best, reason = funds, "funds"
        self.capped_by = reason
        return best, reason

    def max_duration(self, available: int) -> int:
        """Longest call `available` cents pay for, capped by facility maximum and calling hours.

        0 if available < minimum_to_connect (or the facility is closed). Sets `capped_by`.
        """
        return self.limit(available)[0]

    def __repr__(self) -> str:
        d = self.destination
        return (f"Quote({self.facility.id} -> {d.e164} {d.call_class.value}, {self.tariff.label}, "
                f"${self.rate_per_minute}/min, min {self.minimum_to_connect}c)")
