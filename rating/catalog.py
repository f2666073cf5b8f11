"""The catalog: facilities, tariff versions and caps loaded and checked together; classify and quote."""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from rating import numbers
from rating.caps import Finding, Regime, check_version, load_caps, raise_errors
from rating.errors import NumberRefused, RatingError, TariffError, UnknownFacility
from rating.facility import Facility, parse_facility, parse_group, timestamp
from rating.pricing import Pricing
from rating.quote import Destination, Quote
from rating.tariff import CallClass, TariffVersion, parse_tariff
from rating.tomlfields import Table, read_toml
from rating.usgeo import US_REGIONS

log = structlog.get_logger()


@dataclass(frozen=True)
class Schedule:
    """A facility's tariff versions with their start instants in its time zone."""

    starts: tuple[float, ...]
    versions: tuple[TariffVersion, ...]

    def at(self, ts: float) -> TariffVersion | None:
        i = bisect.bisect_right(self.starts, ts) - 1
        return self.versions[i] if i >= 0 else None


class Catalog:
    def __init__(self, facilities: dict[str, Facility], tariffs: dict[str, list[TariffVersion]],
                 regimes: tuple[Regime, ...], findings: list[Finding]) -> None:
        self._facilities = facilities
        self.tariffs = tariffs
        self.regimes = regimes
        self.findings = findings
        self._schedules: dict[str, Schedule] = {}
        self._cached = functools.lru_cache(maxsize=numbers.CACHE_SIZE)(self._classify_uncached)
        for fac in facilities.values():
            versions = tariffs[fac.tariff_id]
            starts = tuple(v.effective_ts(fac.tz) for v in versions)
            self._schedules[fac.id] = Schedule(starts, tuple(versions))

    @property
    def warnings(self) -> list[str]:
        """Messages an operator should see: missing caps numbers, overrides in use."""
        return _unique([f.message for f in self.findings if f.level in ("warning", "overridden")])

    @property
    def facilities(self) -> tuple[Facility, ...]:
        return tuple(self._facilities.values())

    def facility(self, facility_id: str) -> Facility:
        try:
            return self._facilities[facility_id]
        except (KeyError, TypeError):
            raise UnknownFacility(str(facility_id)) from None

    def classify(self, facility_id: str, dialled: str) -> Destination:
        """Normalize, validate and classify a dialled number for a facility; NumberRefused if not allowed."""
        return self._classify(self.facility(facility_id), dialled)

    def clear_cache(self) -> None:
        """Forget cached classifications (this catalog's and the shared per-number cache)."""
        self._cached.cache_clear()
        numbers.lookup.cache_clear()

    def _classify(self, fac: Facility, dialled: str) -> Destination:
        if isinstance(dialled, str) and len(dialled) <= numbers.MAX_INPUT_CHARS:
            found = self._cached(fac.id, dialled)
        else:
            found = self._classify_uncached(fac.id, dialled)
        if isinstance(found, Destination):
            return found
        raise NumberRefused(*found)

    def _classify_uncached(self, facility_id: str, dialled: str) -> Destination | tuple[str, str]:
        """Destination, or (code, message) of the refusal (cached as a value, raised by the caller)."""
        fac = self._facilities[facility_id]
        try:
            info = numbers.lookup(numbers.normalize(dialled))
            numbers.refuse_by_policy(info, fac.blocked_types)
        except NumberRefused as exc:
            return exc.code, exc.message
        region = info.region
        assert region is not None
        if region in US_REGIONS:
            if info.npa in fac.local_set:
                call_class = CallClass.LOCAL
            elif info.state is not None and info.state == fac.state:
                call_class = CallClass.INTRASTATE
            else:
                call_class = CallClass.INTERSTATE
        else:
            call_class = CallClass.INTERNATIONAL
        return Destination(info.e164, call_class, region, info.state, info.number_type, info.country_code)

    def version_at(self, facility_id: str, at: dt.datetime) -> TariffVersion:
        fac = self.facility(facility_id)
        version = self._schedules[fac.id].at(timestamp(at))
        if version is None:
            raise RatingError(f"no version of tariff {fac.tariff_id} is in force at {at.isoformat()}")
        return version

    def quote(self, facility_id: str, dialled: str, at: dt.datetime) -> Quote:
        """Quote a call starting at `at` (tz-aware), rated by the tariff version in force then."""
        fac = self.facility(facility_id)
        ts = timestamp(at)
        dest = self._classify(fac, dialled)
        version = self._schedules[fac.id].at(ts)
        if version is None:
            raise RatingError(f"no version of tariff {fac.tariff_id} is in force at {at.isoformat()}")
        pricing: Pricing = version.pricing(dest.call_class, dest.region, dest.country_code)
        return Quote(dest, fac, at, version, pricing, ts)


