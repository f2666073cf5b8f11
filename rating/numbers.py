"""Dialled-string normalization and number lookup (validity, type, region, US state).

Two paths give the same answer: the slow path hands "+<digits>" to phonenumbers.parse; the NANP fast
path skips parsing (the digits are already the country code 1 and a 10-digit national number) and
applies phonenumbers' own metadata patterns, precompiled, in the order phonenumbers documents for
region lookup and number typing. Property tests hold the two equal. Results are cached per number.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE, NumberParseException

from rating.errors import NumberRefused
from rating.usgeo import US_REGIONS, npa_states

MAX_INPUT_CHARS = 40      # longer dialled strings are refused before any parsing ("too_long")
MAX_E164_DIGITS = 15      # ITU-T E.164 maximum, country code included
CACHE_SIZE = 65_536

TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
# Types a facility may block by policy (premium_rate and toll_free are refused everywhere).
BLOCKABLE_TYPES = (
    "shared_cost", "uan", "voicemail", "personal_number", "pager", "voip", "mobile", "fixed_line_or_mobile",
    "fixed_line",
)
_FORMAT_CHARS = str.maketrans("", "", " -()")


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """What phonenumbers says about one number, independent of the facility calling it."""

    e164: str                 # "+13128681234"; for invalid numbers the "+digits" that was looked up
    valid: bool
    country_code: int
    region: str | None        # ISO 3166 region ("US", "MX", "PR"), None when invalid
    number_type: str          # a TYPE_NAMES value
    npa: str | None           # area code for NANP numbers
    state: str | None         # USPS code for US states/DC and US territories (PR, GU, ...)


def normalize(dialled: object) -> str:
    """Dialled string -> E.164 digits without "+". Accepts 10 digits, 1+10, 011+international, +E.164,
    with spaces, dashes and parentheses; refuses everything else with NumberRefused."""
    if not isinstance(dialled, str):
        raise NumberRefused("invalid", "the dialled number must be text")
    if len(dialled) > MAX_INPUT_CHARS:
        raise NumberRefused("too_long", f"dialled string longer than {MAX_INPUT_CHARS} characters")
    s = dialled.strip().translate(_FORMAT_CHARS)
    if s.startswith("+"):
        digits = s[1:]
    elif s.startswith("011"):
        digits = s[3:]
    else:
        digits = ""
        if s.isascii() and s.isdigit():
            if len(s) == 10:
                digits = "1" + s
            elif len(s) == 11 and s[0] == "1":
                digits = s
            elif len(s) <= 6:
                raise NumberRefused("short_code", f"{s!r} is a short code (N11, emergency or service number)")
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise NumberRefused(
            "invalid", "dial 10 digits, 1 + 10 digits, 011 + international number, or +E.164"
        )
    if len(digits) > MAX_E164_DIGITS:
        raise NumberRefused("too_long", f"more than {MAX_E164_DIGITS} digits")
    return digits


def _invalid(digits: str, cc: int = 0) -> NumberInfo:
    return NumberInfo("+" + digits, False, cc, None, "unknown", None, None)


def _finish(e164: str, cc: int, region: str | None, type_name: str) -> NumberInfo:
    npa = e164[2:5] if cc == 1 else None
    state = None
    if region in US_REGIONS:
        state = npa_states().get(npa) if region == "US" else region
    return NumberInfo(e164, True, cc, region, type_name, npa, state)


def lookup_slow(digits: str) -> NumberInfo:
    """Reference path: phonenumbers.parse + is_valid_number + number_type."""
    try:
        num = phonenumbers.parse("+" + digits, None)
    except NumberParseException:
        return _invalid(digits)
    if not phonenumbers.is_valid_number(num):
        return _invalid(digits, num.country_code)
    region = phonenumbers.region_code_for_number(num)
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return _finish(e164, num.country_code, region, TYPE_NAMES[phonenumbers.number_type(num)])


class _Desc:
    __slots__ = ("lengths", "pattern")

    def __init__(self, desc: object) -> None:
        pattern = getattr(desc, "national_number_pattern", None) if desc is not None else None
        self.pattern = re.compile(pattern) if pattern else None
        self.lengths = frozenset(getattr(desc, "possible_length", None) or ())

    def matches(self, nn: str) -> bool:
        if self.pattern is None or (self.lengths and len(nn) not in self.lengths):
            return False
        return self.pattern.fullmatch(nn) is not None


_SPECIAL_TYPES = (
    "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
)


class _Region:
    """One NANP region's metadata, compiled once."""

    def __init__(self, code: str) -> None:
        md = PhoneMetadata.metadata_for_region(code, None)
        self.code = code
        self.present = md is not None
        self.leading = re.compile(md.leading_digits) if md is not None and md.leading_digits else None
        self.general = _Desc(md.general_desc if md else None)
        self.specials = tuple((name, _Desc(getattr(md, name, None))) for name in _SPECIAL_TYPES)
        self.fixed = _Desc(md.fixed_line if md else None)
        self.mobile = _Desc(md.mobile if md else None)
        self.same = bool(md.same_mobile_and_fixed_line_pattern) if md else False

    def type_of(self, nn: str) -> str:
        if not self.general.matches(nn):
            return "unknown"
        for name, desc in self.specials:
            if desc.matches(nn):
                return name
        if self.fixed.matches(nn):
            return "fixed_line_or_mobile" if self.same or self.mobile.matches(nn) else "fixed_line"
        if not self.same and self.mobile.matches(nn):
            return "mobile"
        return "unknown"


@functools.cache
def _nanp_regions() -> tuple[_Region, ...]:
    return tuple(r for r in (_Region(c) for c in COUNTRY_CODE_TO_REGION_CODE[1]) if r.present)


def lookup_nanp(digits: str) -> NumberInfo:
    """Fast path for "1" + 10 digits: region by leading digits or full typing, then the type."""
    nn = digits[1:]
    found = None
    for region in _nanp_regions():
        if region.leading is not None:
            if region.leading.match(nn):
                found = region
                break
        elif region.type_of(nn) != "unknown":
            found = region
            break
    if found is None:
        return _invalid(digits, 1)
    type_name = found.type_of(nn)
    if type_name == "unknown":
        return _invalid(digits, 1)
    return _finish("+" + digits, 1, found.code, type_name)


@functools.lru_cache(maxsize=CACHE_SIZE)
def lookup(digits: str) -> NumberInfo:
    """Cached lookup of E.164 digits; NANP numbers take the fast path."""
    if len(digits) == 11 and digits[0] == "1" and digits[1] not in "01":
        return lookup_nanp(digits)
    return lookup_slow(digits)


def refuse_by_policy(info: NumberInfo, blocked_types: frozenset[str]) -> None:
    """Raise NumberRefused unless the number may be called from a facility blocking `blocked_types`."""
    if not info.valid:
        raise NumberRefused("invalid", f"{info.e164} is not a valid telephone number")
    kind = info.number_type
    if kind == "premium_rate":
        raise NumberRefused("premium", f"{info.e164} is a premium-rate number")
    if kind == "toll_free":
        raise NumberRefused("toll_free",
                            f"{info.e164} is toll-free; AdvancePay cannot fund a toll-free number")
    if kind in blocked_types:
        raise NumberRefused("blocked_type", f"{info.e164} is a {kind.replace('_', '-')} number, blocked here")
