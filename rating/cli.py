"""`callcontrol tariff check FILE...` and `callcontrol rate quote ...`."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from rating.caps import Finding, Regime, load_caps
from rating.catalog import (
    check_caps,
    check_version_order,
    load_catalog,
    load_facility_files,
    load_tariff_file,
    load_tariff_files,
)
from rating.errors import NumberRefused, RatingError, TariffError
from rating.facility import FACILITY_TYPES, Facility, timestamp
from rating.hours import CallingHours
from rating.tariff import TariffVersion

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    tariff = subparsers.add_parser("tariff", help="tariff files")
    tsub = tariff.add_subparsers(dest="tariff_command", metavar="ACTION", required=True)
    check = tsub.add_parser("check", help="validate tariff files and check them against the rate caps")
    check.add_argument("files", nargs="+", metavar="FILE", type=Path)
    check.add_argument("--caps", type=Path, help="caps file (default: rating/data/caps.toml)")
    check.add_argument("--facility", metavar="ID",
                       help="also check the tariff as used by this facility of the facility directory")
    check.add_argument("--type", choices=FACILITY_TYPES, dest="facility_type",
                       help="also list the caps tiers of this facility type; fail if it fits none")
    check.set_defaults(func=cmd_tariff_check)

    rate = subparsers.add_parser("rate", help="rating")
    rsub = rate.add_subparsers(dest="rate_command", metavar="ACTION", required=True)
    quote = rsub.add_parser("quote", help="price a call and how long a balance lets it last")
    quote.add_argument("--facility", required=True, help="facility id, e.g. FAC-07")
    quote.add_argument("--number", required=True, help="dialled number, e.g. '(312) 868-1234' or +E.164")
    quote.add_argument("--balance", required=True, help="account balance in dollars, e.g. 5.00")
    quote.add_argument("--at", help="call start, ISO 8601 (no offset: facility local time); default now")
    quote.set_defaults(func=cmd_rate_quote)


# -- tariff check ------------------------------------------------------------------------------
def cmd_tariff_check(args: argparse.Namespace, settings: Any) -> int:
    failed = False
    try:
        regimes = load_caps(args.caps)
    except TariffError as exc:
        print(f"ERROR    caps: {exc}")
        return EXIT_FAIL
    given: list[TariffVersion] = []
    for path in args.files:
        try:
            given.append(load_tariff_file(path))
        except TariffError as exc:
            print(f"INVALID  {exc}")
            failed = True
    if not given:
        return EXIT_FAIL
    base = Path(settings.facility_dir)
    facilities, others = _catalog_context(base)
    chosen = facilities.get(args.facility) if args.facility else None
    if args.facility and chosen is None:
        print(f"error: --facility: no facility {args.facility!r} in {base / 'facilities'}")
        return EXIT_USAGE
    merged = _merge(others, given)
    try:
        merged = check_version_order(merged)
    except TariffError as exc:
        print(f"INVALID  {exc}")
        return EXIT_FAIL
    files = {v.file for v in given}
    for version in given:
        users = {k: f for k, f in facilities.items() if f.tariff_id == version.id}
        print(f"{version.file}: {version.label}, effective {version.effective_from}, "
              f"{version.increment} s increments")
        if not users:
            print(f"  note     no facility in {base} uses {version.id}")
        if chosen is not None:
            users[chosen.id] = dataclasses.replace(chosen, tariff_id=version.id)
        if users:
            findings = check_caps(users, merged, regimes, only={version.file}, strict=False)
            for fac in users.values():
                print(f"  checked  for {fac.id} {fac.name} ({_tier_text(fac)})")
            failed |= _print_findings(findings)
        if args.facility_type or not users:
            failed |= _print_tier_summary(version, merged[version.id], regimes, args.facility_type)
    verdict = "FAILED" if failed else "OK"
    print(f"{verdict}: {len(files)} tariff file(s) checked")
    return EXIT_FAIL if failed else EXIT_OK


def _catalog_context(base: Path) -> tuple[dict[str, Facility], dict[str, list[TariffVersion]]]:
    try:
        facilities = load_facility_files(sorted((base / "facilities").glob("*.toml")))
    except TariffError as exc:
        print(f"warning  facility data not usable ({exc}); checking against every caps tier")
        facilities = {}
    try:
        others = load_tariff_files(sorted((base / "tariffs").glob("*.toml")))
    except TariffError as exc:
        print(f"warning  other tariff files not usable ({exc}); checking the given files alone")
        others = {}
    return facilities, others


def _merge(others: dict[str, list[TariffVersion]],
           given: list[TariffVersion]) -> dict[str, list[TariffVersion]]:
    merged = {k: list(v) for k, v in others.items()}
    for version in given:
        same = merged.setdefault(version.id, [])
        same[:] = [v for v in same if v.version != version.version and Path(v.file).resolve() !=
                   Path(version.file).resolve()]
        same.append(version)
    return merged


def _tier_text(fac: Facility) -> str:
    return "prison" if fac.kind == "prison" else f"jail, ADP {fac.adp}"


def _print_tier_summary(version: TariffVersion, versions: list[TariffVersion],
                        regimes: tuple[Regime, ...], kind: str | None) -> bool:
    """Which caps tiers (of facility type `kind`, or all) would this version fit? True if it exceeds
    every one of them: no such facility could use it."""
    fits: list[str] = []
    exceeds: list[str] = []
    notes: list[str] = []
    for regime in regimes:
        for tier in regime.tiers:
            if tier.cap is None or kind not in (None, tier.facility_type):
                continue
            adp = None if tier.facility_type == "prison" else (tier.adp_min or 0)
            fac = _sample_facility(tier.facility_type, adp, f"{regime.id}/{tier.id}", version.id)
            found = check_caps({fac.id: fac}, {version.id: versions}, regimes, only={version.file},
                               strict=False)
            (exceeds if any(f.level == "error" for f in found) else fits).append(fac.id)
            notes.extend(f.message for f in found if f.level in ("warning", "overridden"))
    for message in dict.fromkeys(notes):
        print(f"  warning  {message}")
    which = f"{kind} tiers" if kind else "tiers"
    print(f"  info     fits {which}: {', '.join(fits) or 'none'}")
    print(f"  info     exceeds {which}: {', '.join(exceeds) or 'none'}")
    if exceeds and not fits:
        print(f"  ERROR    {version.label} exceeds every caps {which[:-1]}: "
              f"no {kind or 'facility'} may use it")
        return True
    return False


def _sample_facility(kind: str, adp: int | None, tier_id: str, tariff_id: str) -> Facility:
    from zoneinfo import ZoneInfo

    everywhere = CallingHours(tuple(((0, 86_400),) for _ in range(7)))
    return Facility(id=tier_id, name=tier_id, state="DC", tz=ZoneInfo("America/New_York"),
                    kind=kind, adp=adp, local_area_codes=(), languages=("en",), tariff_id=tariff_id,
                    max_call_seconds=900, warning_seconds=60, blocked_types=frozenset(), hours=everywhere,
                    group=None, file="", local_set=frozenset())


def _print_findings(findings: list[Finding]) -> bool:
    failed = False
    labels = {"error": "ERROR   ", "overridden": "OVERRIDE", "warning": "warning ", "info": "info    "}
    for finding in dict.fromkeys(findings):
        print(f"  {labels[finding.level]} {finding.message}")
        failed |= finding.level == "error"
    if not any(f.level in ("error", "overridden") for f in findings):
        print("  ok       within the caps in force")
    return failed


# -- rate quote --------------------------------------------------------------------------------
def cmd_rate_quote(args: argparse.Namespace, settings: Any) -> int:
    try:
        balance = _cents(args.balance)
    except ValueError as exc:
        print(f"error: --balance: {exc}")
        return EXIT_USAGE
    try:
        catalog = load_catalog(settings.facility_dir)
        facility = catalog.facility(args.facility)
    except RatingError as exc:
        print(f"error: {exc}")
        return EXIT_FAIL
    try:
        at = _when(args.at, facility)
    except ValueError as exc:
        print(f"error: --at: {exc}")
        return EXIT_USAGE
    try:
        quote = catalog.quote(facility.id, args.number, at)
    except NumberRefused as exc:
        print(f"refused ({exc.code}): {exc.message}")
        return EXIT_FAIL
    except RatingError as exc:
        print(f"error: {exc}")
        return EXIT_FAIL
    seconds, capped_by = quote.limit(balance)
    d = quote.destination
    where = ", ".join(x for x in (d.region, d.state if d.state != d.region else None) if x)
    close = quote.seconds_until_close
    rows = [
        ("Facility", f"{facility.id} {facility.name} ({facility.tz.key})"),
        ("At", at.astimezone(facility.tz).isoformat(timespec="seconds")
               + ("" if facility.is_open(at) else "  (CLOSED: outside calling hours)")),
        ("Number", f"{d.e164} ({where}, {d.number_type.replace('_', ' ')})"),
        ("Class", d.call_class.value),
        ("Tariff", f"{quote.tariff_id} v{quote.tariff_version}, {quote.increment_seconds} s increments"),
        ("Per minute", f"${quote.rate_per_minute} (${quote.per_minute_with_taxes} with taxes)"),
        ("Min. to connect", _dollars(quote.minimum_to_connect)),
        ("Balance", _dollars(balance)),
        ("Max duration", f"{seconds} s ({seconds // 60}:{seconds % 60:02d}), capped by {capped_by}"),
        ("Cost at max", _dollars(quote.cost(seconds))),
        ("Limits", f"facility max {facility.max_call_seconds} s, "
                   f"{'no closing time' if close is None else f'{close} s until calling hours end'}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


_DOLLARS = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?|\.[0-9]{1,2}")   # ASCII digits only, no exponent
MAX_BALANCE = 10**7


def _cents(text: str) -> int:
    raw = text.strip().removeprefix("$")
    if not _DOLLARS.fullmatch(raw):
        raise ValueError(f"{text!r:.40} is not an amount in dollars and cents, e.g. 5.00")
    amount = Decimal(raw)
    if amount > MAX_BALANCE:
        raise ValueError(f"{text!r:.40} is above ${MAX_BALANCE:,}")
    return int(amount * 100)


def _dollars(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d} ({cents} cents)"


def _when(text: str | None, facility: Facility) -> dt.datetime:
    """The call start: now, or ISO 8601 (no offset: facility local time). ValueError names the problem."""
    if not text:
        return dt.datetime.now(dt.UTC)
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=facility.tz)
    try:
        timestamp(value)
    except RatingError as exc:
        raise ValueError(str(exc)) from None
    return value
