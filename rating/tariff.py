"""Tariff versions: per-minute rates by call class, increment, connect fee, taxes, cap override."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from rating.facility import ID_PATTERN
from rating.pricing import Pricing
from rating.tomlfields import Table

RATE_LIMIT = Decimal("10")        # $/min sanity ceiling for any rate in a file
FEE_LIMIT = Decimal("100")
MONEY_PLACES = 6                  # micro-dollars
PERCENT_PLACES = 4


class CallClass(enum.StrEnum):
    LOCAL = "local"
    INTRASTATE = "intrastate"
    INTERSTATE = "interstate"
    INTERNATIONAL = "international"


@dataclass(frozen=True, slots=True)
class RateTerms:
    rate: Decimal                          # dollars per billed minute, before taxes
    termination_cost: Decimal = Decimal(0)  # international: provider's per-minute termination cost


@dataclass(frozen=True, slots=True)
class Tax:
    name: str
    percent: Decimal      # of (usage + connect fee)
    per_call: Decimal     # dollars per completed call
    mandated: bool        # required by a government: excluded from the caps; otherwise a provider fee


@dataclass(frozen=True, slots=True)
class CapOverride:
    reason: str
    approved_by: str


@dataclass(frozen=True)
class TariffVersion:
    id: str
    version: int
    effective_from: dt.date | dt.datetime   # a date means 00:00 in each facility's own time zone
    file: str
    description: str
    increment: int
    connect_fee: Decimal
    domestic: dict[CallClass, RateTerms]
    international: RateTerms
    overrides: dict[str, RateTerms]          # key: ISO region ("MX") or calling code ("52")
    taxes: tuple[Tax, ...]
    cap_override: CapOverride | None
    _pricing: dict[object, Pricing] = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.id} v{self.version}"

    def effective_ts(self, tz: ZoneInfo) -> float:
        return instant(self.effective_from, tz)

    @property
    def percent_total(self) -> Decimal:
        return sum((t.percent for t in self.taxes), Decimal(0))

    @property
    def per_call_total(self) -> Decimal:
        return sum((t.per_call for t in self.taxes), Decimal(0))

    def terms(self, call_class: CallClass, region: str | None = None, country_code: int = 0) -> RateTerms:
        if call_class is not CallClass.INTERNATIONAL:
            return self.domestic[call_class]
        if region and region in self.overrides:
            return self.overrides[region]
        return self.overrides.get(str(country_code), self.international)

    def pricing(self, call_class: CallClass, region: str | None = None, country_code: int = 0) -> Pricing:
        key = (call_class, region, country_code) if call_class is CallClass.INTERNATIONAL else call_class
        found = self._pricing.get(key)
        if found is None:
            terms = self.terms(call_class, region, country_code)
            found = Pricing(terms.rate, self.connect_fee, self.percent_total, self.per_call_total,
                            self.increment)
            self._pricing[key] = found
        return found

    def all_terms(self) -> list[tuple[str, RateTerms]]:
        """Every rate in the version, labelled for reports."""
        out = [(c.value, t) for c, t in self.domestic.items()]
        out.append(("international", self.international))
        out.extend((f"international.overrides.{k}", t) for k, t in self.overrides.items())
        return out


def instant(when: dt.date | dt.datetime, tz: ZoneInfo) -> float:
    if isinstance(when, dt.datetime):
        return when.timestamp()
    return dt.datetime(when.year, when.month, when.day, tzinfo=tz).timestamp()


def _rate(t: Table, key: str) -> Decimal:
    rate: Decimal = t.decimal(key, places=MONEY_PLACES, hi=RATE_LIMIT)
    return rate


def _international_terms(t: Table) -> RateTerms:
    terms = RateTerms(_rate(t, "rate"), t.decimal("termination_cost", Decimal(0), places=MONEY_PLACES,
                                                  hi=RATE_LIMIT))
    t.finish()
    return terms


def parse_tariff(t: Table) -> TariffVersion:
    t.int("schema", 1, lo=1, hi=1)
    tid = t.str("id", pattern=ID_PATTERN)
    version = t.int("version", lo=1)
    effective = t.date_or_datetime("effective_from")
    assert effective is not None
    description = t.str("description", "")
    increment = t.int("billing_increment_seconds", 60, lo=1, hi=60)
    if 60 % increment:
        raise t.error("billing_increment_seconds", "must divide 60 (1, 2, 3, 5, 6, 10, 12, 15, 20, 30 or 60)")
    connect_fee = t.decimal("connect_fee", Decimal(0), places=MONEY_PLACES, hi=FEE_LIMIT)
    rates = t.table("rates")
    assert rates is not None
    domestic: dict[CallClass, RateTerms] = {c: RateTerms(_rate(rates, c.value)) for c in CallClass
                                            if c is not CallClass.INTERNATIONAL}
    rates.finish()
    intl = t.table("international")
    assert intl is not None
    default = RateTerms(
        _rate(intl, "rate"),
        intl.decimal("termination_cost", Decimal(0), places=MONEY_PLACES, hi=RATE_LIMIT),
    )
    overrides: dict[str, RateTerms] = {}
    table = intl.table("overrides", required=False)
    if table is not None:
        for key in list(table.data):
            if not (key.isascii() and ((key.isupper() and key.isalpha() and len(key) == 2)
                                       or (key.isdigit() and 1 <= len(key) <= 3))):
                raise table.error(key, "key must be an ISO region (\"MX\") or a calling code (\"52\")")
            sub = table.table(key)
            assert sub is not None
            overrides[key] = _international_terms(sub)
        table.finish()
    intl.finish()
    taxes = []
    for tax in t.table_list("taxes"):
        name = tax.str("name")
        percent = tax.decimal("percent", Decimal(0), places=PERCENT_PLACES, hi=Decimal(100))
        per_call = tax.decimal("per_call", Decimal(0), places=MONEY_PLACES, hi=FEE_LIMIT)
        mandated = tax.bool("mandated")
        tax.finish()
        taxes.append(Tax(name, percent, per_call, mandated))
    override = None
    ot = t.table("cap_override", required=False)
    if ot is not None:
        override = CapOverride(ot.str("reason"), ot.str("approved_by"))
        ot.finish()
    t.finish()
    return TariffVersion(
        id=tid, version=version, effective_from=effective, file=str(t.file), description=description,
        increment=increment, connect_fee=connect_fee, domestic=domestic, international=default,
        overrides=overrides, taxes=tuple(taxes), cap_override=override,
    )
