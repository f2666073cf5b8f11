"""Rating throughput: quotes per second with a cold and a warm per-number cache, beside a baseline of bare
phonenumbers parse + validate + type on the same numbers, measured in the same run.

A "quote" here is what the call controller does per call attempt: catalog.quote(facility, dialled, at)
then minimum_to_connect and max_duration(balance).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers

from rating import NumberRefused, load_catalog
from rating.usgeo import npa_states

REPO = Path(__file__).resolve().parent.parent
COUNT = 20_000
INTERNATIONAL_SHARE = 0.2
# (prefix, digits to add): valid-looking international numbers
INTERNATIONAL = [("+52 55 ", 8), ("+44 20 7", 7), ("011 33 1 ", 8), ("+49 30 ", 8), ("+63 2 8", 7),
                 ("+1 416 ", 7)]


def make_numbers(count: int, seed: int = 7) -> list[str]:
    """Unique dialled strings in the forms a facility phone sends, ~80 % NANP / 20 % international."""
    rng = random.Random(seed)
    npas = sorted(npa_states())
    out: set[str] = set()
    while len(out) < count:
        if rng.random() < INTERNATIONAL_SHARE:
            prefix, n = rng.choice(INTERNATIONAL)
            out.add(prefix + "".join(rng.choice("0123456789") for _ in range(n)))
        else:
            npa = rng.choice(npas)
            nxx = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
            line = f"{rng.randint(0, 9999):04d}"
            out.add(rng.choice((f"({npa}) {nxx}-{line}", f"{npa}{nxx}{line}", f"1-{npa}-{nxx}-{line}")))
    numbers = sorted(out)
    rng.shuffle(numbers)
    return numbers


def baseline(numbers: list[str]) -> float:
    start = time.perf_counter()
    for text in numbers:
        try:
            num = phonenumbers.parse(text, "US")
        except phonenumbers.NumberParseException:
            continue
        phonenumbers.is_valid_number(num)
        phonenumbers.number_type(num)
    return len(numbers) / (time.perf_counter() - start)


def quotes(catalog: object, numbers: list[str], at: dt.datetime) -> tuple[float, int]:
    refused = 0
    quote = catalog.quote  # type: ignore[attr-defined]
    start = time.perf_counter()
    for text in numbers:
        try:
            q = quote("FAC-07", text, at)
        except NumberRefused:
            refused += 1
            continue
        q.minimum_to_connect  # noqa: B018 - part of the work measured
        q.max_duration(500)
    return len(numbers) / (time.perf_counter() - start), refused


def cold_rate(catalog: object, numbers: list[str], at: dt.datetime) -> tuple[float, int]:
    """Best of two passes, each starting from empty caches."""
    best, refused = 0.0, 0
    for _ in range(2):
        catalog.clear_cache()  # type: ignore[attr-defined]
        rate, refused = quotes(catalog, numbers, at)
        best = max(best, rate)
    return best, refused


def main() -> None:
    catalog = load_catalog(REPO / "facility_data")
    at = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("America/Chicago"))
    numbers = make_numbers(COUNT)
    quotes(catalog, make_numbers(2_000, seed=99), at)   # compile patterns, build the NPA map, pricing
    base = baseline(numbers)
    cold, refused = cold_rate(catalog, numbers, at)
    warm, _ = quotes(catalog, numbers, at)
    nanp = [n for n in numbers if not n.startswith(("+", "011"))]
    intl = [n for n in numbers if n.startswith(("+", "011"))]
    cold_nanp, _ = cold_rate(catalog, nanp, at)
    cold_intl, _ = cold_rate(catalog, intl, at)
    share = len(intl) / len(numbers)
    print(f"numbers: {COUNT} unique dialled strings, {share:.0%} international (incl. Canada), "
          f"{refused} refused (invalid/blocked); quote = quote() + minimum_to_connect + max_duration()")
    rows = [
        ("baseline: phonenumbers parse+validate+type", base, ""),
        ("quotes, cold cache (mix)", cold, "  target >= 20,000"),
        ("quotes, warm cache (mix)", warm, "  target >= 100,000"),
        ("quotes, cold cache, NANP only", cold_nanp, ""),
        ("quotes, cold cache, international only", cold_intl, ""),
    ]
    for label, rate, note in rows:
        print(f"{label:<44} {rate:>10,.0f} /s {1e6 / rate:7.1f} us  x{rate / base:5.1f} baseline{note}")


if __name__ == "__main__":
    main()