def _toml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise TariffError(directory, "", "directory not found")
    return sorted(directory.glob("*.toml"))


def load_tariff_files(paths: list[Path]) -> dict[str, list[TariffVersion]]:
    """Parse and validate tariff files; versions of one id sorted, unique, and starting in order."""
    by_id: dict[str, list[TariffVersion]] = {}
    for path in paths:
        version = load_tariff_file(path)
        by_id.setdefault(version.id, []).append(version)
    return check_version_order(by_id)


def load_tariff_file(path: Path) -> TariffVersion:
    return parse_tariff(Table(read_toml(path), path))


def check_version_order(by_id: dict[str, list[TariffVersion]]) -> dict[str, list[TariffVersion]]:
    """Sort each tariff's versions; numbers unique and start dates increasing with them."""
    for versions in by_id.values():
        versions.sort(key=lambda v: v.version)
        for a, b in itertools.pairwise(versions):
            if a.version == b.version:
                raise TariffError(b.file, "version", f"{b.label} is also defined in {a.file}")
            if _utc_key(b.effective_from) <= _utc_key(a.effective_from):
                raise TariffError(b.file, "effective_from",
                                  f"{b.label} must start after {a.label} ({a.effective_from})")
    return by_id


def _utc_key(when: dt.date | dt.datetime) -> dt.datetime:
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.UTC)
    return dt.datetime(when.year, when.month, when.day, tzinfo=dt.UTC)


def load_facility_files(paths: list[Path]) -> dict[str, Facility]:
    tables = [Table(read_toml(p), p) for p in paths]
    groups: dict[str, dict[str, Any]] = {}
    group_files: dict[str, Path] = {}
    for t in tables:
        if t.data.get("kind") == "group":
            gid, values = parse_group(t)
            if gid in groups:
                raise TariffError(t.file, "id", f"group {gid} is also defined in {group_files[gid]}")
            groups[gid], group_files[gid] = values, Path(t.file)
    facilities: dict[str, Facility] = {}
    for t in tables:
        if t.data.get("kind") == "group":
            continue
        fac = parse_facility(t, groups)
        if fac.id in facilities:
            raise TariffError(t.file, "id", f"facility {fac.id} is also defined in {facilities[fac.id].file}")
        facilities[fac.id] = fac
    return facilities


def check_caps(facilities: dict[str, Facility], tariffs: dict[str, list[TariffVersion]],
               regimes: tuple[Regime, ...], *, only: set[str] | None = None,
               strict: bool = True) -> list[Finding]:
    """Check every version each facility can use during its time in force.

    strict: raise TariffError on the first version with a violation not covered by [cap_override];
    otherwise return the violations as "error" findings. `only` limits the check to these files.
    """
    findings: list[Finding] = []
    for fac in facilities.values():
        versions = tariffs.get(fac.tariff_id)
        if not versions:
            raise TariffError(fac.file, "tariff", f"no tariff file defines {fac.tariff_id!r}")
        starts = [v.effective_ts(fac.tz) for v in versions]
        if any(b <= a for a, b in itertools.pairwise(starts)):
            raise TariffError(versions[0].file, "effective_from",
                              f"versions of {fac.tariff_id} do not start in order in {fac.tz.key}")
        for i, version in enumerate(versions):
            if only is not None and version.file not in only:
                continue
            end = starts[i + 1] if i + 1 < len(versions) else None
            found = check_version(regimes, version, fac, starts[i], end)
            if strict:
                raise_errors(found, version.file)
            findings.extend(found)
    return findings


def load_catalog(facility_dir: str | Path, *, caps_path: str | Path | None = None) -> Catalog:
    """Load <dir>/facilities/*.toml and <dir>/tariffs/*.toml, validate, and check the caps.

    Raises TariffError naming the file and field of the first problem. Warnings (missing caps
    numbers, overrides in force) are logged and kept in Catalog.warnings.
    """
    base = Path(facility_dir)
    regimes = load_caps(Path(caps_path) if caps_path else None)
    tariffs = load_tariff_files(_toml_files(base / "tariffs"))
    facilities = load_facility_files(_toml_files(base / "facilities"))
    findings = check_caps(facilities, tariffs, regimes)
    catalog = Catalog(facilities, tariffs, regimes, findings)
    for message in catalog.warnings:
        log.warning("rating.catalog_warning", detail=message)
    return catalog


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
