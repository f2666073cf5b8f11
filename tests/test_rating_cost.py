"""The cost function: worked cases computed by hand, and properties (hypothesis) of cost, increments,
minimum to connect and max_duration."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import Catalog, RatingError, load_catalog
from rating.pricing import Pricing
from tests.test_rating_catalog import FACILITY, TARIFF, write_catalog

D = Decimal
CHICAGO = ZoneInfo("America/Chicago")


def pricing(rate: str, *, connect: str = "0", percent: str = "0", per_call: str = "0",
            inc: int = 60) -> Pricing:
    return Pricing(D(rate), D(connect), D(percent), D(per_call), inc)


# Worked cases. cost = round_half_up_to_cent((billed_min * rate + connect) * (1 + pct/100) + per_call),
# billed_min = ceil(seconds / inc) * inc / 60.
WORKED = [
    # rate, connect, percent, per_call, inc, seconds, cents,  worked by hand
    ("0.09", "0", "0", "0", 60, 0, 0),             # never accepted: nothing billed
    ("0.09", "0", "0", "0", 60, 1, 9),             # 1 s bills the first minute: 9.00c
    ("0.09", "0", "0", "0", 60, 60, 9),
    ("0.09", "0", "0", "0", 60, 61, 18),           # 2 min x 9c
    ("0.09", "0", "0", "0", 60, 900, 135),         # 15 min x 9c = $1.35
    ("0.09", "0", "7", "0", 60, 60, 10),           # 9c x 1.07 = 9.63c -> 10c
    ("0.09", "0", "7", "0", 60, 120, 19),          # 18c x 1.07 = 19.26c -> 19c
    ("0.09", "0", "7", "0", 60, 180, 29),          # 27c x 1.07 = 28.89c -> 29c
    ("0.09", "0", "7", "0", 60, 900, 144),         # 135c x 1.07 = 144.45c -> 144c
    ("0.125", "0", "0", "0", 60, 60, 13),          # 12.5c: exactly half -> up to 13c
    ("0.125", "0", "0", "0", 60, 120, 25),         # 25.0c
    ("0.125", "0", "0", "0", 60, 180, 38),         # 37.5c -> 38c
    ("0.12", "0", "0", "0", 6, 1, 1),              # 6 s = 0.1 min x 12c = 1.2c -> 1c
    ("0.12", "0", "0", "0", 6, 7, 2),              # 12 s = 0.2 min = 2.4c -> 2c
    ("0.12", "0", "0", "0", 6, 30, 6),             # 0.5 min = 6c
    ("0.12", "0", "0", "0", 6, 61, 13),            # 66 s = 1.1 min = 13.2c -> 13c
    ("0.10", "0.50", "10", "0", 60, 60, 66),       # (10c + 50c) x 1.10 = 66c
    ("0.10", "0.50", "10", "0", 60, 300, 110),     # (50c + 50c) x 1.10 = 110c
    ("0.06", "0", "5", "0.25", 60, 60, 31),        # 6c x 1.05 + 25c = 31.3c -> 31c
    ("0.06", "0", "5", "0.25", 60, 600, 88),       # 60c x 1.05 + 25c = 88c
    ("0.07", "0", "7.25", "0", 60, 60, 8),         # 7c x 1.0725 = 7.5075c -> 8c
    ("0.07", "0", "7.25", "0", 60, 120, 15),       # 14c x 1.0725 = 15.015c -> 15c
    ("0.20", "0", "7", "0", 60, 60, 21),           # MX: 20c x 1.07 = 21.4c -> 21c
    ("0.004", "0", "0", "0", 60, 60, 0),           # 0.4c rounds to 0c
    ("0.005", "0", "0", "0", 60, 60, 1),           # 0.5c rounds half up to 1c
    ("0", "0", "0", "0", 60, 3600, 0),             # free calls
]


@pytest.mark.parametrize(("rate", "connect", "percent", "per_call", "inc", "seconds", "cents"), WORKED)
def test_worked_costs(rate: str, connect: str, percent: str, per_call: str, inc: int, seconds: int,
                      cents: int) -> None:
    assert pricing(rate, connect=connect, percent=percent, per_call=per_call, inc=inc).cost(seconds) == cents


def test_worked_increment_charges_sum_to_cost() -> None:
    p = pricing("0.09", percent="7")
    # cumulative 10, 19, 29, 39 (38.52 -> 39), 48 (48.15 -> 48)
    charges = [p.cost_of_increments(k) - p.cost_of_increments(k - 1) for k in range(1, 6)]
    assert charges == [10, 9, 10, 10, 9]
    assert sum(charges) == p.cost(300) == 48


# -- worked quotes: class, minimum, max_duration and its caps ----------------------------------------
@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return load_catalog(write_catalog(tmp_path_factory.mktemp("cost")))


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=CHICAGO)


NOON = "2026-01-05T12:00:00"
WORKED_QUOTES = [
    # number, at, balance, class, min_to_connect, max_duration, capped_by
    # $0.09 + 7%: cost(n min) = round(9.63 n). 100c: 9.63n + 0.5 < 101 -> n <= 10 (96c; 11 min = 106c)
    ("(312) 868-1234", NOON, 100, "local", 10, 600, "funds"),
    ("217-555-0147", NOON, 9, "intrastate", 10, 0, "funds"),            # below the 10c minimum
    ("217-555-0147", NOON, 10, "intrastate", 10, 60, "funds"),
    ("+1 212 555 0182", NOON, 19, "interstate", 10, 120, "funds"),      # 2 min = 19.26 -> 19c fits
    ("+1 212 555 0182", NOON, 18, "interstate", 10, 60, "funds"),
    ("+1 212 555 0182", NOON, 500, "interstate", 10, 900, "facility_max"),  # 51 min fit; 15 max
    ("+1 212 555 0182", NOON, 144, "interstate", 10, 900, "facility_max"),  # funds 900 = max: tie
    ("+1 212 555 0182", NOON, 143, "interstate", 10, 840, "funds"),
    ("+1 212 555 0182", "2026-01-05T22:50:00", 500, "interstate", 10, 600, "curfew"),   # closes 23:00
    ("+1 212 555 0182", "2026-01-05T22:59:30", 500, "interstate", 10, 30, "curfew"),
    ("+1 212 555 0182", "2026-01-05T23:30:00", 500, "interstate", 10, 0, "curfew"),     # closed
    ("+1 212 555 0182", "2026-01-05T22:55:00", 30, "interstate", 10, 180, "funds"),     # 3 min < 5 left
    # MX $0.20 + 7% = 21.4c/min: 100c -> 21.4n + 0.5 < 101 -> n <= 4 (86c)
    ("011 52 55 1234 5678", NOON, 100, "international", 21, 240, "funds"),
    # override keyed by calling code 44: $0.12 + 7% = 12.84c/min -> 100c: n <= 7 (90c; 8 min = 103c)
    ("+44 20 7946 0958", NOON, 100, "international", 13, 420, "funds"),
    # Canada is international at the default $0.25 + 7% = 26.75c/min -> 100c: n <= 3 (80c)
    ("+1 416 555 0123", NOON, 100, "international", 27, 180, "funds"),
    # Puerto Rico is in the US: interstate, not international
    ("787-555-0123", NOON, 100, "interstate", 10, 600, "funds"),
]


@pytest.mark.parametrize(("number", "when", "balance", "klass", "minimum", "seconds", "capped"),
                         WORKED_QUOTES)
def test_worked_quotes(catalog: Catalog, number: str, when: str, balance: int, klass: str, minimum: int,
                       seconds: int, capped: str) -> None:
    q = catalog.quote("FAC-T1", number, at(when))
    assert q.destination.call_class.value == klass
    assert q.minimum_to_connect == minimum
    assert q.max_duration(balance) == seconds
    assert q.capped_by == capped
    assert q.limit(balance) == (seconds, capped)
    assert q.cost(seconds) <= balance


def test_per_minute_with_taxes_is_exact_decimal(catalog: Catalog) -> None:
    assert catalog.quote("FAC-T1", "3128681234", at(NOON)).per_minute_with_taxes == D("0.0963")
    assert catalog.quote("FAC-T1", "+525512345678", at(NOON)).per_minute_with_taxes == D("0.214")
    q = catalog.quote("FAC-T1", "+442079460958", at(NOON))
    assert q.per_minute_with_taxes == D("0.1284") and q.rate_per_minute == D("0.12")
    assert (q.tariff_id, q.tariff_version, q.increment_seconds) == ("TAR-T", 1, 60)


def test_bad_arguments_are_refused(catalog: Catalog) -> None:
    q = catalog.quote("FAC-T1", "3128681234", at(NOON))
    for bad in (-1, 1.5, "60", None, True):
        with pytest.raises(RatingError):
            q.cost(bad)  # type: ignore[arg-type]
    for bad in (0, -3, 1.0):
        with pytest.raises(RatingError):
            q.increment_charge(bad)  # type: ignore[arg-type]
    with pytest.raises(RatingError):
        q.max_duration(Decimal("1.00"))  # type: ignore[arg-type]
    assert q.max_duration(-5) == 0 and q.capped_by == "funds"


def test_connect_fee_and_per_call_tax_enter_minimum_and_first_increment(tmp_path: Path) -> None:
    text = (TARIFF.replace('connect_fee = "0"', 'connect_fee = "0.50"')
            .replace('percent = "7"', 'percent = "7"\nper_call = "0.05"')
            .replace("billing_increment_seconds = 60", "billing_increment_seconds = 30")
            + '\n[cap_override]\nreason = "test"\napproved_by = "test"\n')
    catalog = load_catalog(write_catalog(tmp_path, tariffs={"t.toml": text}))
    q = catalog.quote("FAC-T1", "3128681234", at(NOON))
    # first 30 s: (4.5c + 50c) x 1.07 + 5c = 63.315c -> 63c; one minute: (9c + 50c) x 1.07 + 5c = 68.13 -> 68c
    assert q.increment_charge(1) == q.cost(1) == 63
    assert q.minimum_to_connect == q.cost(60) == 68
    assert q.max_duration(67) == 0 and q.max_duration(68) == 60


# -- properties -----------------------------------------------------------------------------------
micro = st.integers(0, 600_000).map(lambda n: D(n).scaleb(-6))
rates = st.one_of(micro, st.sampled_from([D("0.06"), D("0.07"), D("0.09"), D("0.12"), D("0.21")]))
percents = st.integers(0, 300_000).map(lambda n: D(n).scaleb(-4))   # 0 .. 30 %
fees = st.one_of(st.just(D(0)), st.integers(0, 2_000_000).map(lambda n: D(n).scaleb(-6)))
increments = st.sampled_from([1, 2, 3, 5, 6, 10, 12, 15, 20, 30, 60])
pricings = st.builds(Pricing, rates, fees, percents, fees, increments)


def reference_cost(p: Pricing, seconds: int) -> int:
    """Independent statement of the rule with Fractions: exact dollars, then half-up to cents once."""
    if seconds <= 0:
        return 0
    n = -(-seconds // p.increment)
    minutes = Fraction(n * p.increment, 60)
    usage = minutes * Fraction(p.rate, 10**6) + Fraction(p.connect, 10**6)
    dollars = usage * (1 + Fraction(p.pct, 10**6)) + Fraction(p.per_call, 10**6)
    cents = dollars * 100
    return int(cents + Fraction(1, 2)) if cents >= 0 else 0   # floor(x + 1/2): half up


PROPS = settings(max_examples=300, deadline=None)


@PROPS
@given(pricings, st.integers(0, 20_000), st.integers(0, 20_000))
def test_cost_matches_reference_is_integral_nonnegative_and_monotonic(p: Pricing, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    ca, cb = p.cost(lo), p.cost(hi)
    assert type(ca) is int and ca >= 0
    assert ca == reference_cost(p, lo) and cb == reference_cost(p, hi)
    assert ca <= cb


@PROPS
@given(pricings, st.integers(1, 300))
def test_increment_charges_are_nonnegative_and_sum_to_cost(p: Pricing, n: int) -> None:
    charges = [p.cost_of_increments(k) - p.cost_of_increments(k - 1) for k in range(1, n + 1)]
    assert all(c >= 0 for c in charges)
    assert sum(charges) == p.cost(n * p.increment)


@PROPS
@given(pricings, st.integers(0, 100_000))
def test_increments_within_is_the_exact_inverse_of_cost(p: Pricing, balance: int) -> None:
    n = p.increments_within(balance)
    if n is None:                       # free per minute: every length costs the same, and it fits
        assert p.cost(10**6) <= balance
        return
    assert p.cost_of_increments(n) <= balance
    assert p.cost_of_increments(n + 1) > balance


@pytest.fixture(scope="module")
def long_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Facility with a 4-hour maximum and 24 h calling so funds usually bind."""
    fac = (FACILITY.replace("max_call_seconds = 900", "max_call_seconds = 14400")
           .replace('all = "07:00-23:00"', 'all = "00:00-24:00"'))
    tariff = (TARIFF.replace("billing_increment_seconds = 60", "billing_increment_seconds = 6")
              .replace('per_call = "0"', "") + '\n[cap_override]\nreason = "t"\napproved_by = "t"\n')
    return load_catalog(write_catalog(tmp_path_factory.mktemp("long"), facilities={"f.toml": fac},
                                      tariffs={"t.toml": tariff}))


@PROPS
@given(st.integers(-10, 20_000), st.sampled_from(["3128681234", "+525512345678", "+14165550123"]))
def test_quote_max_duration_inverse_law(long_catalog: Catalog, balance: int, number: str) -> None:
    q = long_catalog.quote("FAC-T1", number, at(NOON))
    d = q.max_duration(balance)
    assert q.cost(d) <= max(balance, 0)
    if balance < q.minimum_to_connect:
        assert d == 0
    elif q.capped_by == "funds":
        assert d >= 60
        assert q.cost(d + q.increment_seconds) > balance
    else:
        assert q.capped_by == "facility_max" and d == 14400


@PROPS
@given(st.integers(0, 5_000), st.integers(0, 24 * 3600 - 1))
def test_max_duration_never_exceeds_any_limit(catalog: Catalog, balance: int, second_of_day: int) -> None:
    when = at("2026-01-05T00:00:00") + dt.timedelta(seconds=second_of_day)
    q = catalog.quote("FAC-T1", "+1 212 555 0182", when)
    d, reason = q.limit(balance)
    close = q.seconds_until_close
    assert d <= 900 and (close is None or d <= close) and q.cost(d) <= balance
    assert d == {"funds": d, "facility_max": 900, "curfew": close}[reason]
