"""Facility records: where a phone is, its tier for the caps, its hours, limits and number policy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rating.errors import RatingError
from rating.hours import DAYS, CallingHours, parse_day
from rating.numbers import BLOCKABLE_TYPES
from rating.usgeo import FACILITY_STATES

FACILITY_TYPES = ("prison", "jail")
ID_PATTERN = r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)*"
# Number types refused unless a facility lists its own set (premium and toll-free are always refused).
DEFAULT_BLOCKED_TYPES = ("shared_cost", "uan", "voicemail", "personal_number")
# What an unfunded number (no account, less than one minute) gets: refused, or one call paid by card.
UNFUNDED_CALLS = ("deny", "offer_one_call")
# Fields a group may give its member facilities as defaults.
INHERITABLE = (
    "state", "timezone", "local_area_codes", "languages", "tariff", "max_call_seconds",
    "warning_seconds", "blocked_number_types", "calling_hours", "unfunded_calls", "inactivity_days",
)
#: 47 CFR 64.6130: unused funds are not disposed of before 180 days of inactivity; a state may set longer.
MIN_INACTIVITY_DAYS = 180


@dataclass(frozen=True, slots=True)
class Facility:
    id: str
    name: str
    state: str
    tz: ZoneInfo
    kind: str                          # "prison" | "jail"
    adp: int | None                    # average daily population (required for jails)
    local_area_codes: tuple[str, ...]
    languages: tuple[str, ...]
    tariff_id: str
    max_call_seconds: int
    warning_seconds: int
    blocked_types: frozenset[str]
    hours: CallingHours
    group: str | None
    file: str
    local_set: frozenset[str]
    unfunded_calls: str = "deny"
    inactivity_days: int = MIN_INACTIVITY_DAYS     # refund and close after this many idle local days
    request2call: bool = True                      # families may ask inmates to call (holders/request2call)

    # [start, close) of the last open stretch seen, in absolute seconds: quotes inside it skip the
    # calendar arithmetic. Only stretches without a UTC-offset change are kept.
    _stretch: list[float] = field(default_factory=lambda: [0.0, 0.0], compare=False, repr=False)

    def is_open(self, at: dt.datetime) -> bool:
        timestamp(at)
        return self.hours.is_open(at.astimezone(self.tz))

    def seconds_until_close(self, at: dt.datetime) -> int | None:
        """Seconds until calling hours end (0 if closed now, None if the facility never closes)."""
        return self.close_after(at, timestamp(at))

    def close_after(self, at: dt.datetime, ts: float) -> int | None:
        """seconds_until_close for an `at` already checked, with ts = at.timestamp()."""
        hours = self.hours
        if hours.always_open:
            return None
        lo, hi = self._stretch
        if lo <= ts < hi:
            return int(hi - ts)
        stretch = hours.open_stretch(at, self.tz)
        if stretch is None:
            return 0
        lo, hi = stretch
        tz = self.tz
        if dt.datetime.fromtimestamp(lo, tz).utcoffset() == dt.datetime.fromtimestamp(hi - 1, tz).utcoffset():
            self._stretch[:] = (lo, hi)
        return max(0, int(hi - ts))


# Instants rated: calling hours follow open stretches a few days past `at` and across time zones,
# which the calendar (years 1..9999) cannot represent at its ends.
YEARS = (1900, 9998)


def timestamp(at: object) -> float:
    """at.timestamp() for a time-zone-aware datetime within YEARS; RatingError for anything else."""
    if not isinstance(at, dt.datetime) or at.utcoffset() is None:
        raise RatingError(f"a time-zone-aware datetime is required, got {at!r}")
    if not YEARS[0] <= at.year <= YEARS[1]:
        raise RatingError(f"{at.isoformat()} is outside the years {YEARS[0]}-{YEARS[1]} that can be rated")
    return at.timestamp()


def parse_shared_fields(t: Any, defaults: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """Validate the inheritable fields of a facility or group table. Missing fields fall back to defaults."""
    out: dict[str, Any] = {}

    def get(key: str, reader: Any, optional: bool = False, **kw: Any) -> Any:
        if t.has(key):
            return reader(key, **kw)
        t.seen.add(key)
        if key in defaults:
            return defaults[key]
        if required and not optional:
            raise t.error(key, "is required")
        return None

    out["state"] = get("state", t.str, choices=FACILITY_STATES)
    tz_name = get("timezone", t.str)
    if tz_name is not None and t.has("timezone"):
        try:
            ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise t.error("timezone", f"{tz_name!r} is not an IANA time zone") from None
    out["timezone"] = tz_name
    codes = get("local_area_codes", t.str_list, pattern=r"[2-9][0-9][0-9]")
    out["local_area_codes"] = codes
    langs = get("languages", t.str_list, pattern=r"[a-z]{2,3}(-[A-Z]{2})?")
    if langs is not None and not langs:
        raise t.error("languages", "must offer at least one language")
    out["languages"] = langs
    out["tariff"] = get("tariff", t.str, pattern=ID_PATTERN)
    out["max_call_seconds"] = get("max_call_seconds", t.int, lo=60, hi=4 * 3600)
    out["warning_seconds"] = get("warning_seconds", t.int, lo=0, hi=600)
    blocked = get("blocked_number_types", t.str_list, optional=True)
    if blocked is not None and t.has("blocked_number_types"):
        for item in blocked:
            if item not in BLOCKABLE_TYPES:
                raise t.error("blocked_number_types", f"{item!r} is not one of {', '.join(BLOCKABLE_TYPES)}")
    out["blocked_number_types"] = blocked
    out["unfunded_calls"] = get("unfunded_calls", t.str, optional=True, choices=UNFUNDED_CALLS)
    out["inactivity_days"] = get("inactivity_days", t.int, optional=True, lo=MIN_INACTIVITY_DAYS, hi=3650)
    if t.has("calling_hours"):
        out["calling_hours"] = _parse_hours(t.table("calling_hours"))
    else:
        t.seen.add("calling_hours")
        out["calling_hours"] = defaults.get("calling_hours")
        if out["calling_hours"] is None and required:
            raise t.error("calling_hours", "is required")
    return out


def _parse_hours(t: Any) -> CallingHours:
    base = t.raw("all", None)
    days = []
    for day in DAYS:
        value = t.raw(day, base)
        if value is None:
            raise t.error(day, 'no hours given (set it, or "all", to a range or "closed")')
        try:
            days.append(parse_day(value))
        except ValueError as exc:
            key = day if t.has(day) else "all"
            raise t.error(key, str(exc)) from None
    t.finish()
    return CallingHours(tuple(days))


def parse_facility(t: Any, groups: dict[str, dict[str, Any]]) -> Facility:
    """Build a Facility from its table; fields it omits come from its group, if any."""
    fid = t.str("id", pattern=ID_PATTERN)
    name = t.str("name")
    group = t.str("group", None, pattern=ID_PATTERN)
    defaults: dict[str, Any] = {}
    if group is not None:
        if group not in groups:
            raise t.error("group", f"unknown group {group!r}")
        defaults = groups[group]
    kind = t.str("type", choices=FACILITY_TYPES)
    adp = t.int("average_daily_population", None, lo=0, hi=1_000_000)
    if kind == "jail" and adp is None:
        raise t.error("average_daily_population", "is required for a jail (it sets the cap tier)")
    shared = parse_shared_fields(t, defaults, required=True)
    request2call = bool(t.bool("request2call", True))
    t.str("kind", "facility", choices=("facility",))
    t.int("schema", 1, lo=1, hi=1)
    t.finish()
    if shared["warning_seconds"] >= shared["max_call_seconds"]:
        raise t.error("warning_seconds", "must be shorter than max_call_seconds")
    blocked = shared["blocked_number_types"]
    blocked = DEFAULT_BLOCKED_TYPES if blocked is None else blocked
    return Facility(
        id=fid,
        name=name,
        state=shared["state"],
        tz=ZoneInfo(shared["timezone"]),
        kind=kind,
        adp=adp,
        local_area_codes=tuple(shared["local_area_codes"]),
        languages=tuple(shared["languages"]),
        tariff_id=shared["tariff"],
        max_call_seconds=shared["max_call_seconds"],
        warning_seconds=shared["warning_seconds"],
        blocked_types=frozenset(blocked),
        hours=shared["calling_hours"],
        group=group,
        file=str(t.file),
        local_set=frozenset(shared["local_area_codes"]),
        unfunded_calls=shared["unfunded_calls"] or "deny",
        inactivity_days=shared["inactivity_days"] or MIN_INACTIVITY_DAYS,
        request2call=request2call,
    )


def parse_group(t: Any) -> tuple[str, dict[str, Any]]:
    gid = t.str("id", pattern=ID_PATTERN)
    t.str("name", None)
    t.str("kind", choices=("group",))
    t.int("schema", 1, lo=1, hi=1)
    shared = parse_shared_fields(t, {}, required=False)
    t.finish()
    return gid, {k: v for k, v in shared.items() if v is not None}
